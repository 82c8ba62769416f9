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

import torch
import torch.distributed as dist

__all__ = ["all_reduce_max", "all_reduce_sum", "gather_with_grad", "is_distributed", "world_size"]


def is_distributed() -> bool:
    """True when torch.distributed is available, initialised and has more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 without torch.distributed)."""
    return dist.get_world_size() if is_distributed() else 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward all-reduces (sums) and keeps this rank's rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        # Ranks may hold different numbers of rows (a short last batch): gather the sizes
        # first, pad every block to the largest, gather, and trim the padding away.
        n_local = torch.tensor([x.shape[0]], device=x.device)
        sizes = [torch.zeros_like(n_local) for _ in range(dist.get_world_size())]
        dist.all_gather(sizes, n_local)
        sizes_int = [int(s.item()) for s in sizes]
        n_max = max(sizes_int)
        padded = x.new_zeros((n_max, *x.shape[1:]))
        padded[: x.shape[0]] = x
        blocks = [torch.empty_like(padded) for _ in sizes_int]
        dist.all_gather(blocks, padded.contiguous())
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
