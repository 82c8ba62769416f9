"""Kraskov-Stoegbauer-Grassberger (KSG) estimators of mutual information, total correlation and
conditional mutual information: neighbour counts instead of entropy differences.

psi is the digamma function, N the number of samples, k the number of neighbours, and
distances are max-norm distances (in the joint space, or in the subspace of one variable).
For each point i, eps_i is the distance to its k-th nearest neighbour in the joint space of all
variables and n_v(i) counts the other points within eps_i in the subspace of variable v:

- ``"ksg1"`` (KSG's first estimator), counts strictly inside eps_i (distance < eps_i):

  .. math::
      I(X; Y) = \\psi(k) + \\psi(N) - \\langle \\psi(n_x + 1) + \\psi(n_y + 1) \\rangle.

  For the conditional mutual information (Frenzel & Pompe 2007), eps_i comes from the joint
  (x, y, z) space and

  .. math::
      I(X; Y \\mid Z) = \\psi(k)
      - \\langle \\psi(n_{xz} + 1) + \\psi(n_{yz} + 1) - \\psi(n_z + 1) \\rangle.

- ``"ksg2"`` (KSG's second estimator): eps_x(i) is the largest distance, in the subspace of
  x, from x_i to any of its k nearest joint neighbours (likewise eps_y), and n_x(i) counts
  the other points within eps_x(i) there (distance <= eps_x(i)):

  .. math::
      I(X; Y) = \\psi(k) - \\frac{1}{k} + \\psi(N) - \\langle \\psi(n_x) + \\psi(n_y) \\rangle.

- Total correlation by the chain rule over the variables in their given order,

  .. math::
      TC(X_1, \\dots, X_m) = \\sum_{v=2}^{m} I(X_1, \\dots, X_{v-1}; X_v),

  each term by the same KSG estimator. KSG also has a one-step m-variable form (psi(k) +
  (m - 1) psi(N) - < sum_v psi(n_v + 1) >); measured on the same exact counts on AR(1)
  normal and multivariate t samples (benchmarks/results/information.md), the chain rule had
  the lower RMSE in most cases at d = 5 (the one-step form by <= 0.004 nats in the others)
  and far lower at d = 10 (normal, rho = 0.9, n = 1000: 0.51 against 1.25 nats), so it is
  the form used. At d = 10 the KSG2 chain is the more accurate of the two.

Errors of the marginal and joint terms largely cancel because every term is measured at the
same scale eps_i, which is why these estimators have far less bias in several dimensions than
sums of separate Kozachenko-Leonenko entropies. The functions here are invariant under sign
flips and permutations of coordinates and under one common affine map of every coordinate
(exactly for a power-of-two scale, else up to rounding of the distances), not under separate
rescaling or monotone maps of the variables, which change the joint max-norm neighbourhoods.
The public measures (:mod:`entropylib.information`) therefore divide each column by its
standard deviation first (``standardize=True``, the default), which makes them invariant under
a separate rescaling of each column too; monotone maps still move the estimate.

Neighbour counts are exact (:func:`entropylib.knn.count_within`): the counted distances are the
same float64 numbers the neighbour search compared. The "numba" backend searches and counts
with the cell grid of :mod:`entropylib.knn_kernels` (one binary search per point for a
one-dimensional variable), the "numpy" backend with scipy's KD-tree; both give the same
counts, hence the same estimate. KSG2 takes its neighbour lists from the KD-tree.

References: Kraskov, Stoegbauer & Grassberger, Estimating mutual information, Phys. Rev. E 69,
066138 (2004); Frenzel & Pompe, Partial mutual information for coupling analysis of
multivariate time series, Phys. Rev. Lett. 99, 204101 (2007).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import digamma

from entropylib import knn, registry, threads, validation

Groups = Sequence[Sequence[int]]


def ksg1(data: np.ndarray, groups: Groups, *, k: int = 3, ties: str = "raise",
         use_numba: bool = False) -> float:
    """KSG1 estimate (nats) of the mutual information of the two variables ``groups`` (lists
    of column indices) of a finite float64 sample ``data`` (n, D).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> xy = rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], size=5000)
    >>> mi = ksg1(xy, [[0], [1]])
    >>> bool(abs(mi - (-0.5 * np.log(1 - 0.6**2))) < 0.03)
    True
    """
    eps = joint_radius(data, k, ties, use_numba)
    total = sum(_mean_digamma(knn.count_within(data[:, g], eps, True, use_numba) + 1)
                for g in groups)
    return float(digamma(k) + digamma(data.shape[0]) - total)


def ksg2(data: np.ndarray, groups: Groups, *, k: int = 3, ties: str = "raise",
         use_numba: bool = False) -> float:
    """KSG2 estimate (nats) of the mutual information of the two variables ``groups``.
    Arguments as :func:`ksg1`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> xy = rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], size=5000)
    >>> mi = ksg2(xy, [[0], [1]])
    >>> bool(abs(mi - (-0.5 * np.log(1 - 0.6**2))) < 0.03)
    True
    """
    tree = knn.kdtree(data)
    workers = threads.kdtree_workers(*data.shape)
    dist, idx = tree.query(data, k=k + 1, p=np.inf, workers=workers)
    _check_ties(dist[:, k], data, ties)
    total = 0.0
    for v, g in enumerate(groups):
        # the k + 1 nearest points include x_i itself (extent 0), or, if other points share
        # its position, one of them instead: the extent over all k + 1 is the same
        sub = data[:, g]
        extent = np.abs(sub[idx] - sub[:, None, :]).max(axis=(1, 2))
        # a zero extent (the k joint neighbours all share x_i's value of this variable, as
        # for a discrete variable) makes n_v count only those copies: a tie, like a zero radius
        floor = validation.tie_floor(sub).max(keepdims=True) if ties == "floor" else None
        extent = validation.apply_tie_policy(
            extent.reshape(-1, 1), ties, floor, subject="the sample",
            what=f"neighbour extents in variable {v} (the first given is 0)").reshape(-1)
        total += _mean_digamma(knn.count_within(sub, extent, False, use_numba))
    return float(digamma(k) - 1 / k + digamma(data.shape[0]) - total)


def chain_rule(mutual_information: Any) -> Any:
    """Total correlation as the sum of I(X_1, ..., X_{v-1}; X_v) over v = 2..m, each term by
    ``mutual_information`` (:func:`ksg1` or :func:`ksg2`).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(5000, 3))
    >>> bool(abs(chain_rule(ksg1)(x, [[0], [1], [2]])) < 0.02)  # independent columns
    True
    """

    def total_correlation(data: np.ndarray, groups: Groups, **options: Any) -> float:
        total, before = 0.0, list(groups[0])
        for g in groups[1:]:
            cols = before + list(g)
            split = [list(range(len(before))), list(range(len(before), len(cols)))]
            total += mutual_information(data[:, cols], split, **options)
            before = cols
        return total

    return total_correlation


def frenzel_pompe(data: np.ndarray, groups: Groups, *, k: int = 3, ties: str = "raise",
                  use_numba: bool = False) -> float:
    """Conditional mutual information I(X; Y | Z) (nats) by the KSG1 counts of Frenzel and
    Pompe; ``groups`` are the columns of x, y and z. Arguments as :func:`ksg1`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=4000)
    >>> x, y = z + rng.normal(size=4000), z + rng.normal(size=4000)
    >>> cmi = frenzel_pompe(np.column_stack([x, y, z]), [[0], [1], [2]])
    >>> bool(abs(cmi) < 0.03)  # x and y are independent given z
    True
    """
    x, y, z = (list(g) for g in groups)
    eps = joint_radius(data, k, ties, use_numba)

    def term(cols: list[int]) -> float:
        return _mean_digamma(knn.count_within(data[:, cols], eps, True, use_numba) + 1)

    return float(digamma(k) - term(x + z) - term(y + z) + term(z))


def joint_radius(data: np.ndarray, k: int, ties: str, use_numba: bool) -> np.ndarray:
    """eps_i: the max-norm distance of each row to its k-th nearest other row, after the tie
    policy (a zero radius raises, or becomes the one-ulp floor under ``ties="floor"``)."""
    eps = knn.kth_distance(data, k, use_numba)
    return _check_ties(eps, data, ties)


def _check_ties(eps: np.ndarray, data: np.ndarray, ties: str) -> np.ndarray:
    floor = validation.tie_floor(data).max(keepdims=True) if ties == "floor" else None
    out = validation.apply_tie_policy(eps.reshape(-1, 1), ties, floor,
                                      what="joint k-th neighbour distances",
                                      subject="the joint sample")
    return out.reshape(-1)


def _mean_digamma(counts: np.ndarray) -> float:
    """Mean of psi(counts) over the points, through the histogram of the counts: fast, and
    independent of the order of the points (so of the order of the rows)."""
    hist = np.bincount(counts)
    present = np.flatnonzero(hist)
    return float(hist[present] @ digamma(present) / counts.shape[0])


def _check_options(options: Mapping[str, Any], n: int) -> Mapping[str, Any]:
    k = options["k"]
    if not validation.is_integer(k):
        raise TypeError(f"k (number of neighbours) must be a positive integer, got {k!r}")
    if k < 1:
        raise ValueError(f"k (number of neighbours) must be >= 1, got {k}")
    return {**options, "k": int(k)}


def _backends(impl: Any) -> dict[str, Any]:
    def on_numba(data: np.ndarray, groups: Groups, **options: Any) -> float:
        return impl(data, groups, use_numba=True, **options)

    return {"numpy": impl, "numba": on_numba}


_REFERENCE = ("Kraskov, Stoegbauer & Grassberger, Estimating mutual information, "
              "Phys. Rev. E 2004")

registry.register(
    registry.Method(
        name="ksg1",
        summary="KSG neighbour-count estimator 1 (strict counts); Frenzel-Pompe for the "
        "conditional mutual information",
        reference=_REFERENCE + "; Frenzel & Pompe, Phys. Rev. Lett. 2007",
        backends={},
        information={
            "mutual_information": _backends(ksg1),
            "conditional_mutual_information": _backends(frenzel_pompe),
            "total_correlation": _backends(chain_rule(ksg1)),
        },
        options={"k": 3},
        min_samples=lambda options, n: options["k"] + 1,
        check_options=_check_options,
    )
)
registry.register(
    registry.Method(
        name="ksg2",
        summary="KSG neighbour-count estimator 2 (per-variable neighbour extents)",
        reference=_REFERENCE,
        backends={},
        information={
            "mutual_information": _backends(ksg2),
            "total_correlation": _backends(chain_rule(ksg2)),
        },
        options={"k": 3},
        min_samples=lambda options, n: options["k"] + 1,
        check_options=_check_options,
    )
)
