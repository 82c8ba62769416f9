"""`estimate` on odd but legitimate inputs: array layouts and byte orders, keyword types, and
the caller's array left untouched. Every layout must give the number of the plain C-ordered
float64 array, on every backend of every entropy method."""

import numpy as np
import pytest
import torch

import entropylib

ENTROPY = {name: info for name, info in entropylib.methods().items()
           if "entropy" in info["measures"]}
#: (method, backend, joint) for every implementation `estimate` can reach
CASES = [(name, backend, joint)
         for name, info in sorted(ENTROPY.items())
         for joint in ((False, True) if info["joint"] else (False,))
         for backend in (info["joint_backends"] if joint else info["backends"])]


def sample(n=120, d=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def as_numpy(h):
    return h.detach().numpy() if torch.is_tensor(h) else np.asarray(h)


@pytest.mark.parametrize(("method", "backend", "joint"), CASES)
@pytest.mark.parametrize("byteorder", [">", "<"])
def test_non_native_byte_order_gives_the_native_result(method, backend, joint, byteorder):
    """Big-endian float64 ('>f8', e.g. read from a FITS or network file) reached the numba
    kernels ("the numba kernels take float32 or float64 arrays, got >f8") and torch.from_numpy
    ("byte order different from the native byte order") as it was."""
    x = sample()
    swapped = x.astype(x.dtype.newbyteorder(byteorder))
    expected = entropylib.estimate(x, method, backend=backend, joint=joint)
    h = entropylib.estimate(swapped, method, backend=backend, joint=joint)
    np.testing.assert_array_equal(h, expected)
    assert h.dtype.isnative
