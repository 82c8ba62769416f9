"""Gaussian KDE estimator: against scipy and a direct formula, properties, FFT error, gradients."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp

import entropylib
from entropylib.kde import bandwidth_factor, log_kernel_sums
from tests.entropylib.correlated_normals import ar1_covariance

BACKENDS = ("numpy", "numba", "torch")


def sample(n=200, d=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d))


def direct_kde_entropy(x: np.ndarray, cov: np.ndarray, loo: bool) -> float:
    """-mean log f with the kernel as scipy's multivariate normal density of covariance cov."""
    n = x.shape[0]
    logk = np.array([stats.multivariate_normal(mean=xi, cov=cov).logpdf(x) for xi in x])
    logk = logk.reshape(n, n)
    if loo:
        np.fill_diagonal(logk, -np.inf)
    return -np.mean(logsumexp(logk, axis=1) - math.log(n - 1 if loo else n))


# --- exact formula --------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["scott", "silverman"])
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_resubstitution_matches_scipy_gaussian_kde(rule, d, backend):
    x = sample(300, d, seed=d)
    expected = -stats.gaussian_kde(x.T, bw_method=rule).logpdf(x.T).mean()
    h = entropylib.estimate(x, "kde", joint=True, bandwidth=rule, backend=backend)
    assert h == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_leave_one_out_matches_direct_formula(d, backend):
    x = sample(60, d, seed=10 + d)
    n = x.shape[0]
    factor = (n * (d + 2) / 4) ** (-1 / (d + 4))
    cov = factor**2 * np.atleast_2d(np.cov(x.T))
    h = entropylib.estimate(
        x, "kde", joint=True, loo=True, bandwidth="silverman", backend=backend
    )
    assert h == pytest.approx(direct_kde_entropy(x, cov, loo=True), abs=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_absolute_bandwidth_is_isotropic(backend):
    x = sample(50, 2, seed=4)
    for loo in (False, True):
        h = entropylib.estimate(x, "kde", joint=True, loo=loo, bandwidth=0.7, backend=backend)
        assert h == pytest.approx(direct_kde_entropy(x, 0.49 * np.eye(2), loo), abs=1e-10)


def test_bandwidth_factors():
    assert bandwidth_factor(10_000, 1, "scott") == pytest.approx(10_000 ** (-0.2))
    assert bandwidth_factor(500, 3, "silverman") == pytest.approx((500 * 5 / 4) ** (-1 / 7))


@pytest.mark.parametrize("backend", BACKENDS)
def test_marginal_is_per_column_univariate(backend):
    x = sample(200, 3, seed=1)
    h = entropylib.estimate(x, "kde", backend=backend)
    expected = [-stats.gaussian_kde(x[:, j]).logpdf(x[:, j]).mean() for j in range(3)]
    np.testing.assert_allclose(h, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_leave_one_out_of_an_isolated_point_is_finite(backend):
    """The subtraction shortcut gives log(0) = -inf for a point 40 bandwidths from the rest."""
    x = np.r_[np.random.default_rng(0).normal(size=200), 60.0]
    h = entropylib.estimate(x, "kde", loo=True, backend=backend)
    sd = 1.0 * np.std(x, ddof=1) * len(x) ** (-0.2)
    expected = direct_kde_entropy(x[:, None], np.array([[sd**2]]), loo=True)
    assert np.isfinite(h) and h == pytest.approx(expected, abs=1e-10)
    assert expected > 3.0  # the isolated point's own term is about 800 / 201 nats


def test_log_kernel_sums_blocks(monkeypatch):
    import entropylib.kde as kde

    z = sample(101, 2, seed=9)
    full = log_kernel_sums(z, loo=True)
    monkeypatch.setattr(kde, "_BLOCK_ELEMENTS", 13 * 101)
    np.testing.assert_array_equal(log_kernel_sums(z, loo=True), full)
    t = log_kernel_sums(torch.from_numpy(z).requires_grad_(), loo=True)
    np.testing.assert_allclose(t.detach().numpy(), full, atol=1e-12)


# --- FFT path -------------------------------------------------------------------------------


FFT_CASES = [
    stats.norm(), stats.expon(), stats.cauchy(), stats.uniform(), stats.laplace(),
    stats.lognorm(1.0),
]


@pytest.mark.parametrize("dist", FFT_CASES, ids=lambda d: d.dist.name)
@pytest.mark.parametrize("loo", [False, True])
def test_fft_error_is_bounded(dist, loo):
    """The documented bound: |H_fft - H_exact| <= 1e-3 nats."""
    x = dist.rvs(size=3000, random_state=np.random.default_rng(5))
    exact = entropylib.estimate(x, "kde", loo=loo, backend="numba")
    fft = entropylib.estimate(x, "kde", loo=loo, evaluation="fft")
    assert abs(fft - exact) <= 1e-3


def test_fft_bimodal_and_outliers_and_columns():
    rng = np.random.default_rng(6)
    x = np.c_[np.r_[rng.normal(-5, 0.3, 1500), rng.normal(5, 1, 1500)],
              np.r_[rng.normal(size=2995), [40, 45, -60, 80, 100]]]
    for loo in (False, True):
        for bw in ("silverman", 0.05):
            exact = entropylib.estimate(x, "kde", loo=loo, bandwidth=bw, backend="numba")
            fft = entropylib.estimate(x, "kde", loo=loo, bandwidth=bw, evaluation="fft")
            np.testing.assert_allclose(fft, exact, rtol=0, atol=1e-3)


# --- properties -----------------------------------------------------------------------------


finite_samples = st.integers(0, 2**31 - 1).map(lambda s: sample(40, 2, seed=s))


@given(finite_samples, st.floats(-1e3, 1e3), st.sampled_from([-3.0, 0.5, 10.0]))
def test_translation_scale_reflection(x, b, a):
    for joint in (False, True):
        for loo in (False, True):
            h0 = entropylib.estimate(x, "kde", joint=joint, loo=loo)
            h1 = entropylib.estimate(a * x + b, "kde", joint=joint, loo=loo)
            shift = (2 if joint else 1) * math.log(abs(a))
            np.testing.assert_allclose(h1, h0 + shift, rtol=0, atol=1e-9)


@given(finite_samples, st.integers(0, 1000))
def test_joint_affine_equivariance(x, seed):
    """Full-covariance bandwidth: H(Ax + b) = H(x) + log|det A|."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(2, 2))
    if abs(np.linalg.det(a)) < 0.05:
        a += np.eye(2)
    b = rng.normal(size=2) * 10
    for loo in (False, True):
        h0 = entropylib.estimate(x, "kde", joint=True, loo=loo)
        h1 = entropylib.estimate(x @ a.T + b, "kde", joint=True, loo=loo)
        assert h1 == pytest.approx(h0 + math.log(abs(np.linalg.det(a))), abs=1e-9)


def test_fixed_bandwidth_is_not_scale_equivariant():
    """The documented exception: an absolute bandwidth does not follow the data's scale."""
    x = sample(300, 1, seed=2)
    h0 = entropylib.estimate(x, "kde", bandwidth=0.3)
    h1 = entropylib.estimate(4 * x, "kde", bandwidth=0.3)
    assert abs(h1 - (h0 + math.log(4))) > 0.05
    # scaling the bandwidth with the data restores the identity
    assert entropylib.estimate(4 * x, "kde", bandwidth=1.2) == pytest.approx(
        h0 + math.log(4), abs=1e-10
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_permutation_base_and_columns(backend):
    x = sample(300, 3, seed=3)
    perm = np.random.default_rng(0).permutation(300)
    for joint in (False, True):
        h = entropylib.estimate(x, "kde", joint=joint, backend=backend)
        hp = entropylib.estimate(x[perm], "kde", joint=joint, backend=backend)
        np.testing.assert_allclose(hp, h, rtol=0, atol=1e-12)
        h2 = entropylib.estimate(x, "kde", joint=joint, backend=backend, base=2)
        np.testing.assert_allclose(h2, h / math.log(2), rtol=1e-14)
    cols = [entropylib.estimate(x[:, j], "kde", backend=backend) for j in range(3)]
    np.testing.assert_array_equal(entropylib.estimate(x, "kde", backend=backend), cols)


def test_float32_and_integers():
    x = sample(300, 2, seed=8)
    h = entropylib.estimate(x, "kde", joint=True)
    h32 = entropylib.estimate(x.astype(np.float32), "kde", joint=True)
    assert h32.dtype == np.float32 and abs(h32 - h) < 1e-5
    t32 = entropylib.estimate(torch.from_numpy(x).float(), "kde", joint=True, loo=True)
    assert t32.dtype == torch.float32
    assert abs(float(t32) - entropylib.estimate(x, "kde", joint=True, loo=True)) < 1e-5
    xi = np.random.default_rng(0).integers(0, 100, size=(200, 2))
    assert entropylib.estimate(xi, "kde") == pytest.approx(
        entropylib.estimate(xi.astype(float), "kde"), abs=0
    )


@pytest.mark.parametrize("d", [1, 2, 4])
@pytest.mark.parametrize("loo", [False, True])
def test_backends_agree(d, loo):
    x = sample(400, d, seed=d)
    for joint in (False, True):
        hs = [entropylib.estimate(x, "kde", joint=joint, loo=loo, backend=b) for b in BACKENDS]
        np.testing.assert_allclose(hs[1], hs[0], rtol=0, atol=1e-10)
        np.testing.assert_allclose(hs[2], hs[0], rtol=0, atol=1e-10)


# --- gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("loo", [False, True])
@pytest.mark.parametrize("bandwidth", ["scott", 0.8])
def test_gradcheck(d, loo, bandwidth):
    x = torch.from_numpy(sample(15, d, seed=d)).requires_grad_()

    def fn(t):
        return entropylib.estimate(t, "kde", joint=True, loo=loo, bandwidth=bandwidth)

    assert torch.autograd.gradcheck(fn, (x,))


def test_gradcheck_marginal():
    x = torch.from_numpy(sample(12, 3, seed=1)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: entropylib.estimate(t, "kde", loo=True), (x,))


def test_gradient_identities_and_checkpointed_blocks(monkeypatch):
    import entropylib.kde as kde

    x = torch.from_numpy(sample(120, 2, seed=7)).requires_grad_()
    h = entropylib.estimate(x, "kde", joint=True, loo=True)
    (g,) = torch.autograd.grad(h, x)
    assert float((x * g).sum().detach()) == pytest.approx(2.0, abs=1e-10)  # Euler: d
    np.testing.assert_allclose(g.sum(dim=0).numpy(), 0.0, atol=1e-10)
    monkeypatch.setattr(kde, "_BLOCK_ELEMENTS", 10 * 120)  # 12 checkpointed blocks
    (g_blocked,) = torch.autograd.grad(entropylib.estimate(x, "kde", joint=True, loo=True), x)
    np.testing.assert_allclose(g_blocked.numpy(), g.numpy(), atol=1e-12)


def test_finite_gradients_under_ties():
    base = np.round(np.random.default_rng(0).normal(size=(30, 2)), 1)
    x = torch.from_numpy(np.concatenate([base, base, base])).requires_grad_()
    for joint in (False, True):
        for loo in (False, True):
            h = entropylib.estimate(x, "kde", joint=joint, loo=loo)
            (g,) = torch.autograd.grad(h.sum(), x)
            assert torch.isfinite(h).all() and torch.isfinite(g).all()


# --- bad input ------------------------------------------------------------------------------


def test_bad_input():
    x = sample(30, 2)
    with pytest.raises(ValueError, match="bandwidth must be one of"):
        entropylib.estimate(x, "kde", bandwidth="scot")
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite number > 0"):
            entropylib.estimate(x, "kde", bandwidth=bad)
    for bad in (True, [0.5], None):
        with pytest.raises(TypeError, match="bandwidth"):
            entropylib.estimate(x, "kde", bandwidth=bad)
    with pytest.raises(TypeError, match="loo must be True or False"):
        entropylib.estimate(x, "kde", loo="yes")
    with pytest.raises(ValueError, match="evaluation must be one of"):
        entropylib.estimate(x, "kde", evaluation="binned")
    with pytest.raises(ValueError, match="one-dimensional"):
        entropylib.estimate(x, "kde", joint=True, evaluation="fft")
    with pytest.raises(ValueError, match="numpy only"):
        entropylib.estimate(torch.from_numpy(x), "kde", evaluation="fft")
    with pytest.raises(ValueError, match="singular"):
        entropylib.estimate(np.c_[x, x[:, 0] + x[:, 1]], "kde", joint=True)
    with pytest.raises(ValueError, match="n > d"):
        entropylib.estimate(x[:2], "kde", joint=True)
    with pytest.raises(ValueError, match="at least 2 samples"):
        entropylib.estimate(x[:1], "kde")
    with pytest.raises(ValueError, match="constant"):
        entropylib.estimate(np.c_[np.ones(30), x[:, 0]], "kde")


# --- accuracy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dist",
    [stats.norm(1, 2), stats.logistic(), stats.laplace(0, 0.5), stats.gamma(2.5),
     stats.beta(2, 3), stats.lognorm(0.5), stats.t(10), stats.weibull_min(2.0)],
    ids=lambda d: d.dist.name,
)
def test_univariate_closed_forms(dist):
    x = dist.rvs(size=4000, random_state=np.random.default_rng(11))
    h = entropylib.estimate(x, "kde", loo=True, evaluation="fft")
    assert h == pytest.approx(dist.entropy(), abs=0.05)


def test_documented_boundary_bias():
    """docs/estimators.md +0.065 nats on U(0,1) and +0.11 on Exp(1) at n = 1000 (resubstitution)."""
    rng = np.random.default_rng(12)
    u = entropylib.estimate(rng.uniform(size=(1000, 20)), "kde").mean()
    e = entropylib.estimate(rng.exponential(size=(1000, 20)), "kde").mean() - 1.0
    assert 0.045 < u < 0.085 and 0.08 < e < 0.14


@pytest.mark.parametrize("d", [2, 3, 4, 5])
@pytest.mark.parametrize("rho", [-0.5, 0.6, 0.9])
def test_correlated_normals(d, rho):
    """Leave-one-out within 0.12 nats up to d = 5 at n = 4000; resubstitution is biased
    downward as d grows (about -0.2 nats at d = 4, -0.4 at d = 5), so it is checked to d = 3."""
    cov = ar1_covariance(d, rho)
    x = np.random.default_rng(20 + d).multivariate_normal(np.zeros(d), cov, size=4000)
    truth = stats.multivariate_normal(cov=cov).entropy()
    loo = entropylib.estimate(x, "kde", joint=True, loo=True, backend="numba")
    assert loo == pytest.approx(truth, abs=0.12)
    if d <= 3:
        resub = entropylib.estimate(x, "kde", joint=True, backend="numba")
        assert resub == pytest.approx(truth, abs=0.1)


# --- boundary reflection --------------------------------------------------------------------


def direct_reflected_entropy(x: np.ndarray, bounds, loo: bool, h: float) -> float:
    """Kernels at x_j and at their mirror images 2 lo - x_j, 2 hi - x_j (scipy's normal pdf)."""
    n = len(x)
    centres = [x] + [2 * b - x for b in bounds if np.isfinite(b)]
    logf = []
    for i in range(n):
        terms = [stats.norm.logpdf(x[i], loc=c, scale=h) for c in centres]
        if loo:
            terms = [np.delete(t, i) for t in terms]
        logf.append(logsumexp(np.concatenate(terms)) - math.log(n - 1 if loo else n))
    return -float(np.mean(logf))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loo", [False, True])
@pytest.mark.parametrize(
    ("dist", "bounds"),
    [(stats.uniform(), (0.0, 1.0)), (stats.expon(), (0.0, np.inf)),
     (stats.beta(2, 1, loc=-1), (-np.inf, 0.0))],
)
def test_bounds_match_direct_formula(backend, loo, dist, bounds):
    x = dist.rvs(size=150, random_state=np.random.default_rng(13))
    h = np.std(x, ddof=1) * 150 ** (-0.2)
    expected = direct_reflected_entropy(x, bounds, loo, h)
    got = entropylib.estimate(x, "kde", loo=loo, bounds=bounds, backend=backend)
    assert got == pytest.approx(expected, abs=1e-10)


def test_bounds_remove_the_boundary_bias():
    rng = np.random.default_rng(12)
    u = entropylib.estimate(rng.uniform(size=(1000, 20)), "kde", bounds=(0, 1)).mean()
    e = entropylib.estimate(rng.exponential(size=(1000, 20)), "kde", bounds=(0, np.inf)).mean()
    assert abs(u) < 0.02 and abs(e - 1.0) < 0.02  # +0.065 and +0.11 without reflection


@given(finite_samples, st.floats(-1e3, 1e3), st.sampled_from([-3.0, 0.5, 10.0]))
def test_bounds_follow_affine_maps(x, b, a):
    col = x[:, 0]
    lo, hi = col.min() - 0.1, col.max() + 0.3
    new_bounds = tuple(sorted((a * lo + b, a * hi + b)))
    for loo in (False, True):
        h0 = entropylib.estimate(col, "kde", loo=loo, bounds=(lo, hi))
        h1 = entropylib.estimate(a * col + b, "kde", loo=loo, bounds=new_bounds)
        assert h1 == pytest.approx(h0 + math.log(abs(a)), abs=1e-9)


def test_bounds_gradcheck_and_bad_input():
    x = torch.from_numpy(np.random.default_rng(3).uniform(size=(15, 2))).requires_grad_()
    for loo in (False, True):
        assert torch.autograd.gradcheck(
            lambda t: entropylib.estimate(t, "kde", loo=loo, bounds=(0.0, 1.0)), (x,)  # noqa: B023
        )
    y = x.detach().numpy()
    with pytest.raises(ValueError, match="lo < hi"):
        entropylib.estimate(y, "kde", bounds=(1.0, 0.0))
    for bad in ("ab", (0.0,), 1.0):
        with pytest.raises(TypeError, match="pair"):
            entropylib.estimate(y, "kde", bounds=bad)
    with pytest.raises(ValueError, match="outside bounds"):
        entropylib.estimate(y, "kde", bounds=(0.0, 0.5))
    with pytest.raises(ValueError, match="one-dimensional"):
        entropylib.estimate(y, "kde", joint=True, bounds=(0.0, 1.0))
    with pytest.raises(ValueError, match="evaluation='exact'"):
        entropylib.estimate(y, "kde", evaluation="fft", bounds=(0.0, 1.0))
