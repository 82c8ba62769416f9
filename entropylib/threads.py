"""How many threads the compiled kernels and the KD-tree may use.

Threads available: the CPUs this process may run on (``os.sched_getaffinity``, so ``taskset``
and cgroup CPU sets are respected), capped by ``NUMBA_NUM_THREADS`` when it is set. Problems
below a measured size run on one thread: starting and joining the pool costs more than it saves
there, and far more on a machine whose cores are busy. The sizes come from
``benchmarks/bench_backend_auto.py`` (``benchmarks/results/backend_auto.md``).

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
#: points from which scipy's KD-tree query uses more than one thread
KDTREE_PARALLEL_N = 17_320


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
