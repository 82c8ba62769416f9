"""Numba backend of the spacing estimators: fused, parallel kernels over sorted columns.

The columns of the (n, d) float32/float64 input are first copied into the rows of a (d, n)
array and sorted in place: columns of ``RADIX_MIN_N`` values or more by an LSD radix sort on
order-preserving integer keys (2.5x to 3x faster than numpy's sort on one column of 10^5),
shorter ones by numpy's vectorised sort (faster there, and about three times faster than the
quicksort numba compiles). Sorted values do not depend on the sort, so neither do the
estimates, bit for bit. Blocks of columns are transposed and sorted in threads, as the numba
transpose and both sorts release the GIL. One numba kernel per estimator then
forms the spacings in the input dtype (so ties and the ``ties="floor"`` floor are decided
exactly as in :mod:`entropylib.spacings`) and accumulates their logarithms in float64 (one
log per product of four terms), in one pass over (column, chunk of ``CHUNK`` indices) work
items, with ``prange`` from ``PARALLEL_SIZE`` values on (a serial build of the same code
below). The chunking depends on n only, so results depend neither on d nor on the thread
count, and a single long column is spread over the threads too. The formulas are those of
:mod:`entropylib.spacings`, documented there with their references; this module is a fast path
that is imported (and compiled, then cached on disk) the first time the numba backend is used,
never by ``import entropylib``.

Tie policies: every kernel counts the zero gaps of each column; the wrappers raise the same
ValueError as the numpy/torch path when any remain under ``ties="raise"`` or ``"jitter"``
(``estimate`` has dequantized the data already under "jitter"). Under ``"floor"`` a gap at or
below ``finfo(dtype).eps * (max - min)`` of its column is replaced by that floor, and the
count is of floored gaps (for `estimate`'s warning, see :mod:`entropylib.validation`).

Correa's estimator needs, for every i, the mean, the rank covariance and the variance of the
window of 2m + 1 order statistics around i. Instead of O(m) work per i, the kernel slides the
three window sums, kept relative to an anchor to avoid cancellation, and recomputes them
directly (two-pass, as scipy) whenever a first-order bound on the accumulated rounding error
exceeds ``CORREA_REL_TOL`` of the quantities that enter the logarithm. That keeps each log
term within a few 1e-11 of the direct formula in the worst case (far less in practice) while
doing O(n) work on smooth data.

Examples
--------
>>> import numpy as np, entropylib
>>> x = np.random.default_rng(0).normal(size=(4096, 8))
>>> fast = entropylib.estimate(x, "correa", backend="numba")
>>> bool(np.allclose(fast, entropylib.estimate(x, "correa", backend="numpy"), atol=1e-12))
True
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit, prange

from entropylib import threads, validation
from entropylib.spacing_bias import m_spacing_uniform_bias, vasicek_uniform_bias

#: worst-case relative error allowed in Correa's window sums before they are recomputed
CORREA_REL_TOL = 2e-11
#: indices per work item of the kernels (a column of n values gives ceil(n / CHUNK) items)
CHUNK = 4096
#: sort in threads, and run the parallel kernel, only from this many values on: below it the
#: threads cost more than they save, and far more on a machine whose cores are all busy
PARALLEL_SIZE = 262_144
#: columns of at least this many values are sorted by the radix sort below instead of numpy's
#: sort. Measured on a 2-core AVX-512 machine, transposing and sorting 2^21 values in threads:
#: n = 1024 numpy faster (float64 1.07x, float32 1.3x); n = 2048 radix faster (float64 1.2x,
#: float32 1.04x), and more so as n grows (one column of 10^5 float64: 2.5x to 3x)
RADIX_MIN_N = 2048
#: digit width of the radix sort per key width: 8 passes of 8 bits for float64 (11-bit digits
#: fall out of cache from n ~ 10^6 on), 3 passes of 11 bits for float32 (both measured fastest)
RADIX_BITS = {8: 8, 4: 11}


@njit(cache=True)
def _floor(row, floor_ties, eps_dtype):
    """The ``ties="floor"`` gap floor of a sorted column, in its dtype (0 when unused)."""
    if floor_ties:
        return (row[row.shape[0] - 1] - row[0]) * eps_dtype
    return row[0] - row[0]


@njit(cache=True)
def _add_log(acc, buf, k, term):
    """Add log(term) to acc, four terms at a time: one log of their product when the product
    is safely within the normal range (else four logs). Returns (acc, terms buffered)."""
    buf[k] = term
    if k < 3:
        return acc, k + 1
    p12 = buf[0] * buf[1]
    p34 = buf[2] * buf[3]
    if 1e-150 < p12 < 1e150 and 1e-150 < p34 < 1e150:
        return acc + np.log(p12 * p34), 0
    for j in range(4):
        acc += np.log(buf[j])
    return acc, 0


@njit(cache=True)
def _flush_logs(acc, buf, k):
    for j in range(k):
        acc += np.log(buf[j])
    return acc


@njit(cache=True)
def _m_spacing_chunk(row, m, eps, floor_ties, eps_dtype, lo, hi):
    """Sum over i in [lo, hi) of log((n+1)/m * gap_i + eps) and the count of zero gaps."""
    n = row.shape[0]
    scale = (n + 1) / m
    fl = _floor(row, floor_ties, eps_dtype)
    acc = 0.0
    z = 0
    buf = np.empty(4)
    k = 0
    for i in range(lo, hi):
        g = row[i + m] - row[i]
        if floor_ties and g <= fl:  # under "floor", z counts the floored gaps
            g = fl
            z += 1
        elif g <= 0:
            z += 1
        acc, k = _add_log(acc, buf, k, scale * np.float64(g) + eps)
    return _flush_logs(acc, buf, k), z


@njit(cache=True)
def _two_sided_chunk(row, m, ebrahimi, floor_ties, eps_dtype, lo, hi):
    """Vasicek (``ebrahimi=False``) or Ebrahimi log terms over [lo, hi), padded gaps."""
    n = row.shape[0]
    fl = _floor(row, floor_ties, eps_dtype)
    acc = 0.0
    z = 0
    buf = np.empty(4)
    k = 0
    for i in range(lo, hi):
        g = row[min(i + m, n - 1)] - row[max(i - m, 0)]
        if floor_ties and g <= fl:  # under "floor", z counts the floored gaps
            g = fl
            z += 1
        elif g <= 0:
            z += 1
        if ebrahimi:
            if i + 1 <= m:
                ci = 1.0 + i / m
            elif i + 1 >= n - m + 1:
                ci = 1.0 + (n - i - 1) / m
            else:
                ci = 2.0
            acc, k = _add_log(acc, buf, k, n * np.float64(g) / (ci * m))
        else:
            acc, k = _add_log(acc, buf, k, n / (2 * m) * np.float64(g))
    return _flush_logs(acc, buf, k), z


@njit(cache=True)
def _correa_direct(row, i, m):
    """Window sums at i of a sorted row relative to the window mean: (mean, S0, S1, S2)."""
    n = row.shape[0]
    width = 2 * m + 1
    total = 0.0
    for k in range(-m, m + 1):
        total += row[min(max(i + k, 0), n - 1)]
    mean = total / width
    s0 = 0.0
    s2 = 0.0
    for k in range(-m, m + 1):
        v = row[min(max(i + k, 0), n - 1)] - mean
        s0 += v
        s2 += v * v
    # sum_k k (w_k - mean) written as sum_{k>0} k (w_k - w_-k): every term >= 0 on sorted data
    s1 = 0.0
    for k in range(1, m + 1):
        s1 += k * (row[min(i + k, n - 1)] - row[max(i - k, 0)])
    return mean, s0, s1, s2


@njit(cache=True)
def _correa_chunk(row, m, rel_tol, lo, hi):
    """Sum over i in [lo, hi) of log(slope_i / (n var_i)), sliding the window sums."""
    n = row.shape[0]
    width = 2 * m + 1
    eps = np.finfo(np.float64).eps
    acc = 0.0
    z = 0
    start = lo  # index at which the sums were last computed directly
    anchor, s0, s1, s2 = _correa_direct(row, start, m)
    for i in range(lo, hi):
        if i > start:
            out_v = row[max(i - m - 1, 0)] - anchor
            in_v = row[min(i + m, n - 1)] - anchor
            s0 = s0 - out_v + in_v
            s1 = s1 + m * out_v + (m + 1) * in_v - s0
            s2 = s2 - out_v * out_v + in_v * in_v
        first = row[max(i - m, 0)]
        last = row[min(i + m, n - 1)]
        if last <= first:  # the whole window is one tied value: slope 0 / variance 0
            z += 1
            continue
        var = s2 - s0 * s0 / width
        # sorted data: the largest |value - anchor| seen since the anchor is at an end
        vmax = max(abs(row[max(start - m, 0)] - anchor), abs(last - anchor))
        steps = i - start
        err_var = 3.0 * (4 * steps + width) * eps * (width + 1) * vmax * vmax
        err_cov = (4 * steps + width) * eps * (m + 2) * (m + 2) * vmax
        if i > start and (err_var > rel_tol * var or err_cov > rel_tol * s1):
            anchor, s0, s1, s2 = _correa_direct(row, i, m)
            start = i
            var = s2 - s0 * s0 / width
        acc += np.log(s1 / (n * var))
    return acc, z


@njit(cache=True)
def _chunk(kind, s, m, eps, floor_ties, eps_dtype, t, nchunks, count):
    """Work item t: one chunk of one column, for estimator ``kind`` (see ``_KINDS``)."""
    j = t // nchunks
    lo = (t % nchunks) * CHUNK
    hi = min(lo + CHUNK, count)
    if kind == 0:
        return _m_spacing_chunk(s[j], m, eps, floor_ties, eps_dtype, lo, hi)
    if kind == 3:
        return _correa_chunk(s[j], m, eps, lo, hi)
    return _two_sided_chunk(s[j], m, kind == 2, floor_ties, eps_dtype, lo, hi)


@njit(parallel=True, cache=True)
def _run_parallel(kind, s, m, eps, floor_ties, eps_dtype, count, part, zpart):
    nchunks = part.shape[1]
    for t in prange(part.size):
        acc, z = _chunk(kind, s, m, eps, floor_ties, eps_dtype, t, nchunks, count)
        part[t // nchunks, t % nchunks] = acc
        zpart[t // nchunks, t % nchunks] = z


@njit(cache=True)
def _run_serial(kind, s, m, eps, floor_ties, eps_dtype, count, part, zpart):
    nchunks = part.shape[1]
    for t in range(part.size):
        acc, z = _chunk(kind, s, m, eps, floor_ties, eps_dtype, t, nchunks, count)
        part[t // nchunks, t % nchunks] = acc
        zpart[t // nchunks, t % nchunks] = z


_KINDS = {"m_spacing": 0, "vasicek": 1, "ebrahimi": 2, "correa": 3}


def _run(name: str, x: np.ndarray, m: int, eps: float, ties: str) -> np.ndarray:
    """Sort, run the kernel of ``name`` over every (column, chunk), apply the tie policy.

    ``eps`` is the m-spacing constant for "m_spacing" and the re-anchoring tolerance for
    "correa". Returns the per-column means of the log terms (float64).
    """
    s = _sorted_rows(x)
    if name == "correa":  # the window sums are accumulated in float64 whatever the dtype
        s = s.astype(np.float64, copy=False)
    d, n = s.shape
    count = n - m if name == "m_spacing" else n
    nchunks = -(-count // CHUNK)
    part = np.empty((d, nchunks))
    zpart = np.empty((d, nchunks), dtype=np.int64)
    parallel = s.size >= PARALLEL_SIZE and threads.available() > 1
    eps_dtype = s.dtype.type(np.finfo(s.dtype).eps)
    args = (_KINDS[name], s, m, float(eps), ties == "floor", eps_dtype, count, part, zpart)
    if parallel:
        with threads.numba_threads(threads.available()):
            _run_parallel(*args)
    else:
        _run_serial(*args)
    what = "windows of tied values" if name == "correa" else "spacings"
    validation.check_zero_counts(zpart.sum(axis=1), ties, what, total=count)
    # chunk sums added in chunk order: the same for every d and thread count
    total = np.zeros(d)
    for c in range(nchunks):
        total += part[:, c]
    return total / count


@njit(cache=True, nogil=True)
def _transpose_into(x, out, j0, j1):
    """out[j, i] = x[i, j] for columns j0 <= j < j1, in cache-sized tiles."""
    n = x.shape[0]
    tile = 32
    for jt in range(j0, j1, tile):
        for it in range(0, n, tile):
            for i in range(it, min(it + tile, n)):
                for j in range(jt, min(jt + tile, j1)):
                    out[j, i] = x[i, j]


@njit(cache=True, nogil=True)
def _radix_sort_rows(keys, bits):
    """Sort each row of ``keys`` (d, n) in place, a float row viewed as unsigned integers.

    LSD radix sort on order-preserving keys: a negative float gets all its bits flipped, a
    non-negative one its sign bit set, so that unsigned order is float order (-0.0 just below
    0.0, which leaves every gap between the two +0.0, as numpy's order may too: a zero gap
    either way). One pass counts the digits of every pass; a pass whose digit is the same for
    the whole row is skipped; stable scatters ping-pong between the row and one buffer; the
    last pass maps the keys back to the floats' bits.
    """
    d, n = keys.shape
    width = 8 * keys.itemsize
    npass = -(-width // bits)
    nb = 1 << bits
    mask = keys.dtype.type(nb - 1)
    sign = keys.dtype.type(1) << keys.dtype.type(width - 1)
    tmp = np.empty(n, keys.dtype)
    counts = np.empty((npass, nb), np.int64)
    for j in range(d):
        row = keys[j]
        counts[:] = 0
        for i in range(n):
            u = row[i]
            u = ~u if u & sign else u | sign
            row[i] = u
            for p in range(npass):
                counts[p, np.intp((u >> keys.dtype.type(p * bits)) & mask)] += 1
        src = row
        dst = tmp
        for p in range(npass):
            c = counts[p]
            first = 0
            while c[first] == 0:
                first += 1
            if c[first] == n:  # every key has this digit: the pass would copy the row as is
                continue
            total = 0
            for b in range(nb):
                size = c[b]
                c[b] = total
                total += size
            shift = keys.dtype.type(p * bits)
            for i in range(n):
                u = src[i]
                b = np.intp((u >> shift) & mask)
                dst[c[b]] = u
                c[b] += 1
            src, dst = dst, src
        for i in range(n):
            u = src[i]
            row[i] = u ^ sign if u & sign else ~u


def _sort_rows(rows: np.ndarray) -> None:
    """Sort the rows of a C-contiguous float32/float64 (d, n) array in place (releases the GIL).

    Rows of at least ``RADIX_MIN_N`` values go through :func:`_radix_sort_rows`, shorter ones
    through numpy's sort, whichever measured faster (see ``RADIX_MIN_N``).
    """
    if rows.shape[1] < RADIX_MIN_N:
        rows.sort(axis=1)
        return
    keys = rows.view(np.uint64 if rows.dtype == np.float64 else np.uint32)
    _radix_sort_rows(keys, RADIX_BITS[rows.itemsize])


def _sorted_rows(x: np.ndarray) -> np.ndarray:
    """The columns of x (n, d), sorted, as the rows of a new C-contiguous (d, n) array."""
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"the numba kernels take float32 or float64 arrays, got {x.dtype}")
    n, d = x.shape
    rows = np.empty((d, n), dtype=x.dtype)

    def transpose_and_sort(j0: int, j1: int) -> None:
        _transpose_into(x, rows, j0, j1)  # releases the GIL, as both sorts do
        _sort_rows(rows[j0:j1])

    workers = min(threads.available(), d)
    if workers < 2 or x.size < PARALLEL_SIZE:
        transpose_and_sort(0, d)
        return rows
    bounds = np.linspace(0, d, workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(transpose_and_sort, bounds[:-1], bounds[1:]))
    return rows


def m_spacing(
    x: np.ndarray, *, m: int, eps: float = 0.0, bias_correction: bool = False, ties: str = "raise"
) -> np.ndarray:
    """Numba :func:`entropylib.spacings.m_spacing` of the columns of ``x`` (n, d)."""
    h = _run("m_spacing", x, m, eps, ties)
    if bias_correction:
        h -= m_spacing_uniform_bias(x.shape[0], m)
    return h.astype(x.dtype, copy=False)


def van_es(x: np.ndarray, *, m: int, ties: str = "raise") -> np.ndarray:
    """Numba :func:`entropylib.spacings.van_es`."""
    return m_spacing(x, m=m, bias_correction=True, ties=ties)


def vasicek(
    x: np.ndarray, *, m: int, bias_correction: bool = False, ties: str = "raise"
) -> np.ndarray:
    """Numba :func:`entropylib.spacings.vasicek`."""
    h = _run("vasicek", x, m, 0.0, ties)
    if bias_correction:
        h -= vasicek_uniform_bias(x.shape[0], m)
    return h.astype(x.dtype, copy=False)


def ebrahimi(x: np.ndarray, *, m: int, ties: str = "raise") -> np.ndarray:
    """Numba :func:`entropylib.spacings.ebrahimi`."""
    return _run("ebrahimi", x, m, 0.0, ties).astype(x.dtype, copy=False)


def correa(x: np.ndarray, *, m: int, ties: str = "raise") -> np.ndarray:
    """Numba :func:`entropylib.spacings.correa` (O(n) per column on smooth data).

    The window variances are sums of squared deviations in float64: on subnormal data they
    underflow to 0 and near 1e300 they overflow. Such columns are estimated, as in
    :func:`entropylib.estimate`, in a frame scaled by a power of 2 (exact), and the log of the
    scale is added back (H(x 2^e) = H(x) + e log 2), so that finite data give the finite
    answer on a direct call too.
    """
    lo, hi = validation.column_range(x)
    exponents = validation.frame_exponents(lo.astype(np.float64), hi.astype(np.float64),
                                           "column")
    if exponents is None:
        return (-_run("correa", x, m, CORREA_REL_TOL, ties)).astype(x.dtype, copy=False)
    h = -_run("correa", validation.to_frame(x, exponents), m, CORREA_REL_TOL, ties)
    return (h - exponents * np.log(2.0)).astype(x.dtype, copy=False)
