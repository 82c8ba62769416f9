"""Bad input to `estimate` (docs/estimators.md): every row gets a clear error or policy.

Spacing methods, every backend where the row reaches the backend.
"""

import math
import re
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

import entropylib
from entropylib.spacings import m_spacing

METHODS = ("m_spacing", "vasicek", "van_es", "ebrahimi", "correa")
BACKENDS = ("numpy", "numba", "torch")


def normal(n=50, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def tied(n=60, d=3, seed=0):
    """Integer-valued data: many ties, no constant column."""
    return np.random.default_rng(seed).integers(0, 8, size=(n, d)).astype(np.float64)


# ---- NaN ----------------------------------------------------------------------------------


@pytest.mark.parametrize("to_torch", [False, True])
def test_nan_raise_names_the_column(to_torch):
    x = normal()
    x[4, 2] = np.nan
    x = torch.as_tensor(x) if to_torch else x
    with pytest.raises(ValueError, match=r"NaN values in column\(s\) \[2\].*nan_policy='omit'"):
        entropylib.estimate(x, "vasicek")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_nan_omit_and_propagate(method, backend):
    x = normal(n=60)
    x[[3, 10, 11], 1] = np.nan
    clean = entropylib.estimate(x[:, [0, 2]], method, backend=backend)
    dropped = entropylib.estimate(x[~np.isnan(x[:, 1]), 1], method, backend=backend)
    omit = entropylib.estimate(x, method, backend=backend, nan_policy="omit")
    np.testing.assert_array_equal(omit, [clean[0], dropped, clean[1]])
    prop = entropylib.estimate(x, method, backend=backend, nan_policy="propagate")
    assert np.isnan(prop[1])
    np.testing.assert_array_equal(prop[[0, 2]], clean)
    ref = stats.differential_entropy(x[:, 1], method="vasicek", nan_policy="omit")
    omitted = entropylib.estimate(x[:, 1], "vasicek", backend=backend, nan_policy="omit")
    assert abs(omitted - ref) < 1e-12


def test_nan_omit_torch_keeps_gradient_and_dtype():
    x = torch.as_tensor(normal(n=60), dtype=torch.float32)
    x[5, 0] = float("nan")
    x.requires_grad_(True)
    h = entropylib.estimate(x, "m_spacing", nan_policy="omit")
    assert h.dtype == torch.float32 and h.requires_grad
    h.sum().backward()
    assert torch.isfinite(x.grad[~torch.isnan(x.detach())]).all()
    assert x.grad[5, 0] == 0  # the omitted sample does not take part


def test_nan_omit_all_nan_column():
    x = normal()
    x[:, 1] = np.nan
    with pytest.raises(ValueError, match="column 1 is all NaN"):
        entropylib.estimate(x, "vasicek", nan_policy="omit")


def test_nan_omit_too_few_left():
    x = normal(n=12, d=1)
    x[:8, 0] = np.nan
    with pytest.raises(ValueError, match=r"needs at least 5 samples per column .* got n = 4"):
        entropylib.estimate(x, "vasicek", nan_policy="omit")


# ---- inf, empty, sizes, m ----------------------------------------------------------------


@pytest.mark.parametrize("value", [np.inf, -np.inf])
@pytest.mark.parametrize("to_torch", [False, True])
def test_inf_raises(value, to_torch):
    x = normal()
    x[7, 1] = value
    x = torch.as_tensor(x) if to_torch else x
    with pytest.raises(ValueError, match=r"infinite values in column\(s\) \[1\]; finite"):
        entropylib.estimate(x, "m_spacing")


@pytest.mark.parametrize("x", [np.zeros(0), np.zeros((0, 3)), np.zeros((5, 0)), [], torch.zeros(0)])
def test_empty_says_the_minimum_n(x):
    with pytest.raises(ValueError, match="is empty .* needs at least 5 samples"):
        entropylib.estimate(x, "vasicek")
    with pytest.raises(ValueError, match="needs at least 9 samples"):
        entropylib.estimate(x, "vasicek", m=4)


@pytest.mark.parametrize("method", METHODS)
def test_too_few_samples_for_m(method):
    with pytest.raises(ValueError, match=r"needs at least 9 samples per column .* got n = 8"):
        entropylib.estimate(normal(n=8), method, m=4)
    # default m = round(sqrt(n)) = 2 for n = 4, and 2m < n fails
    with pytest.raises(ValueError, match=r"needs at least 5 samples per column .* got n = 4"):
        entropylib.estimate(normal(n=4), method)


@pytest.mark.parametrize(
    ("m", "error", "message"),
    [
        (0, ValueError, "window m must be >= 1, got 0"),
        (-3, ValueError, "window m must be >= 1, got -3"),
        (2.0, TypeError, "window m must be a positive integer, got 2.0"),
        (True, TypeError, "window m must be a positive integer, got True"),
        ("3", TypeError, "window m must be a positive integer"),
        (25, ValueError, "needs at least 51 samples per column"),  # 2m = n
        (30, ValueError, "needs at least 61 samples per column"),  # 2m > n
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_bad_window(method, m, error, message):
    with pytest.raises(error, match=message):
        entropylib.estimate(normal(n=50), method, m=m)


def test_numpy_integer_window_accepted():
    x = normal()
    np.testing.assert_array_equal(
        entropylib.estimate(x, "vasicek", m=np.int64(4)), entropylib.estimate(x, "vasicek", m=4)
    )


def test_bad_eps():
    for eps in (-1.0, math.nan, math.inf, "1e-7"):
        with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
            entropylib.estimate(normal(), "m_spacing", eps=eps)


# ---- shape and dtype ----------------------------------------------------------------------


@pytest.mark.parametrize("x", [np.zeros((4, 4, 4)), np.float64(3.0), torch.zeros(3, 3, 3)])
def test_wrong_ndim(x):
    with pytest.raises(ValueError, match=r"must be 1-D \(n,\) or 2-D \(n, d\)"):
        entropylib.estimate(x, "vasicek")


@pytest.mark.parametrize(
    ("x", "message"),
    [
        ("abc", "x must be an array of real numbers, got str"),
        (np.array(["a", "b", "c"] * 5), "real numbers .* got dtype <U1"),
        (np.array([object()] * 15), "real numbers .* got dtype object"),
        (np.ones(15, dtype=bool), "real numbers .* got dtype bool"),
        (torch.ones(15, dtype=torch.bool), "got dtype torch.bool"),
    ],
)
def test_non_numeric(x, message):
    with pytest.raises(TypeError, match=message):
        entropylib.estimate(x, "vasicek")


def test_ragged():
    with pytest.raises(ValueError, match="rectangular array"):
        entropylib.estimate([[1.0, 2.0], [3.0]], "vasicek")


@pytest.mark.parametrize("x", [normal() + 1j, torch.as_tensor(normal() + 1j)])
def test_complex(x):
    with pytest.raises(TypeError, match="x is complex"):
        entropylib.estimate(x, "vasicek")


# ---- ties -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_ties_raise(method, backend):
    what = "windows of tied values" if method == "correa" else "spacings"
    # groups of 30 equal values: zero gaps for every window of m = round(sqrt(150)) = 12
    x = np.repeat(np.arange(5.0), 30)[:, None]
    with pytest.raises(ValueError, match=rf"column 0 has \d+ zero {what}:.*ties='jitter'"):
        entropylib.estimate(x, method, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["m_spacing", "vasicek", "van_es", "ebrahimi"])
def test_ties_floor_is_a_one_ulp_gap(method, backend):
    """A formula written here: zero spacings replaced by eps * (max - min) of the column."""
    x = np.array([0.0, 1.0, 1.0, 2.5, 3.0, 4.0, 4.0, 4.0, 6.0, 7.5, 8.0])
    with pytest.warns(RuntimeWarning, match="ties='floor' floored"):  # 9 % to 30 % floored
        got = entropylib.estimate(x, method, backend=backend, ties="floor", m=1)
    floor = np.finfo(np.float64).eps * 8.0
    s = np.sort(x)
    n, m = len(s), 1
    if method in ("m_spacing", "van_es"):
        ref = np.mean(np.log((n + 1) / m * np.maximum(s[1:] - s[:-1], floor)))
        if method == "van_es":
            ref += sum(1 / k for k in range(m, n + 1)) + math.log(m) - math.log(n + 1)
    else:
        hi = s[np.minimum(np.arange(n) + m, n - 1)]
        lo = s[np.maximum(np.arange(n) - m, 0)]
        gaps = np.maximum(hi - lo, floor)
        c = np.array([1.0] + [2.0] * (n - 2) + [1.0]) if method == "ebrahimi" else 2.0
        ref = np.mean(np.log(n * gaps / (c * m)))
    assert abs(got - ref) < 1e-12


def _duplicated(n_dup, n=10_000, seed=1):
    """N(0, 1) with n_dup values repeated once: m_spacing with m = 1 floors n_dup of n - 1."""
    x = np.random.default_rng(seed).normal(size=n)
    x[n - n_dup :] = x[:n_dup]
    return x


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("method", "joint"), [
    ("m_spacing", False), ("vasicek", False), ("ebrahimi", False), ("van_es", False),
    ("knn", False), ("knn", True),
])
def test_ties_floor_warns_when_floored_gaps_dominate(method, backend, joint):
    """N(0, 1) rounded to 0.1: under "floor" about 30 % of the Vasicek spacings are floored
    and the estimate (-7.5) is 9 nats below the true 1.42; it must not come silently."""
    x = np.round(np.random.default_rng(0).normal(size=(10_000, 2)), 1)
    x = x if joint else x[:, 1]
    with pytest.warns(RuntimeWarning, match=r"ties='floor' floored .*'jitter'") as record:
        h = entropylib.estimate(x, method, joint=joint, backend=backend, ties="floor")
    true = 0.5 * math.log(2 * math.pi * math.e) * (2 if joint else 1)
    assert h < true - 1  # the number the warning is about
    where = "the joint sample" if joint else "column(s) [0]"
    assert where in str(record[0].message)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_floor_warning_threshold(backend):
    """The rule: warn when more than FLOOR_WARN_FRACTION (0.1 %) of a column's gaps were
    floored. m = 1 spacings of n = 10^4 values with 5 duplicates: 5 / 9999 floored, silent
    (and within 0.04 nats of the tie-free sample); with 20 duplicates (0.2 %) a warning."""
    from entropylib.validation import FLOOR_WARN_FRACTION

    assert FLOOR_WARN_FRACTION == 1e-3
    few, tie_free = _duplicated(5), _duplicated(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = entropylib.estimate(np.c_[tie_free, few], "m_spacing", m=1, ties="floor",
                                backend=backend)
    assert 0 < h[0] - h[1] < 0.04
    with pytest.warns(RuntimeWarning, match=r"floored 0.2% of the spacings of column\(s\) \[1\]"):
        entropylib.estimate(np.c_[tie_free, _duplicated(20)], "m_spacing", m=1, ties="floor",
                            backend=backend)


def test_ties_floor_direct_calls_do_not_warn():
    """Training losses call the estimators directly with ties="floor": no warning there."""
    x = torch.as_tensor(np.round(np.random.default_rng(0).normal(size=(500, 3)), 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m_spacing(x, m=22, ties="floor")


def test_correa_has_no_floor_policy():
    with pytest.raises(ValueError, match=r"ties must be one of \('raise', 'jitter'\)"):
        entropylib.estimate(tied(), "correa", ties="floor")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_ties_jitter_permutation_invariant_and_seeded(method, backend):
    x = tied()
    h = entropylib.estimate(x, method, backend=backend, ties="jitter", seed=3)
    assert np.isfinite(h).all()
    perm = np.random.default_rng(9).permutation(len(x))
    np.testing.assert_array_equal(
        entropylib.estimate(x[perm], method, backend=backend, ties="jitter", seed=3), h
    )
    np.testing.assert_array_equal(
        entropylib.estimate(x, method, backend=backend, ties="jitter", seed=3), h
    )
    other = entropylib.estimate(x, method, backend=backend, ties="jitter", seed=4)
    assert not np.array_equal(other, h)
    # tie-free data are left untouched
    y = normal()
    np.testing.assert_array_equal(
        entropylib.estimate(y, method, backend=backend, ties="jitter"),
        entropylib.estimate(y, method, backend=backend),
    )


def test_jitter_noise_stays_within_the_local_resolution():
    x = np.array([0.0, 0.0, 1e-9, 5.0, 5.0, 5.0, 7.0])[:, None]
    from entropylib.validation import dequantize

    y = dequantize(x, seed=0)[:, 0]
    assert np.all(np.abs(y[:2]) < 0.5e-9)  # nearest other value is 1e-9 away
    assert y[2] == 1e-9 and y[6] == 7.0  # values that occur once are untouched
    assert np.all(np.abs(y[3:6] - 5.0) < 1.0) and len(set(y[3:6])) == 3
    assert np.array_equal(np.argsort(y[[0, 2, 3, 6]]), [0, 1, 2, 3])


def test_jitter_that_rounding_defeats_raises():
    """float32 saturated sigmoids: 19 values of 1.0 one ulp from the next distinct value."""
    z = torch.sigmoid(torch.randn(64, 5, generator=torch.Generator().manual_seed(0)) * 30)
    with pytest.raises(ValueError, match="zero spacings after ties='jitter'.*float64"):
        m_spacing(z, m=8, ties="jitter")


# ---- constant columns ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_constant_column(method, backend):
    x = normal()
    x[:, 1] = 2.5
    with pytest.raises(ValueError, match=r"column\(s\) \[1\] are constant.*-inf"):
        entropylib.estimate(x, method, backend=backend)
    for ties in entropylib.methods()[method]["ties"][1:]:
        with pytest.warns(RuntimeWarning, match=r"column\(s\) \[1\] are constant"):
            h = entropylib.estimate(x, method, backend=backend, ties=ties)
        assert h[1] == -np.inf and np.isfinite(h[[0, 2]]).all()


def test_constant_column_torch_keeps_gradient():
    x = torch.as_tensor(normal())
    x[:, 0] = 1.0
    x.requires_grad_(True)
    with pytest.warns(RuntimeWarning, match="constant"):
        h = entropylib.estimate(x, "vasicek", ties="floor")
    assert h[0] == -math.inf
    h[1:].sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[:, 0] == 0).all()


# ---- torch dtype, device, gradient ----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.int32])
def test_torch_dtype_and_device_kept(backend, dtype):
    x = torch.as_tensor(np.random.default_rng(0).permutation(200)[:150].reshape(50, 3)).to(dtype)
    h = entropylib.estimate(x, "vasicek", backend=backend)
    expected = {torch.float16: torch.float32, torch.int32: torch.float64}.get(dtype, dtype)
    assert isinstance(h, torch.Tensor) and h.dtype == expected and h.device == x.device
    assert h.shape == (3,)
    assert entropylib.estimate(x[:, 0], "vasicek", backend=backend).shape == ()


def test_estimate_keeps_gradient_and_does_not_mutate():
    x = normal()
    x0 = x.copy()
    entropylib.estimate(x, "correa", ties="jitter")
    np.testing.assert_array_equal(x, x0)
    t = torch.as_tensor(normal(), dtype=torch.float64).requires_grad_(True)
    h = entropylib.estimate(t, "ebrahimi", base=2)
    assert h.requires_grad
    h.sum().backward()
    assert torch.isfinite(t.grad).all()


def test_numpy_in_numpy_out():
    x = normal()
    assert isinstance(entropylib.estimate(x, "vasicek"), np.ndarray)
    assert isinstance(entropylib.estimate(x[:, 0], "vasicek"), np.floating)
    assert entropylib.estimate(x.astype(np.float32), "vasicek", backend="numba").dtype == np.float32


# ---- unknown names and bad options -------------------------------------------------------


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method 'scipy'; available methods: .*vasicek"):
        entropylib.estimate(normal(), "scipy")


@pytest.mark.parametrize(("name", "meant"), [
    ("spacing", "'m_spacing'"), ("Vasicek", "'vasicek'"), ("weighted-knn", "'weighted_knn'"),
    ("ksg", "'ksg1' or 'ksg2'"),  # equally close: both named
])
def test_a_misspelt_or_miscased_method_gets_the_closest_names(name, meant):
    with pytest.raises(ValueError, match=rf"unknown method '{name}' \(did you mean {meant}\?\); "
                       "available methods: "):
        entropylib.estimate(normal(), name)


def test_unknown_option():
    with pytest.raises(
        TypeError, match=r"unknown option\(s\) \['k'\]; its options are \['bias_correction', 'm'\]"
    ):
        entropylib.estimate(normal(), "vasicek", k=3)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['eps'\]"):
        entropylib.estimate(normal(), "correa", eps=1e-7)


@pytest.mark.parametrize("base", [0, -2.0, 1, 1.0, math.inf, math.nan, "2", True, np.True_,
                                  np.float32(1.0), [2.0], 2 + 0j])
def test_bad_base(base):
    with pytest.raises(ValueError, match="base must be a positive number other than 1"):
        entropylib.estimate(normal(), "vasicek", base=base)


@pytest.mark.parametrize("base", [np.float32(2), np.int64(2), np.float64(2), np.uint8(2)])
def test_numpy_scalar_base(base):
    """Any real type is a base: bits, whatever the scalar type (H_bits = H_nats / log 2)."""
    x = normal()
    expected = entropylib.estimate(x, "vasicek") / math.log(2.0)
    np.testing.assert_allclose(entropylib.estimate(x, "vasicek", base=base), expected,
                               rtol=1e-14)


@pytest.mark.parametrize("joint", ["no", "yes", 0, 1, None, [True]])
def test_joint_must_be_a_bool(joint):
    with pytest.raises(TypeError, match="joint must be True or False"):
        entropylib.estimate(normal(), "knn", joint=joint)


def test_numpy_bool_joint():
    x = normal()
    assert entropylib.estimate(x, "knn", joint=np.True_) == entropylib.estimate(x, "knn",
                                                                                 joint=True)


@pytest.mark.parametrize("backend", ["cuda", "jax", "", None])
def test_bad_backend(backend):
    with pytest.raises(ValueError, match=r"backend must be 'auto' or one of \('numpy'"):
        entropylib.estimate(normal(), "vasicek", backend=backend)


def test_bad_policies_and_joint():
    with pytest.raises(ValueError, match="nan_policy must be one of"):
        entropylib.estimate(normal(), "vasicek", nan_policy="ignore")
    with pytest.raises(ValueError, match="ties must be one of"):
        entropylib.estimate(normal(), "vasicek", ties="average")
    with pytest.raises(ValueError, match="'vasicek' is univariate and has no joint estimate"):
        entropylib.estimate(normal(), "vasicek", joint=True)


def test_registry_lists_the_spacing_backends_and_options():
    info = entropylib.methods()
    for method in METHODS:
        assert info[method]["backends"] == ("numpy", "numba", "torch")
        assert not info[method]["joint"]
    assert info["m_spacing"]["options"] == {"m": None, "eps": 0.0, "bias_correction": False}
    assert info["correa"]["ties"] == ("raise", "jitter")


def test_auto_backend_gives_the_same_numbers():
    x = normal(n=8000, d=3)  # >= NUMBA_AUTO_SIZE values: numba
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto = entropylib.estimate(x, "vasicek")
    np.testing.assert_allclose(auto, entropylib.estimate(x, "vasicek", backend="numpy"), atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["vasicek", "knn", "kde"])
def test_jitter_dequantizes_once(method, backend, monkeypatch):
    """estimate dequantizes the data, or leaves it to an implementation that does it itself,
    never both (a second pass costs a sort and changes nothing)."""
    from entropylib import validation

    calls = []
    original = validation.dequantize

    def counting(data, seed=0):
        calls.append(seed)
        return original(data, seed)

    monkeypatch.setattr(validation, "dequantize", counting)
    x = np.round(normal(n=300), 1)
    h = entropylib.estimate(x, method, backend=backend, ties="jitter", seed=7)
    assert calls == [7]
    monkeypatch.setattr(validation, "dequantize", original)
    assert np.array_equal(h, entropylib.estimate(x, method, backend=backend, ties="jitter",
                                                 seed=7))
    assert np.array_equal(h, entropylib.estimate(original(x, 7), method, backend=backend))


_ENTROPY_METHODS = {name: about for name, about in entropylib.methods().items()
                    if "entropy" in about["measures"]}


@pytest.mark.parametrize(("method", "m"), [
    (name, m) for name, about in sorted(_ENTROPY_METHODS.items())
    for m in ([None, 1, 7, 499, 500] if "m" in about.get("options", {}) else [None])
])
def test_the_empty_input_message_tells_the_truth(method, m):
    """What the empty-input error says a method needs is what estimate then accepts: the
    smallest accepted n when it says "at least n" (n - 1 refused), a refused n when it says
    "more than n"."""
    options = {} if m is None else {"m": m}
    with pytest.raises(ValueError, match="is empty") as err:
        entropylib.estimate(np.zeros(0), method, **options)
    match = re.search(r"needs (at least|more than) (\d+) samples", str(err.value))
    assert match, str(err.value)
    kind, n = match.group(1), int(match.group(2))
    rng = np.random.default_rng(0)
    if kind == "at least":
        assert np.isfinite(entropylib.estimate(rng.normal(size=n), method, **options))
        if n > 1:
            with pytest.raises(ValueError):
                entropylib.estimate(rng.normal(size=n - 1), method, **options)
    else:
        with pytest.raises(ValueError):
            entropylib.estimate(rng.normal(size=n), method, **options)


@pytest.mark.parametrize("joint", [False, True])
def test_a_row_vector_is_told_that_samples_go_along_axis_0(joint):
    """(1, n): one sample of n columns. The error said only 'needs at least 4 samples per
    column, got n = 1'; it now says how the sample is laid out."""
    x = np.random.default_rng(0).normal(size=(1, 200))
    with pytest.raises(ValueError, match=r"got n = 1; .* 200 columns.*axis 0.*transpose"):
        entropylib.estimate(x, "knn", joint=joint)


def test_no_axis_hint_when_there_are_too_few_columns_to_be_samples():
    with pytest.raises(ValueError, match=r"got n = 3$"):
        entropylib.estimate(np.random.default_rng(0).normal(size=(3, 2)), "knn")


def test_too_few_samples_under_auto_says_auto_chose_the_method():
    """method="auto" (the default) named only the method it picked ("method 'vasicek' needs
    at least 5 samples"), which the caller never wrote."""
    x = np.arange(3.0)
    with pytest.raises(ValueError, match=r"^method='auto' \(here 'vasicek'\) needs at least 5 "):
        entropylib.estimate(x)
    with pytest.raises(ValueError, match=r"^x is empty .*; method='auto' \(here 'vasicek'\)"):
        entropylib.estimate(x[:0])
    with pytest.raises(ValueError, match=r"^method 'knn' needs at least 4 "):
        entropylib.estimate(x, "knn")
