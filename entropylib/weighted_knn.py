"""Weighted Kozachenko-Leonenko entropy estimator: lower bias in higher dimensions.

The Kozachenko-Leonenko estimate with the j-th neighbour (:mod:`entropylib.knn`),

.. math::
    \\hat H_j = \\psi(n) - \\psi(j) + \\log V_d + \\frac{d}{n} \\sum_{i=1}^{n} \\log \\rho_{i,j},

has a bias that, for a smooth density, expands in powers of the neighbour radius:
:math:`E \\hat H_j - H \\approx \\sum_l c_l \\, \\frac{\\Gamma(j + 2l/d)}{\\Gamma(j)}
\\, n^{-2l/d}`, with constants c_l that depend on the density but not on j. At d = 10 the
first term decays like n^(-1/5): on the benchmark's densities plain KL is biased by up to
+1.4 nats at n = 10^3 and +0.9 at n = 10^4. Berrett, Samworth & Yuan (2019) average the
estimates over j = 1..K with weights that sum to one and cancel those terms:

.. math::
    \\hat H_w = \\sum_{j=1}^{K} w_j \\hat H_j, \\qquad \\sum_j w_j = 1, \\qquad
    \\sum_j w_j \\frac{\\Gamma(j + 2l/d)}{\\Gamma(j)} = 0 \\quad (l = 1, \\dots, L).

They take L = floor(d / 4) (the terms that decay slower than n^(-1/2)); here
L = max(2, floor(d / 4)), and w is the minimum-norm solution over all j <= K (the average over
many neighbours keeps the variance near that of one large-k estimate). K defaults to
min(64, n // 16). Both choices come from a grid (L = 1, 2, 3; K = 16 to 128) on six densities
(Laplace, logistic, t5, lognormal, Gamma(3), Beta(3, 2) coordinates, mixed) at d = 3, 5, 10,
n = 10^3 and 10^4: L = 2 with K = 64 or 96 had the lowest RMSE relative to plain KL averaged
over the cells (0.64); at d = 5, BSY's L = 1 was at best 0.97 (n = 10^3) and 0.81 (n = 10^4),
L = 2 with K = 64 0.93 and 0.70. On four other densities (normal, t4, Gamma(2), Beta(2, 2))
it is 0.68x plain KL's RMSE at d = 5, n = 10^3, 0.40x at n = 10^4, 0.28x to 0.34x at d = 10
and 0.75x to 0.92x at d <= 3 (``benchmarks/bench_information.py``, sections choice and
entropy; docs/estimators.md, "Bias and RMSE", says why halving plain KL's RMSE at d = 5,
n = 10^3 would take a nearly efficient estimator).

Distances and unit-ball volumes as in :mod:`entropylib.knn` (``norm="max"`` or
``"euclidean"``); neighbours from scipy's KD-tree (numpy backend), on all cores from the size
set by :func:`entropylib.threads.kdtree_workers`. A zero
distance to any of the K neighbours is a tie (``ties`` policy), so repeated rows need
``ties="jitter"`` or ``"floor"`` more often than with plain KL.

Reference: Berrett, Samworth & Yuan, Efficient multivariate entropy estimation via
k-nearest neighbour distances, Ann. Statist. 47(1), 288-318 (2019).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import digamma, gammaln

from entropylib import knn, registry, threads, validation

#: the most neighbours averaged over by default, and the sample size per neighbour
MAX_K = 64
SAMPLES_PER_K = 16


def cancelled_terms(d: int) -> int:
    """L, the number of bias terms the weights cancel: max(2, floor(d / 4))."""
    return max(2, d // 4)


def default_k(n: int, d: int) -> int:
    """K = min(64, n // 16), and at least L + 1 so that the weights exist."""
    return max(cancelled_terms(d) + 1, min(MAX_K, n // SAMPLES_PER_K))


def weights(k: int, d: int) -> np.ndarray:
    """Minimum-norm weights w_1..w_k with sum 1 that cancel the first L bias terms (k > L).

    Examples
    --------
    >>> w = weights(16, 10)
    >>> j = np.arange(1, 17)
    >>> bool(np.isclose(w.sum(), 1.0))
    True
    >>> terms = [np.exp(gammaln(j + 2 * l / 10) - gammaln(j)) @ w for l in (1, 2)]
    >>> bool(np.allclose(terms, 0.0, atol=1e-10))
    True
    """
    j = np.arange(1, k + 1)
    rows = [np.exp(gammaln(j + 2.0 * l / d) - gammaln(j)) for l in range(1, cancelled_terms(d) + 1)]
    # each row scaled to unit norm: the same solution set, better conditioned; lstsq gives
    # the minimum-norm solution without squaring the condition number (normal equations)
    a = np.vstack([np.ones(k)] + [r / np.linalg.norm(r) for r in rows])
    b = np.zeros(a.shape[0])
    b[0] = 1.0
    return np.linalg.lstsq(a, b, rcond=None)[0]


def weighted_kozachenko_leonenko(
    x: np.ndarray, *, k: int | None = None, norm: str = "max", ties: str = "raise"
) -> float:
    """Weighted KL joint entropy (nats) of a finite numpy (n, d) sample.

    Validation, NaN handling and the jitter policy belong to :func:`entropylib.estimate`,
    the usual entry point (``estimate(x, "weighted_knn", joint=True)``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(10_000, 10))
    >>> h = weighted_kozachenko_leonenko(x)
    >>> true = 5 * np.log(2 * np.pi * np.e)
    >>> bool(abs(h - true) < 0.15)
    True
    """
    return _weighted_kl(x, k, norm, ties, "column 0" if x.shape[1] == 1 else "the joint sample")


def _weighted_kl(x: np.ndarray, k: int | None, norm: str, ties: str, subject: str) -> float:
    """The estimate; ``subject`` names the sample in a tie error (which column, or joint)."""
    n, d = x.shape
    k = default_k(n, d) if k is None else k
    if k <= cancelled_terms(d):
        raise ValueError(f"weighted_knn cancels {cancelled_terms(d)} bias terms at d = {d} and "
                         f"needs k > {cancelled_terms(d)} neighbours, got k = {k}")
    if n <= k:
        raise ValueError(f"weighted_knn averages over k = {k} neighbours and needs more than "
                         f"k samples, got n = {n}")
    tree = knn.kdtree(x)
    rho, _ = tree.query(x, k=k + 1, p=np.inf if norm == "max" else 2.0,
                        workers=threads.kdtree_workers(n, d))
    # column 0 is x_i itself (or a copy of it at distance 0, which leaves the others right)
    rho = rho[:, 1:]
    floor = validation.tie_floor(x).max(keepdims=True) if ties == "floor" else None
    rho = validation.apply_tie_policy(rho.reshape(-1, 1), ties, floor,
                                      what="neighbour distances",
                                      subject=subject).reshape(n, k)
    per_k = d * np.log(rho).mean(axis=0) - digamma(np.arange(1, k + 1))
    return float(weights(k, d) @ per_k + digamma(n) + knn.log_unit_ball_volume(d, norm))


def _joint(x: np.ndarray, *, k: int | None, norm: str, ties: str) -> float:
    return weighted_kozachenko_leonenko(x, k=k, norm=norm, ties=ties)


def _marginal(x: np.ndarray, *, k: int | None, norm: str, ties: str) -> np.ndarray:
    return np.array([_weighted_kl(x[:, [j]], k, norm, ties, f"column {j}")
                     for j in range(x.shape[1])])


def _check_options(options: Mapping[str, Any], n: int) -> Mapping[str, Any]:
    k = options["k"]
    if k is not None:
        if not validation.is_integer(k):
            raise TypeError(f"k (neighbours averaged over) must be an integer, got {k!r}")
        if k < 3:
            raise ValueError(f"k (neighbours averaged over) must be >= 3 so that the weights "
                             f"can cancel two bias terms, got {k}")
    if options["norm"] not in knn.NORMS:
        raise ValueError(f"norm must be one of {knn.NORMS}, got {options['norm']!r}")
    return {**options, "k": None if k is None else int(k)}


def _min_samples(options: Mapping[str, Any], n: int) -> int:
    # the largest L (d = 10 and below: 2) needs K >= 3; the exact K is known only with d
    return (options["k"] if options["k"] is not None else cancelled_terms(1) + 1) + 1


registry.register(
    registry.Method(
        name="weighted_knn",
        summary="weighted Kozachenko-Leonenko: kNN estimates for k = 1..K averaged with "
        "weights that cancel the leading bias terms (lower bias in d >= 4)",
        reference="Berrett, Samworth & Yuan, Efficient multivariate entropy estimation via "
        "k-nearest neighbour distances, Ann. Statist. 2019",
        backends={"numpy": _marginal},
        joint_backends={"numpy": _joint},
        options={"k": None, "norm": "max"},
        min_samples=_min_samples,
        check_options=_check_options,
    )
)
