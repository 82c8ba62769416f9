"""backend="auto" follows the measured crossover table; thread use respects NUMBA_NUM_THREADS
and the CPU affinity, small problems run on one thread; numba kernels compile ahead of time."""

import os
import subprocess
import sys

import numpy as np
import pytest

import entropylib
from entropylib import registry, threads
from entropylib.estimate import NUMBA_AUTO_SIZE, NUMBA_FROM


def chosen_backend(monkeypatch, x, method, joint=False):
    """The backend estimate calls, seen through spies on the method's implementations."""
    spec = registry.get(method)
    table = spec.joint_backends if joint else spec.backends
    used = []
    for name, impl in list(table.items()):
        def spy(*args, _name=name, _impl=impl, **kwargs):
            used.append(_name)
            return _impl(*args, **kwargs)
        monkeypatch.setitem(table, name, spy)
    entropylib.estimate(x, method, joint=joint)
    return used[0]


@pytest.mark.parametrize(("method", "joint"), sorted(NUMBA_FROM))
def test_auto_backend_follows_the_table(monkeypatch, method, joint):
    threshold = NUMBA_FROM[(method, joint)]
    d = 2 if joint else 1
    below = int(min(threshold, 3000)) // d - 1
    if below >= 20:
        x = np.random.default_rng(0).normal(size=(below, d))
        expected = "numba" if below * d >= threshold else "numpy"
        assert chosen_backend(monkeypatch, x, method, joint) == expected
    if np.isfinite(threshold) and threshold * d <= 40_000:
        n = int(threshold) // d + 1
        x = np.random.default_rng(0).normal(size=(n, d))
        assert chosen_backend(monkeypatch, x, method, joint) == "numba"


def test_kde_at_ten_thousand_goes_to_numba(monkeypatch):
    """numpy KDE at n = 10^4 ran at about half the numba speed (issue 14)."""
    x = np.random.default_rng(0).normal(size=(10_000, 1))
    assert NUMBA_FROM[("kde", False)] <= 10_000
    assert NUMBA_FROM[("kde", True)] <= 20_000
    monkeypatch.setattr("entropylib.kde.log_kernel_sums", lambda z, **kw: np.zeros(len(z)))
    assert chosen_backend(monkeypatch, x, "kde") == "numba"


def test_unlisted_methods_use_the_default_size():
    assert ("gaussian", False) not in NUMBA_FROM and NUMBA_AUTO_SIZE == 20_000


def test_threads_respect_the_affinity_and_numba_num_threads(monkeypatch):
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert threads.available() == 4
    monkeypatch.setenv("NUMBA_NUM_THREADS", "3")
    assert threads.available() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5}, raising=False)
    assert threads.available() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert threads.for_work(10, 100) == 1 and threads.for_work(1000, 100) == 2


def test_small_problems_do_not_pay_for_threads(monkeypatch):
    """The KD-tree, the numba grid and the numba KDE get one thread below their sizes."""
    from entropylib import knn

    seen = {}

    class Tree:
        def __init__(self, x, **kwargs):
            from scipy.spatial import cKDTree

            self.tree = cKDTree(x, **kwargs)
            self.indices = self.tree.indices

        def query(self, *args, workers, **kwargs):
            seen["workers"] = workers
            return self.tree.query(*args, workers=workers, **kwargs)

    monkeypatch.setattr(knn, "cKDTree", Tree)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    x = np.random.default_rng(0).normal(size=(1000, 7))  # d > 5: the tree on both backends
    entropylib.estimate(x, "knn", joint=True, backend="numpy")
    assert seen["workers"] == 1
    counts = []
    original = threads.numba_threads
    monkeypatch.setattr(threads, "numba_threads", lambda c: counts.append(c) or original(c))
    entropylib.estimate(x[:, :3], "knn", joint=True, backend="numba")
    entropylib.estimate(x[:500, 0], "kde", backend="numba")
    assert counts == [1, 1]


@pytest.mark.slow
def test_compile_ahead_of_time(tmp_path):
    """`python -m entropylib --compile` compiles every kernel family into the numba cache."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(os.path.dirname(entropylib.__file__)), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "entropylib", "--compile"], env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    assert "compiled or loaded from the cache" in out.stdout
    cached = {p.name.split(".")[0] for p in tmp_path.rglob("*.nbi")}
    assert {"numba_kernels", "knn_kernels", "kde_kernels"} <= cached


def test_kdtree_threads_follow_the_query_work(monkeypatch):
    """Threads from KDTREE_PARALLEL_N points of d = 3 work, a point of d dimensions counting
    as 1.6^(d - 3) of them (the measured growth of a query's cost per point)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    assert threads.kdtree_workers(17_320, 3) == 2 and threads.kdtree_workers(17_319, 3) == 1
    # d = 8: 17,320 / 1.6^5 = 1,651.8 points
    assert threads.kdtree_workers(1_652, 8) == 2 and threads.kdtree_workers(1_651, 8) == 1
    # d = 2: 17,320 * 1.6 = 27,712 points
    assert threads.kdtree_workers(27_713, 2) == 2 and threads.kdtree_workers(27_711, 2) == 1


def tree_query_workers(monkeypatch) -> list:
    """The ``workers`` of every KD-tree query the library makes, on 2 allowed cores."""
    from scipy.spatial import cKDTree

    from entropylib import knn

    seen = []

    class Tree(cKDTree):
        def query(self, *args, workers, **kwargs):
            seen.append(workers)
            return super().query(*args, workers=workers, **kwargs)

    monkeypatch.setattr(knn, "cKDTree", Tree)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    return seen


@pytest.mark.parametrize("n, d, method, expected", [
    (10_000, 8, "knn", 2),  # 0.3 to 0.5 s of query work: was one thread (n < 17,320)
    (300, 4, "weighted_knn", 1),  # a few ms: was every core
])
def test_kdtree_queries_use_the_thread_policy(monkeypatch, n, d, method, expected):
    seen = tree_query_workers(monkeypatch)
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    x = np.random.default_rng(0).normal(size=(n, d))
    entropylib.estimate(x, method, joint=True, backend="numpy")
    assert seen == [expected]


def test_ksg_neighbour_query_uses_the_thread_policy(monkeypatch):
    """ksg2's joint neighbour search on 500 points: one thread (it used every core)."""
    from entropylib import ksg

    seen = tree_query_workers(monkeypatch)
    xy = np.random.default_rng(0).normal(size=(500, 2))
    ksg.ksg2(xy, [[0], [1]])
    assert seen == [1]


def test_ksg_numba_searches_use_the_thread_policy(monkeypatch):
    """KSG's numba neighbour search and ball counts on 2,000 points run on one thread (they
    ran on every thread: 20 to 40 ms per parallel launch with the cores busy, for 1 ms of
    work)."""
    counts = []
    original = threads.numba_threads
    monkeypatch.setattr(threads, "numba_threads", lambda c: counts.append(c) or original(c))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    xy = np.random.default_rng(0).normal(size=(2_000, 3))
    entropylib.mutual_information(xy[:, :1], xy[:, 1:], "ksg1", backend="numba")
    assert counts == [1, 1, 1]  # the joint search, then the counts in x and in y


@pytest.mark.parametrize("d, balanced", [(3, False), (5, False), (6, True), (8, True)])
def test_kdtree_splits_at_medians_from_d_6(monkeypatch, d, balanced):
    from entropylib import knn

    built = []
    monkeypatch.setattr(knn, "cKDTree", lambda x, **kwargs: built.append(kwargs))
    knn.kdtree(np.zeros((10, d)))
    assert built == [{"balanced_tree": balanced, "compact_nodes": balanced}]
