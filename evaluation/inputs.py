"""Checks of the feature matrices and label vectors every evaluation function receives.

Each public function of :mod:`evaluation` calls these first, so the numerical code only ever
sees a finite 2-D float array and a matching 1-D integer label vector.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_features(x: Any, name: str = "features", *, dtype: Any = np.float32) -> np.ndarray:
    """Return ``x`` as a finite C-contiguous (n, d) array of ``dtype``.

    Accepts numpy arrays, array-likes and torch tensors (detached, moved to the CPU).
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features), got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); expected at least one row/column")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        bad = ~np.isfinite(arr)
        rows = np.flatnonzero(bad.any(axis=1))
        kind = "NaN" if np.isnan(arr).any() else "infinite"
        raise ValueError(
            f"{name} has {kind} values in {rows.size} row(s) (first: {rows[:5].tolist()}); "
            "features must be finite: check the model output or drop those samples"
        )
    return arr


def as_labels(y: Any, n: int, name: str = "labels") -> np.ndarray:
    """Return ``y`` as an int64 vector of length ``n`` with non-negative class indices."""
    if hasattr(y, "detach") and hasattr(y, "cpu"):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one class index per sample), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(
            f"{name} has {arr.shape[0]} entries but the features have {n} rows; "
            "they must match one label per sample"
        )
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must be integer class indices, got non-integer values")
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be class indices >= 0, got minimum {arr.min()}")
    return arr


def check_same_width(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    """Raise if two feature matrices have a different number of columns."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{names[0]} has {a.shape[1]} features per sample but {names[1]} has {b.shape[1]}; "
            "both must come from the same model"
        )
