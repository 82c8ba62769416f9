"""Label-free diagnostics of an embedding: entropy profile, RankMe, alignment / uniformity, ...

Formulas (z the (N, D) embedding):

* marginal entropy profile: the D per-coordinate differential entropies from
  :func:`entropylib.estimate` (m-spacing by default), and their sum;
* total correlation sum_d H(z_d) - H(z), when ``entropylib.total_correlation`` exists;
* RankMe (Garrido et al. 2023): exp(-sum_k p_k log p_k), p_k = s_k / ‖s‖_1 + eps, s the
  singular values of z, eps = 1e-7;
* alignment (Wang & Isola 2020): mean_i ‖f(x_i) - f(x_i')‖^alpha over positive pairs, alpha 2;
* uniformity (Wang & Isola 2020): log mean_{i<j} exp(-t ‖f(x_i) - f(x_j)‖^2), t = 2;
  f is the L2-normalised embedding;
* off-diagonal covariance energy: sum_{i != j} C_ij^2 / D, C the sample covariance
  (the VICReg covariance penalty, Bardes et al. 2022).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from evaluation.figures import png_figure
from evaluation.inputs import as_features, check_same_width, seeded_rng
from evaluation.knn import l2_normalize


def singular_values(features: Any) -> np.ndarray:
    """Singular values of the (uncentred) feature matrix, descending, float64."""
    x = as_features(features, dtype=np.float64)
    return np.linalg.svd(x, compute_uv=False)


def rankme(features: Any, *, eps: float = 1e-7) -> float:
    """RankMe effective rank (Garrido, Balestriero, Najman, LeCun 2023).

    RankMe = exp(-sum_k p_k log p_k), p_k = s_k / sum_j s_j + eps, s the singular values.
    It is between 1 and min(N, D): about D for isotropic data with N >> D, r for rank r.

    Examples
    --------
    >>> import numpy as np
    >>> round(rankme(np.eye(4)), 3)
    4.0
    """
    s = singular_values(features)
    if s.sum() == 0:
        raise ValueError("features are all zero: RankMe is undefined")
    p = s / s.sum() + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def alignment(view1: Any, view2: Any, *, alpha: float = 2.0, normalize: bool = True) -> float:
    """Alignment mean_i ‖f(x_i) - f(x_i')‖_2^alpha of positive pairs (Wang & Isola 2020).

    Row i of ``view1`` and of ``view2`` are the two views of sample i; ``normalize`` projects
    them to the unit sphere first (f = z / ‖z‖), as in the paper.

    Examples
    --------
    >>> alignment([[1.0, 0.0]], [[0.0, 1.0]])
    2.0
    """
    a = as_features(view1, "view1", dtype=np.float64)
    b = as_features(view2, "view2", dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(
            f"view1 {a.shape} and view2 {b.shape} must have the same shape: row i of each are "
            "the two views of sample i"
        )
    if normalize:
        a, b = l2_normalize(a, dtype=np.float64), l2_normalize(b, dtype=np.float64)
    return float(np.mean(np.sum((a - b) ** 2, axis=1) ** (alpha / 2)))


def uniformity(
    features: Any, *, t: float = 2.0, normalize: bool = True, max_samples: int = 5000, seed: int = 0
) -> float:
    """Uniformity log mean_{i<j} exp(-t ‖f(x_i) - f(x_j)‖^2) (Wang & Isola 2020).

    Computed in log space (logsumexp) over all pairs; above ``max_samples`` rows a seeded
    random sample is used (the cost is quadratic).

    Examples
    --------
    >>> import numpy as np
    >>> round(uniformity([[1.0, 0.0], [-1.0, 0.0]]), 6)  # one pair at distance 2: -2 * 4
    -8.0
    """
    from scipy.spatial.distance import pdist
    from scipy.special import logsumexp

    x = as_features(features, dtype=np.float64)
    if x.shape[0] < 2:
        raise ValueError("uniformity needs at least 2 samples")
    if x.shape[0] > max_samples:
        x = x[seeded_rng(seed).choice(x.shape[0], max_samples, replace=False)]
    if normalize:
        x = l2_normalize(x, dtype=np.float64)
    sq = pdist(x, "sqeuclidean")
    return float(logsumexp(-t * sq) - np.log(sq.size))


def offdiag_covariance_energy(features: Any) -> float:
    """Sum of squared off-diagonal sample covariances divided by D (VICReg's penalty).

    C = (Z - mean)^T (Z - mean) / (N - 1);  energy = sum_{i != j} C_ij^2 / D. The off-diagonal
    entries are summed directly: subtracting the diagonal's squares from the whole sum would
    lose them when one unit's variance dominates (a unit at scale 1e9 next to units at 1).

    Examples
    --------
    >>> offdiag_covariance_energy([[1.0, 1.0], [-1.0, -1.0]])  # C = [[2, 2], [2, 2]]
    4.0
    """
    x = as_features(features, dtype=np.float64)
    if x.shape[0] < 2:
        raise ValueError("the covariance needs at least 2 samples")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is the error below
        c = np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])
        off = c[~np.eye(x.shape[1], dtype=bool)]
        energy = float(np.sum(off**2) / x.shape[1])
    if not np.isfinite(energy):
        raise ValueError(
            "the covariance energy of these features exceeds float64's range "
            f"(largest |feature| {np.max(np.abs(x)):.3g}); rescale the features"
        )
    return energy


def marginal_entropy_profile(
    features: Any, *, method: str = "m_spacing", ties: str = "jitter", **options: Any
) -> np.ndarray:
    """Per-coordinate differential entropies (nats) via :func:`entropylib.estimate`.

    Constant coordinates (dead units) come out as -inf with a warning under the default
    ``ties="jitter"``.
    """
    import entropylib

    x = as_features(features, dtype=np.float64)
    return np.asarray(entropylib.estimate(x, method, ties=ties, **options), dtype=np.float64)


def total_correlation(features: Any, **options: Any) -> float | None:
    """``entropylib.total_correlation`` of the features, or None if entropylib lacks it.

    Its default is the Gaussian estimate -1/2 log det R (R the correlation matrix); options
    such as ``method`` are passed on.
    """
    import entropylib

    func = getattr(entropylib, "total_correlation", None)
    if func is None:
        return None
    return float(func(as_features(features, dtype=np.float64), **options))


def embedding_diagnostics(
    features: Any, *, view2: Any | None = None, max_samples: int = 5000, seed: int = 0
) -> dict[str, float]:
    """All scalar diagnostics of one embedding as a dict (entropy summary included).

    ``view2`` (second views of the same samples, row-aligned) enables alignment. The total
    correlation (Gaussian) is included when entropylib has it and there are more samples than
    non-constant units.

    Examples
    --------
    >>> import numpy as np
    >>> d = embedding_diagnostics(np.random.default_rng(0).normal(size=(500, 4)))
    >>> sorted(d)[:3]
    ['dead_units', 'entropy_mean', 'entropy_sum']
    """
    x = as_features(features, dtype=np.float64)
    if x.shape[0] > max_samples:
        x = x[seeded_rng(seed).choice(x.shape[0], max_samples, replace=False)]
    h = marginal_entropy_profile(x)
    finite = h[np.isfinite(h)]
    out = {
        "rankme": rankme(x),
        "uniformity": uniformity(x, seed=seed),
        "offdiag_cov_energy": offdiag_covariance_energy(x),
        "entropy_mean": float(finite.mean()) if finite.size else float("-inf"),
        "entropy_sum": float(finite.sum()) if finite.size else float("-inf"),
        "dead_units": float(h.size - finite.size),
    }
    # Dead (constant) units have no entropy to compare; they are counted in dead_units. A
    # joint estimate needs more samples than live units; collinear units give +inf (warned).
    live = np.ptp(x, axis=0) > 0
    usable = 2 <= live.sum() < x.shape[0]
    tc = total_correlation(x[:, live], ties="floor") if usable else None
    if tc is not None:
        out["total_correlation"] = tc
    if view2 is not None:
        a = as_features(features, dtype=np.float64)
        b = as_features(view2, "view2", dtype=np.float64)
        check_same_width(a, b, ("features", "view2"))
        out["alignment"] = alignment(a, b)
    return out


def plot_spectra(
    features: Mapping[str, Any], path: str | os.PathLike, *, max_samples: int = 5000
) -> None:
    """Save the normalised singular-value spectra s_k / s_1 (log scale) of several models."""
    with png_figure(path) as (_, ax):
        for name, x in features.items():
            x = as_features(x, dtype=np.float64)[:max_samples]
            s = singular_values(x)
            label = f"{name} (RankMe {rankme(x):.1f})"
            ax.semilogy(np.arange(1, s.size + 1), s / s[0], label=label)
        ax.set_xlabel("index k")
        ax.set_ylabel("singular value s_k / s_1")
        ax.set_title("Singular value spectrum of the embedding")
        ax.legend(fontsize=7)


def plot_entropy_profiles(profiles: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Save the sorted marginal entropy profiles of several models as a PNG."""
    with png_figure(path) as (_, ax):
        for name, h in profiles.items():
            h = np.sort(np.asarray(h, dtype=np.float64)[np.isfinite(h)])[::-1]
            ax.plot(np.arange(1, h.size + 1), h, label=name)
        ax.set_xlabel("coordinate (sorted)")
        ax.set_ylabel("marginal entropy (nats, m-spacing)")
        ax.set_title("Marginal entropy profile")
        ax.legend(fontsize=7)
