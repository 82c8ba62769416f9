"""Collectives for criteria that need the global batch, written for torch.distributed.

Every function is the identity (or a no-op) when torch.distributed is not available or not
initialised, so the same criterion runs in one process and under ``torchrun``.

Gradient convention (the one of the official VICReg and SwAV code): every rank computes the
criterion on the gathered global batch, so each rank holds a copy of the same loss. The
backward of :func:`gather_with_grad` sums the incoming gradients over ranks and returns the
slice of this rank's rows. A rank's input then receives ``world_size`` times the gradient of
the global loss; DistributedDataParallel averages parameter gradients over ranks, which
divides by ``world_size`` again, so the optimizer sees exactly the gradient of the global loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.distributed as dist

__all__ = [
    "all_reduce_max",
    "all_reduce_sum",
    "equal_batches",
    "gather_with_grad",
    "global_rows",
    "is_distributed",
    "world_size",
]

_EQUAL_BATCHES: ContextVar[bool] = ContextVar("equal_batches", default=False)


def is_distributed() -> bool:
    """True when torch.distributed is available, initialised and has more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 without torch.distributed)."""
    return dist.get_world_size() if is_distributed() else 1


@contextmanager
def equal_batches() -> Iterator[None]:
    """Within this block the caller states that every rank's inputs have the same number of
    rows, so the gathers and the global batch size need no collective to learn the sizes.

    Without it, :func:`gather_with_grad` first all-gathers every rank's row count (a collective
    and a device-to-host read per gathered tensor) and :func:`global_rows` all-reduces the
    counts. A training loop whose sampler gives every rank full batches of one size (as
    ``adapters.train``'s does) states it; the statement is not checked, since checking it would
    take the very collective it saves, and unequal sizes under it are an error of the caller.

    Examples
    --------
    >>> import torch
    >>> from entropylib.criteria.distributed import equal_batches, global_rows
    >>> with equal_batches():
    ...     global_rows(torch.zeros(8, 3))  # one process: its own rows
    8
    """
    token = _EQUAL_BATCHES.set(True)
    try:
        yield
    finally:
        _EQUAL_BATCHES.reset(token)


def global_rows(x: torch.Tensor) -> int | torch.Tensor:
    """Number of rows of ``x`` over all ranks (its dim 0 summed over the ranks).

    A Python int in one process and under :func:`equal_batches` (``len(x) * world_size``);
    otherwise the all-reduced sum of the counts, a 0-dim tensor of ``x``'s dtype and device
    (its value stays on the device).
    """
    if not is_distributed() or _EQUAL_BATCHES.get():
        return x.shape[0] * world_size()
    return all_reduce_sum(torch.full((), x.shape[0], dtype=x.dtype, device=x.device))


def _row_counts(x: torch.Tensor) -> list[int]:
    """Every rank's number of rows of ``x``: stated equal, or all-gathered and read at once."""
    world = dist.get_world_size()
    if _EQUAL_BATCHES.get():
        return [x.shape[0]] * world
    n_local = torch.full((1,), x.shape[0], dtype=torch.long, device=x.device)
    counts = [torch.empty_like(n_local) for _ in range(world)]
    dist.all_gather(counts, n_local)
    return torch.cat(counts).tolist()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward all-reduces (sums) and keeps this rank's rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        # Ranks may hold different numbers of rows (a short last batch): learn the sizes,
        # pad every block to the largest, gather, and trim the padding away.
        sizes_int = _row_counts(x)
        n_max = max(sizes_int)
        padded = x.contiguous()
        if n_max > x.shape[0]:
            padded = x.new_zeros((n_max, *x.shape[1:]))
            padded[: x.shape[0]] = x
        blocks = [torch.empty_like(padded) for _ in sizes_int]
        dist.all_gather(blocks, padded)
        rank = dist.get_rank()
        ctx.start = sum(sizes_int[:rank])
        ctx.stop = ctx.start + sizes_int[rank]
        return torch.cat([b[:s] for b, s in zip(blocks, sizes_int, strict=True)], dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (n_r, ...) of every rank along dim 0, keeping the autograd graph.

    Blocks are ordered by rank. Backward: the gradient of the gathered tensor is summed over
    ranks and each rank takes the rows of its own input (see the module docstring for why this
    gives the exact global gradient under DistributedDataParallel). Identity in one process.

    Examples
    --------
    >>> import torch
    >>> from entropylib.criteria.distributed import gather_with_grad
    >>> z = torch.randn(8, 4, requires_grad=True)
    >>> gather_with_grad(z) is z  # no process group: nothing to gather
    True
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over ranks, without gradient (for Sinkhorn-Knopp normalisers and counts).

    Returns a new tensor; ``x`` is left untouched. A detached copy in one process.

    Examples
    --------
    >>> import torch
    >>> from entropylib.criteria.distributed import all_reduce_sum
    >>> all_reduce_sum(torch.ones(3))
    tensor([1., 1., 1.])
    """
    return _all_reduce(x, dist.ReduceOp.SUM)


def all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    """Elementwise maximum of ``x`` over ranks, without gradient. A detached copy in one process.

    Examples
    --------
    >>> import torch
    >>> from entropylib.criteria.distributed import all_reduce_max
    >>> all_reduce_max(torch.tensor(2.0))
    tensor(2.)
    """
    return _all_reduce(x, dist.ReduceOp.MAX)


def _all_reduce(x: torch.Tensor, op) -> torch.Tensor:
    out = x.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=op)
    return out
