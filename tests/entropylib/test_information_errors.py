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


@pytest.mark.parametrize("method", ["gaussian", "knn", "ksg1"])
def test_one_row_per_variable_raises_and_says_samples_go_along_axis_0(method):
    """A (1, n) row vector per variable (the samples laid along axis 1): every column of the
    one-row sample is constant, and the entropy differences counted constant variables as
    sharing no information, so this read I = 0 without a word."""
    x = np.random.default_rng(0).normal(size=(1, 500))
    y = x + np.random.default_rng(1).normal(size=(1, 500))
    hint = r"got n = 1; .*samples go along axis 0.*transpose"
    with pytest.raises(ValueError, match=hint):
        entropylib.mutual_information(x, y, method)
    with pytest.raises(ValueError, match=hint):
        entropylib.total_correlation(x, method)
