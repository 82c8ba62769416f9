"""total_correlation with a univariate method: the error names the methods that would work."""

import numpy as np
import pytest

import entropylib


def test_univariate_method_error_lists_the_joint_methods():
    x = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="univariate") as err:
        entropylib.total_correlation(x, "vasicek")
    listed = str(err.value).split("methods for total_correlation:")[1]
    for joint in ("gaussian", "knn", "kde"):
        assert repr(joint) in listed
    assert "'vasicek'" not in listed
