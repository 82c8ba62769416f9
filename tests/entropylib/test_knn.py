"""Kozachenko-Leonenko kNN estimator: exact formula, properties, accuracy, bad input, ties."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from scipy.special import digamma

import entropylib
from entropylib.knn import log_unit_ball_volume
from tests.entropylib.correlated_normals import ar1_covariance

NORMS = ("max", "euclidean")


def ball_volume(d: int, norm: str) -> float:
    """Unit-ball volume by the recursion V_d = 2 pi / d V_{d-2} (V_0 = 1, V_1 = 2)."""
    if norm == "max":
        return 2.0**d
    v = {0: 1.0, 1: 2.0}
    for j in range(2, d + 1):
        v[j] = 2 * math.pi / j * v[j - 2]
    return v[d]


def brute_force_kl(x: np.ndarray, k: int, norm: str) -> float:
    """The estimator from the full distance matrix, written independently of the library."""
    n, d = x.shape
    diff = np.abs(x[:, None, :] - x[None, :, :])
    dist = diff.max(axis=2) if norm == "max" else np.sqrt((diff**2).sum(axis=2))
    np.fill_diagonal(dist, np.inf)
    rho = np.sort(dist, axis=1)[:, k - 1]
    return digamma(n) - digamma(k) + math.log(ball_volume(d, norm)) + d * np.mean(np.log(rho))


def sample(n=200, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d))


# --- exact formula --------------------------------------------------------------------------


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("d", [1, 2, 3, 5])
@pytest.mark.parametrize("k", [1, 3, 7])
@pytest.mark.parametrize("backend", ["numpy", "numba", "torch"])
def test_joint_matches_brute_force(norm, d, k, backend):
    x = sample(150, d, seed=d + k)
    h = entropylib.estimate(x, "knn", joint=True, k=k, norm=norm, backend=backend)
    assert h == pytest.approx(brute_force_kl(x, k, norm), abs=1e-10)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_marginal_sort_path_matches_brute_force(k):
    x = sample(120, 4, seed=k)
    x[0:119:7, 2] = x[1:120:7, 2]  # pairs of ties: with k >= 2 every rho is still positive
    h = entropylib.estimate(x, "knn", k=k)
    expected = [brute_force_kl(x[:, [j]], k, "max") for j in range(4)]
    np.testing.assert_allclose(h, expected, rtol=0, atol=1e-12)


def test_unit_ball_volumes():
    assert math.exp(log_unit_ball_volume(2, "euclidean")) == pytest.approx(math.pi)
    assert math.exp(log_unit_ball_volume(3, "euclidean")) == pytest.approx(4 / 3 * math.pi)
    assert math.exp(log_unit_ball_volume(3, "max")) == pytest.approx(8.0)
    for d in range(1, 12):
        assert log_unit_ball_volume(d, "euclidean") == pytest.approx(
            math.log(ball_volume(d, "euclidean")), rel=1e-12
        )


def test_euclidean_has_no_d_log_2_error():
    """The radius-1 ball with doubled distances is off by d log 2: 3.47 nats at d = 5."""
    d = 5
    x = np.random.default_rng(7).normal(size=(20_000, d))
    truth = 0.5 * d * math.log(2 * math.pi * math.e)
    h = entropylib.estimate(x, "knn", joint=True, norm="euclidean")
    assert abs(h - truth) < 0.1
    assert abs(h + d * math.log(2) - truth) > 3.0
    # and the two norms agree (different balls, same density): both near the truth
    h_max = entropylib.estimate(x, "knn", joint=True, norm="max")
    assert abs(h - h_max) < 0.1


def test_one_dimension_norms_coincide():
    x = sample(300, 1)
    assert entropylib.estimate(x, "knn", norm="euclidean") == entropylib.estimate(
        x, "knn", norm="max"
    )


# --- properties -----------------------------------------------------------------------------


finite_samples = st.integers(0, 2**31 - 1).map(lambda s: sample(60, 2, seed=s))


@given(finite_samples, st.floats(-1e3, 1e3))
def test_translation(x, b):
    for joint in (False, True):
        h0 = entropylib.estimate(x, "knn", joint=joint)
        h1 = entropylib.estimate(x + b, "knn", joint=joint)
        np.testing.assert_allclose(h1, h0, rtol=0, atol=1e-9 * (1 + abs(b)))


@pytest.mark.parametrize("norm", NORMS)
@given(x=finite_samples, a=st.sampled_from([-3.0, 0.25, 2.0, 1e3]))
def test_scale(norm, x, a):
    d = x.shape[1]
    h0 = entropylib.estimate(x, "knn", joint=True, norm=norm)
    h1 = entropylib.estimate(a * x, "knn", joint=True, norm=norm)
    assert h1 == pytest.approx(h0 + d * math.log(abs(a)), abs=1e-11)
    np.testing.assert_allclose(
        entropylib.estimate(a * x, "knn"), entropylib.estimate(x, "knn") + math.log(abs(a)),
        rtol=0, atol=1e-11,
    )


@given(finite_samples, st.floats(0.1, 10.0), st.integers(0, 1000))
def test_euclidean_invariant_under_scaled_rotations(x, c, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(2, 2)))
    h0 = entropylib.estimate(x, "knn", joint=True, norm="euclidean")
    h1 = entropylib.estimate(c * x @ q.T, "knn", joint=True, norm="euclidean")
    assert h1 == pytest.approx(h0 + 2 * math.log(c), abs=1e-9)


@pytest.mark.parametrize("backend", ["numpy", "numba", "torch"])
def test_permutation_reflection_and_columns_bit_exact(backend):
    x = sample(500, 3)
    perm = np.random.default_rng(1).permutation(500)
    for joint in (False, True):
        h = entropylib.estimate(x, "knn", joint=joint, backend=backend)
        assert np.array_equal(h, entropylib.estimate(x[perm], "knn", joint=joint, backend=backend))
        assert np.array_equal(h, entropylib.estimate(-x, "knn", joint=joint, backend=backend))
    cols = [entropylib.estimate(x[:, j], "knn", backend=backend) for j in range(3)]
    assert np.array_equal(entropylib.estimate(x, "knn", backend=backend), cols)


def test_base_dtype_and_integer_input():
    x = sample(400, 2)
    h = entropylib.estimate(x, "knn", joint=True)
    assert entropylib.estimate(x, "knn", joint=True, base=2) == pytest.approx(
        h / math.log(2), rel=1e-14
    )
    h32 = entropylib.estimate(x.astype(np.float32), "knn")
    assert h32.dtype == np.float32
    np.testing.assert_allclose(h32, entropylib.estimate(x, "knn"), atol=1e-5)
    t32 = entropylib.estimate(torch.from_numpy(x).float(), "knn", joint=True)
    assert t32.dtype == torch.float32 and abs(float(t32) - h) < 1e-5
    xi = np.random.default_rng(0).integers(0, 10**6, size=(300, 2))
    assert entropylib.estimate(xi, "knn", joint=True) == pytest.approx(
        entropylib.estimate(xi.astype(float), "knn", joint=True), abs=0
    )


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("d", [1, 2, 4])
def test_backends_agree(norm, d):
    x = sample(700, d, seed=3)
    for joint in (False, True):
        a = entropylib.estimate(x, "knn", joint=joint, norm=norm, backend="numpy")
        t = entropylib.estimate(torch.from_numpy(x), "knn", joint=joint, norm=norm)
        np.testing.assert_allclose(t.numpy(), a, rtol=0, atol=1e-10)
        nb = entropylib.estimate(x, "knn", joint=joint, norm=norm, backend="numba")
        np.testing.assert_allclose(nb, a, rtol=0, atol=1e-10)


def test_torch_block_boundaries(monkeypatch):
    """Blocks of a few rows give the same neighbours as one block."""
    import entropylib.knn as knn

    x = torch.from_numpy(sample(97, 3, seed=5))
    h = entropylib.estimate(x, "knn", joint=True, norm="euclidean")
    monkeypatch.setattr(knn, "_TORCH_BLOCK_ELEMENTS", 7 * 97 * 3)
    assert entropylib.estimate(x, "knn", joint=True, norm="euclidean") == h


# --- gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("joint", [False, True])
def test_gradcheck(norm, joint):
    x = torch.from_numpy(sample(25, 2, seed=11)).requires_grad_()
    fn = lambda t: entropylib.estimate(t, "knn", joint=joint, norm=norm, k=2)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))


@pytest.mark.parametrize("norm", NORMS)
def test_gradient_identities(norm):
    """Euler: sum x dH/dx = d (H(ax) = H(x) + d log a); translation: sum dH/dx = 0."""
    x = torch.from_numpy(sample(200, 3, seed=2)).requires_grad_()
    (g,) = torch.autograd.grad(entropylib.estimate(x, "knn", joint=True, norm=norm), x)
    assert float((x * g).sum().detach()) == pytest.approx(3.0, abs=1e-10)
    np.testing.assert_allclose(g.sum(dim=0).numpy(), 0.0, atol=1e-10)
    (g,) = torch.autograd.grad(entropylib.estimate(x, "knn").sum(), x)
    np.testing.assert_allclose((x * g).sum(dim=0).detach().numpy(), 1.0, atol=1e-10)


@pytest.mark.parametrize("ties", ["floor", "jitter"])
@pytest.mark.parametrize("norm", NORMS)
def test_finite_gradients_under_ties(ties, norm):
    base = np.round(np.random.default_rng(0).normal(size=(60, 2)), 1)
    x = torch.from_numpy(np.concatenate([base, base, base, base])).requires_grad_()
    for joint in (False, True):
        h = entropylib.estimate(x, "knn", joint=joint, norm=norm, ties=ties)
        (g,) = torch.autograd.grad(h.sum(), x)
        assert torch.isfinite(h).all() and torch.isfinite(g).all()


# --- ties and bad input (docs/estimators.md, 'Bad input') --------------------------


def test_ties_policy():
    x = np.repeat(np.arange(50.0), 4)  # each value 4 times: with k = 3 every rho is 0
    with pytest.raises(ValueError, match="zero k-th neighbour distances"):
        entropylib.estimate(x, "knn")
    # a joint estimate has one set of distances: the error named it "column 0"
    with pytest.raises(ValueError, match="^the joint sample has .* zero k-th neighbour distances"):
        entropylib.estimate(np.c_[x, x], "knn", joint=True)
    with pytest.warns(RuntimeWarning, match=r"floored 100.0% of the k-th neighbour distances"):
        floored = entropylib.estimate(x, "knn", ties="floor")
    assert np.isfinite(floored) and floored < -10  # a tie counts as a one-ulp distance
    jittered = entropylib.estimate(x, "knn", ties="jitter", seed=3)
    assert jittered == entropylib.estimate(x[::-1], "knn", ties="jitter", seed=3)
    # dequantized, the sample is U(-0.5, 49.5) stratified 4 points per unit cell: entropy
    # log 50, plus an upward kNN bias of stratified (more regular than iid) samples
    assert 0 < jittered - math.log(50) < 0.35
    # with k = 4 no rho is 0: ties that leave every distance positive need no policy
    assert np.isfinite(entropylib.estimate(x, "knn", k=4))


def test_constant_column():
    x = np.c_[np.ones(50), np.arange(50.0)]
    with pytest.raises(ValueError, match="constant"):
        entropylib.estimate(x, "knn")
    with pytest.warns(RuntimeWarning, match="constant"):
        h = entropylib.estimate(x, "knn", ties="floor")
    assert h[0] == -np.inf and np.isfinite(h[1])


def test_bad_input():
    x = sample(10, 2)
    with pytest.raises(ValueError, match="at least 11 samples"):
        entropylib.estimate(x, "knn", k=10)
    with pytest.raises(ValueError, match="at least 4 samples"):
        entropylib.estimate(x[:3], "knn", joint=True)
    with pytest.raises(ValueError, match="k .* must be >= 1"):
        entropylib.estimate(x, "knn", k=0)
    for bad_k in (2.5, "3", True, None):
        with pytest.raises(TypeError, match="positive integer"):
            entropylib.estimate(x, "knn", k=bad_k)
    with pytest.raises(ValueError, match="norm must be one of"):
        entropylib.estimate(x, "knn", norm="l1")
    with pytest.raises(TypeError, match="unknown option"):
        entropylib.estimate(x, "knn", m=3)
    with pytest.raises(ValueError, match="infinite"):
        entropylib.estimate(np.r_[x[:, 0], np.inf], "knn")
    with pytest.raises(ValueError, match="NaN"):
        entropylib.estimate(np.r_[x[:, 0], np.nan], "knn")
    with pytest.raises(ValueError, match="univariate"):
        entropylib.estimate(x, "m_spacing", joint=True)
    with pytest.raises(TypeError, match="complex"):
        entropylib.estimate(x.astype(complex), "knn")
    with pytest.raises(ValueError, match="no 'cuda' backend|backend must be"):
        entropylib.estimate(x, "knn", backend="cuda")


def test_nan_policies():
    x = sample(100, 2)
    x[5, 1] = np.nan
    h = entropylib.estimate(x, "knn", nan_policy="omit")
    assert h[1] == entropylib.estimate(np.delete(x[:, 1], 5), "knn")
    assert np.isnan(entropylib.estimate(x, "knn", nan_policy="propagate")[1])
    joint = entropylib.estimate(x, "knn", joint=True, nan_policy="omit")
    assert joint == entropylib.estimate(np.delete(x, 5, axis=0), "knn", joint=True)


# --- accuracy -------------------------------------------------------------------------------


UNIVARIATE = [
    stats.norm(1, 2), stats.uniform(-1, 3), stats.expon(scale=2), stats.laplace(0, 0.5),
    stats.logistic(), stats.cauchy(), stats.gamma(2.5), stats.beta(2, 3), stats.t(5),
    stats.lognorm(0.5),
]


@pytest.mark.parametrize("dist", UNIVARIATE, ids=lambda d: d.dist.name)
def test_univariate_closed_forms(dist):
    x = dist.rvs(size=20_000, random_state=np.random.default_rng(10))
    assert entropylib.estimate(x, "knn") == pytest.approx(dist.entropy(), abs=0.03)


@pytest.mark.parametrize("d", [2, 3, 4, 5])
@pytest.mark.parametrize("rho", [-0.5, 0.6, 0.9])
def test_correlated_normals(d, rho):
    cov = ar1_covariance(d, rho)
    x = np.random.default_rng(d).multivariate_normal(np.zeros(d), cov, size=20_000)
    truth = stats.multivariate_normal(cov=cov).entropy()
    for norm in NORMS:
        assert entropylib.estimate(x, "knn", joint=True, norm=norm) == pytest.approx(
            truth, abs=0.08
        )


def test_bias_shrinks_with_n():
    """U(0,1)^3 (entropy 0): the boundary bias of kNN falls with n, by many standard errors."""
    rng = np.random.default_rng(4)
    means, errs = [], []
    for n in (100, 400, 1600):
        h = [entropylib.estimate(rng.uniform(size=(n, 3)), "knn", joint=True) for _ in range(20)]
        means.append(np.mean(h))
        errs.append(np.std(h, ddof=1) / math.sqrt(len(h)))
    for j in range(2):
        assert means[j] - means[j + 1] > 4 * math.hypot(errs[j], errs[j + 1])
    assert means[-1] > 0
