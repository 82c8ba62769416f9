"""backend="auto": torch for tensors; for numpy inputs numba from the size at which it measured
faster for that method (``NUMBA_FROM``), numpy otherwise (README, "Estimators")."""

import numpy as np
import pytest

import entropylib
from entropylib import numba_kernels
from entropylib.estimate import NUMBA_FROM


def test_auto_picks_the_numba_kernel_from_the_size_on(monkeypatch):
    calls = []

    def kernel(x, **options):
        calls.append(x.shape)
        return np.zeros(x.shape[1])

    monkeypatch.setattr(numba_kernels, "correa", kernel)
    n = NUMBA_FROM[("correa", False)]
    assert np.isfinite(n)
    rng = np.random.default_rng(0)
    entropylib.estimate(rng.normal(size=(n - 1, 1)), "correa")
    assert calls == []
    entropylib.estimate(rng.normal(size=(n, 1)), "correa")
    assert calls == [(n, 1)]


def test_auto_uses_numpy_for_a_method_without_numba_kernel_at_any_size():
    x = np.random.default_rng(1).normal(size=(100_000, 1)) * 3.0
    var = np.var(x, ddof=1)
    assert float(entropylib.estimate(x, "gaussian")[0]) == pytest.approx(
        0.5 * np.log(2 * np.pi * np.e * var), rel=1e-12
    )
