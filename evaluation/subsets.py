"""Labelled subsets for few-label evaluation: 1% / 10% / 100% fractions and validation splits.

A subset keeps, in every class c with n_c examples, max(1, round(fraction * n_c)) of them
(stratified: the class proportions of the full set, so a balanced data set gives a balanced
subset), drawn without replacement by a seeded generator. The same seed gives the same subset.

Subsets can be written to and read from SimCLR's list format (the ImageNet 1% / 10% files of
Chen et al. 2020: one image file name per line), so a published list can be used as is.

The validation split used for model selection (probe regularisation, fine-tuning epoch) is
carved from the labelled TRAINING subset, stratified and disjoint from it; the test set is never
touched by selection.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from entropylib.validation import is_integer
from evaluation.inputs import as_labels, seeded_rng


def label_subset(
    labels: Any, fraction: float, *, seed: int = 0, num_classes: int | None = None
) -> np.ndarray:
    """Indices of a class-stratified random subset holding ``fraction`` of the labels.

    Class c keeps max(1, round(fraction * n_c)) of its n_c examples; ``fraction=1`` returns
    every index.

    Parameters
    ----------
    labels : array_like of int, shape (n,)
    fraction : float in (0, 1]
        E.g. 0.01, 0.1 or 1.0.
    seed : int
        The subset is a deterministic function of (labels, fraction, seed).
    num_classes : int, optional
        When given, every class 0..num_classes-1 must occur in ``labels``: an empty class is an
        error rather than a silently missing class.

    Returns
    -------
    numpy.ndarray of int64, sorted.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.repeat(np.arange(3), 100)
    >>> idx = label_subset(y, 0.1, seed=0)
    >>> np.bincount(y[idx]).tolist()
    [10, 10, 10]
    """
    y = as_labels(labels, None, "labels")
    _check_fraction(fraction)
    _check_classes(y, num_classes)
    rng = seeded_rng(seed)
    picked = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        take = max(1, int(np.floor(fraction * members.size + 0.5)))
        picked.append(rng.choice(members, size=min(take, members.size), replace=False))
    return np.sort(np.concatenate(picked)).astype(np.int64)


def limit_indices(n: int, limit: int | None, *, seed: int) -> np.ndarray:
    """Sorted positions of a seeded random subset of ``limit`` of ``n`` items (all when
    ``limit`` is None or at least ``n``): how an evaluation caps a split.

    A random subset rather than the first ``limit`` items, since data sets stored class by
    class (ImageFolder) would otherwise lose whole classes.

    Examples
    --------
    >>> limit_indices(5, None, seed=0).tolist()
    [0, 1, 2, 3, 4]
    >>> idx = limit_indices(100, 10, seed=0)
    >>> idx.size, bool(np.all(np.diff(idx) > 0))
    (10, True)
    """
    if limit is None or limit >= n:
        return np.arange(n)
    if not is_integer(limit) or limit < 1:
        raise ValueError(f"a subset limit must be a positive integer or None, got {limit!r}")
    return np.sort(seeded_rng(seed).choice(n, limit, replace=False))


def validation_split(
    labels: Any,
    indices: Any | None = None,
    *,
    fraction: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split labelled training indices into disjoint (train, validation) parts, per class.

    Class c with n_c labelled examples gives max(1, round(fraction * n_c)) to validation and
    keeps at least one for training, so every class is in both parts.

    Parameters
    ----------
    labels : array_like of int, shape (n,)
        Labels of the whole training set.
    indices : array_like of int, optional
        The labelled subset to split (default: all of ``labels``).
    fraction : float in (0, 1)
    seed : int

    Returns
    -------
    (train_indices, val_indices): sorted int64 arrays, disjoint, union = ``indices``.

    Examples
    --------
    >>> import numpy as np
    >>> tr, va = validation_split(np.repeat([0, 1], 10), fraction=0.2, seed=0)
    >>> len(tr), len(va), len(np.intersect1d(tr, va))
    (16, 4, 0)
    """
    y_all = as_labels(labels, None, "labels")
    idx = np.arange(y_all.size) if indices is None else np.asarray(indices)
    if idx.size and idx.dtype.kind not in "iu":
        # a boolean mask would become positions 0 and 1, floats would be truncated
        raise TypeError(f"indices must be integer positions, got dtype {idx.dtype}; for a "
                        "boolean mask pass np.flatnonzero(mask)")
    idx = idx.astype(np.int64)
    if idx.ndim != 1 or (idx.size and (idx.min() < 0 or idx.max() >= y_all.size)):
        raise ValueError(f"indices must be a 1-D array of positions in [0, {y_all.size})")
    if np.unique(idx).size != idx.size:
        raise ValueError("indices contain duplicates; a subset lists each example once")
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    rng = seeded_rng(seed, stream=1)
    y = y_all[idx]
    train, val = [], []
    for c in np.unique(y):
        members = idx[y == c]
        if members.size < 2:
            raise ValueError(
                f"class {c} has {members.size} labelled example(s); a validation split needs at "
                "least 2 per class (one to train, one to validate): use a larger label fraction"
            )
        n_val = min(members.size - 1, max(1, int(np.floor(fraction * members.size + 0.5))))
        perm = rng.permutation(members)
        val.append(perm[:n_val])
        train.append(perm[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def write_subset_file(path: str | os.PathLike, names: Sequence[str]) -> None:
    """Write a subset as SimCLR's list format: one file name per line."""
    for name in names:
        if not name or "\n" in name:
            raise ValueError(f"file names must be non-empty single lines, got {name!r}")
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(f"{name}\n" for name in names)


def read_subset_file(path: str | os.PathLike) -> list[str]:
    """Read a SimCLR-style subset list (one file name per line; blank lines ignored)."""
    with open(path, encoding="utf-8") as fh:
        names = [line.strip() for line in fh if line.strip()]
    if not names:
        raise ValueError(f"subset file {os.fspath(path)!r} lists no file names")
    return names


def subset_from_names(all_names: Sequence[str], subset_names: Sequence[str]) -> np.ndarray:
    """Positions in ``all_names`` of the names a subset list holds.

    Names are matched on their base name (``n01440764_10026.JPEG`` matches
    ``train/n01440764/n01440764_10026.JPEG``), as SimCLR's lists give base names only.

    Examples
    --------
    >>> subset_from_names(["a/x.png", "b/y.png", "c/z.png"], ["z.png", "x.png"]).tolist()
    [0, 2]
    """
    where = {}
    for i, name in enumerate(all_names):
        base = os.path.basename(name)
        if base in where:
            raise ValueError(f"file name {base!r} occurs twice in the data set: list is ambiguous")
        where[base] = i
    missing = [n for n in subset_names if os.path.basename(n) not in where]
    if missing:
        raise ValueError(
            f"{len(missing)} name(s) of the subset list are not in the data set "
            f"(first: {missing[:3]}); check that the list belongs to this data set"
        )
    return np.sort(np.array([where[os.path.basename(n)] for n in subset_names], dtype=np.int64))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) over seeds."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("no values to summarise")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def _check_fraction(fraction: float) -> None:
    if not isinstance(fraction, (int, float, np.floating)) or not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1] (e.g. 0.01, 0.1, 1.0), got {fraction}")


def _check_classes(y: np.ndarray, num_classes: int | None) -> None:
    if num_classes is None:
        return
    counts = np.bincount(y, minlength=num_classes)
    if counts.size > num_classes:
        raise ValueError(f"labels go up to {y.max()} but num_classes={num_classes}")
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(
            f"class(es) {empty.tolist()[:10]} have no labelled example; a subset cannot represent "
            "them: check the labels or num_classes"
        )
