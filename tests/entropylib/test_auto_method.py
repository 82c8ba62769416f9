"""method="auto" (the default): the measured-best estimator per sample size, at least as
accurate as scipy's "auto" (references: closed-form entropies from scipy.stats)."""

import math

import numpy as np
import pytest
from scipy import stats

import entropylib
from entropylib.estimate import AUTO_JOINT, AUTO_MARGINAL, auto_method

LAWS = [stats.norm(), stats.uniform(), stats.expon(), stats.laplace(), stats.logistic(),
        stats.gamma(2.0), stats.beta(2.0, 5.0), stats.t(5.0), stats.cauchy(),
        stats.lognorm(1.0), stats.gumbel_r(), stats.weibull_min(1.5)]


@pytest.mark.parametrize(("n", "reps"), [(1000, 60), (10_000, 12)])
def test_auto_is_at_least_as_accurate_as_scipy_auto(n, reps):
    """Mean RMSE over 12 laws (benchmarks/bench_auto_method.py measures it with more samples:
    0.70x scipy at n = 1000, 0.61x at 10^4). The old default, m_spacing, was 2.1x and 2.5x."""
    ours, theirs = [], []
    for k, law in enumerate(LAWS):
        x = law.rvs(size=(n, reps), random_state=np.random.default_rng([7, n, k]))
        truth = law.entropy()
        ours.append(np.sqrt(np.mean((entropylib.estimate(x) - truth) ** 2)))
        scipy_auto = stats.differential_entropy(x, axis=0, method="auto")
        theirs.append(np.sqrt(np.mean((scipy_auto - truth) ** 2)))
    assert np.mean(ours) <= np.mean(theirs)


@pytest.mark.parametrize("n", [20, 54, 55, 316, 317, 3162, 3163, 50_000])
def test_auto_uses_the_table(n):
    x = np.random.default_rng(0).normal(size=(n, 2))
    method, options = next((m, o) for n_max, m, o in AUTO_MARGINAL if n <= n_max)
    np.testing.assert_array_equal(entropylib.estimate(x), entropylib.estimate(x, method,
                                                                              **options))
    assert auto_method(n, 2, joint=False) == (method, options)
    method, options = next(
        (m, o) for n_max, d_max, m, o in AUTO_JOINT if n <= n_max and 2 <= d_max)
    assert entropylib.estimate(x, joint=True) == entropylib.estimate(x, method, joint=True,
                                                                     **options)


def test_auto_boundaries_are_geometric_midpoints_of_the_measured_sizes():
    measured = (30, 100, 1000, 10_000)
    bounds = [row[0] for row in AUTO_MARGINAL[:-1]]
    pairs = zip(measured[:-1], measured[1:], strict=True)
    assert bounds == [math.floor(math.sqrt(a * b)) for a, b in pairs]


def test_auto_takes_no_options():
    with pytest.raises(TypeError, match="method='auto' takes no estimator options"):
        entropylib.estimate(np.random.default_rng(0).normal(size=100), m=5)


def test_named_methods_keep_their_meaning():
    """m_spacing stays E2MC's estimator: the RADICAL formula, written out here."""
    x = np.random.default_rng(0).normal(size=400)
    n, m = 400, 20
    s = np.sort(x)
    ref = np.mean(np.log((n + 1) / m * (s[m:] - s[:-m])))
    assert entropylib.estimate(x, "m_spacing") == pytest.approx(ref, abs=1e-12)
