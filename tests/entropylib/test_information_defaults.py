"""total_correlation's default jitter seed is 0, as estimate's: the same call without a seed
gives the same number as with seed=0 (and another seed another number)."""

import numpy as np

import entropylib


def test_total_correlation_default_seed_is_zero():
    x = np.round(np.random.default_rng(0).normal(size=(300, 2)), 1)  # ties: jitter draws noise
    default = entropylib.total_correlation(x, "knn", ties="jitter")
    assert default == entropylib.total_correlation(x, "knn", ties="jitter", seed=0)
    assert default != entropylib.total_correlation(x, "knn", ties="jitter", seed=1)
