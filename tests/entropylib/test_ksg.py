"""entropylib.ksg called directly: Python floats, as annotated (a numpy scalar would print as
``np.float64(...)``), with the values `mutual_information` gives."""

import numpy as np
import pytest

import entropylib
from entropylib import ksg


@pytest.mark.parametrize("name", ["ksg1", "ksg2"])
def test_direct_calls_return_python_floats(name):
    xy = np.random.default_rng(0).multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], size=400)
    mi = getattr(ksg, name)(xy, [[0], [1]])
    assert type(mi) is float
    assert mi == entropylib.mutual_information(xy[:, :1], xy[:, 1:], name, standardize=False)
    xyz = np.column_stack([xy, xy.sum(axis=1)])
    cmi = ksg.frenzel_pompe(xyz, [[0], [1], [2]])
    assert type(cmi) is float


def test_direct_calls_default_to_the_k_of_the_information_functions():
    """k = 3, the registered default: a direct call without k equals the public function
    without k, for each estimator (on the raw columns, as the direct calls see them)."""
    xyz = np.random.default_rng(1).normal(size=(300, 3))
    xyz[:, 1] += xyz[:, 0]
    x, y, z = xyz[:, :1], xyz[:, 1:2], xyz[:, 2:]
    for name in ("ksg1", "ksg2"):
        mi = getattr(ksg, name)(xyz[:, :2], [[0], [1]])
        assert mi == entropylib.mutual_information(x, y, name, standardize=False)
    assert ksg.frenzel_pompe(xyz, [[0], [1], [2]]) == (
        entropylib.conditional_mutual_information(x, y, z, "ksg1", standardize=False))


@pytest.mark.parametrize("k", [2.5, 3.0, True, "3"])
def test_k_must_be_an_integer(k):
    """Not silently truncated (2.5 -> 2) nor a bool taken for 1."""
    xy = np.random.default_rng(2).normal(size=(100, 2))
    with pytest.raises(TypeError, match=r"k \(number of neighbours\) must be a positive integer"):
        entropylib.mutual_information(xy[:, :1], xy[:, 1:], "ksg1", k=k)
