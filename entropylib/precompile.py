"""Compile every numba kernel family ahead of time: ``python -m entropylib --compile``.

numba compiles a kernel the first time it runs with a new argument type (7 to 10 s per kernel
family on a 2-core machine) and caches the machine code on disk (``__pycache__`` beside the
modules, or ``NUMBA_CACHE_DIR``), so each family is compiled once per install. This runs every
numba path `estimate` can take (spacings serial and parallel, kNN grid, KDE sums and boundary
images; float32 and float64) on small samples, so that later calls only load the cache.
"""

from __future__ import annotations

import time

import numpy as np

from entropylib.estimate import estimate
from entropylib.numba_kernels import PARALLEL_SIZE

SPACINGS = ("m_spacing", "vasicek", "ebrahimi", "correa")


def compile_kernels(log=print) -> float:
    """Compile (or load from the cache) every numba kernel; returns the seconds it took.

    Examples
    --------
    >>> seconds = compile_kernels(log=lambda line: None)  # doctest: +SKIP
    """
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        small = rng.normal(size=(256, 2)).astype(dtype)
        large = rng.normal(size=(PARALLEL_SIZE // 2, 2)).astype(dtype)  # the parallel kernels
        for method in SPACINGS:
            for x in (small, large):
                estimate(x, method, backend="numba")
            log(f"spacings {method} {np.dtype(dtype).name}: {time.perf_counter() - start:.1f} s")
    x = rng.normal(size=(512, 3))
    estimate(x, "knn", joint=True, backend="numba")
    log(f"knn grid: {time.perf_counter() - start:.1f} s")
    for loo in (False, True):
        estimate(x, "kde", joint=True, backend="numba", loo=loo)
        estimate(rng.uniform(size=300), "kde", backend="numba", loo=loo, bounds=(0.0, 1.0))
    log(f"kde: {time.perf_counter() - start:.1f} s")
    return time.perf_counter() - start
