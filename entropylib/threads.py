"""How many threads the compiled kernels and the KD-tree may use.

Threads available: the CPUs this process may run on (``os.sched_getaffinity``, so ``taskset``
and cgroup CPU sets are respected), capped by ``NUMBA_NUM_THREADS`` when it is set. Problems
below a measured size run on one thread: starting and joining the pool costs more than it saves
there, and far more on a machine whose cores are busy. The sizes come from
``benchmarks/bench_backend_auto.py`` (``benchmarks/results/backend_auto.md``). Above them every
available thread is used even when other processes keep the cores busy: the scheduler shares a
core between runnable threads, so k threads of ours get about k times the CPU of one, and on 2
cores each running a busy loop two threads ran KD-tree queries 1.3x to 1.5x faster than one
(``benchmarks/bench_loaded.py`` times every estimator under such load against single-threaded
peers).

A leaf module: imports numba only inside :func:`numba_threads`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

#: pair evaluations (n (n - 1) / 2 times d) from which the numba KDE uses more than one thread
KDE_PARALLEL_WORK = 4_000_000
#: points from which the numba kNN grid search uses more than one thread
GRID_PARALLEL_N = 54_772
#: points from which scipy's KD-tree query of d = 3 samples uses more than one thread
KDTREE_PARALLEL_N = 17_320
#: growth per dimension of a KD-tree query's cost per point: on normal samples of 10^4 points,
#: one thread, d = 5, 8 and 10 cost 3.7x, 15x and 25x d = 3 (1.6^2 = 2.6, 1.6^5 = 10.5,
#: 1.6^7 = 27): a (10^4, 8) query is 0.3 to 0.5 s of work, where threads pay
KDTREE_COST_GROWTH = 1.6


def available() -> int:
    """CPUs this process may run on, capped by ``NUMBA_NUM_THREADS`` if set (at least 1).

    Examples
    --------
    >>> available() >= 1
    True
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    cap = os.environ.get("NUMBA_NUM_THREADS", "").strip()
    if cap.isdigit() and int(cap) > 0:
        cpus = min(cpus, int(cap))
    return max(1, cpus)


def for_work(work: float, parallel_from: float) -> int:
    """1 below ``parallel_from`` units of work, else :func:`available`."""
    return 1 if work < parallel_from else available()


def kdtree_workers(n: int, d: int) -> int:
    """Threads for a KD-tree neighbour query of n points in d dimensions: one below
    ``KDTREE_PARALLEL_N`` points of d = 3 worth of work (n * 1.6^(d - 3)), else all.

    Threads pay for a query that takes tens of milliseconds on one thread, idle or loaded: on
    2 cores each busy with another process, 2 threads get twice the CPU share of 1 and ran a
    (10^4, 8) query 1.4x faster (``benchmarks/bench_loaded.py``).

    Examples
    --------
    >>> kdtree_workers(1000, 3)
    1
    """
    return for_work(n * KDTREE_COST_GROWTH ** (d - 3), KDTREE_PARALLEL_N)


@contextmanager
def numba_threads(count: int) -> Iterator[None]:
    """Run numba parallel kernels of the calling thread on ``count`` threads (at most the pool's
    size, which numba fixed at import from the same affinity and NUMBA_NUM_THREADS)."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)
