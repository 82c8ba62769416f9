"""What every criterion does to its inputs: check the (N, D) views and options, gather, upcast."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch

from entropylib import validation
from entropylib.criteria.distributed import gather_with_grad

__all__ = [
    "caller_checks_finite",
    "check_coeff",
    "check_finite_loss",
    "check_views",
    "full_precision",
    "gather_views",
    "unit_rows",
    "working_dtype",
]


class NonFiniteInput(ValueError):
    """Views with NaN or infinite values, or finite views whose loss overflows.

    A ValueError for a caller who passed bad data, raised by every criterion unless the caller
    checks finiteness itself (:func:`caller_checks_finite`).
    """


_CALLER_CHECKS: ContextVar[bool] = ContextVar("caller_checks_finite", default=False)


@contextmanager
def caller_checks_finite() -> Iterator[None]:
    """Within this block the criteria do not check their views and losses for NaN and inf;
    the caller checks what it needs (a NaN or inf then reaches the returned loss).

    Each check reads a device value on the host: on a GPU that is a synchronisation, several
    per training step. A training loop that checks its loss and embeddings on the device once
    per step, and reads the result when it logs, uses this block (``adapters.train``).

    Examples
    --------
    >>> import torch
    >>> from entropylib.criteria import VICRegLoss
    >>> z = torch.randn(8, 4)
    >>> z[0, 0] = float("nan")
    >>> with caller_checks_finite():
    ...     loss, _ = VICRegLoss()(z, z)
    >>> bool(loss.isnan())
    True
    """
    token = _CALLER_CHECKS.set(True)
    try:
        yield
    finally:
        _CALLER_CHECKS.reset(token)


def check_coeff(name: str, value: float, *, positive: bool = False) -> float:
    """Return ``value`` as float if it is a finite real number >= 0 (> 0 if ``positive``).

    Any real type is accepted (Python or numpy ints and floats); bools are refused.
    """
    if not validation.is_real(value):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        expected = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {expected}, got {value!r}")
    return value


def check_views(
    views: Sequence[torch.Tensor], who: str, *, count: int | None = None, min_count: int = 1
) -> None:
    """Check that ``views`` are floating tensors of one common shape (N, D).

    ``count`` (exact) or ``min_count`` bound how many views ``who`` accepts.
    """
    if count is not None and len(views) != count:
        raise ValueError(f"{who} takes exactly {count} views, got {len(views)}")
    if len(views) < min_count:
        raise ValueError(f"{who} takes at least {min_count} view(s), got {len(views)}")
    for i, v in enumerate(views):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{who}: view {i} must be a torch.Tensor, got {type(v).__name__}")
        if not v.is_floating_point():
            raise TypeError(f"{who}: view {i} must be a floating tensor, got dtype {v.dtype}")
        if v.ndim != 2:
            raise ValueError(
                f"{who}: view {i} must be 2-D (N, D) with samples along dim 0, "
                f"got shape {tuple(v.shape)}"
            )
        if v.shape[0] == 0 or v.shape[1] == 0:
            raise ValueError(f"{who}: view {i} is empty (shape {tuple(v.shape)})")
        if v.shape != views[0].shape:
            raise ValueError(
                f"{who}: all views must have the same shape, view 0 is {tuple(views[0].shape)} "
                f"and view {i} is {tuple(v.shape)}"
            )


def working_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 for float64 input, else float32 (half and bfloat16 are never computed in)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def full_precision(views: Sequence[torch.Tensor]) -> torch.autocast:
    """Context that disables autocast on the views' device: criteria compute in float32/64."""
    return torch.autocast(device_type=views[0].device.type, enabled=False)


def gather_views(
    views: Sequence[torch.Tensor], who: str, *, min_rows: int = 2
) -> list[torch.Tensor]:
    """Each view gathered over ranks with gradient and cast to :func:`working_dtype`.

    Raises ValueError when the global batch has fewer than ``min_rows`` rows or, unless the
    caller checks (:func:`caller_checks_finite`), when a view holds NaN or infinite values (on
    any rank), so that no criterion returns a NaN loss or fails inside a factorization on them.
    """
    gathered = [gather_with_grad(v) for v in views]
    n = gathered[0].shape[0]
    if n < min_rows:
        raise ValueError(f"{who} needs a (global) batch of at least {min_rows}, got {n}")
    if not _CALLER_CHECKS.get():
        for i, g in enumerate(gathered):
            if not torch.isfinite(g).all():
                raise NonFiniteInput(f"{who}: view {i} has NaN or infinite values")
    return [g.to(working_dtype(g)) for g in gathered]


def check_finite_loss(loss: torch.Tensor, views: Sequence[torch.Tensor], who: str) -> None:
    """Raise if finite views gave a non-finite loss: its value overflows the working dtype
    (e.g. VICReg's covariance penalty grows as the fourth power of the embedding scale).
    Skipped when the caller checks (:func:`caller_checks_finite`)."""
    if not _CALLER_CHECKS.get() and not torch.isfinite(loss):
        scale = max(float(v.detach().abs().max()) for v in views)
        raise NonFiniteInput(
            f"{who}: the loss overflows {loss.dtype} at this embedding scale (largest |z| = "
            f"{scale:.3g}); normalise the embeddings or compute in float64"
        )


def unit_rows(z: torch.Tensor) -> torch.Tensor:
    """Rows of ``z`` divided by their L2 norms, at any finite scale.

    Each row is first multiplied by the power of 2 that brings its largest entry into
    [0.5, 1): exact, and the direction is all that is kept, but the squares of the norm then
    neither overflow (float32 rows of size 1e20) nor underflow (1e-20, where
    ``F.normalize`` would divide by its eps instead of the norm). The power is applied as two
    factors that each fit the dtype (a subnormal float32 row needs 2^149) and carries no
    gradient, which the result does not depend on. A zero row has no direction: it stays
    zero and passes no gradient (``F.normalize`` passes 1 / eps = 1e12). A row with NaN
    stays NaN, for a caller that checks the loss (:func:`caller_checks_finite`).

    Examples
    --------
    >>> unit_rows(torch.tensor([[3e30, 4e30], [0.0, 0.0]]))
    tensor([[0.6000, 0.8000],
            [0.0000, 0.0000]])
    """
    _, exponent = torch.frexp(z.detach().abs().amax(dim=1, keepdim=True))
    half = torch.div(-exponent, 2, rounding_mode="floor")
    z = z * torch.exp2(half.to(z.dtype)) * torch.exp2((-exponent - half).to(z.dtype))
    norm = z.norm(dim=1, keepdim=True)
    nonzero = norm != 0
    return torch.where(nonzero, z / torch.where(nonzero, norm, 1.0), 0.0)
