"""`estimate` on odd but legitimate inputs: array layouts and byte orders, keyword types, and
the caller's array left untouched. Every layout must give the number of the plain C-ordered
float64 array, on every backend of every entropy method."""

import os
import subprocess
import sys
import warnings

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


@pytest.mark.parametrize(("method", "backend", "joint"), CASES)
def test_data_spanning_the_float_range_warn_nothing(method, backend, joint):
    """Columns spanning almost -max..max (range beyond the largest float64) are estimated in
    a frame scaled by a power of 2; choosing that frame overflowed (2 * half the range) and
    warned "overflow encountered in multiply" to the caller, whose data are finite."""
    x = sample()
    x = x / np.abs(x).max() * 1.99  # in (-2, 2): times 2^1023 (exact) up to 1.79e308
    expected = entropylib.estimate(x, method, backend=backend, joint=joint)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = entropylib.estimate(np.ldexp(x, 1023), method, backend=backend, joint=joint)
    d = x.shape[1] if joint else 1
    np.testing.assert_allclose(h, expected + d * 1023 * np.log(2), rtol=1e-12)


@pytest.mark.parametrize("eps", [np.float32(1e-7), np.float64(1e-7), np.int64(0), 1e-7])
def test_numpy_real_eps_is_a_number(eps):
    """np.float32(1e-7) (E2MC's constant as a float32 config value) was refused: "eps must be
    a finite number >= 0, got np.float32(1e-07)"."""
    x = sample(d=1)[:, 0]
    expected = entropylib.estimate(x, "m_spacing", eps=float(eps))
    assert entropylib.estimate(x, "m_spacing", eps=eps) == expected


@pytest.mark.parametrize("eps", [True, np.True_, "1e-7", None])
def test_eps_that_is_not_a_number_is_refused(eps):
    """eps=True was taken as 1.0."""
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        entropylib.estimate(sample(), "m_spacing", eps=eps)


@pytest.mark.parametrize("method", ["m_spacing", "vasicek"])
@pytest.mark.parametrize("flag", [1, 0, "yes", "False", None, 1.0])
def test_bias_correction_must_be_a_bool(method, flag):
    """bias_correction="False" or None were taken for their truth value (a non-empty string
    corrected, None did not), with no error; loo and joint already refused such values."""
    with pytest.raises(TypeError, match="bias_correction must be True or False"):
        entropylib.estimate(sample(), method, bias_correction=flag)


@pytest.mark.parametrize("flag", [np.True_, np.False_])
def test_numpy_bools_are_flags(flag):
    x = sample()
    expected = entropylib.estimate(x, "vasicek", bias_correction=bool(flag))
    np.testing.assert_array_equal(
        entropylib.estimate(x, "vasicek", bias_correction=flag), expected)


@pytest.mark.parametrize("bounds", [(True, 10), (-10, "10"), ("-inf", "inf"), (None, 1.0)])
def test_kde_bounds_must_be_numbers(bounds):
    """bounds=(True, 10) reflected the kernels at 1.0 and ("-10", "10") were parsed as floats."""
    with pytest.raises(TypeError, match=r"bounds must be None or a pair \(lo, hi\) of numbers"):
        entropylib.estimate(sample(), "kde", bounds=bounds)


def test_kde_numpy_bounds_are_numbers():
    x = sample()
    expected = entropylib.estimate(x, "kde", bounds=(-10.0, 10.0))
    for bounds in [(np.float32(-10), np.int64(10)), np.array([-10.0, 10.0]), (-10, np.inf)]:
        got = entropylib.estimate(x, "kde", bounds=bounds)
        np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("method", [["knn"], {"knn": 3}, None, 3, entropylib.estimate])
def test_a_method_that_is_not_a_name_is_refused_clearly(method):
    """A list or dict reached the registry's dict lookup: "unhashable type: 'list'"."""
    x = sample()
    calls = [lambda: entropylib.estimate(x, method),
             lambda: entropylib.mutual_information(x[:, 0], x[:, 1], method),
             lambda: entropylib.total_correlation(x, method)]
    for call in calls:
        with pytest.raises(TypeError, match=r"method must be a method name \(str\)"):
            call()


@pytest.mark.parametrize(("seed", "error"), [(True, TypeError), (1.5, TypeError),
                                             (-1, ValueError), ("0", TypeError),
                                             (None, TypeError), ([1, 2], TypeError)])
def test_a_seed_that_is_not_a_nonnegative_integer_is_refused(seed, error):
    """seed=True seeded as 1 and None drew fresh entropy (an irreproducible estimate); 1.5
    and -1 failed inside numpy ("SeedSequence expects int", "expected non-negative integer")
    without naming the seed, and only when a tie made the jitter draw."""
    x = np.round(sample(), 1)
    calls = [lambda: entropylib.estimate(x, "vasicek", ties="jitter", seed=seed),
             lambda: entropylib.estimate(x, "knn", ties="jitter", seed=seed, backend="numba"),
             lambda: entropylib.mutual_information(x[:, 0], x[:, 1], ties="jitter", seed=seed),
             lambda: entropylib.estimate(sample(), "vasicek", seed=seed)]
    for call in calls:
        with pytest.raises(error, match="seed must be a non-negative integer"):
            call()


def test_numpy_integer_seeds_are_seeds():
    x = np.round(sample(), 1)
    expected = entropylib.estimate(x, "vasicek", ties="jitter", seed=7)
    got = entropylib.estimate(x, "vasicek", ties="jitter", seed=np.uint8(7))
    np.testing.assert_array_equal(got, expected)


def masked(seed=0):
    """A sample whose masked entries hold a wild value (1e6) that must never be used."""
    x = sample(seed=seed)
    mask = np.zeros(x.shape, dtype=bool)
    mask[[3, 40], [0, 1]] = True
    return np.ma.masked_array(np.where(mask, 1e6, x), mask=mask), x, mask


def test_masked_entries_are_missing_values():
    """np.ma.masked_array reached np.asarray, which drops the mask: the masked entries' data
    (here 1e6) were estimated as samples, a silently wrong number. They count as NaN now."""
    m, x, mask = masked()
    with pytest.raises(ValueError, match=r"NaN values in column\(s\) \[0, 1\]"):
        entropylib.estimate(m, "vasicek")
    got = entropylib.estimate(m, "vasicek", nan_policy="omit")
    expected = [entropylib.estimate(x[~mask[:, j], j], "vasicek") for j in range(2)]
    np.testing.assert_array_equal(got, expected)
    joint = entropylib.estimate(m, "knn", joint=True, nan_policy="omit")
    assert joint == entropylib.estimate(x[~mask.any(axis=1)], "knn", joint=True)
    mi = entropylib.mutual_information(m[:, 0], m[:, 1], nan_policy="omit")
    keep = ~mask.any(axis=1)
    assert mi == entropylib.mutual_information(x[keep, 0], x[keep, 1])
    assert m.data[3, 0] == 1e6 and m.mask[3, 0]  # the caller's array is untouched


def test_long_double_is_refused_with_the_conversion_to_make():
    """float128 failed deep inside with "OverflowError: (34, 'Numerical result out of
    range')" on every backend (and the Gaussian information measures)."""
    x = sample().astype(np.longdouble)
    if x.dtype.itemsize <= 8:
        pytest.skip("long double is float64 on this platform")
    for call in (lambda: entropylib.estimate(x, "vasicek"),
                 lambda: entropylib.estimate(x, "knn", joint=True, backend="numba"),
                 lambda: entropylib.mutual_information(x[:, 0], x[:, 1], "gaussian")):
        with pytest.raises(TypeError, match=r"float128.*x.astype\(np.float64\)"):
            call()


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2"])
def test_torch_float8_is_computed_in_float32(dtype):
    """float8 tensors failed in torch.aminmax ('"aminmax_cpu" not implemented for
    'Float8_e4m3fn''); like float16 they are computed and returned in float32."""
    t = torch.from_numpy(sample()).to(getattr(torch, dtype))
    h = entropylib.estimate(t, "vasicek", ties="jitter")
    expected = entropylib.estimate(t.float(), "vasicek", ties="jitter")
    assert h.dtype == torch.float32
    torch.testing.assert_close(h, expected, rtol=0, atol=0)


def test_sparse_tensors_are_refused_clearly():
    """A sparse tensor reached torch.aminmax: "Could not run 'aten::aminmax' with arguments
    from the 'SparseCPU' backend"."""
    t = torch.from_numpy(sample()).to_sparse()
    with pytest.raises(TypeError, match=r"sparse.*to_dense\(\)"):
        entropylib.estimate(t, "vasicek")


def test_auto_backend_runs_a_numpy_only_method_on_a_tensor():
    """backend="auto" chose torch for every tensor, so weighted_knn (numpy only) refused a
    tensor unless backend="numpy" was named, which the information measures then needed too;
    KSG took tensors under "auto". A tensor comes back, as with backend="numpy"."""
    x = sample(n=200, d=3)
    t = torch.from_numpy(x).requires_grad_()
    h = entropylib.estimate(t, "weighted_knn", joint=True)
    assert torch.is_tensor(h) and h.dtype == torch.float64
    assert h.item() == entropylib.estimate(x, "weighted_knn", joint=True)
    mi = entropylib.mutual_information(t[:, :1], t[:, 1:], "weighted_knn", standardize=False)
    assert mi.item() == entropylib.mutual_information(x[:, :1], x[:, 1:], "weighted_knn",
                                                      standardize=False)
    # standardized, the columns are divided by torch's and numpy's standard deviations,
    # which may differ in the last bit
    mi = entropylib.mutual_information(t[:, :1], t[:, 1:], "weighted_knn")
    assert mi.item() == pytest.approx(
        entropylib.mutual_information(x[:, :1], x[:, 1:], "weighted_knn"), rel=1e-12)


def test_kde_fft_grid_too_large_for_memory_is_refused():
    """evaluation="fft" bins the range at 32 points per bandwidth: an absolute bandwidth of
    1e-9 on N(0, 1) data asked numpy for ~2e11 grid points (1.6 TB), a MemoryError or the
    machine's OOM killer, before any message."""
    from entropylib.kde import FFT_MAX_POINTS

    x = sample(n=500, d=1)
    with pytest.raises(ValueError, match=r"evaluation='fft' would need .* grid points"):
        entropylib.estimate(x, "kde", bandwidth=1e-9, evaluation="fft")
    # the largest grid still allowed runs
    span = float(np.ptp(x))
    h = 32 * span / (FFT_MAX_POINTS // 4)
    exact = entropylib.estimate(x, "kde", bandwidth=h)
    assert entropylib.estimate(x, "kde", bandwidth=h, evaluation="fft") == pytest.approx(
        exact, abs=1e-3)


LAYOUTS = {
    "list": lambda a: a.tolist(),
    "tuple": lambda a: tuple(map(tuple, a.tolist())),
    "fortran": np.asfortranarray,
    "strided rows": lambda a: np.repeat(a, 2, axis=0)[::2],
    "transposed": lambda a: np.ascontiguousarray(a.T).T,
    "read-only": lambda a: np.lib.stride_tricks.as_strided(a, writeable=False),
    "strided tensor": lambda a: torch.from_numpy(np.ascontiguousarray(a.T)).T,
}


@pytest.mark.parametrize(("method", "backend", "joint"), CASES)
def test_every_layout_gives_the_number_of_the_contiguous_copy(method, backend, joint):
    """Lists, tuples, Fortran order, strided, transposed and read-only views and a strided
    tensor are the same sample: the same estimate, to the last bit or nearly (a different
    memory order may change the order of a sum)."""
    x = sample()
    expected = entropylib.estimate(x, method, backend=backend, joint=joint)
    for name, make in LAYOUTS.items():
        got = as_numpy(entropylib.estimate(make(x), method, backend=backend, joint=joint))
        np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13, err_msg=name)


@pytest.mark.parametrize(("method", "backend", "joint"), CASES)
def test_the_callers_array_is_never_modified(method, backend, joint):
    """Tied values with NaN, under every tie policy the method has and nan_policy="omit":
    the paths that dequantize, floor, drop and sort must work on copies."""
    x = np.round(sample(), 1)
    x[5, 1] = np.nan
    ties = entropylib.methods()[method]["ties"]
    for to_torch in (False, True):
        given = torch.from_numpy(x.copy()) if to_torch else x.copy()
        for policy in ties:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                try:
                    entropylib.estimate(given, method, backend=backend, joint=joint,
                                        ties=policy, nan_policy="omit")
                except ValueError:  # ties="raise" on tied data
                    pass
            after = given.numpy() if to_torch else given
            np.testing.assert_array_equal(after, x)


def test_a_read_only_array_on_the_torch_backend_warns_nothing():
    """torch.from_numpy on a read-only array (np.load(mmap_mode="r"), a broadcast view) warns
    "The given NumPy array is not writable, and PyTorch does not support non-writable
    tensors" to the caller. torch warns once per process, so a fresh one is used."""
    script = (
        "import warnings, numpy as np, entropylib\n"
        "warnings.simplefilter('error')\n"
        "x = np.random.default_rng(0).normal(size=(60, 2))\n"
        "x.setflags(write=False)\n"
        "entropylib.estimate(x, 'vasicek', backend='torch')\n"
        "entropylib.mutual_information(x[:, 0], x[:, 1], 'knn', backend='torch')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "error"}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("method", ["knn", "gaussian"])
def test_omitting_nan_rows_that_leave_nothing_says_so(method):
    """Every row holds a NaN: the joint estimate said "needs at least 4 samples ..., got
    n = 0" and mutual_information "x is empty (shape (0, 2))", of data the caller never
    emptied."""
    x = sample()
    x[::2, 0] = np.nan
    x[1::2, 1] = np.nan
    match = "every row holds a NaN: nothing is left after omitting NaN rows"
    with pytest.raises(ValueError, match=match):
        entropylib.estimate(x, method, joint=True, nan_policy="omit")
    with pytest.raises(ValueError, match=match):
        entropylib.mutual_information(x[:, 0], x[:, 1], method, nan_policy="omit")
    with pytest.raises(ValueError, match=match):
        entropylib.mutual_information(x[:, 0], x[:, 1], nan_policy="omit")


@pytest.mark.parametrize("method", ["gaussian", "knn", "kde", "vasicek"])
def test_the_constant_column_error_fits_every_method(method):
    """The error spoke of spacings ("every spacing is zero") for kNN, KDE and Gaussian too."""
    x = sample()
    x[:, 1] = 3.0
    with pytest.raises(ValueError, match=r"column\(s\) \[1\] are constant") as err:
        entropylib.estimate(x, method)
    assert "spacing" not in str(err.value)
