"""Numba kernel of the exact Gaussian KDE: log of the kernel sums at every sample.

Imported lazily by :mod:`entropylib.kde` (the numba backend), so ``import entropylib`` compiles
nothing. The maths is documented in :func:`entropylib.kde.log_kernel_sums`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Below this the plain sum of exp(-r/2) may have lost digits to underflow: redo that row with
# the largest term factored out (an exact logsumexp). Only leave-one-out sums can get here.
_UNDERFLOW = 1e-250


@njit(parallel=True, cache=True)
def log_kernel_sums(z: np.ndarray, loo: bool, chunks: int) -> np.ndarray:  # pragma: no cover
    n, d = z.shape
    # Each pair's exp is computed once and credited to both rows (half the work of a row-wise
    # loop); each of the `chunks` parallel tasks has its own accumulator row, so no write
    # races. Rows p and n-1-p go together (n - 1 pair terms each) and are dealt out in turn,
    # which keeps the tasks balanced.
    partial = np.zeros((chunks, n))
    for t in prange(chunks):
        for p in range(t, (n + 1) // 2, chunks):
            for q in range(2):
                i = p + q * (n - 1 - 2 * p)
                if q == 1 and i == p:
                    break
                s = 0.0
                for j in range(i + 1, n):
                    r = 0.0
                    for c in range(d):
                        u = z[i, c] - z[j, c]
                        r += u * u
                    e = np.exp(-0.5 * r)
                    s += e
                    partial[t, j] += e
                partial[t, i] += s
    sums = partial.sum(axis=0)
    out = np.empty(n)
    for i in prange(n):
        if not loo:
            out[i] = np.log(sums[i] + 1.0)  # the j = i term exp(0)
        elif sums[i] >= _UNDERFLOW:
            out[i] = np.log(sums[i])
        else:
            out[i] = _shifted_log_sum(z, i)
    return out


@njit(cache=True)
def _shifted_log_sum(z: np.ndarray, i: int) -> float:  # pragma: no cover (compiled)
    """log sum_{j != i} exp(-r_ij / 2) with the largest term factored out."""
    n, d = z.shape
    r = np.empty(n)
    for j in range(n):
        acc = 0.0
        for c in range(d):
            u = z[i, c] - z[j, c]
            acc += u * u
        r[j] = acc
    r[i] = np.inf
    rmin = r.min()
    s = 0.0
    for j in range(n):
        s += np.exp(-0.5 * (r[j] - rmin))
    return np.log(s) - 0.5 * rmin


@njit(parallel=True, cache=True)
def log_cross_sums(q: np.ndarray, c: np.ndarray, skip_own: bool) -> np.ndarray:  # pragma: no cover
    n, d = q.shape
    m = c.shape[0]
    out = np.empty(n)
    # two passes per row (largest term, then the shifted sum): an exact logsumexp, since
    # mirror images far from a bound may all underflow
    for i in prange(n):
        r = np.empty(m)
        for j in range(m):
            acc = 0.0
            for k in range(d):
                u = q[i, k] - c[j, k]
                acc += u * u
            r[j] = np.inf if skip_own and j % n == i else acc
        rmin = r.min()
        if rmin == np.inf:
            out[i] = -np.inf
            continue
        s = 0.0
        for j in range(m):
            s += np.exp(-0.5 * (r[j] - rmin))
        out[i] = np.log(s) - 0.5 * rmin
    return out
