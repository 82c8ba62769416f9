"""Checks of the feature matrices and label vectors every evaluation function receives.

Each public function of :mod:`evaluation` calls these first, so the numerical code only ever
sees a finite 2-D float array and a matching 1-D integer label vector.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from entropylib.validation import check_seed, is_integer, is_real


def as_features(x: Any, name: str = "features", *, dtype: Any = np.float32) -> np.ndarray:
    """Return ``x`` as a finite C-contiguous (n, d) array of ``dtype``.

    Accepts numpy arrays, array-likes and torch tensors (detached, moved to the CPU).
    ``dtype=None`` keeps a floating input's own precision (integers become float64), so finite
    float64 values beyond float32's range stay finite. A finite value that does not fit
    ``dtype`` is an error saying so, never an "infinite" one.
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
    if dtype is None:
        dtype = arr.dtype if arr.dtype.kind == "f" else np.float64
    _check_finite(arr, name)
    if arr.dtype.kind == "f" and np.finfo(arr.dtype).max > np.finfo(dtype).max:
        largest = float(np.max(np.abs(arr)))
        if largest > float(np.finfo(dtype).max):
            raise ValueError(
                f"{name} has finite values up to {largest:.3g}, beyond the range of "
                f"{np.dtype(dtype).name} ({np.finfo(dtype).max:.3g}); rescale the features"
            )
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_finite(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = ~np.isfinite(arr)
        rows = np.flatnonzero(bad.any(axis=1))
        kind = "NaN" if np.isnan(arr).any() else "infinite"
        raise ValueError(
            f"{name} has {kind} values in {rows.size} row(s) (first: {rows[:5].tolist()}); "
            "features must be finite: check the model output or drop those samples"
        )


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1, or a ValueError naming the parameter (bools are refused).

    Examples
    --------
    >>> positive_int(3, "k")
    3
    """
    if not is_integer(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def seeded_rng(seed: Any, stream: int | None = None) -> np.random.Generator:
    """numpy's generator for ``seed`` (``[seed, stream]`` when a stream is given, for draws
    that must not repeat another function's); the seed is checked by
    :func:`entropylib.validation.check_seed`.

    Examples
    --------
    >>> float(seeded_rng(0).random()) == float(np.random.default_rng(0).random())
    True
    """
    seed = check_seed(seed)
    return np.random.default_rng(seed if stream is None else [seed, stream])


def positive_real(value: Any, name: str) -> float:
    """``value`` as a finite float > 0, or an error naming the parameter.

    Examples
    --------
    >>> positive_real(0.07, "temperature")
    0.07
    """
    if not is_real(value):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def as_labels(y: Any, n: int | None, name: str = "labels") -> np.ndarray:
    """Return ``y`` as an int64 vector of non-negative class indices, of length ``n`` unless
    ``n`` is None (labels that are not paired with features)."""
    if hasattr(y, "detach") and hasattr(y, "cpu"):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one class index per sample), got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
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
