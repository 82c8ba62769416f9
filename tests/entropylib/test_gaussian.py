"""Gaussian closed-form estimator: formula, affine identity, torch gradients, singular input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import entropylib


def sample(n=200, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d))


@pytest.mark.parametrize("d", [1, 2, 5])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_matches_scipy_normal_entropy_of_the_sample_covariance(d, backend):
    x = sample(100, d, seed=d)
    cov = np.atleast_2d(np.cov(x.T, ddof=1))
    expected = stats.multivariate_normal(cov=cov).entropy()
    h = entropylib.estimate(x, "gaussian", joint=True, backend=backend)
    assert h == pytest.approx(expected, abs=1e-12)
    marginal = entropylib.estimate(x, "gaussian", backend=backend)
    expected = [stats.norm(scale=np.std(x[:, j], ddof=1)).entropy() for j in range(d)]
    np.testing.assert_allclose(marginal, expected, rtol=0, atol=1e-12)


@given(st.integers(0, 2**31 - 1), st.integers(0, 1000))
def test_affine_identity(data_seed, seed):
    """H(Ax + b) = H(x) + log|det A| (joint); H(a x + b) = H(x) + log|a| (marginal)."""
    x = np.random.default_rng(data_seed).normal(size=(50, 3))
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(3, 3)) + 2 * np.eye(3)
    b = rng.normal(size=3) * 10
    h0 = entropylib.estimate(x, "gaussian", joint=True)
    h1 = entropylib.estimate(x @ a.T + b, "gaussian", joint=True)
    assert h1 == pytest.approx(h0 + math.log(abs(np.linalg.det(a))), abs=1e-9)
    np.testing.assert_allclose(
        entropylib.estimate(-3 * x + b, "gaussian"),
        entropylib.estimate(x, "gaussian") + math.log(3),
        rtol=0, atol=1e-9,
    )


def test_permutation_base_dtypes():
    x = sample(300, 3)
    perm = np.random.default_rng(0).permutation(300)
    h = entropylib.estimate(x, "gaussian", joint=True)
    assert entropylib.estimate(x[perm], "gaussian", joint=True) == pytest.approx(h, abs=1e-12)
    assert entropylib.estimate(x, "gaussian", joint=True, base=2) == pytest.approx(
        h / math.log(2), rel=1e-14
    )
    h32 = entropylib.estimate(x.astype(np.float32), "gaussian", joint=True)
    assert h32.dtype == np.float32 and abs(h32 - h) < 1e-5
    t = entropylib.estimate(torch.from_numpy(x).float(), "gaussian")
    assert t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), entropylib.estimate(x, "gaussian"), atol=1e-5)


@pytest.mark.parametrize("joint", [False, True])
def test_gradients(joint):
    x = torch.from_numpy(sample(20, 3, seed=4)).requires_grad_()
    fn = lambda t: entropylib.estimate(t, "gaussian", joint=joint)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    (g,) = torch.autograd.grad(fn(x).sum(), x)
    total = 3.0  # Euler: H(ax) = H(x) + d log a, summed over columns in the marginal case
    assert float((x * g).sum().detach()) == pytest.approx(total, abs=1e-10)
    np.testing.assert_allclose(g.sum(dim=0).numpy(), 0.0, atol=1e-10)


def test_singular_covariance():
    x = sample(40, 2)
    collinear = np.c_[x, x[:, 0] - 2 * x[:, 1]]
    with pytest.raises(ValueError, match="singular"):
        entropylib.estimate(collinear, "gaussian", joint=True)
    with pytest.raises(ValueError, match="singular"):
        entropylib.estimate(x[:2], "gaussian", joint=True)
    for data in (collinear, torch.from_numpy(collinear)):
        with pytest.warns(RuntimeWarning, match="singular"):
            h = entropylib.estimate(data, "gaussian", joint=True, ties="floor")
        assert float(h) == -math.inf
    # the marginal entropies of collinear columns are fine
    assert np.isfinite(entropylib.estimate(collinear, "gaussian")).all()


def test_bad_input():
    x = sample(40, 2)
    with pytest.raises(TypeError, match="unknown option"):
        entropylib.estimate(x, "gaussian", k=3)
    with pytest.raises(ValueError, match="at least 2 samples"):
        entropylib.estimate(x[:1], "gaussian")
    with pytest.raises(ValueError, match="constant"):
        entropylib.estimate(np.c_[np.ones(40), x[:, 0]], "gaussian", joint=True)
    with pytest.raises(ValueError, match="infinite"):
        entropylib.estimate(np.r_[x[:, 0], -np.inf], "gaussian")


@pytest.mark.parametrize("d", [2, 3, 4, 5])
@pytest.mark.parametrize("rho", [-0.5, 0.6, 0.9])
def test_correlated_normals(d, rho):
    i = np.arange(d)
    sd = np.linspace(0.5, 2.0, d)
    cov = rho ** np.abs(i[:, None] - i[None, :]) * np.outer(sd, sd)
    x = np.random.default_rng(d).multivariate_normal(np.zeros(d), cov, size=20_000)
    truth = stats.multivariate_normal(cov=cov).entropy()
    assert entropylib.estimate(x, "gaussian", joint=True) == pytest.approx(truth, abs=0.03)


@pytest.mark.parametrize("n", [4_095, 4_096, 10_001])  # one block, exactly one, three blocks
def test_joint_over_several_row_blocks_equals_scipy(n):
    """The covariance is summed over blocks of rows: the same entropy as scipy's on np.cov,
    with a mean far from 0 (centring happens per block)."""
    x = np.random.default_rng(n).normal(size=(n, 5)) @ np.triu(np.ones((5, 5))) + 1e3
    expected = stats.multivariate_normal(cov=np.cov(x.T)).entropy()
    np.testing.assert_allclose(entropylib.estimate(x, "gaussian", joint=True), expected,
                               rtol=1e-12)
