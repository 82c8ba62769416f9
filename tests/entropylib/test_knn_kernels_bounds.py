"""The numba kNN grid kernels read and write only inside their arrays.

As in ``test_numba_kernels_bounds.py``: compiled numba code does not check indices, so the
kernels run here as the Python they are written in (``NUMBA_DISABLE_JIT=1`` in a subprocess),
where numpy raises IndexError on any index past the end, and their k-th neighbour distances
and ball counts are compared with a brute-force full distance matrix. Small samples in one to
five dimensions, both norms, ties, sparse and crowded grids (the ring search), cells larger
than a work block.
"""

import textwrap

from tests.entropylib.without_jit import run_without_jit

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from numba.core import config

    assert config.DISABLE_JIT
    from entropylib import knn_kernels as kk

    kk.MAX_CROWDING = np.inf  # the grid on every sample, crowded ones too
    kk.MAX_WASTE = np.inf  # and heavy-tailed ones
    kk.MAX_RING = 3  # long ring searches, and points left to the tree

    def brute(x, euclidean):
        diff = x[:, None, :] - x[None, :, :]
        dist = np.sqrt((diff ** 2).sum(-1)) if euclidean else np.abs(diff).max(-1)
        np.fill_diagonal(dist, np.inf)
        return dist

    rng = np.random.default_rng(0)
    samples = [rng.normal(size=(150, d)) for d in (1, 2, 3, 5)]
    samples.append(np.round(rng.normal(size=(150, 2)), 1))  # ties
    samples.append(np.hstack([rng.normal(size=(150, 1))] * 3))  # a line: crowded cells
    samples.append(rng.standard_cauchy(size=(150, 2)))  # sparse tails: the ring search
    for per_cell in (0.5, 2.0, 300.0):  # 300: one cell per axis, more points than a block
        kk.POINTS_PER_CELL = per_cell
        for x in samples:
            for euclidean in (False, True):
                dist = brute(x, euclidean)
                ordered = np.sort(dist, axis=1)
                for k in (1, 3):
                    if x.shape[1] > 1:
                        got = kk.kth_distance(x, k, euclidean, row_order=True)
                        np.testing.assert_allclose(got, ordered[:, k - 1], rtol=1e-12)
                if euclidean:
                    continue
                radius = ordered[:, 2]
                for strict in (False, True):
                    want = (dist < radius[:, None]) if strict else (dist <= radius[:, None])
                    got = kk.count_within(x, radius, strict)
                    assert np.array_equal(got, want.sum(axis=1)), (x.shape, strict, per_cell)
    print("ok")
    """
)


def test_grid_kernels_stay_inside_their_arrays_and_agree_with_brute_force():
    run_without_jit(SCRIPT)
