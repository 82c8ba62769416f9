"""Argument checks shared by the criteria: the (N, D) views they receive and their options."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["check_coeff", "check_views", "working_dtype"]


def check_coeff(name: str, value: float, *, positive: bool = False) -> float:
    """Return ``value`` as float if it is a finite number >= 0 (> 0 if ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
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
