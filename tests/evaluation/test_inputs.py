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


def test_float_labels_holding_whole_numbers_are_class_indices():
    from evaluation.inputs import as_labels

    got = as_labels(np.array([0.0, 2.0, 1.0]), 3)
    assert got.dtype == np.int64 and got.tolist() == [0, 2, 1]
    for bad in ([0.0, 1.5, 1.0], [0.0, np.nan, 1.0]):
        with pytest.raises(ValueError, match="must be integer class indices"):
            as_labels(np.array(bad), 3)
    with pytest.raises(ValueError, match="class indices >= 0, got minimum -1"):
        as_labels(np.array([0, -1, 1]), 3)


class _ArrayLike:
    """An array-like with a ``cpu`` method but no ``detach`` (as some other frameworks'
    tensors): it is read through ``__array__``, not as a torch tensor."""

    def __init__(self, values):
        self.values = np.asarray(values)

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)

    def cpu(self):
        raise AssertionError("not a torch tensor: cpu() must not be called")


def test_array_likes_that_are_not_torch_tensors_are_read_as_arrays():
    from evaluation.inputs import as_labels

    np.testing.assert_array_equal(as_features(_ArrayLike([[1.0, 2.0]])), [[1.0, 2.0]])
    np.testing.assert_array_equal(as_labels(_ArrayLike([0, 2]), 2), [0, 2])


def test_features_come_back_as_contiguous_arrays_of_the_requested_dtype():
    x = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]  # a strided view
    got = as_features(x)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, [[0, 2], [4, 6], [8, 10]])
    assert as_features(np.ones((2, 2), dtype=np.int32), dtype=None).dtype == np.float64
    for empty in (np.zeros((0, 3)), np.zeros((3, 0)), np.zeros((0, 3), dtype=np.float32)):
        with pytest.raises(ValueError, match="is empty"):
            as_features(empty)


def test_a_positive_int_is_a_python_int():
    import json

    got = positive_int(np.int64(4), "k")
    assert type(got) is int and json.dumps({"k": got}) == '{"k": 4}'  # numpy ints are not JSON
