"""Information measures on odd but legitimate inputs: constant variables, data at the edge of
the float range, keyword types. References are exact identities of the measures."""

import warnings

import numpy as np
import pytest
import torch

import entropylib

#: methods estimating information as entropy differences (every method with a joint entropy)
DIFFERENCE = sorted(name for name, info in entropylib.methods().items() if info["joint"])
TIES = ("raise", "jitter", "floor")


def correlated(n=300, d=3, rho=0.6, seed=0):
    cov = np.full((d, d), rho) + (1 - rho) * np.eye(d)
    return np.random.default_rng(seed).multivariate_normal(np.zeros(d), cov, size=n)


@pytest.mark.parametrize("method", DIFFERENCE)
@pytest.mark.parametrize("ties", TIES)
def test_a_constant_column_adds_no_information(method, ties):
    """(X, c) is a one-to-one function of X, so a constant column changes no information
    measure, and a constant variable shares none: I(c; Y) = 0, I(X; Y | c) = I(X; Y). The
    entropy differences took -inf - (-inf) = NaN silently (ties "jitter" / "floor") or raised
    that the entropy is -inf (ties "raise")."""
    xyz = correlated()
    x, y, z = xyz[:, :1], xyz[:, 1:2], xyz[:, 2:]
    const = np.full((xyz.shape[0], 1), 2.5)
    mi = entropylib.mutual_information(x, y, method, ties=ties)
    assert entropylib.mutual_information(const, y, method, ties=ties) == 0.0
    assert entropylib.mutual_information(np.hstack([x, const]), y, method, ties=ties) == (
        pytest.approx(mi, rel=1e-12))
    assert entropylib.conditional_mutual_information(x, y, const, method, ties=ties) == (
        pytest.approx(mi, rel=1e-12))
    assert entropylib.conditional_mutual_information(const, y, z, method, ties=ties) == (
        pytest.approx(0.0, abs=1e-12))
    tc = entropylib.total_correlation(xyz, method, ties=ties)
    with_const = np.hstack([xyz[:, :1], const, xyz[:, 1:]])
    assert entropylib.total_correlation(with_const, method, ties=ties) == pytest.approx(
        tc, rel=1e-12)
    grouped = entropylib.total_correlation(with_const, method, groups=[[0, 1], [2, 3]],
                                           ties=ties)
    assert grouped == pytest.approx(entropylib.total_correlation(
        xyz, method, groups=[[0], [1, 2]], ties=ties), rel=1e-12)


def test_a_constant_column_keeps_the_gradient_of_the_others():
    xy = torch.from_numpy(correlated(d=2)).requires_grad_()
    const = torch.full((xy.shape[0], 1), 1.0, dtype=xy.dtype)
    mi = entropylib.mutual_information(torch.hstack([xy[:, :1], const]), xy[:, 1:], "gaussian")
    mi.backward()
    assert torch.isfinite(xy.grad).all() and xy.grad.abs().sum() > 0


KSG_CASES = [("mutual_information", "ksg1"), ("mutual_information", "ksg2"),
             ("total_correlation", "ksg1"), ("total_correlation", "ksg2"),
             ("conditional_mutual_information", "ksg1")]


def ksg_measure(measure, xyz, method, backend):
    f = getattr(entropylib, measure)
    if measure == "total_correlation":
        return f(xyz, method, backend=backend)
    variables = [xyz[:, :1], xyz[:, 1:2], xyz[:, 2:]][: 3 if "conditional" in measure else 2]
    return f(*variables, method, backend=backend)


@pytest.mark.parametrize(("measure", "method"), KSG_CASES)
@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("exponent", [1023, -1062])
def test_ksg_at_the_ends_of_the_float_range(measure, method, backend, exponent):
    """KSG counts are invariant under one power-of-2 scale of every coordinate. Near the
    largest float64 (|x| up to 1.7e308, differences beyond it) the KD-tree's distances
    overflowed ("Encountering floating point overflow. The value of p too large for this
    dataset"). Data in (-2, 2), quantized to 2^-10 so that the subnormal copy holds the same
    values."""
    xyz = correlated()
    xyz = np.round(xyz / np.abs(xyz).max() * 1.99 * 2**10) / 2**10
    expected = ksg_measure(measure, xyz, method, backend)
    scaled = np.ldexp(xyz, exponent)
    assert np.array_equal(np.ldexp(scaled, -exponent), xyz)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ksg_measure(measure, scaled, method, backend) == expected


@pytest.mark.parametrize("groups", [
    [np.array([0]), np.array([1, 2])],
    [np.arange(1), np.arange(1, 3)],
    ([np.int64(0)], (np.int32(1), 2)),
    [range(1), range(1, 3)],
])
def test_groups_as_numpy_arrays_and_sequences(groups):
    """A group given as a numpy array (np.flatnonzero, np.arange) was refused with "each group
    must be a non-empty list of column indices in [0, 3), got array([0])"."""
    xyz = correlated()
    expected = entropylib.total_correlation(xyz, groups=[[0], [1, 2]])
    assert entropylib.total_correlation(xyz, groups=groups) == expected


@pytest.mark.parametrize("group", [np.array([[0]]), np.array([0.0]), np.array([True]),
                                   np.array([], dtype=int), "0", 0])
def test_groups_that_are_not_index_lists_are_refused(group):
    with pytest.raises(ValueError, match="each group must be a non-empty list of column"):
        entropylib.total_correlation(correlated(), groups=[group, [1, 2]])


@pytest.mark.parametrize("ties", ["jitter", "floor"])
@pytest.mark.parametrize("to_torch", [False, True])
def test_two_degenerate_entropy_terms_raise_instead_of_nan(ties, to_torch):
    """With n <= d the Gaussian entropy of a joint sample is -inf (a warning under these
    policies); a measure holding two such terms was -inf - (-inf) = NaN, returned with only
    numpy's "invalid value encountered in scalar subtract"."""
    data = np.random.default_rng(0).normal(size=(4, 5))
    data = torch.from_numpy(data) if to_torch else data
    calls = [
        lambda: entropylib.conditional_mutual_information(data[:, :2], data[:, 2:3],
                                                          data[:, 3:], "gaussian", ties=ties),
        lambda: entropylib.mutual_information(data[:, :4], data[:, 4:], "gaussian", ties=ties),
        lambda: entropylib.total_correlation(data, "gaussian", groups=[[0, 1, 2, 3], [4]],
                                             ties=ties),
    ]
    for call in calls:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the -inf entropies' warnings
            with pytest.raises(ValueError, match="undefined: two or more of its entropy terms"):
                call()


def test_one_degenerate_term_is_infinite_information():
    """Only the joint term degenerate: y is an exact function of x in the sample, +inf."""
    x = np.random.default_rng(1).normal(size=(50, 2))
    with pytest.warns(RuntimeWarning, match="singular"):
        mi = entropylib.mutual_information(x, x[:, :1] + x[:, 1:], "gaussian", ties="floor")
    assert mi == np.inf


def test_errors_name_the_variable_at_fault():
    """Every variable was checked as "x": mutual_information(x, y) with a complex y said
    "x is complex", an empty z "x is empty", and an infinite y "y: x has infinite values"."""
    x = correlated(n=50, d=1)
    cases = [
        (lambda: entropylib.mutual_information(x, x + 1j), TypeError, "^y is complex"),
        (lambda: entropylib.mutual_information(x[:, :, None], x), ValueError,
         r"^x must be 1-D \(n,\) or 2-D"),
        (lambda: entropylib.conditional_mutual_information(x, x, np.empty((50, 0))),
         ValueError, r"^z is empty \(shape \(50, 0\)\)"),
        (lambda: entropylib.mutual_information(x, np.where(x > 1, np.inf, x)), ValueError,
         r"^y has infinite values in column\(s\) \[0\]"),
        (lambda: entropylib.mutual_information(x, "abc"), TypeError,
         "^y must be an array of real numbers"),
        (lambda: entropylib.total_correlation(np.hstack([x, x + np.inf])), ValueError,
         r"^variable 1 has infinite values"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()
