"""backend="auto": torch for tensors, numba for numpy inputs of NUMBA_AUTO_SIZE values or
more when the method has a numba kernel, numpy otherwise (README, "Estimators")."""

import numpy as np
import pytest

import entropylib
from entropylib import numba_kernels
from entropylib.estimate import NUMBA_AUTO_SIZE


def test_auto_picks_the_numba_kernel_from_the_size_on(monkeypatch):
    calls = []

    def kernel(x, **options):
        calls.append(x.shape)
        return np.zeros(x.shape[1])

    monkeypatch.setattr(numba_kernels, "vasicek", kernel)
    n = NUMBA_AUTO_SIZE
    rng = np.random.default_rng(0)
    entropylib.estimate(rng.normal(size=(n - 1, 1)), "vasicek")
    assert calls == []
    entropylib.estimate(rng.normal(size=(n, 1)), "vasicek")
    assert calls == [(n, 1)]


def test_auto_uses_numpy_for_a_method_without_numba_kernel_at_any_size():
    x = np.random.default_rng(1).normal(size=(NUMBA_AUTO_SIZE, 1)) * 3.0
    var = np.var(x, ddof=1)
    assert float(entropylib.estimate(x, "gaussian")[0]) == pytest.approx(
        0.5 * np.log(2 * np.pi * np.e * var), rel=1e-12
    )
