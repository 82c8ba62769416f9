"""The checks every evaluation function applies to its features, labels and parameters."""

import numpy as np
import pytest

from evaluation.inputs import as_features, positive_int, positive_real


def test_finite_values_beyond_the_target_dtype_are_not_called_infinite():
    x = np.array([[1e40, 0.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match=r"values up to 1e\+40, beyond the range of float32"):
        as_features(x, dtype=np.float32)
    kept = as_features(x, dtype=None)  # float64 stays float64
    assert kept.dtype == np.float64 and kept[0, 0] == 1e40
    with pytest.raises(ValueError, match="infinite"):
        as_features(np.array([[np.inf, 0.0]]), dtype=None)


def test_parameter_checks_name_the_parameter():
    assert positive_int(np.int64(4), "k") == 4
    for bad in (2.5, 0, True, "3"):
        with pytest.raises(ValueError, match=f"k must be a positive integer, got {bad!r}"):
            positive_int(bad, "k")
    with pytest.raises(TypeError, match="temperature must be a real number, got '0.1'"):
        positive_real("0.1", "temperature")
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            positive_real(bad, "temperature")
