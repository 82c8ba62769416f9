"""kde smooths a discrete variable (class labels) into a density it does not have: the
information measures and `estimate` warn when a column has at most sqrt(n) distinct values
among its n rows, naming it, and stay silent on continuous data, rounded or not."""

import warnings

import numpy as np
import pytest

import entropylib

N = 2000


def _labelled(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x | y ~ N(2y, 1), y in {0, 1} equiprobable: I(X; Y) = 0.337 nats."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return rng.normal(2.0 * y, 1.0), y


def _silent(call):
    """The result of ``call()``, failing on any UserWarning (as under -W error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        return call()


def test_labels_warn_naming_the_variable_and_what_to_use():
    x, y = _labelled()
    with pytest.warns(UserWarning, match=r"^y has 2 distinct values among 2000 rows") as rec:
        entropylib.mutual_information(x, y, "kde")
    assert len(rec) == 1  # once, by variable: not again by each entropy term
    assert "ksg1" in str(rec[0].message)
    with pytest.warns(UserWarning, match=r"^x has 2 distinct values among 2000 rows"):
        entropylib.mutual_information(y, x, "kde")


def test_the_warning_is_an_error_under_w_error():
    x, y = _labelled(400)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with pytest.raises(UserWarning, match="looks discrete"):
            entropylib.mutual_information(x, y, "kde")


def test_a_discrete_column_of_a_multi_column_variable_is_named():
    x, y = _labelled(1000)
    other = np.random.default_rng(1).normal(size=1000)
    with pytest.warns(UserWarning, match=r"^column 1 of y has 2 distinct values among 1000 "):
        entropylib.mutual_information(x, np.column_stack([other, y]), "kde")
    with pytest.warns(UserWarning, match=r"^z has 2 distinct values"):
        entropylib.conditional_mutual_information(x, other, y, "kde")
    sample = np.column_stack([x, other, y])
    with pytest.warns(UserWarning, match=r"^variable 1 \(column 2 of x\) has 2 distinct"):
        entropylib.total_correlation(sample, "kde", groups=[[0], [1, 2]])


def test_continuous_normal_data_are_silent_and_the_same_with_labels_are_not():
    x, y = _labelled(1000)
    normal = np.random.default_rng(2).normal(size=(1000, 2))
    _silent(lambda: entropylib.mutual_information(x, normal[:, 0], "kde"))
    _silent(lambda: entropylib.conditional_mutual_information(x, *normal.T, "kde"))
    _silent(lambda: entropylib.total_correlation(np.column_stack([x, normal]), "kde"))
    _silent(lambda: entropylib.estimate(normal, "kde"))
    with pytest.warns(UserWarning, match=r"^variable 2 \(column 2 of x\) has 2 distinct"):
        entropylib.total_correlation(np.column_stack([x, normal[:, 0], y]), "kde")


def test_rounded_to_2_decimals_is_silent_though_most_rows_are_tied():
    x = np.random.default_rng(3).normal(size=N)
    rounded = np.round(x, 2)
    _, inverse, counts = np.unique(rounded, return_inverse=True, return_counts=True)
    assert (counts[inverse] > 1).mean() > 0.9  # a tied-share rule could not tell them apart
    y = x + np.random.default_rng(4).normal(size=N)
    _silent(lambda: entropylib.mutual_information(rounded, y, "kde"))
    _silent(lambda: entropylib.estimate(rounded, "kde"))
    # the same data rounded to integers (a few values, fewer than sqrt(2000) = 44.7) do warn
    levels = len(np.unique(np.round(x)))
    with pytest.warns(UserWarning, match=rf"^x has {levels} distinct values among 2000 rows"):
        entropylib.mutual_information(np.round(x), y, "kde")


def test_the_rule_is_at_most_sqrt_n_distinct_values():
    n = 400  # sqrt(n) = 20
    with pytest.warns(UserWarning, match=r"^column 0 has 20 distinct values among 400 rows"):
        entropylib.estimate(np.arange(n) % 20, "kde")
    _silent(lambda: entropylib.estimate(np.arange(n) % 21, "kde"))


def test_estimate_kde_warns_per_column_and_jointly():
    x, y = _labelled(1000)
    both = np.column_stack([x, y])
    with pytest.warns(UserWarning, match=r"^column 1 has 2 distinct values among 1000 rows"):
        entropylib.estimate(both, "kde")
    with pytest.warns(UserWarning, match=r"^column 1 has 2 distinct values") as rec:
        entropylib.estimate(both, "kde", joint=True)
    assert "ties='jitter'" in str(rec[0].message)


def test_ties_jitter_dequantizes_so_nothing_is_smoothed_wrongly():
    x, y = _labelled(1000)
    with pytest.warns(UserWarning, match="looks discrete"):
        entropylib.mutual_information(x, y, "kde", ties="raise")
    _silent(lambda: entropylib.mutual_information(x, y, "kde", ties="jitter"))
    _silent(lambda: entropylib.estimate(y, "kde", ties="jitter"))


def test_torch_tensors_warn_too_and_keep_their_gradient():
    torch = pytest.importorskip("torch")
    x, y = _labelled(500)
    xt = torch.tensor(x, requires_grad=True)
    with pytest.warns(UserWarning, match=r"^y has 2 distinct values among 500 rows"):
        mi = entropylib.mutual_information(xt, torch.tensor(y, dtype=torch.float64), "kde")
    mi.backward()
    assert torch.isfinite(xt.grad).all()
