"""Constant columns and NaN masks of numpy input (the torch paths are tested elsewhere).

A constant column has entropy -inf: it raises under ties="raise" with a message naming the
column as constant, and gives -inf with a RuntimeWarning under the other tie policies, the
other columns being estimated as usual.
"""

import numpy as np
import pytest
import torch

import entropylib
from entropylib import validation


def sample_with_constant_column() -> np.ndarray:
    x = np.random.default_rng(0).normal(size=(200, 3))
    x[:, 1] = 2.5
    return x


def test_constant_numpy_column_raises_as_constant():
    with pytest.raises(ValueError, match=r"column\(s\) \[1\] are constant"):
        entropylib.estimate(sample_with_constant_column(), "vasicek")


@pytest.mark.parametrize("ties", ["floor", "jitter"])
def test_constant_numpy_column_is_minus_inf_with_a_warning(ties):
    x = sample_with_constant_column()
    with pytest.warns(RuntimeWarning, match=r"column\(s\) \[1\] are constant"):
        h = entropylib.estimate(x, "vasicek", ties=ties)
    assert h[1] == -np.inf
    np.testing.assert_array_equal(h[[0, 2]], entropylib.estimate(x[:, [0, 2]], "vasicek"))


def test_masks_are_numpy_arrays_for_tensors_too():
    x = sample_with_constant_column()
    x[5, 2] = np.nan
    for data in (x, torch.from_numpy(x)):
        nan = validation.nan_columns(data)
        const = validation.constant_columns(data)
        assert isinstance(nan, np.ndarray) and isinstance(const, np.ndarray)
        assert nan.tolist() == [False, False, True]
        assert const.tolist() == [False, True, False]
