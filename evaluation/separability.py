"""How well classes separate in an embedding: Fisher ratio, silhouette, kNN purity, 2-D maps."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from entropylib.validation import is_integer
from evaluation.figures import class_colors, class_legend, png_figure
from evaluation.inputs import as_features, as_labels, seeded_rng
from evaluation.knn import knn_neighbors, l2_normalize


def fisher_ratio(features: Any, labels: Any) -> float:
    """Trace ratio tr(S_B) / tr(S_W) of between- and within-class scatter.

    S_B = sum_c n_c (mu_c - mu)(mu_c - mu)^T and S_W = sum_c sum_{i in c} (x_i - mu_c)(x_i - mu_c)^T
    (Fisher 1936; the trace form of Fukunaga 1990, ch. 10). Only the traces are needed:
    tr(S_B) = sum_c n_c ‖mu_c - mu‖^2, tr(S_W) = sum_i ‖x_i - mu_{y_i}‖^2. The ratio does not
    depend on the features' scale; they are first divided by the power of two just above
    their largest absolute value (an exact scaling), so the squares neither overflow (1e200)
    nor underflow (1e-200).

    Examples
    --------
    >>> fisher_ratio([[0.0], [2.0], [10.0], [12.0]], [0, 0, 1, 1])
    25.0
    """
    x = as_features(features, dtype=np.float64)
    y = as_labels(labels, x.shape[0])
    x = np.ldexp(x, -np.frexp(np.max(np.abs(x)))[1])  # a power of two: exact, |x| < 1
    classes, inverse = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise ValueError("the Fisher ratio needs at least two classes")
    counts = np.bincount(inverse).astype(np.float64)
    means = np.zeros((classes.size, x.shape[1]))
    np.add.at(means, inverse, x)
    means /= counts[:, None]
    between = float(np.sum(counts * np.sum((means - x.mean(axis=0)) ** 2, axis=1)))
    within = float(np.sum((x - means[inverse]) ** 2))
    if within == 0:
        raise ValueError("every class is a single point (zero within-class scatter): ratio is inf")
    return between / within


def silhouette(
    features: Any, labels: Any, *, max_samples: int = 5000, seed: int = 0
) -> float:
    """Mean silhouette with cosine distance (Rousseeuw 1987), via scikit-learn.

    s_i = (b_i - a_i) / max(a_i, b_i), a_i the mean distance to its own class, b_i to the
    nearest other class. Above ``max_samples`` points a seeded random sample is used (the
    computation is quadratic). The rows are L2-normalised first (cosine distances do not
    change), so features at any finite scale give the same value.

    Examples
    --------
    >>> round(silhouette([[1, 0], [1, 0.01], [0, 1], [0.01, 1]], [0, 0, 1, 1]), 3)
    1.0
    """
    from sklearn.metrics import silhouette_score

    x = as_features(features, dtype=np.float64)
    y = as_labels(labels, x.shape[0])
    if np.unique(y).size < 2 or np.unique(y).size >= x.shape[0]:
        raise ValueError("the silhouette needs 2 <= number of classes < number of samples")
    sample = None if x.shape[0] <= max_samples else max_samples
    x = l2_normalize(x, dtype=np.float64)
    return float(silhouette_score(x, y, metric="cosine", sample_size=sample, random_state=seed))


def knn_purity(features: Any, labels: Any, *, k: int = 20, backend: str = "auto") -> float:
    """Mean fraction of each point's k cosine nearest neighbours (itself excluded) in its class.

    Examples
    --------
    >>> knn_purity([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], [0, 0, 1, 1], k=1, backend="brute")
    1.0
    """
    x = as_features(features, dtype=None)  # knn_neighbors normalises at any scale
    y = as_labels(labels, x.shape[0])
    if not is_integer(k) or not 1 <= k < x.shape[0]:
        raise ValueError(f"k must be an integer in [1, n - 1] = [1, {x.shape[0] - 1}], got {k!r}")
    _, idx = knn_neighbors(x, x, k + 1, backend=backend)
    own = idx == np.arange(x.shape[0])[:, None]
    # A point is its own nearest neighbour unless exact duplicates precede it: drop itself if
    # present, else the last (k+1-th) neighbour.
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(idx, dtype=bool)
    keep[np.arange(len(idx)), drop] = False
    neighbours = idx[keep].reshape(len(idx), k)
    return float(np.mean(y[neighbours] == y[:, None]))


def embed_2d(features: Any, *, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Project features to 2-D with scikit-learn's PCA or t-SNE (on L2-normalised features)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = l2_normalize(as_features(features, dtype=np.float64), dtype=np.float64)
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "tsne":
        perplexity = min(30.0, (x.shape[0] - 1) / 3)
        return TSNE(n_components=2, perplexity=perplexity, random_state=seed).fit_transform(x)
    raise ValueError(f"unknown 2-D map {method!r}; expected 'pca' or 'tsne'")


def plot_embeddings_2d(
    embeddings: Mapping[str, tuple[Any, Any]],
    path: str | os.PathLike,
    *,
    method: str = "pca",
    max_points: int = 3000,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> None:
    """Save one 2-D map per model, side by side and coloured by class, as a PNG.

    ``embeddings`` maps a model name to (features, labels); ``class_names[c]`` names class c
    in the legend (default "class c").
    """
    if not embeddings:
        raise ValueError("no embeddings to plot")
    figsize = (4.5 * len(embeddings), 4.2)
    with png_figure(path, ncols=len(embeddings), figsize=figsize, squeeze=False) as (fig, axes):
        seen = []
        rng = seeded_rng(seed)
        for ax, (name, (feats, labels)) in zip(axes[0], embeddings.items(), strict=True):
            x = as_features(feats)
            y = as_labels(labels, x.shape[0])
            if x.shape[0] > max_points:
                keep = np.sort(rng.choice(x.shape[0], max_points, replace=False))
                x, y = x[keep], y[keep]
            xy = embed_2d(x, method=method, seed=seed)
            ax.scatter(xy[:, 0], xy[:, 1], c=class_colors(y), s=3, alpha=0.7)
            seen.append(y)
            ax.set_title(name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        class_legend(fig, np.concatenate(seen), class_names)
        fig.suptitle(f"{method.upper()} of L2-normalised features, coloured by class")
