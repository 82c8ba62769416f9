"""entropylib.ksg called directly: Python floats, as annotated (a numpy scalar would print as
``np.float64(...)``), with the values `mutual_information` gives."""

import numpy as np
import pytest

import entropylib
from entropylib import ksg


@pytest.mark.parametrize("name", ["ksg1", "ksg2"])
def test_direct_calls_return_python_floats(name):
    xy = np.random.default_rng(0).multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], size=400)
    mi = getattr(ksg, name)(xy, [[0], [1]])
    assert type(mi) is float
    assert mi == entropylib.mutual_information(xy[:, :1], xy[:, 1:], name, standardize=False)
    xyz = np.column_stack([xy, xy.sum(axis=1)])
    cmi = ksg.frenzel_pompe(xyz, [[0], [1], [2]])
    assert type(cmi) is float


def test_direct_calls_default_to_the_k_of_the_information_functions():
    """k = 3, the registered default: a direct call without k equals the public function
    without k, for each estimator (on the raw columns, as the direct calls see them)."""
    xyz = np.random.default_rng(1).normal(size=(300, 3))
    xyz[:, 1] += xyz[:, 0]
    x, y, z = xyz[:, :1], xyz[:, 1:2], xyz[:, 2:]
    for name in ("ksg1", "ksg2"):
        mi = getattr(ksg, name)(xyz[:, :2], [[0], [1]])
        assert mi == entropylib.mutual_information(x, y, name, standardize=False)
    assert ksg.frenzel_pompe(xyz, [[0], [1], [2]]) == (
        entropylib.conditional_mutual_information(x, y, z, "ksg1", standardize=False))


@pytest.mark.parametrize("k", [2.5, 3.0, True, "3"])
def test_k_must_be_an_integer(k):
    """Not silently truncated (2.5 -> 2) nor a bool taken for 1."""
    xy = np.random.default_rng(2).normal(size=(100, 2))
    with pytest.raises(TypeError, match=r"k \(number of neighbours\) must be a positive integer"):
        entropylib.mutual_information(xy[:, :1], xy[:, 1:], "ksg1", k=k)


def _normal_location_mixture(n, seed):
    """x | y ~ N(2y, 1) with y in {0, 1} equiprobable, and I(x; y) = H(x) - H(x | y) by
    quadrature of the mixture density (independent of the estimators)."""
    from scipy import integrate, stats

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(2.0 * y, 1.0)

    def f(t):
        return 0.5 * (stats.norm.pdf(t) + stats.norm.pdf(t, 2.0))

    h_x = integrate.quad(lambda t: -f(t) * np.log(f(t)), -15, 17)[0]
    return x, y, h_x - 0.5 * np.log(2 * np.pi * np.e)


def test_ksg2_takes_a_zero_neighbour_extent_for_a_tie():
    """A discrete variable (class labels): the k joint neighbours of most points share their
    label, so KSG2's extent in that variable is 0 and n_y counts only the copies of the label;
    that read 0.01 nats for a true 0.34 (and -0.36 for independent labels) without a word.
    It is a tie, handled like a zero radius: raised, or dequantized by ties='jitter'."""
    x, y, true = _normal_location_mixture(2000, seed=0)
    with pytest.raises(ValueError, match=r"zero neighbour extents in variable 1 .*ties='jitter'"):
        entropylib.mutual_information(x, y, "ksg2")
    with pytest.raises(ValueError, match="zero neighbour extents"):
        entropylib.total_correlation(np.column_stack([x, y]), "ksg2")
    assert entropylib.mutual_information(x, y, "ksg2", ties="jitter") == pytest.approx(
        true, abs=0.08)


@pytest.mark.parametrize("name", ["ksg1", "ksg2"])
def test_floored_ties_warn_as_in_estimate(name):
    """Rounded to integers, a correlated normal pair (I = 0.22 nats) has mostly repeated rows;
    with ties='floor' the KSG counts read about -3.8 nats, silently, where `estimate` warns."""
    rng = np.random.default_rng(12)
    xy = np.round(rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], size=2000), 0)
    with pytest.warns(RuntimeWarning, match=r"ties='floor' floored \d+\.\d% of the"):
        entropylib.mutual_information(xy[:, 0], xy[:, 1], name, ties="floor")
