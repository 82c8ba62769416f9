"""The information measures do not depend on the units of each column (``standardize=True``).

Mutual information, conditional mutual information and total correlation are invariant under
an invertible map of each variable, in particular under rescaling one column. References: the
same estimate on the unscaled sample (a power-of-2 factor must give the same number exactly,
any other factor the same up to rounding), ennemi's estimate with its own preprocessing, and,
for ``standardize=False``, infomeasure's KSG and the entropy-difference formula written here
from ``entropylib.estimate``.
"""

import math

import numpy as np
import pytest
import torch

import entropylib

N = 400
# x: columns 0, 1; y: columns 2, 3; z: column 4
X, Y, Z = [0, 1], [2, 3], [4]


def correlated(n: int = N, d: int = 5, seed: int = 0) -> np.ndarray:
    """AR(1) normal sample, rho = 0.6, so every measure below is clearly positive."""
    cov = 0.6 ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
    return np.random.default_rng(seed).multivariate_normal(np.zeros(d), cov, size=n)


def methods_for(measure: str) -> list[str]:
    return sorted(name for name, info in entropylib.methods().items()
                  if measure in info["measures"])


def measure(name: str, data: np.ndarray, method: str, **kwargs):
    if name == "mutual_information":
        return entropylib.mutual_information(data[:, X], data[:, Y], method, **kwargs)
    if name == "conditional_mutual_information":
        return entropylib.conditional_mutual_information(data[:, X], data[:, Y], data[:, Z],
                                                         method, **kwargs)
    return entropylib.total_correlation(data, method, groups=[X, Y, Z], **kwargs)


CASES = [(name, method) for name in ("mutual_information", "conditional_mutual_information",
                                     "total_correlation") for method in methods_for(name)]
# every column on its own scale, from near the top of float64 to near its bottom
POWERS_OF_TWO = np.ldexp(1.0, [990, -990, 40, -3, 0])
FACTORS = np.array([1e300, 1e-300, 3.7e-7, 123.456, 1.0])


@pytest.mark.parametrize(("name", "method"), CASES)
def test_power_of_two_rescaling_of_each_column_changes_nothing(name, method):
    data = correlated()
    assert float(measure(name, data * POWERS_OF_TWO, method)) == float(
        measure(name, data, method))


@pytest.mark.parametrize(("name", "method"), CASES)
def test_any_rescaling_of_each_column_changes_nothing_but_rounding(name, method):
    data = correlated()
    ref = float(measure(name, data, method))
    assert abs(ref) > 0.01  # a real estimate, not a zero that any factor would keep
    for factors in (FACTORS, FACTORS[::-1], np.array([1e-9, 1, 1e9, 2.5, 1e-300])):
        got = float(measure(name, data * factors, method))
        assert math.isclose(got, ref, rel_tol=1e-9), (factors, got, ref)


@pytest.mark.parametrize(("name", "method"), CASES)
def test_unit_std_columns_need_no_log_scale_correction(name, method):
    # each column enters the entropy differences as often with + as with -, so dividing by
    # a standard deviation of 1 (up to rounding) must change nothing beyond rounding
    data = correlated()
    data = data / data.std(axis=0)
    raw = float(measure(name, data, method, standardize=False))
    assert math.isclose(float(measure(name, data, method)), raw, rel_tol=1e-9, abs_tol=1e-12)


@pytest.mark.parametrize("method", ["ksg1", "knn"])
def test_the_raw_formula_depends_on_units(method):
    # the failure standardize=True removes: x in units 1000x smaller than y's
    data = correlated()
    raw = float(measure("mutual_information", data, method, standardize=False))
    scaled = data * np.array([1e3, 1e3, 1, 1, 1])
    assert abs(float(measure("mutual_information", scaled, method, standardize=False))
               - raw) > 0.1


def test_subnormal_and_huge_columns_give_a_finite_invariant_estimate():
    data = correlated()
    ref = float(entropylib.mutual_information(data[:, X], data[:, Y], "knn"))
    # 1e-310 is subnormal: ~44 significant bits are left, so agreement to ~1e-9, not exactly
    tiny_huge = data * np.array([1e-310, 1e300, 1e-310, 1.5e308 / 6, 1.0])
    for method in ("ksg1", "knn", "weighted_knn", "gaussian"):
        ref = float(entropylib.mutual_information(data[:, X], data[:, Y], method))
        got = float(entropylib.mutual_information(tiny_huge[:, X], tiny_huge[:, Y], method))
        assert math.isfinite(got)
        assert math.isclose(got, ref, rel_tol=1e-6), (method, got, ref)


def test_constant_columns_are_left_alone():
    # 0.1 repeated: its computed standard deviation is a rounding residue, not 0
    data = correlated()
    with_constant = np.column_stack([data[:, X], np.full(N, 0.1)])
    for method in ("ksg1", "knn", "gaussian"):
        got = entropylib.mutual_information(with_constant, data[:, Y], method, ties="jitter")
        ref = entropylib.mutual_information(data[:, X], data[:, Y], method, ties="jitter")
        assert math.isclose(float(got), float(ref), rel_tol=1e-12)


def test_torch_gradient_is_finite_with_a_constant_column():
    data = correlated(n=200)
    x = torch.tensor(np.column_stack([data[:, 0] * 1e3, np.zeros(200)]), requires_grad=True)
    y = torch.tensor(data[:, 2:4])
    mi = entropylib.mutual_information(x, y, "knn", ties="floor")
    ref = entropylib.mutual_information(data[:, :1], data[:, 2:4], "knn")
    assert math.isclose(float(mi.detach()), float(ref), rel_tol=1e-9)
    mi.backward()
    assert torch.isfinite(x.grad).all()
    # the estimate is invariant under rescaling x, so its gradient is orthogonal to x
    assert abs(float((x.grad * x.detach()).sum())) < 1e-9 * float(x.grad.norm() * x.detach().norm())


def test_standardize_takes_only_a_bool():
    data = correlated(n=50)
    with pytest.raises(TypeError, match="standardize must be True or False"):
        entropylib.mutual_information(data[:, 0], data[:, 1], standardize="yes")
    with pytest.raises(TypeError, match="standardize must be True or False"):
        entropylib.total_correlation(data, standardize=1)


def test_raw_formula_is_the_entropy_difference():
    data = correlated() * np.array([1e3, 1, 1e-4, 1, 1])
    x, y = data[:, X], data[:, Y]
    want = sum(float(entropylib.estimate(v, "knn", joint=True)) for v in (x, y)) - float(
        entropylib.estimate(np.column_stack([x, y]), "knn", joint=True))
    got = float(entropylib.mutual_information(x, y, "knn", standardize=False))
    assert math.isclose(got, want, rel_tol=1e-12)


def test_raw_ksg1_equals_infomeasure():
    infomeasure = pytest.importorskip("infomeasure")
    data = correlated() * np.array([1e3, 1, 1e-4, 1, 1])
    x, y = data[:, X], data[:, Y]
    want = infomeasure.mutual_information(x, y, approach="ksg", k=3, noise_level=0)
    got = float(entropylib.mutual_information(x, y, standardize=False))
    assert abs(got - want) < 1e-10


@pytest.mark.parametrize("n", [2000, 10_000])
def test_standardized_ksg1_equals_ennemi_preprocessing(monkeypatch, n):
    """ennemi's default preprocessing divides each variable by its standard deviation (ddof
    0; it also centres, which KSG ignores, and adds 1e-10 noise) before KSG1: the same
    statistic as standardize=True. Its digamma is an asymptotic series (about 1e-7 off at the
    small counts), so it is replaced by the exact function to compare the counts to 1e-10."""
    pytest.importorskip("ennemi")
    import ennemi
    from ennemi import _entropy_estimators
    from scipy.special import digamma

    monkeypatch.setattr(_entropy_estimators, "_psi",
                        lambda v: digamma(np.asarray(v, dtype=np.float64)))
    data = correlated(n=n)
    x, y = data[:, 0] * 1e3, data[:, 1]
    want = float(np.ravel(ennemi.estimate_mi(y, x, k=3, preprocess=True, max_threads=1))[0])
    assert abs(float(entropylib.mutual_information(x, y)) - want) < 1e-10
    assert abs(float(entropylib.mutual_information(x, y, standardize=False)) - want) > 0.05
