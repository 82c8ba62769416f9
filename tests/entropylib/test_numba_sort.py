"""The radix sort of the numba backend: equal to np.sort, and estimates bit-identical to the
numpy-sort path on every kind of finite input (signed zeros, subnormals, huge/tiny magnitudes,
ties). The reference order comes from numpy's sort, an independent implementation.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from entropylib import numba_kernels as nk

DTYPES = {32: np.float32, 64: np.float64}
UINT = {np.float32: np.uint32, np.float64: np.uint64}
SPECIAL = [0.0, -0.0, 1.0, -1.0]


@st.composite
def finite_arrays(draw, min_n=1, max_n=5000):
    """(d, n) arrays of finite floats: arbitrary values, or values from a small pool (ties)."""
    width = draw(st.sampled_from([32, 64]), label="width")
    dtype = DTYPES[width]
    info = np.finfo(dtype)
    values = st.floats(allow_nan=False, allow_infinity=False, width=width) | st.sampled_from(
        SPECIAL
        + [
            float(info.smallest_subnormal),
            -float(info.smallest_subnormal),
            float(info.max),
            -float(info.max),
            float(info.tiny),
            -float(info.tiny),
        ]
    )
    n = draw(st.integers(min_n, max_n), label="n")
    d = draw(st.integers(1, 3), label="d")
    if draw(st.booleans(), label="ties"):
        pool = draw(st.lists(values, min_size=1, max_size=6), label="pool")
        elements = st.sampled_from(pool)
    else:
        elements = values
    # a seeded bulk of values (fast for n in the thousands) with hypothesis-chosen elements on top
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    scale = 10.0 ** draw(st.integers(info.minexp // 4, info.maxexp // 4), label="log10 scale")
    x = (rng.standard_normal((d, n)) * scale).astype(dtype)
    if draw(st.booleans(), label="all drawn"):
        x = draw(hnp.arrays(dtype, (d, n), elements=elements, fill=elements), label="x")
    else:
        extra = draw(hnp.arrays(dtype, (d, min(n, 50)), elements=elements), label="extra")
        x[:, : extra.shape[1]] = extra
        x = x[:, rng.permutation(n)]
    return np.ascontiguousarray(x)


def radix_sorted(x: np.ndarray, bits: int) -> np.ndarray:
    out = x.copy()
    nk._radix_sort_rows(out.view(UINT[out.dtype.type]), bits)
    return out


def assert_same_sort(got: np.ndarray, x: np.ndarray) -> None:
    """got equals np.sort(x) (-0.0 == 0.0) and holds exactly x's values (bit patterns)."""
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, np.sort(x, axis=1), strict=True)
    bits = UINT[x.dtype.type]
    np.testing.assert_array_equal(np.sort(got.view(bits), axis=1), np.sort(x.view(bits), axis=1))


@given(x=finite_arrays(), bits=st.sampled_from([8, 11]))
def test_radix_sort_equals_np_sort(x, bits):
    assert_same_sort(radix_sorted(x, bits), x)


@given(x=finite_arrays(max_n=300))
def test_sorted_rows_equals_np_sort_through_radix(x):
    """The wrapper used by the kernels, with the radix sort forced on for every n."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nk, "RADIX_MIN_N", 1)
        got = nk._sorted_rows(np.ascontiguousarray(x.T))
    assert got.flags.c_contiguous
    assert_same_sort(got, x)


def test_signed_zeros_give_zero_gaps():
    """-0.0 and 0.0 are one value: every gap among them is +0.0 (never -0.0 or nonzero)."""
    x = np.array([[0.0, -0.0, 2.0, -0.0, 0.0, -3.0, -0.0]])
    got = radix_sorted(x, 8)
    zeros = got[0, 1:-1]
    assert np.all(zeros == 0.0)
    gaps = np.diff(zeros)
    assert np.all(gaps == 0.0) and not np.any(np.signbit(gaps))


def test_threaded_columns_equal_np_sort():
    """Enough values for the threaded path (blocks of columns sorted in threads)."""
    n = max(nk.RADIX_MIN_N, nk.PARALLEL_SIZE // 64)
    x = np.random.default_rng(3).standard_cauchy((n, 64))
    x[::7] = np.round(x[::7])  # ties
    assert x.size >= nk.PARALLEL_SIZE
    np.testing.assert_array_equal(nk._sorted_rows(x), np.sort(x, axis=0).T, strict=True)


def estimates(x: np.ndarray, radix_min_n: int, ties: str) -> list[np.ndarray]:
    """Every numba estimator on x, sorting by radix for columns of at least radix_min_n."""
    m = max(1, round(np.sqrt(x.shape[0])))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nk, "RADIX_MIN_N", radix_min_n)
        out = []
        for name, kw in [
            ("m_spacing", {"eps": 0.0}),
            ("m_spacing", {"eps": 1e-3}),
            ("vasicek", {}),
            ("ebrahimi", {}),
            ("correa", {}),
        ]:
            try:
                out.append(getattr(nk, name)(x, m=m, ties=ties, **kw))
            except ValueError as err:  # zero spacings under ties="raise": must match too
                out.append(str(err))
    return out


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(8, 3000),
    dtype=st.sampled_from([np.float32, np.float64]),
    ties=st.sampled_from(["floor", "raise"]),
    zeros=st.integers(0, 40),
)
def test_estimates_bit_identical_to_numpy_sort_path(seed, n, dtype, ties, zeros):
    """Radix and numpy sorts give the same estimates bit for bit, signed zeros and ties included."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2)).astype(dtype)
    idx = rng.integers(0, n, size=zeros)
    x[idx, 0] = rng.choice(np.array([0.0, -0.0], dtype=dtype), size=zeros)  # signed-zero ties
    x[idx[: zeros // 2], 1] = dtype(0.5)
    for got, want in zip(estimates(x, 1, ties), estimates(x, 10**12, ties), strict=True):
        if isinstance(want, str):
            assert got == want
        else:
            np.testing.assert_array_equal(
                np.asarray(got).view(UINT[dtype]), np.asarray(want).view(UINT[dtype])
            )
