"""total_correlation: sum of marginal entropies minus the joint entropy."""

import itertools
import math

import numpy as np
import pytest
import torch

import entropylib


def bivariate_normal(rho, n, seed=1):
    cov = [[1.0, rho], [rho, 1.0]]
    return np.random.default_rng(seed).multivariate_normal([0.0, 0.0], cov, size=n)


@pytest.mark.parametrize("rho", [-0.5, 0.6, 0.9])
@pytest.mark.parametrize(
    ("method", "options", "n", "tol"),
    [
        ("gaussian", {}, 20_000, 0.02),
        ("knn", {}, 20_000, 0.04),
        ("knn", {"norm": "euclidean", "k": 5}, 20_000, 0.04),
        ("kde", {"loo": True}, 6_000, 0.05),
    ],
)
def test_bivariate_normal(rho, method, options, n, tol):
    x = bivariate_normal(rho, n)
    tc = entropylib.total_correlation(x, method, **options)
    assert tc == pytest.approx(-0.5 * math.log(1 - rho**2), abs=tol)


def test_is_marginals_minus_joint_exactly():
    x = bivariate_normal(0.3, 500) * [1.0, 3.0]
    # the columns as given (standardize=False), as the reference sees them; one backend
    # named: under backend="auto" a column alone (500 values) and two columns
    # (1,000) may go to different backends, whose sums differ in the last bit
    for method, backend in [("gaussian", "numpy"),
                            *itertools.product(("knn", "kde"), ("numpy", "numba"))]:
        marginal = entropylib.estimate(x, method, backend=backend)
        joint = entropylib.estimate(x, method, joint=True, backend=backend)
        tc = entropylib.total_correlation(x, method, backend=backend, standardize=False)
        if backend == "numpy":
            assert tc == marginal.sum() - joint
        else:  # the numba KDE's last bit depends on the memory layout of the stacked data
            assert tc == pytest.approx(marginal.sum() - joint, rel=0, abs=1e-12)
    # Gaussian: -0.5 log det R with R the sample correlation matrix
    r = np.corrcoef(x.T)
    assert entropylib.total_correlation(x, "gaussian") == pytest.approx(
        -0.5 * math.log(np.linalg.det(r)), abs=1e-12
    )


def test_independent_columns_and_scale_invariance():
    x = np.random.default_rng(2).normal(size=(5000, 3))
    assert abs(entropylib.total_correlation(x, "knn")) < 0.03
    # kNN: invariant under a common scale and shift (not per-column scales: the joint
    # neighbourhoods change); Gaussian and KDE (full-covariance bandwidth): under any
    # per-column affine map, as the true total correlation
    tc = entropylib.total_correlation(x, "knn")
    assert entropylib.total_correlation(-4.0 * x + 3.0, "knn") == pytest.approx(tc, abs=1e-10)
    y = x[:800]
    for method in ("gaussian", "kde"):
        tc = entropylib.total_correlation(y, method)
        scaled = entropylib.total_correlation(y * [2.0, -0.5, 7.0] + 3.0, method)
        assert scaled == pytest.approx(tc, abs=1e-10)


def test_torch_base_and_nan_omit():
    x = bivariate_normal(0.6, 400)
    tc = entropylib.total_correlation(x, "knn")
    t = entropylib.total_correlation(torch.from_numpy(x).requires_grad_(), "knn")
    assert isinstance(t, torch.Tensor) and t.requires_grad
    assert float(t.detach()) == pytest.approx(tc, abs=1e-10)
    assert entropylib.total_correlation(x, "knn", base=2) == pytest.approx(tc / math.log(2))
    holed = x.copy()
    holed[[3, 10], [0, 1]] = np.nan
    omitted = entropylib.total_correlation(holed, "knn", nan_policy="omit")
    assert omitted == entropylib.total_correlation(np.delete(x, [3, 10], axis=0), "knn")
    tholed = torch.from_numpy(holed)
    assert float(entropylib.total_correlation(tholed, "knn", nan_policy="omit")) == omitted
    with pytest.raises(ValueError, match="NaN"):
        entropylib.total_correlation(holed, "knn")


def test_bad_input():
    x = bivariate_normal(0.6, 100)
    with pytest.raises(ValueError, match="univariate"):
        entropylib.total_correlation(x, "m_spacing")
    with pytest.raises(ValueError, match="at least 2 columns"):
        entropylib.total_correlation(x[:, 0], "knn")
    with pytest.raises(ValueError, match="at least 2 columns"):
        entropylib.total_correlation(x[:, :1], "gaussian")
    with pytest.raises(ValueError, match="unknown method"):
        entropylib.total_correlation(x, "nope")
    with pytest.raises(TypeError, match="unknown option"):
        entropylib.total_correlation(x, "gaussian", k=3)
