"""The radix sort when exactly one key differs from all the others in one digit pass.

The sort skips a pass whose digit is the same for the whole row. A pass where all keys but one
share the digit must still run: skipping it leaves that one key ordered by the other digits
only. Random samples (as in test_numba_sort.py) never produce such rows, so they are built here
digit by digit, for every pass of both key widths, at the lengths that take the radix path.
The reference order is numpy's sort.
"""

import numpy as np
import pytest

from entropylib import numba_kernels as nk

UINT = {np.float32: np.uint32, np.float64: np.uint64}


def one_odd_digit(dtype: type, n: int, p: int, seed: int) -> np.ndarray:
    """n positive floats in [1, 2) whose digit p (of the radix sort's width) is one constant
    for all but one value, which has another digit there (and may then leave [1, 2))."""
    bits = nk.RADIX_BITS[np.dtype(dtype).itemsize]
    uint = UINT[dtype]
    rng = np.random.default_rng(seed)
    x = rng.uniform(1.0, 2.0, n).astype(dtype)
    keys = x.view(uint)
    shift = uint(p * bits)
    mask = uint((1 << bits) - 1) << shift
    shared = keys[0] & mask
    keys &= ~mask
    keys |= shared
    odd = rng.integers(n)
    # the odd digit: any other value of the digit that keeps the float finite and positive
    for digit in rng.permutation(1 << bits):
        candidate = (keys[odd] & ~mask) | (uint(digit) << shift)
        value = np.array([candidate], uint).view(dtype)[0]
        if candidate & mask != shared and np.isfinite(value) and value > 0:
            keys[odd] = candidate
            break
    else:
        raise AssertionError("no finite odd digit")
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [nk.RADIX_MIN_N, 5000])
def test_one_key_with_its_own_digit_is_sorted_in_every_pass(dtype, n):
    bits = nk.RADIX_BITS[np.dtype(dtype).itemsize]
    npass = -(-8 * np.dtype(dtype).itemsize // bits)
    for p in range(npass):
        for seed in range(3):
            x = one_odd_digit(dtype, n, p, seed)
            keys = x.view(UINT[dtype])
            digits = (keys >> UINT[dtype](p * bits)) & UINT[dtype]((1 << bits) - 1)
            assert np.unique(digits, return_counts=True)[1].min() == 1  # the case under test
            got = nk._sorted_rows(x[:, None])
            np.testing.assert_array_equal(got[0], np.sort(x), strict=True, err_msg=f"pass {p}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_outlier_of_another_exponent_or_sign(dtype):
    """The motivating rows: one value far out, or one negative value, among 2,048 or more."""
    rng = np.random.default_rng(0)
    for n in (nk.RADIX_MIN_N, 3001):
        for outlier in (1e30, 3.0, 1e-30, -1.5, -1e30):
            # [1, 1.5): the top digit (sign, exponent and, for float32, the first mantissa
            # bit) is the same for all but the outlier
            x = rng.uniform(1.0, 1.5, n).astype(dtype)
            x[rng.integers(n)] = outlier
            x[rng.integers(n)] = dtype(1.0) + np.finfo(dtype).eps  # a low-digit neighbour
            got = nk._sorted_rows(np.stack([x, x[::-1]], axis=1))
            np.testing.assert_array_equal(got, np.sort(np.stack([x, x[::-1]]), axis=1), strict=True)
