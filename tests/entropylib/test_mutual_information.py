"""Mutual information, conditional mutual information and total correlation (KSG and entropy
differences).

References are closed forms of normal laws (log-determinants), a brute-force KSG written here
from the full distance matrix, and the full-matrix ball counts; never the library's output.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import digamma

import entropylib
from entropylib import knn

# ---------------------------------------------------------------- exact ball counts


def brute_counts(x: np.ndarray, radius: np.ndarray, strict: bool) -> np.ndarray:
    dist = np.abs(x[:, None, :] - x[None, :, :]).max(axis=2)
    np.fill_diagonal(dist, np.inf)
    inside = dist < radius[:, None] if strict else dist <= radius[:, None]
    return inside.sum(axis=1)


def radii_on_points(x: np.ndarray, k: int) -> np.ndarray:
    """Radii equal to an actual distance of every point (ties on the ball's surface)."""
    dist = np.abs(x[:, None, :] - x[None, :, :]).max(axis=2)
    np.fill_diagonal(dist, np.inf)
    r = np.sort(dist, axis=1)[:, k - 1]
    return np.where(r > 0, r, 0.5)


SAMPLES = {
    "normal": lambda rng, n, d: rng.normal(size=(n, d)),
    "rounded": lambda rng, n, d: np.round(rng.normal(size=(n, d)), 1),
    "lattice": lambda rng, n, d: rng.integers(0, 6, size=(n, d)).astype(float),
    "cauchy": lambda rng, n, d: rng.standard_cauchy(size=(n, d)),
    "line": lambda rng, n, d: np.repeat(rng.normal(size=(n, 1)), d, axis=1),  # crowded grid
}


@pytest.mark.parametrize("shape", sorted(SAMPLES))
@pytest.mark.parametrize("d", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("use_numba", [False, True])
def test_ball_counts_equal_brute_force(shape, d, use_numba):
    rng = np.random.default_rng(d)
    x = SAMPLES[shape](rng, 1200, d)
    for k in (1, 5):
        r = radii_on_points(x, k)
        for strict in (True, False):
            got = knn.count_within(x, r, strict, use_numba)
            np.testing.assert_array_equal(got, brute_counts(x, r, strict))


@settings(deadline=None, max_examples=40)
@given(
    n=st.integers(2, 50),
    d=st.integers(1, 4),
    grid=st.integers(1, 4),
    seed=st.integers(0, 2**31),
    strict=st.booleans(),
)
def test_ball_counts_small_samples(n, d, grid, seed, strict):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, grid + 1, size=(n, d)) / grid + rng.normal(size=(n, d)) * (seed % 2)
    r = rng.choice(np.abs(x - x[rng.integers(0, n)]).max(axis=1)) + np.zeros(n)
    r = np.where(r > 0, r, 1.0)
    for use_numba in (False, True):
        got = knn.count_within(x, r, strict, use_numba)
        np.testing.assert_array_equal(got, brute_counts(x, r, strict))


# ---------------------------------------------------------------- KSG against brute force


def brute_ksg(variables: list[np.ndarray], k: int, variant: int) -> float:
    """KSG's m-variable formula from full matrices (mutual information for m = 2)."""
    n, m = variables[0].shape[0], len(variables)
    per = [np.abs(v[:, None, :] - v[None, :, :]).max(axis=2) for v in variables]
    joint = np.max(per, axis=0)
    np.fill_diagonal(joint, np.inf)
    order = np.argsort(joint, axis=1)[:, :k]
    eps = np.take_along_axis(joint, order[:, -1:], axis=1)
    total = 0.0
    for dist in per:
        np.fill_diagonal(dist, np.inf)
        if variant == 1:
            total += digamma((dist < eps).sum(axis=1) + 1).mean()
        else:
            extent = np.take_along_axis(dist, order, axis=1).max(axis=1, keepdims=True)
            total += digamma((dist <= extent).sum(axis=1)).mean()
    shift = 0.0 if variant == 1 else (m - 1) / k
    return digamma(k) - shift + (m - 1) * digamma(n) - total


def brute_frenzel_pompe(x, y, z, k):
    def dist(v):
        d = np.abs(v[:, None, :] - v[None, :, :]).max(axis=2)
        np.fill_diagonal(d, np.inf)
        return d

    dx, dy, dz = dist(x), dist(y), dist(z)
    eps = np.sort(np.maximum(np.maximum(dx, dy), dz), axis=1)[:, k - 1 : k]

    def term(d):
        return digamma((d < eps).sum(axis=1) + 1).mean()

    return digamma(k) - term(np.maximum(dx, dz)) - term(np.maximum(dy, dz)) + term(dz)


def correlated(rng, n, d, rho=0.6):
    i = np.arange(d)
    cov = rho ** np.abs(i[:, None] - i[None, :])
    return rng.multivariate_normal(np.zeros(d), cov, size=n)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize(("dx", "dy"), [(1, 1), (1, 2), (2, 3)])
def test_ksg_matches_brute_force(backend, dx, dy):
    # the brute force counts on the columns as given: standardize=False
    rng = np.random.default_rng(dx + 10 * dy)
    xy = correlated(rng, 700, dx + dy)
    x, y = xy[:, :dx], xy[:, dx:]
    for k in (1, 4):
        for variant in (1, 2):
            got = entropylib.mutual_information(x, y, f"ksg{variant}", k=k, backend=backend,
                                             standardize=False)
            assert got == pytest.approx(brute_ksg([x, y], k, variant), abs=1e-12)
    # ties inside the marginals (KSG1 depends only on the radii, which ties do not blur)
    xr, yr = np.round(x, 1), y
    got = entropylib.mutual_information(xr, yr, "ksg1", backend=backend, standardize=False)
    assert got == pytest.approx(brute_ksg([xr, yr], 3, 1), abs=1e-12)
    z = rng.normal(size=(700, 2)) + xy[:, :1]
    got = entropylib.conditional_mutual_information(x, y, z, backend=backend, k=2,
                                                    standardize=False)
    assert got == pytest.approx(brute_frenzel_pompe(x, y, z, 2), abs=1e-12)
    # total correlation by the chain rule: sum of I(X_1..X_{v-1}; X_v)
    for variant in (1, 2):
        got = entropylib.total_correlation(xy, f"ksg{variant}", backend=backend,
                                           standardize=False)
        chain = sum(brute_ksg([xy[:, :v], xy[:, v : v + 1]], 3, variant)
                    for v in range(1, dx + dy))
        assert got == pytest.approx(chain, abs=1e-12)
    groups = [[0], list(range(1, dx + dy))]
    got = entropylib.total_correlation(xy, "ksg1", groups=groups, backend=backend,
                                       standardize=False)
    assert got == pytest.approx(brute_ksg([x[:, :1], xy[:, 1:]], 3, 1), abs=1e-12)


def test_backends_agree_at_scale():
    """The grid and the tree give the same counts, so the same estimate, on a sample large
    enough for the grid to be used for the search and for every count."""
    rng = np.random.default_rng(3)
    xy = correlated(rng, 30_000, 4)
    for method in ("ksg1", "ksg2"):
        a = entropylib.mutual_information(xy[:, :2], xy[:, 2:], method, backend="numpy")
        b = entropylib.mutual_information(xy[:, :2], xy[:, 2:], method, backend="numba")
        assert a == b


# ---------------------------------------------------------------- closed forms


def logdet(cov, cols):
    return np.linalg.slogdet(cov[np.ix_(cols, cols)])[1]


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
@pytest.mark.parametrize(
    ("method", "tol"), [("ksg1", 0.02), ("ksg2", 0.02), ("gaussian", 0.01), ("knn", 0.03)]
)
def test_bivariate_normal(rho, method, tol):
    x = np.random.default_rng(5).multivariate_normal([0, 0], [[1, rho], [rho, 1]], 20_000)
    got = entropylib.mutual_information(x[:, 0], x[:, 1], method)
    assert got == pytest.approx(-0.5 * math.log(1 - rho**2), abs=tol)


def ar1(d, rho):
    i = np.arange(d)
    return rho ** np.abs(i[:, None] - i[None, :]) * np.outer(np.linspace(1, 2, d),
                                                              np.linspace(1, 2, d))


@pytest.mark.parametrize("method", ["ksg1", "ksg2", "gaussian"])
def test_multivariate_normal_blocks(method):
    cov = ar1(5, 0.7)
    x = np.random.default_rng(6).multivariate_normal(np.zeros(5), cov, 20_000)
    a, b = [0, 1], [2, 3, 4]
    true_mi = 0.5 * (logdet(cov, a) + logdet(cov, b) - logdet(cov, a + b))
    got = entropylib.mutual_information(x[:, a], x[:, b], method)
    assert got == pytest.approx(true_mi, abs=0.03)
    true_tc = 0.5 * (sum(logdet(cov, [j]) for j in range(5)) - logdet(cov, list(range(5))))
    assert entropylib.total_correlation(x, method) == pytest.approx(true_tc, abs=0.06)
    groups = [[0, 1], [2], [3, 4]]
    true = 0.5 * (sum(logdet(cov, g) for g in groups) - logdet(cov, list(range(5))))
    got = entropylib.total_correlation(x, method, groups=groups)
    assert got == pytest.approx(true, abs=0.05)


@pytest.mark.parametrize("method", ["ksg1", "gaussian", "knn"])
def test_conditional_mutual_information_of_a_gaussian_chain(method):
    """x -> y -> z: I(X; Z | Y) = 0, and I(X; Y | Z) from the log-determinants."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=20_000)
    y = 0.8 * x + 0.6 * rng.normal(size=20_000)
    z = 0.8 * y + 0.6 * rng.normal(size=20_000)
    cov = np.cov(np.vstack([x, y, z]))  # sample covariance: the closed form of this sample
    assert entropylib.conditional_mutual_information(x, z, y, method) == pytest.approx(
        0.0, abs=0.02
    )
    true = 0.5 * (logdet(cov, [0, 2]) + logdet(cov, [1, 2]) - logdet(cov, [0, 1, 2])
                  - logdet(cov, [2]))
    got = entropylib.conditional_mutual_information(x, y, z, method)
    assert got == pytest.approx(true, abs=1e-12 if method == "gaussian" else 0.03)


# ---------------------------------------------------------------- symmetries


def test_symmetry_and_exact_invariances():
    rng = np.random.default_rng(8)
    xy = correlated(rng, 3000, 3)
    x, y = xy[:, :1], xy[:, 1:]
    perm = rng.permutation(3000)
    for method in ("ksg1", "ksg2"):
        mi = entropylib.mutual_information(x, y, method)
        assert entropylib.mutual_information(y, x, method) == mi
        assert entropylib.mutual_information(x[perm], y[perm], method) == mi
        # a common power-of-two scale and sign flips of coordinates keep every max-norm
        # distance's order and every count: the same number, bit for bit
        assert entropylib.mutual_information(-4 * x, 4 * y * [1, -1], method) == mi
        # a common affine map in general: the same up to rounding of the distances
        assert entropylib.mutual_information(3 * x + 1, 3 * y - 2, method) == pytest.approx(
            mi, abs=1e-10
        )
    cov = np.cov(xy.T)
    g = entropylib.mutual_information(x, y, "gaussian")
    assert g == pytest.approx(entropylib.mutual_information(y, x, "gaussian"), abs=1e-12)
    assert g == pytest.approx(
        0.5 * (logdet(cov, [0]) + logdet(cov, [1, 2]) - logdet(cov, [0, 1, 2])), abs=1e-12
    )


def test_strictly_monotone_maps():
    """The true MI is invariant under strictly monotone maps of each variable; KSG keeps the
    marginal ranks but not the joint max-norm neighbourhoods, so its estimate moves (it is
    not exactly invariant) but stays near the unchanged true value."""
    rng = np.random.default_rng(9)
    xy = correlated(rng, 20_000, 2, rho=0.7)
    true = -0.5 * math.log(1 - 0.7**2)
    x, y = xy[:, 0], xy[:, 1]
    plain = entropylib.mutual_information(x, y)
    mapped = entropylib.mutual_information(np.exp(x), y**3)
    assert plain == pytest.approx(true, abs=0.02)
    assert mapped == pytest.approx(true, abs=0.05)
    assert mapped != plain
    # per-variable scales alone already change the raw joint neighbourhoods; the default
    # divides each column by its standard deviation first, which a factor 2 leaves exact
    assert entropylib.mutual_information(2 * x, y, standardize=False) != (
        entropylib.mutual_information(x, y, standardize=False))
    assert entropylib.mutual_information(2 * x, y) == plain


@pytest.mark.parametrize(("method", "dx", "dy"), [("ksg1", 1, 1), ("ksg1", 2, 2),
                                                  ("ksg2", 1, 1)])
def test_independence_gives_unbiased_looking_zero(method, dx, dy):
    values = []
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        values.append(entropylib.mutual_information(rng.normal(size=(1000, dx)),
                                                    rng.exponential(size=(1000, dy)), method))
    values = np.array(values)
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean()) < 4 * se + 2e-3
    assert values.std() < 0.03


# ---------------------------------------------------------------- interface and bad input


def test_methods_lists_the_family():
    info = entropylib.methods()
    assert info["ksg1"]["measures"] == (
        "mutual_information", "conditional_mutual_information", "total_correlation")
    assert info["ksg2"]["measures"] == ("mutual_information", "total_correlation")
    assert info["ksg1"]["backends"] == ("numpy", "numba") and not info["ksg1"]["joint"]
    assert "mutual_information" in info["knn"]["measures"]
    assert info["vasicek"]["measures"] == ("entropy",)
    with pytest.raises(ValueError, match="not entropy"):
        entropylib.estimate(np.random.default_rng(0).normal(size=(100, 2)), "ksg1")
    with pytest.raises(ValueError, match="not conditional_mutual_information"):
        x = np.random.default_rng(0).normal(size=(100, 3))
        entropylib.conditional_mutual_information(x[:, 0], x[:, 1], x[:, 2], "ksg2")


def test_base_torch_and_dtype():
    rng = np.random.default_rng(10)
    xy = correlated(rng, 2000, 2)
    mi = entropylib.mutual_information(xy[:, 0], xy[:, 1])
    assert isinstance(mi, np.float64)
    assert entropylib.mutual_information(xy[:, 0], xy[:, 1], base=2) == pytest.approx(
        mi / math.log(2), rel=1e-15
    )
    t = torch.from_numpy(xy)
    got = entropylib.mutual_information(t[:, 0], t[:, 1])
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    assert float(got) == mi
    tg = t.clone().requires_grad_()
    diff = entropylib.mutual_information(tg[:, 0], tg[:, 1], "gaussian")
    diff.backward()
    assert tg.grad is not None and torch.isfinite(tg.grad).all()
    z = torch.from_numpy(rng.normal(size=2000)).float()  # float32 promoted with float64
    cmi = entropylib.conditional_mutual_information(t[:, 0], t[:, 1], z, "gaussian")
    assert cmi.dtype == torch.float64
    assert float(cmi) == pytest.approx(entropylib.conditional_mutual_information(
        xy[:, 0], xy[:, 1], z.double().numpy(), "gaussian"), abs=1e-12)
    f32 = entropylib.mutual_information(xy[:, 0].astype(np.float32), xy[:, 1].astype(np.float32))
    assert f32.dtype == np.float32


def test_nan_policies():
    rng = np.random.default_rng(11)
    xy = correlated(rng, 500, 2)
    holed = xy.copy()
    holed[[3, 10], [0, 1]] = np.nan
    with pytest.raises(ValueError, match="x, y have NaN"):
        entropylib.mutual_information(holed[:, 0], holed[:, 1])
    assert math.isnan(entropylib.mutual_information(holed[:, 0], holed[:, 1],
                                                    nan_policy="propagate"))
    clean = np.delete(xy, [3, 10], axis=0)
    for method in ("ksg1", "knn"):
        got = entropylib.mutual_information(holed[:, 0], holed[:, 1], method, nan_policy="omit")
        assert got == entropylib.mutual_information(clean[:, 0], clean[:, 1], method)


def test_ties():
    rng = np.random.default_rng(12)
    x = np.round(rng.normal(size=(800, 2)), 0)  # many repeated rows: zero joint distances
    with pytest.raises(ValueError, match="zero joint k-th neighbour distances"):
        entropylib.mutual_information(x[:, 0], x[:, 1])
    jit = entropylib.mutual_information(x[:, 0], x[:, 1], ties="jitter", seed=1)
    assert np.isfinite(jit) and abs(jit) < 0.1
    with pytest.warns(RuntimeWarning, match="ties='floor' floored"):
        assert np.isfinite(entropylib.mutual_information(x[:, 0], x[:, 1], ties="floor"))
    # a constant variable shares no information: exactly 0 for KSG1 (every count is n - 1 in
    # the constant's space and k - 1 in the other)
    y = rng.normal(size=800)
    assert entropylib.mutual_information(np.ones(800), y) == pytest.approx(0.0, abs=1e-12)


def test_bad_input():
    rng = np.random.default_rng(13)
    x, y = rng.normal(size=100), rng.normal(size=100)
    with pytest.raises(ValueError, match="same number of samples"):
        entropylib.mutual_information(x, y[:50])
    with pytest.raises(TypeError, match="all numpy arrays or all torch"):
        entropylib.mutual_information(x, torch.from_numpy(y))
    with pytest.raises(ValueError, match="infinite"):
        entropylib.mutual_information(np.append(x[:-1], np.inf), y)
    with pytest.raises(ValueError, match="k .* >= 1"):
        entropylib.mutual_information(x, y, k=0)
    with pytest.raises(TypeError, match="unknown option"):
        entropylib.mutual_information(x, y, m=3)
    with pytest.raises(ValueError, match="at least 51 samples"):
        entropylib.mutual_information(x[:50], y[:50], k=50)
    with pytest.raises(ValueError, match="backend"):
        entropylib.mutual_information(x, y, backend="torch")
    with pytest.raises(ValueError, match="univariate"):
        entropylib.mutual_information(x, y, "vasicek")
    with pytest.raises(ValueError, match="groups must not share"):
        entropylib.total_correlation(np.column_stack([x, y]), "ksg1", groups=[[0], [0, 1]])
    with pytest.raises(ValueError, match="column indices"):
        entropylib.total_correlation(np.column_stack([x, y]), "ksg1", groups=[[0], [2]])
