"""Diagnostics and separability against closed forms and independently written formulas."""

import numpy as np
import pytest
from scipy.stats import entropy as shannon

import entropylib
from evaluation.diagnostics import (
    alignment,
    embedding_diagnostics,
    marginal_entropy_profile,
    offdiag_covariance_energy,
    plot_entropy_profiles,
    plot_spectra,
    rankme,
    total_correlation,
    uniformity,
)
from evaluation.separability import (
    fisher_ratio,
    knn_purity,
    plot_embeddings_2d,
    silhouette,
)


def test_rankme_of_isotropic_gaussian_is_near_the_dimension():
    x = np.random.default_rng(0).normal(size=(20_000, 16))
    assert rankme(x) == pytest.approx(16, rel=0.01)
    s = np.linalg.svd(x, compute_uv=False)
    # scipy's Shannon entropy of the normalised spectrum; eps = 1e-7 moves it by < 1e-5
    assert rankme(x) == pytest.approx(np.exp(shannon(s)), rel=1e-5)


def test_rankme_of_a_rank_r_matrix_is_near_r():
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(32, 5)))[0].T  # 5 orthonormal rows in R^32
    x = rng.normal(size=(20_000, 5)) @ basis
    assert rankme(x) == pytest.approx(5, rel=0.01)
    assert rankme(np.eye(7)[:, :3] @ np.diag([1.0, 1.0, 1.0])) == pytest.approx(3, rel=1e-5)


def test_alignment_on_hand_computed_pairs():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert alignment(a, a) == 0.0
    b = np.array([[0.0, 3.0], [0.0, -1.0]])
    # unit vectors: pair 1 orthogonal (|d|^2 = 2), pair 2 opposite (|d|^2 = 4)
    assert alignment(a, b) == pytest.approx(3.0)
    assert alignment(a, b, alpha=1) == pytest.approx((np.sqrt(2) + 2) / 2)
    with pytest.raises(ValueError, match="same shape"):
        alignment(a, b[:1])


def test_uniformity_on_hand_computed_configurations():
    assert uniformity([[1.0, 0.0], [-1.0, 0.0]]) == pytest.approx(-8.0)
    angles = 2 * np.pi * np.arange(3) / 3  # equilateral triangle: |d|^2 = 3 for every pair
    tri = np.c_[np.cos(angles), np.sin(angles)] * 5
    assert uniformity(tri) == pytest.approx(-6.0)
    # two coincident points and one opposite: pairs |d|^2 = 0, 4, 4
    pts = [[0.0, 1.0], [0.0, 2.0], [0.0, -1.0]]
    assert uniformity(pts, t=1.0) == pytest.approx(np.log((1 + 2 * np.exp(-4)) / 3))


def test_offdiag_covariance_energy_against_explicit_sums():
    assert offdiag_covariance_energy([[1.0, 1.0], [-1.0, -1.0]]) == pytest.approx(4.0)
    x = np.random.default_rng(2).normal(size=(50, 4))
    xc = x - x.mean(axis=0)
    total = 0.0
    for i in range(4):
        for j in range(4):
            if i != j:
                total += (np.dot(xc[:, i], xc[:, j]) / 49) ** 2
    assert offdiag_covariance_energy(x) == pytest.approx(total / 4)


def test_fisher_ratio_on_a_constructed_example():
    assert fisher_ratio([[0.0], [2.0], [10.0], [12.0]], [0, 0, 1, 1]) == pytest.approx(25.0)
    # 2-D, unequal class sizes; scatter matrices built as sums of outer products
    x = np.array([[0, 0], [2, 0], [1, 3], [5, 5], [7, 5], [6, 8], [6, 2.0]])
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    mu = x.mean(axis=0)
    sb = np.zeros((2, 2))
    sw = np.zeros((2, 2))
    for c in (0, 1):
        xc = x[y == c]
        d = xc.mean(axis=0) - mu
        sb += len(xc) * np.outer(d, d)
        for row in xc:
            e = row - xc.mean(axis=0)
            sw += np.outer(e, e)
    assert fisher_ratio(x, y) == pytest.approx(np.trace(sb) / np.trace(sw))


def test_silhouette_matches_a_direct_cosine_computation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 3)) + np.repeat([[3, 0, 0], [0, 3, 0]], 20, axis=0)
    y = np.repeat([0, 1], 20)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = 1 - u @ u.T
    s = []
    for i in range(40):
        same = (y == y[i]) & (np.arange(40) != i)
        a = dist[i, same].mean()
        b = dist[i, y != y[i]].mean()
        s.append((b - a) / max(a, b))
    assert silhouette(x, y) == pytest.approx(np.mean(s), abs=1e-9)


def test_knn_purity_by_hand():
    x = [[1, 0], [1, 0.1], [0, 1], [0.1, 1], [1, 0.05]]
    # nearest other point: 0->4, 1->4, 2->3, 3->2, 4->0 (or 1); labels make 4 of 5 pure
    assert knn_purity(x, [0, 0, 1, 1, 1], k=1, backend="brute") == pytest.approx(0.4)
    assert knn_purity(x, [0, 0, 1, 1, 0], k=1) == 1.0
    with pytest.raises(ValueError, match="k must be"):
        knn_purity(x, [0, 0, 1, 1, 0], k=5)
    # True was taken as k = 1 and 1.5 failed inside the neighbour search
    for k in (True, 1.5):
        with pytest.raises(ValueError, match="k must be an integer"):
            knn_purity(x, [0, 0, 1, 1, 0], k=k)
    assert knn_purity(x, [0, 0, 1, 1, 0], k=np.int64(1)) == 1.0


def test_entropy_profile_is_per_column_entropy():
    from scipy.stats import differential_entropy

    rng = np.random.default_rng(4)
    sigmas = np.array([0.5, 1.0, 3.0])
    z = rng.normal(size=20_000)
    h = marginal_entropy_profile(z[:, None] * sigmas)
    # scale equivariance H(sZ) = H(Z) + log s holds exactly for spacing estimators
    np.testing.assert_allclose(h - h[1], np.log(sigmas), atol=1e-9)
    # level: N(0,1) has 0.5 log(2 pi e); m-spacing's finite-n bias here is a few 0.01 nats
    assert h[1] == pytest.approx(0.5 * np.log(2 * np.pi * np.e), abs=0.06)
    x = rng.normal(size=(500, 3)) * sigmas
    ref = [differential_entropy(x[:, j], method="vasicek") for j in range(3)]
    np.testing.assert_allclose(marginal_entropy_profile(x, method="vasicek"), ref, rtol=1e-10)


@pytest.mark.skipif(not hasattr(entropylib, "total_correlation"), reason="needs entropylib TC")
def test_total_correlation_of_a_correlated_gaussian_pair():
    rho = 0.8
    x = np.random.default_rng(5).multivariate_normal([0, 0], [[1, rho], [rho, 1]], 50_000)
    assert total_correlation(x) == pytest.approx(-0.5 * np.log(1 - rho**2), abs=0.02)


def test_embedding_diagnostics_and_dead_units():
    rng = np.random.default_rng(6)
    x = np.c_[rng.normal(size=(400, 3)), np.zeros(400)]
    with pytest.warns(RuntimeWarning, match="constant"):
        d = embedding_diagnostics(x, view2=x)
    assert d["dead_units"] == 1 and d["alignment"] == 0.0
    assert d["rankme"] == pytest.approx(rankme(x))
    assert np.isfinite(d["entropy_mean"])


def test_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        rankme([[1.0, np.nan]])
    with pytest.raises(ValueError, match="all zero"):
        rankme(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="3 entries but the features have 4 rows"):
        fisher_ratio(np.ones((4, 2)), [0, 1, 1])
    with pytest.raises(ValueError, match="two classes"):
        fisher_ratio(np.ones((4, 2)), [0, 0, 0, 0])
    with pytest.raises(ValueError, match="at least 2 samples"):
        uniformity([[1.0, 0.0]])


def test_plots_are_written(tmp_path):
    rng = np.random.default_rng(7)
    feats = {"a": rng.normal(size=(60, 5)), "b": rng.normal(size=(60, 5))}
    labels = rng.integers(0, 3, 60)
    plot_spectra(feats, tmp_path / "s.png")
    plot_entropy_profiles({k: marginal_entropy_profile(v) for k, v in feats.items()},
                          tmp_path / "h.png")
    plot_embeddings_2d({k: (v, labels) for k, v in feats.items()}, tmp_path / "m.png")
    for name in ("s.png", "h.png", "m.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_map_legend_names_each_class_in_its_colour(tmp_path, monkeypatch):
    import matplotlib.figure

    from evaluation.figures import class_colors

    legends = []
    original = matplotlib.figure.Figure.legend

    def spy(fig, *args, **kwargs):
        legends.append(original(fig, *args, **kwargs))
        return legends[-1]

    monkeypatch.setattr(matplotlib.figure.Figure, "legend", spy)
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(40, 4)), np.repeat([0, 2, 3], [10, 10, 20])
    names = ["zero", "one", "two", "three"]
    plot_embeddings_2d({"m": (x, y)}, tmp_path / "m.png", class_names=names)
    (legend,) = legends
    assert [t.get_text() for t in legend.get_texts()] == ["zero", "two", "three"]
    colours = [tuple(h.get_color()) for h in legend.legend_handles]
    assert colours == [tuple(c) for c in class_colors(np.array([0, 2, 3]))]
    assert len(set(colours)) == 3
    with pytest.raises(ValueError, match="class_names has 2 names but the labels go up to 3"):
        plot_embeddings_2d({"m": (x, y)}, tmp_path / "n.png", class_names=names[:2])
    assert not (tmp_path / "n.png").exists()
