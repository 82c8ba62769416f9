"""entropylib.precompile takes every numba path `estimate` can take, and times itself.

The calls are recorded instead of run (compiling takes minutes; ``test_backend_auto.py``
compiles for real, in a slow test). The paths are those the numba modules document: spacings
serial below ``numba_kernels.PARALLEL_SIZE`` values and parallel from it, the kNN grid up to
``knn_kernels.GRID_MAX_D`` dimensions, the KDE sums with and without leave-one-out, and its
boundary images, each for float32 and float64 where the kernels are typed by the input.
"""

import time

import numpy as np
import pytest

from entropylib import precompile
from entropylib.knn_kernels import GRID_MAX_D
from entropylib.numba_kernels import PARALLEL_SIZE

SPACINGS = ("m_spacing", "vasicek", "ebrahimi", "correa")


@pytest.fixture
def calls(monkeypatch):
    seen = []

    def record(x, method, **options):
        seen.append((method, np.asarray(x).shape, np.asarray(x).dtype, options))
        time.sleep(0.001)

    monkeypatch.setattr(precompile, "estimate", record)
    return seen


def test_every_spacing_kernel_runs_serial_and_parallel_in_both_dtypes(calls):
    precompile.compile_kernels(log=lambda line: None)
    for method in SPACINGS:
        for dtype in (np.float32, np.float64):
            sizes = [int(np.prod(shape)) for m, shape, dt, options in calls
                     if m == method and dt == dtype and options["backend"] == "numba"]
            assert any(s >= PARALLEL_SIZE for s in sizes), (method, dtype)
            assert any(s < PARALLEL_SIZE for s in sizes), (method, dtype)


def test_knn_grid_and_every_kde_kernel_run(calls):
    precompile.compile_kernels(log=lambda line: None)
    knn = [(shape, o) for m, shape, _, o in calls if m == "knn"]
    assert any(len(shape) == 2 and 2 <= shape[1] <= GRID_MAX_D and o.get("joint")
               and o["backend"] == "numba" for shape, o in knn)
    kde = [o for m, _, _, o in calls if m == "kde" and o["backend"] == "numba"]
    for loo in (False, True):
        assert any(o.get("joint") and o.get("loo") is loo for o in kde)
        assert any(o.get("bounds") is not None and o.get("loo") is loo for o in kde)


def test_the_seconds_returned_are_the_time_it_took(calls):
    start = time.perf_counter()
    seconds = precompile.compile_kernels(log=lambda line: None)
    took = time.perf_counter() - start
    assert 0.001 * len(calls) <= seconds <= took
