"""The numba spacing kernels read and write only inside their arrays.

Compiled numba code does not check indices: a kernel that reads one element past a buffer
usually still gives the right number (the memory there happens to be harmless) and fails
elsewhere, at random. So the kernels are run here as the Python they are written in
(``NUMBA_DISABLE_JIT=1``, in a subprocess, since numba reads it at import), where numpy raises
IndexError on any index past the end, and their estimates are compared with the numpy
backend, `entropylib.spacings`. Every path is taken: each estimator on windows at both ends of
the sample, ties under "floor", the serial and the parallel drivers, and the radix sort for
float32 and float64 keys.
"""

import textwrap

from tests.entropylib.without_jit import run_without_jit

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from numba.core import config

    assert config.DISABLE_JIT
    from entropylib import numba_kernels as nk, spacings

    rng = np.random.default_rng(0)
    KERNELS = {
        "m_spacing": (nk.m_spacing, spacings.m_spacing),
        "vasicek": (nk.vasicek, spacings.vasicek),
        "ebrahimi": (nk.ebrahimi, spacings.ebrahimi),
        "correa": (nk.correa, spacings.correa),
    }
    for n, m in [(7, 1), (7, 3), (60, 8), (301, 17)]:
        x = rng.normal(size=(n, 2))
        for name, (fast, reference) in KERNELS.items():
            if name == "m_spacing" and 2 * m >= n:
                continue
            np.testing.assert_allclose(fast(x, m=m), reference(x, m=m), rtol=0, atol=1e-12,
                                       err_msg=f"{name} n={n} m={m}")
    rounded = np.round(rng.normal(size=(200, 2)), 1)  # ties, floored
    for name in ("m_spacing", "vasicek", "ebrahimi"):
        fast, reference = KERNELS[name]
        np.testing.assert_allclose(fast(rounded, m=5, ties="floor"),
                                   reference(rounded, m=5, ties="floor"), rtol=0, atol=1e-12)
    # the parallel driver and the threaded sort, on a small sample
    nk.PARALLEL_SIZE = 1
    x = rng.normal(size=(500, 3))
    for name, (fast, reference) in KERNELS.items():
        np.testing.assert_allclose(fast(x, m=10), reference(x, m=10), rtol=0, atol=1e-12)
    # the radix sort, every pass, including one where a single key differs
    for dtype, uint in ((np.float64, np.uint64), (np.float32, np.uint32)):
        rows = rng.normal(size=(2, 2100)).astype(dtype)
        rows[1, 7] = 1e30  # the only key with this exponent
        keys = rows.copy()
        nk._radix_sort_rows(keys.view(uint), nk.RADIX_BITS[keys.itemsize])
        assert np.array_equal(keys, np.sort(rows, axis=1)), dtype
    print("ok")
    """
)


def test_kernels_stay_inside_their_arrays_and_agree_with_numpy():
    run_without_jit(SCRIPT)
