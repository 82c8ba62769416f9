"""validation.column_range on numpy input: the blocked reduction gives numpy's own per-column
min and max (NaN and inf propagating) for every shape, order and dtype the estimators pass."""

import numpy as np
import pytest

from entropylib import validation

SHAPES = [(1, 1), (50, 3), (10_000, 1), (10_000, 8), (10_001, 3), (20_000, 5), (100_003, 2),
          (1_000, 64), (300, 4096)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_equals_numpy_min_max(shape, dtype):
    x = np.random.default_rng(shape[0] + shape[1]).normal(size=shape).astype(dtype)
    lo, hi = validation.column_range(x)
    np.testing.assert_array_equal(lo, np.min(x, axis=0))
    np.testing.assert_array_equal(hi, np.max(x, axis=0))
    assert lo.dtype == hi.dtype == dtype


@pytest.mark.parametrize("shape", [(10_000, 8), (10_001, 3), (100_003, 2)])
@pytest.mark.parametrize("row", [0, 4_097, -1])  # first block, a middle one, the remainder
def test_nan_and_inf_propagate(shape, row):
    x = np.random.default_rng(1).normal(size=shape)
    x[row, 0] = np.nan
    x[row, 1] = np.inf
    x[row - 1, -1] = -np.inf
    lo, hi = validation.column_range(x)
    assert np.isnan(lo[0]) and np.isnan(hi[0])
    assert hi[1] == np.inf and lo[-1] == -np.inf
    np.testing.assert_array_equal(lo[2:-1], np.min(x[:, 2:-1], axis=0))


def test_non_contiguous_input():
    x = np.random.default_rng(2).normal(size=(20_000, 6))[::3, ::2]
    lo, hi = validation.column_range(x)
    np.testing.assert_array_equal(lo, x.min(axis=0))
    np.testing.assert_array_equal(hi, x.max(axis=0))
