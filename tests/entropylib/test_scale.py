"""No silent wrong number at any scale: H(a X) = H(X) + log|a| per column, so data at an
extreme scale (float32 near 3e37, float64 near 1e300, subnormal) give the finite answer on
every backend. References: scipy on the same values in float64 (where scipy itself does not
overflow), or on the data scaled back by an exact power of 2 plus the log of the scale."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

import entropylib
from entropylib.gaussian import gaussian_entropy
from entropylib.kde import kde_entropy

SPACINGS = ("m_spacing", "vasicek", "van_es", "ebrahimi", "correa")
BACKENDS = ("numpy", "numba", "torch")
SCIPY_NAME = {"m_spacing": None, "van_es": "van es", "vasicek": "vasicek",
              "ebrahimi": "ebrahimi", "correa": "correa"}
LN2 = math.log(2.0)


def sample(n=600, d=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def scipy_entropy(x, method):
    """The reference, computed by scipy (m_spacing written out here: no scipy form)."""
    n = x.shape[0]
    m = math.floor(math.sqrt(n) + 0.5)
    if method == "m_spacing":
        s = np.sort(x, axis=0)
        return np.log((n + 1) / m * (s[m:] - s[:-m])).mean(axis=0)
    return stats.differential_entropy(x, axis=0, method=SCIPY_NAME[method], window_length=m)


def estimate(x, method, backend, **kw):
    if backend == "torch":
        return entropylib.estimate(torch.from_numpy(x), method, **kw).numpy()
    return entropylib.estimate(x, method, backend=backend, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", SPACINGS)
def test_float32_near_3e37(method, backend):
    """float32 near 3e37: (n+1)/m times a spacing overflowed float32 (inf on numpy/torch)."""
    x = (sample() * 1e37 + 3e37).astype(np.float32)
    h = estimate(x, method, backend)
    assert h.dtype == np.float32
    np.testing.assert_allclose(h, scipy_entropy(x.astype(np.float64), method), rtol=2e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", SPACINGS)
@pytest.mark.parametrize("exponent", [996, -1030])
def test_float64_huge_and_subnormal(method, backend, exponent):
    """x 2^996 (~7e299) and x 2^-1030 (subnormal): correa gave inf, numba correa raised
    ZeroDivisionError, others -inf/NaN. Reference: scipy on x 2^-exponent (exact), plus
    exponent log 2."""
    x = np.ldexp(sample(), exponent)
    ref = scipy_entropy(np.ldexp(x, -exponent), method) + exponent * LN2
    np.testing.assert_allclose(estimate(x, method, backend), ref, rtol=1e-12)


@pytest.mark.parametrize("exponent", [996, -1030])
@pytest.mark.parametrize("to_torch", [False, True])
def test_gaussian_at_extreme_scale(exponent, to_torch):
    """Closed form 0.5 log det(2 pi e cov), with the covariance from numpy on x 2^-exponent."""
    x = np.ldexp(sample(d=3), exponent)
    back = np.ldexp(x, -exponent)
    cov = np.cov(back, rowvar=False)
    joint_ref = 0.5 * np.linalg.slogdet(2 * np.pi * np.e * cov)[1] + 3 * exponent * LN2
    marg_ref = 0.5 * np.log(2 * np.pi * np.e * np.diag(cov)) + exponent * LN2
    data = torch.from_numpy(x) if to_torch else x
    joint = float(entropylib.estimate(data, "gaussian", joint=True))
    assert joint == pytest.approx(joint_ref, rel=1e-9)
    np.testing.assert_allclose(np.asarray(entropylib.estimate(data, "gaussian")), marg_ref,
                               rtol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("exponent", [996, -1030])
def test_kde_at_extreme_scale(backend, exponent):
    """Resubstitution KDE with Scott's factor = scipy.stats.gaussian_kde's own rule."""
    x = np.ldexp(sample(n=400, d=2), exponent)
    back = (np.ldexp(x, -exponent)).T
    ref = -np.log(stats.gaussian_kde(back)(back)).mean() + 2 * exponent * LN2
    got = float(estimate(x, "kde", backend, joint=True))
    assert got == pytest.approx(ref, rel=1e-9)
    marg = [-np.log(stats.gaussian_kde(b)(b)).mean() + exponent * LN2 for b in back]
    np.testing.assert_allclose(estimate(x, "kde", backend), marg, rtol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("joint", [False, True])
def test_knn_is_scale_equivariant_at_extreme_scale(backend, joint):
    """The exact identity H(2^e x) = H(x) + d e log 2 at e = 996 and -1030."""
    x = sample(n=500, d=3)
    h = estimate(x, "knn", backend, joint=joint)
    d = 3 if joint else 1
    for exponent in (996, -1030):
        got = estimate(np.ldexp(x, exponent), "knn", backend, joint=joint)
        np.testing.assert_allclose(got, h + d * exponent * LN2, rtol=1e-9)


def test_torch_stays_differentiable_at_extreme_scale():
    """Euler's identity for the scale: d/da H(a x) = 1/a per column, so sum_i x_i dH/dx_i = 1."""
    x = torch.from_numpy(sample() * 2.0**996).requires_grad_()
    for method in SPACINGS + ("gaussian", "kde", "knn"):
        h = entropylib.estimate(x, method)
        (g,) = torch.autograd.grad(h.sum(), x)
        assert torch.isfinite(h).all() and torch.isfinite(g).all()
        np.testing.assert_allclose((x * g).sum(dim=0).detach().numpy(), 1.0, atol=1e-9)


def test_ordinary_data_are_not_rescaled():
    """Only data outside the safe range move: ordinary data give scipy's bits as before."""
    x = sample()
    np.testing.assert_array_equal(
        entropylib.estimate(x, "vasicek"),
        stats.differential_entropy(x, axis=0, method="vasicek",
                                   window_length=math.floor(math.sqrt(600) + 0.5)),
    )


@pytest.mark.parametrize("func", [gaussian_entropy, kde_entropy])
@pytest.mark.parametrize(("exponent", "cause"), [(1000, "overflows"), (-1060, "underflows")])
def test_covariance_failure_names_the_scale_not_collinearity(func, exponent, cause):
    """Called directly (no frame), independent columns at an extreme scale were reported as
    'singular (collinear columns)'."""
    x = np.ldexp(sample(d=3), exponent)
    with np.errstate(all="ignore"), pytest.raises(ValueError, match=f"covariance {cause}"):
        func(x)


@pytest.mark.parametrize("exponent", [996, -1030])
def test_numba_correa_called_directly_at_extreme_scale(exponent):
    """The public kernel, without estimate's frame: on x 2^-1030 (subnormal) its float64
    window variances underflowed to 0 (ZeroDivisionError), on x 2^996 they overflowed (NaN).
    Reference: scipy on x plus exponent log 2."""
    from entropylib import numba_kernels

    x = sample()
    m = math.floor(math.sqrt(x.shape[0]) + 0.5)
    h = numba_kernels.correa(np.ldexp(x, exponent), m=m)
    np.testing.assert_allclose(h, scipy_entropy(x, "correa") + exponent * LN2, rtol=1e-12)
