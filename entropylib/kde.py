"""Gaussian kernel density (KDE) plug-in entropy estimator, numpy, numba and torch.

.. math::
    H = -\\frac1n \\sum_{i=1}^n \\log \\hat f(x_i), \\qquad
    \\hat f(x_i) = \\frac{1}{n} \\sum_{j} \\phi_C(x_i - x_j)
    \\quad\\text{or (leave-one-out)}\\quad \\frac{1}{n-1} \\sum_{j \\ne i} \\phi_C(x_i - x_j)

with :math:`\\phi_C` the centred normal density of covariance C (Ahmad & Lin 1976 for the
resubstitution form; Joe 1989 for leave-one-out). The kernel covariance is

- ``bandwidth="scott"``: :math:`C = h^2 \\hat\\Sigma`, :math:`h = n^{-1/(d+4)}`;
- ``bandwidth="silverman"``: :math:`h = (n (d+2) / 4)^{-1/(d+4)}`;
- a float ``h``: :math:`C = h^2 I`, an absolute bandwidth in data units;

with :math:`\\hat\\Sigma` the sample covariance (ddof = 1; the variance of the column for a
marginal estimate, the full covariance for a joint one). The data-scaled rules make the
estimate affine-equivariant, :math:`H(Ax + b) = H(x) + \\log|\\det A|`; a fixed absolute
bandwidth does not (it is the documented exception to the scale property).

Evaluation: the data are whitened by the Cholesky factor of C, so every backend computes
:math:`\\log\\sum_j \\exp(-\\lVert z_i - z_j \\rVert^2 / 2)` (:func:`log_kernel_sums`), exactly,
in O(n^2 d) time and O(block * n) memory. Leave-one-out sums are taken in log space (never as
"full sum minus the self term", which cancels to 0 for isolated points). In one dimension,
``evaluation="fft"`` bins the whitened sample linearly on a grid of spacing
1/``FFT_POINTS_PER_BANDWIDTH`` bandwidths, convolves with the sampled kernel by FFT and
interpolates back (O(n + M log M)); its error in H is of order (grid spacing / bandwidth)^2,
below 1e-4 nats on the distributions of the test suite and bounded there by 1e-3.

Boundary bias: a Gaussian kernel puts mass outside a bounded support, so H is biased upward
near edges (about +0.065 nats on U(0,1) and +0.11 on Exp(1) at n = 1000). For one-dimensional
data with known support ``bounds=(lo, hi)`` (either may be infinite) reflects the kernels at
the bounds (Schuster 1985):
``f(x) = 1/n sum_j [phi(x - x_j) + phi(x - (2 lo - x_j)) + phi(x - (2 hi - x_j))]``,
leave-one-out dropping x_i and its images. This removes the first-order bias at the
edges (the density's slope at an edge still leaves a smaller bias).

Heavy tails: a bandwidth scaled by the sample covariance is far too wide when the variance is
dominated by a few extreme values: on six Cauchy samples of n = 5000 the estimate was 0.3 to
2.5 nats too high, varying with the most extreme draws. Use a spacing or kNN estimator for
heavy-tailed data.

Ties: repeated values need no policy here (a kernel sum always has positive terms), so
``ties="raise"`` does not object to them; ``ties="jitter"`` still dequantizes, and constant
columns follow :func:`entropylib.estimate`'s rule. A discrete variable, though, is smoothed
into a density it does not have, so `estimate` and the information measures warn about a
column with at most sqrt(n) distinct values (:func:`entropylib.validation.discrete_columns`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.fft
from scipy.special import logsumexp

from entropylib import registry, threads, validation
from entropylib.gaussian import covariance_cholesky, covariance_scale_problem

BANDWIDTH_RULES = ("scott", "silverman")
EVALUATIONS = ("exact", "fft")

#: grid points per kernel standard deviation in the FFT path (its accuracy knob)
FFT_POINTS_PER_BANDWIDTH = 32
#: largest FFT grid (points) evaluation="fft" builds: 2^24 points take ~0.5 GB with the FFT's
#: work arrays; a wider range / bandwidth ratio (a tiny absolute bandwidth) is refused
FFT_MAX_POINTS = 2**24
#: leave-one-out FFT densities below this (in units of the self term) are recomputed exactly,
#: since FFT round-off and binning error are not small relative to them
_FFT_EXACT_BELOW = 1e-3
#: matrix elements one block of the exact evaluation holds at once
_BLOCK_ELEMENTS = 1 << 22


def bandwidth_factor(n: int, d: int, rule: str) -> float:
    """Scott's ``n^(-1/(d+4))`` or Silverman's ``(n (d+2) / 4)^(-1/(d+4))``.

    Examples
    --------
    >>> round(bandwidth_factor(10_000, 1, "scott"), 4)
    0.1585
    """
    if rule == "scott":
        return n ** (-1.0 / (d + 4))
    return (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))


def kde_entropy(
    x: Any,
    *,
    bandwidth: str | float = "scott",
    loo: bool = False,
    evaluation: str = "exact",
    bounds: tuple[float, float] | None = None,
    joint: bool = True,
    use_numba: bool = False,
) -> Any:
    """Gaussian-KDE entropy (nats) of a finite (n, d) numpy array or torch tensor.

    ``joint=True`` returns the entropy of the d-dimensional sample, ``joint=False`` the d
    per-column entropies. Torch input gives a differentiable result (including through the
    data-scaled bandwidth); ``use_numba`` runs the exact sums in the compiled kernel.
    ``bounds`` (one-dimensional data, exact evaluation) reflects the kernels at the support's
    ends.
    :func:`entropylib.estimate` is the usual entry point; the formula is in the module text.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(2000, 1))
    >>> h = kde_entropy(x, bandwidth="silverman")
    >>> bool(abs(float(h) - 0.5 * np.log(2 * np.pi * np.e)) < 0.05)
    True
    """
    n, d = x.shape
    torch_in = validation.is_tensor(x)
    if evaluation == "fft":
        if torch_in:
            raise ValueError(
                "evaluation='fft' runs on numpy only (it is not differentiable); use "
                "evaluation='exact' with the torch backend"
            )
        if joint and d > 1:
            raise ValueError(
                f"evaluation='fft' is one-dimensional; got a joint estimate in d = {d}: use "
                "evaluation='exact' or joint=False"
            )
    if bounds is not None:
        _check_bounds_use(x, bounds, joint, evaluation)
    args = (bandwidth, loo, evaluation, bounds, use_numba)
    if joint:
        return _entropy(x, *args)
    if torch_in:
        import torch

        return torch.stack([_entropy(x[:, j : j + 1], *args) for j in range(d)])
    return np.array([_entropy(x[:, j : j + 1], *args) for j in range(d)])


def _check_bounds_use(x: Any, bounds: tuple[float, float], joint: bool, evaluation: str):
    if joint and x.shape[1] > 1:
        raise ValueError(
            f"bounds (boundary reflection) apply to one-dimensional data; got a joint estimate "
            f"in d = {x.shape[1]}: use joint=False or drop bounds"
        )
    if evaluation != "exact":
        raise ValueError("bounds (boundary reflection) need evaluation='exact'")
    lo, hi = bounds
    below = (x < lo).any(dim=0) if validation.is_tensor(x) else (x < lo).any(axis=0)
    above = (x > hi).any(dim=0) if validation.is_tensor(x) else (x > hi).any(axis=0)
    outside = np.flatnonzero(np.asarray(below.tolist()) | np.asarray(above.tolist()))
    if outside.size:
        raise ValueError(
            f"column(s) {outside.tolist()[:10]} have samples outside bounds {tuple(bounds)}"
        )


def _entropy(x: Any, bandwidth, loo: bool, evaluation: str, bounds, use_numba: bool):
    n, d = x.shape
    z, log_det_half, to_z = _whiten(x, bandwidth)
    if evaluation == "fft":
        sums = _log_kernel_sums_fft(z[:, 0], loo)
    else:
        sums = log_kernel_sums(z, loo=loo, use_numba=use_numba)
    if bounds is not None:
        images = [2.0 * b - x for b in bounds if math.isfinite(b)]
        if images:
            centres = to_z(images[0] if len(images) == 1 else _cat(images))
            mirrored = log_cross_sums(z, centres, skip_own=loo, use_numba=use_numba)
            sums = sums.logaddexp(mirrored) if validation.is_tensor(z) else np.logaddexp(
                sums, mirrored
            )
    norm = math.log(n - 1 if loo else n) + 0.5 * d * math.log(2.0 * math.pi)
    return norm + log_det_half - sums.mean()


def _cat(parts: list[Any]) -> Any:
    if validation.is_tensor(parts[0]):
        import torch

        return torch.cat(parts)
    return np.concatenate(parts)


def _whiten(x: Any, bandwidth: str | float) -> tuple[Any, Any, Any]:
    """``z = (x - mean) L^{-T}`` with ``C = L L^T`` the kernel covariance, ``log det L``, and
    the map y -> z for other points (one dimension only, else None)."""
    n, d = x.shape
    torch_in = validation.is_tensor(x)
    mean = x.mean(dim=0) if torch_in else x.mean(axis=0)
    xc = x - mean
    if not isinstance(bandwidth, str):
        return xc / bandwidth, d * math.log(bandwidth), lambda y: (y - mean) / bandwidth
    h = bandwidth_factor(n, d, bandwidth)
    if d == 1:
        sd = h * (xc.square().sum() / (n - 1)).sqrt() if torch_in else (
            h * np.sqrt(np.square(xc).sum() / (n - 1)))
        return xc / sd, sd.log() if torch_in else np.log(sd), lambda y: (y - mean) / sd
    if n <= d:
        raise ValueError(
            f"a joint KDE with a data-scaled bandwidth needs n > d samples to estimate the "
            f"covariance, got n = {n}, d = {d}; pass a float bandwidth or more samples"
        )
    chol = covariance_cholesky((h * h / (n - 1)) * (xc.T @ xc))
    if chol is None:
        problem = covariance_scale_problem(xc, (xc.T @ xc) / (n - 1))
        if problem:
            raise ValueError(problem)
        raise ValueError(
            "the sample covariance is singular (collinear columns), so the data-scaled joint "
            "bandwidth is undefined; drop redundant columns or pass a float bandwidth"
        )
    if torch_in:
        import torch

        z = torch.linalg.solve_triangular(chol, xc.T, upper=False).T
        return z, chol.diagonal().log().sum(), None
    z = np.linalg.solve(chol, xc.T).T
    return z, np.log(np.diag(chol)).sum(), None


def log_kernel_sums(z: Any, *, loo: bool = False, use_numba: bool = False) -> Any:
    """``s_i = log sum_j exp(-||z_i - z_j||^2 / 2)`` over j (j != i if ``loo``), exactly.

    ``z`` is a finite (n, d) numpy array or torch tensor (differentiable). Memory stays
    O(block * n): numpy and torch work on blocks of rows, torch recomputes a block in the
    backward pass (activation checkpointing) instead of keeping n^2 intermediates.

    Examples
    --------
    >>> z = np.array([[0.0], [1.0]])
    >>> bool(np.allclose(log_kernel_sums(z, loo=True), [-0.5, -0.5]))
    True
    """
    if validation.is_tensor(z):
        return _log_kernel_sums_torch(z, loo)
    z64 = np.ascontiguousarray(z, dtype=np.float64)
    if use_numba:
        from entropylib import kde_kernels

        n, d = z64.shape
        count = threads.for_work(n * (n - 1) / 2 * d, threads.KDE_PARALLEL_WORK)
        with threads.numba_threads(count):
            return kde_kernels.log_kernel_sums(z64, loo, 4 * count)
    n, d = z64.shape
    block = max(1, _BLOCK_ELEMENTS // n)
    out = np.empty(n)
    for start in range(0, n, block):
        logk = _log_kernel_block(z64, start, block)
        if loo:
            own = np.arange(logk.shape[0])
            logk[own, own + start] = -np.inf
            out[start : start + block] = logsumexp(logk, axis=1)
        else:
            # the j = i term is exp(0) = 1, the largest, so the plain sum cannot underflow
            out[start : start + block] = np.log(np.exp(logk).sum(axis=1))
    return out


def _log_kernel_block(z: Any, start: int, block: int) -> Any:
    """``-||z_i - z_j||^2 / 2`` for rows i in [start, start + block) and every j."""
    rows = z[start : start + block]
    sq = None
    for c in range(z.shape[1]):
        diff = rows[:, c, None] - z[None, :, c]
        sq = diff * diff if sq is None else sq + diff * diff
    return -0.5 * sq


def _log_kernel_sums_torch(z: Any, loo: bool) -> Any:
    import torch
    from torch.utils.checkpoint import checkpoint

    n = z.shape[0]
    block = max(1, _BLOCK_ELEMENTS // n)

    def block_sums(zz: Any, start: int) -> Any:
        logk = _log_kernel_block(zz, start, block)
        if loo:
            own = torch.arange(logk.shape[0], device=zz.device)
            logk = logk.index_put((own, own + start), logk.new_tensor(-math.inf))
        return torch.logsumexp(logk, dim=1)

    parts = []
    for start in range(0, n, block):
        if z.requires_grad and torch.is_grad_enabled():
            parts.append(checkpoint(block_sums, z, start, use_reentrant=False))
        else:
            parts.append(block_sums(z, start))
    return torch.cat(parts)


def log_cross_sums(q: Any, c: Any, *, skip_own: bool = False, use_numba: bool = False) -> Any:
    """``log sum_r exp(-||q_i - c_r||^2 / 2)`` over the rows r of ``c``, exactly.

    ``c`` stacks copies of the n query points' images (row r belongs to point r mod n);
    ``skip_own`` leaves out the images of q_i itself (leave-one-out). numpy, numba or torch
    (differentiable), blocked like :func:`log_kernel_sums`.
    """
    n, m = q.shape[0], c.shape[0]
    if validation.is_tensor(q):
        return _log_cross_sums_torch(q, c, skip_own)
    q64 = np.ascontiguousarray(q, dtype=np.float64)
    c64 = np.ascontiguousarray(c, dtype=np.float64)
    if use_numba:
        from entropylib import kde_kernels

        count = threads.for_work(n * m * q.shape[1], threads.KDE_PARALLEL_WORK)
        with threads.numba_threads(count):
            return kde_kernels.log_cross_sums(q64, c64, skip_own)
    block = max(1, _BLOCK_ELEMENTS // m)
    out = np.empty(n)
    for start in range(0, n, block):
        logk = _log_cross_block(q64, c64, start, block, skip_own)
        out[start : start + block] = logsumexp(logk, axis=1)
    return out


def _log_cross_block(q: Any, c: Any, start: int, block: int, skip_own: bool) -> Any:
    n = q.shape[0]
    rows = q[start : start + block]
    sq = None
    for k in range(q.shape[1]):
        diff = rows[:, k, None] - c[None, :, k]
        sq = diff * diff if sq is None else sq + diff * diff
    logk = -0.5 * sq
    if skip_own:
        own = np.arange(rows.shape[0])
        for copy in range(c.shape[0] // n):
            if validation.is_tensor(logk):
                import torch

                idx = torch.as_tensor(own, device=logk.device)
                logk = logk.index_put((idx, idx + start + copy * n), logk.new_tensor(-math.inf))
            else:
                logk[own, own + start + copy * n] = -np.inf
    return logk


def _log_cross_sums_torch(q: Any, c: Any, skip_own: bool) -> Any:
    import torch
    from torch.utils.checkpoint import checkpoint

    block = max(1, _BLOCK_ELEMENTS // c.shape[0])

    def block_sums(qq: Any, cc: Any, start: int) -> Any:
        return torch.logsumexp(_log_cross_block(qq, cc, start, block, skip_own), dim=1)

    grad = torch.is_grad_enabled() and (q.requires_grad or c.requires_grad)
    parts = [
        checkpoint(block_sums, q, c, start, use_reentrant=False) if grad
        else block_sums(q, c, start)
        for start in range(0, q.shape[0], block)
    ]
    return torch.cat(parts)


def _log_kernel_sums_fft(z: np.ndarray, loo: bool) -> np.ndarray:
    """Linear binning + FFT convolution + linear interpolation of the 1-D kernel sums."""
    z = np.asarray(z, dtype=np.float64)
    delta = 1.0 / FFT_POINTS_PER_BANDWIDTH
    lo = z.min()
    pos = (z - lo) / delta
    size = int(pos.max()) + 2
    if size > FFT_MAX_POINTS:
        raise ValueError(
            f"evaluation='fft' would need {size:.3g} grid points ({FFT_POINTS_PER_BANDWIDTH} per "
            f"bandwidth over the sample's range), more than FFT_MAX_POINTS = {FFT_MAX_POINTS}: "
            "use evaluation='exact' or a larger bandwidth"
        )
    left = np.floor(pos).astype(np.intp)
    frac = pos - left
    counts = np.bincount(left, weights=1.0 - frac, minlength=size)
    counts += np.bincount(left + 1, weights=frac, minlength=size)
    # exp(-r^2/2) is exactly 0 in float64 beyond r = 38.6 bandwidths
    half = min(size - 1, math.ceil(39.0 / delta))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * delta) ** 2)
    conv = _convolve_same(counts, kernel)
    sums = (1.0 - frac) * conv[left] + frac * conv[left + 1]
    if not loo:
        return np.log(sums)
    # x_i's own binned mass seen through its own interpolation weights, removed exactly
    own = (1.0 - frac) ** 2 + frac**2 + 2.0 * frac * (1.0 - frac) * kernel[half + 1]
    sums = sums - own
    out = np.empty_like(sums)
    small = sums < _FFT_EXACT_BELOW
    out[~small] = np.log(sums[~small])
    for i in np.flatnonzero(small):
        others = np.delete(z, i)
        out[i] = logsumexp(-0.5 * (z[i] - others) ** 2)
    return out


def _convolve_same(counts: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``conv[a] = sum_b counts[b] kernel[half + a - b]`` for a odd-length centred kernel."""
    half = kernel.size // 2
    size = scipy.fft.next_fast_len(counts.size + kernel.size - 1, real=True)
    full = scipy.fft.irfft(scipy.fft.rfft(counts, size) * scipy.fft.rfft(kernel, size), size)
    return full[half : half + counts.size]


def _check_options(options: Mapping[str, Any], n: int) -> Mapping[str, Any]:
    bw = options["bandwidth"]
    if isinstance(bw, str):
        if bw not in BANDWIDTH_RULES:
            raise ValueError(
                f"bandwidth must be one of {BANDWIDTH_RULES} or a positive float, got {bw!r}"
            )
    elif not validation.is_real(bw):
        raise TypeError(f"bandwidth must be one of {BANDWIDTH_RULES} or a positive float, "
                        f"got {bw!r}")
    elif not (math.isfinite(bw) and bw > 0):
        raise ValueError(f"bandwidth must be a finite number > 0, got {bw!r}")
    else:
        bw = float(bw)
    if options["evaluation"] not in EVALUATIONS:
        raise ValueError(
            f"evaluation must be one of {EVALUATIONS}, got {options['evaluation']!r}"
        )
    return {**options, "bandwidth": bw, "loo": validation.check_flag("loo", options["loo"]),
            "bounds": _checked_bounds(options["bounds"])}


def _checked_bounds(bounds: Any) -> tuple[float, float] | None:
    if bounds is None:
        return None
    expected = "bounds must be None or a pair (lo, hi) of numbers with lo < hi (may be +-inf)"
    try:
        lo, hi = bounds
    except (TypeError, ValueError):
        raise TypeError(f"{expected}, got {bounds!r}") from None
    if not (validation.is_real(lo) and validation.is_real(hi)):  # not bools, not strings
        raise TypeError(f"{expected}, got {bounds!r}")
    lo, hi = float(lo), float(hi)
    if not lo < hi:
        raise ValueError(f"{expected}, got {bounds!r}")
    return lo, hi


def _impl(joint: bool, use_numba: bool):
    def run(x: Any, *, bandwidth: Any, loo: bool, evaluation: str, bounds: Any, ties: str):
        # ties need no policy here: a repeated value only adds kernel mass, never log(0)
        return kde_entropy(x, bandwidth=bandwidth, loo=loo, evaluation=evaluation,
                           bounds=bounds, joint=joint, use_numba=use_numba)

    return run


registry.register(
    registry.Method(
        name="kde",
        summary="Gaussian kernel density plug-in estimator (resubstitution or leave-one-out)",
        reference="Ahmad & Lin, A nonparametric estimation of the entropy for absolutely "
        "continuous distributions, IEEE Trans. Inf. Theory 1976; Joe, Estimation of entropy "
        "and other functionals of a multivariate density, Ann. Inst. Stat. Math. 1989",
        backends={b: _impl(False, b == "numba") for b in registry.BACKENDS},
        joint_backends={b: _impl(True, b == "numba") for b in registry.BACKENDS},
        options={"bandwidth": "scott", "loo": False, "evaluation": "exact", "bounds": None},
        min_samples=lambda options, n: 2,
        check_options=_check_options,
        smooths_ties=True,
        # data-scaled bandwidths are affine-equivariant; an absolute one fixes the frame
        scaling=lambda options, joint: "column" if isinstance(options["bandwidth"], str) else None,
    )
)
