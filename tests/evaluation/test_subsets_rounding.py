"""Subset sizes at the rounding boundaries, and validation splits of the smallest classes.

A subset keeps round(fraction * n_c) examples of class c, halves rounded up (documented in
evaluation.subsets); a validation split never takes a class's last training example. The
expected sizes below are worked out by hand, with products that are exact in binary floating
point (fractions 0.25, 0.5, 0.75) so that the half really is a half.
"""

import numpy as np
import pytest

from evaluation.subsets import label_subset, validation_split


@pytest.mark.parametrize(
    ("fraction", "sizes", "expected"),
    [
        (0.5, [5, 7, 9], [3, 4, 5]),  # 2.5, 3.5, 4.5: halves go up (not to even, not down)
        (0.25, [10, 6, 7], [3, 2, 2]),  # 2.5 -> 3, 1.5 -> 2, 1.75 -> 2
        (0.75, [3, 5, 2], [2, 4, 2]),  # 2.25 -> 2, 3.75 -> 4, 1.5 -> 2
        (0.1, [17, 14, 4], [2, 1, 1]),  # 1.7 -> 2 (truncation gives 1), 1.4 -> 1, 0.4 -> max(1, 0)
    ],
)
def test_label_subset_rounds_halves_up(fraction, sizes, expected):
    y = np.random.default_rng(0).permutation(np.repeat(np.arange(len(sizes)), sizes))
    idx = label_subset(y, fraction, seed=1)
    assert np.bincount(y[idx], minlength=len(sizes)).tolist() == expected


@pytest.mark.parametrize(
    ("fraction", "sizes", "n_val"),
    [
        (0.75, [2, 4, 3], [1, 3, 2]),  # 1.5 -> 2 would leave class 0 no training example
        (0.5, [2, 3, 5], [1, 2, 3]),  # 1 -> 1; 1.5 -> 2; 2.5 -> 3
        (0.9, [3, 10], [2, 9]),  # 2.7 -> 3 is capped at n - 1 = 2
        (0.25, [2, 6], [1, 2]),  # 0.5 -> 1 (and at least one), 1.5 -> 2
    ],
)
def test_validation_split_keeps_one_training_example_per_class(fraction, sizes, n_val):
    y = np.random.default_rng(2).permutation(np.repeat(np.arange(len(sizes)), sizes))
    train, val = validation_split(y, fraction=fraction, seed=3)
    assert np.bincount(y[val], minlength=len(sizes)).tolist() == n_val
    assert np.bincount(y[train], minlength=len(sizes)).tolist() == [
        n - v for n, v in zip(sizes, n_val, strict=True)
    ]
    assert np.intersect1d(train, val).size == 0
