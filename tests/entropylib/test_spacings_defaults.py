"""Defaults of the spacing estimators that other tests leave at one value (mutation survivors).

A direct call with ``ties="jitter"`` and no seed gives the same number as
``entropylib.estimate`` with no seed: both default to seed 0.
"""

import numpy as np
import pytest

import entropylib
from entropylib import spacings

SPACING_FUNCTIONS = ["m_spacing", "vasicek", "van_es", "ebrahimi", "correa"]


@pytest.mark.parametrize("name", SPACING_FUNCTIONS)
def test_jitter_default_seed_is_zero_in_direct_calls_and_estimate(name):
    x = np.round(np.random.default_rng(0).normal(size=(400, 2)), 1)  # many ties
    func = getattr(spacings, name)
    direct = func(x, m=20, ties="jitter")
    np.testing.assert_array_equal(direct, func(x, m=20, ties="jitter", seed=0))
    assert not np.array_equal(direct, func(x, m=20, ties="jitter", seed=1))
    # the numpy backend: numba's kernels may differ from numpy's in the last bits
    from_estimate = entropylib.estimate(x, name, m=20, ties="jitter", backend="numpy")
    np.testing.assert_array_equal(direct, from_estimate)
