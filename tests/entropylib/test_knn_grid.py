"""The numba cell-grid neighbour search: the exact k-th neighbour distances on any sample.

The reference is the full distance matrix (written here, independently of the library) and
scipy's KD-tree. Max-norm distances must be equal bit for bit (both sides compute the same
max of absolute differences); Euclidean ones to rounding of the square root's argument.
"""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

import entropylib
from entropylib import knn_kernels


def kth_brute(x: np.ndarray, k: int, euclidean: bool) -> np.ndarray:
    diff = np.abs(x[:, None, :] - x[None, :, :])
    dist = np.sqrt((diff**2).sum(axis=2)) if euclidean else diff.max(axis=2)
    np.fill_diagonal(dist, np.inf)
    return np.sort(np.sort(dist, axis=1)[:, k - 1])


def check_exact(x: np.ndarray, k: int, euclidean: bool) -> None:
    rho = knn_kernels.kth_distance(x, k, euclidean)
    assert rho is not None and rho.shape == (x.shape[0],)
    ref = kth_brute(x.astype(np.float64), k, euclidean)
    if euclidean:
        np.testing.assert_allclose(np.sort(rho), ref, rtol=1e-15, atol=0)
    else:
        np.testing.assert_array_equal(np.sort(rho), ref)


SHAPES = {
    "normal": lambda rng, n, d: rng.normal(size=(n, d)),
    "cauchy": lambda rng, n, d: rng.standard_cauchy(size=(n, d)),
    "lognormal": lambda rng, n, d: rng.lognormal(sigma=2.0, size=(n, d)),
    # repeated values: distances of zero and edges that coincide
    "rounded": lambda rng, n, d: np.round(rng.normal(size=(n, d)), 1),
    # a dense blob and sparse outliers, so many searches go beyond the first ring of cells
    "blob": lambda rng, n, d: np.where(rng.random((n, 1)) < 0.9, 0.01, 10.0)
    * rng.normal(size=(n, d)),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("d", [2, 3, 5])
@pytest.mark.parametrize("euclidean", [False, True])
def test_matches_full_distance_matrix(monkeypatch, shape, d, euclidean):
    """The grid answers (no pilot fallback); points beyond MAX_RING rings come from the tree."""
    monkeypatch.setattr(knn_kernels, "MAX_WASTE", np.inf)
    rng = np.random.default_rng(d)
    x = SHAPES[shape](rng, 1500, d)
    for k in (1, 4):
        check_exact(x, k, euclidean)


@settings(deadline=None)
@given(
    n=st.integers(2, 60),
    d=st.integers(2, 5),
    k=st.integers(1, 6),
    euclidean=st.booleans(),
    levels=st.sampled_from([3, 50, 10**6]),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_small_samples_with_ties(n, d, k, euclidean, levels, seed):
    """Any n > k, integer grids with many exact ties included (the crowding and pilot
    fallbacks off, so the grid itself answers even when a few cells hold everything)."""
    if n <= k:
        with pytest.raises(ValueError, match="at least k \\+ 1"):
            knn_kernels.kth_distance(np.zeros((n, d)), k, euclidean)
        return
    x = np.random.default_rng(seed).integers(0, levels, size=(n, d)).astype(float)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(knn_kernels, "MAX_CROWDING", np.inf)
        patch.setattr(knn_kernels, "MAX_WASTE", np.inf)
        check_exact(x, k, euclidean)


def test_agrees_with_kdtree_at_scale():
    x = np.random.default_rng(0).normal(size=(60_000, 3))
    for euclidean in (False, True):
        rho = knn_kernels.kth_distance(x, 3, euclidean)
        ref = cKDTree(x).query(x, k=4, p=2 if euclidean else np.inf)[0][:, 3]
        np.testing.assert_allclose(np.sort(rho), np.sort(ref), rtol=1e-15, atol=0)


@pytest.mark.parametrize("per_cell", [0.05, 0.5, 50.0])
@pytest.mark.parametrize("max_ring", [2, 10**6])
def test_any_cell_size_gives_the_same_distances(monkeypatch, per_cell, max_ring):
    """Tiny cells force long ring-by-ring searches (all of them walked to the end, or those
    beyond two rings finished by the tree), huge ones put everything in one cell."""
    x = np.random.default_rng(1).standard_cauchy(size=(800, 3))
    monkeypatch.setattr(knn_kernels, "MAX_CROWDING", np.inf)
    monkeypatch.setattr(knn_kernels, "MAX_WASTE", np.inf)
    monkeypatch.setattr(knn_kernels, "MAX_RING", max_ring)
    monkeypatch.setattr(knn_kernels, "POINTS_PER_CELL", per_cell)
    check_exact(x, 3, euclidean=False)
    check_exact(x, 2, euclidean=True)


def test_thread_count_does_not_change_the_result():
    x = np.random.default_rng(2).normal(size=(20_000, 2))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = knn_kernels.kth_distance(x, 3, False)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = knn_kernels.kth_distance(x, 3, False)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, many)


def test_crowded_or_high_dimensional_samples_go_to_the_tree():
    rng = np.random.default_rng(3)
    t = rng.normal(size=(20_000, 1))
    curve = np.hstack([t, t + 1e-3 * rng.normal(size=t.shape), -t])  # near a line in 3-D
    assert knn_kernels.kth_distance(curve, 3, False) is None
    assert knn_kernels.kth_distance(rng.normal(size=(500, 6)), 3, False) is None
    for x in (curve, rng.normal(size=(3000, 6)), rng.normal(size=(30_000, 3))):
        numba_h = entropylib.estimate(x, "knn", joint=True, backend="numba")
        assert numba_h == entropylib.estimate(x, "knn", joint=True, backend="numpy")


def test_float32_input_same_as_tree_path():
    x = np.random.default_rng(4).normal(size=(5000, 3)).astype(np.float32)
    h = entropylib.estimate(x, "knn", joint=True, backend="numba")
    assert h.dtype == np.float32
    assert h == entropylib.estimate(x, "knn", joint=True, backend="numpy")


HEAVY_TAILS = {
    "cubed cauchy": lambda rng, n, d: rng.standard_cauchy(size=(n, d)) ** 3,
    "student t(1)": lambda rng, n, d: rng.standard_t(1, size=(n, d)),
    "lognormal": lambda rng, n, d: rng.lognormal(size=(n, d)),
}


@pytest.mark.parametrize("shape", sorted(HEAVY_TAILS))
@pytest.mark.parametrize("d", [2, 3, 5])
def test_heavy_tailed_samples_go_to_the_tree(shape, d):
    """Quantile cells of heavy-tailed marginals are wide along one axis and thin along another,
    so the searches walk dozens of rings (cubed Cauchy, d = 2, 10^4 points: 200x slower than
    the tree), though every cell holds its share of points and the crowding rule keeps the
    grid: the pilot search hands such samples to the tree, and keeps normal ones."""
    rng = np.random.default_rng(d)
    x = HEAVY_TAILS[shape](rng, 5000, d)
    assert knn_kernels.crowding(x) < knn_kernels.MAX_CROWDING  # the old rule chose the grid
    assert knn_kernels.kth_distance(x, 3, euclidean=False) is None
    assert knn_kernels.kth_distance(rng.normal(size=(5000, d)), 3, euclidean=False) is not None


@pytest.mark.parametrize("shape", sorted(HEAVY_TAILS))
@pytest.mark.parametrize("euclidean", [False, True])
def test_grid_forced_on_heavy_tails_matches_the_tree(monkeypatch, shape, euclidean):
    """With the pilot fallback off, the grid keeps the sample and leaves the points beyond
    MAX_RING rings to the tree: every distance, in row order, as scipy's KD-tree gives it."""
    monkeypatch.setattr(knn_kernels, "MAX_WASTE", np.inf)
    x = HEAVY_TAILS[shape](np.random.default_rng(5), 3000, 3)
    rho = knn_kernels.kth_distance(x, 3, euclidean, row_order=True)
    ref = cKDTree(x).query(x, k=4, p=2 if euclidean else np.inf)[0][:, 3]
    if euclidean:
        np.testing.assert_allclose(rho, ref, rtol=1e-15, atol=0)
    else:
        np.testing.assert_array_equal(rho, ref)


@pytest.mark.parametrize("shape", sorted(HEAVY_TAILS))
def test_ksg_counts_on_heavy_tails_match_the_tree(monkeypatch, shape):
    """KSG ball counts of 2-D and 3-D parts of a heavy-tailed 5-D sample, at the radii of its
    joint neighbour search, by the grid and by the KD-tree; and the estimates of both backends
    (same counts, so the same float)."""
    monkeypatch.setattr(knn_kernels, "MAX_WASTE", np.inf)
    x = HEAVY_TAILS[shape](np.random.default_rng(6), 3000, 5)
    eps = cKDTree(x).query(x, k=4, p=np.inf)[0][:, 3]
    for cols in ([0, 1], [2, 3, 4]):
        sub = np.ascontiguousarray(x[:, cols])
        for strict in (False, True):
            r = np.nextafter(eps, -np.inf) if strict else eps
            ref = cKDTree(sub).query_ball_point(sub, r, p=np.inf, return_length=True) - 1
            np.testing.assert_array_equal(knn_kernels.count_within(sub, eps, strict), ref)
    monkeypatch.undo()
    xy = (x[:, :2], x[:, 2:])
    assert entropylib.mutual_information(*xy, backend="numba") == (
        entropylib.mutual_information(*xy, backend="numpy"))
