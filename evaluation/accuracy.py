"""Top-k accuracy of class scores: the leaf module the probes and the training loop share."""

from __future__ import annotations

import numpy as np


def topk_accuracy(
    scores: np.ndarray, labels: np.ndarray, classes: np.ndarray | None = None
) -> tuple[float, float]:
    """Top-1 and top-5 accuracy of (m, C) class scores; ties go to the lower class index.

    ``classes`` names the C columns (default 0..C-1). A NaN score has no rank, so it is an error
    rather than a silent miss or hit (infinite scores rank like any other).
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(f"need (m, C) scores and m labels, got scores of shape {scores.shape} "
                         f"and labels of shape {labels.shape}")
    bad = np.isnan(scores).any(axis=1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} of {len(bad)} score rows hold NaN "
                         f"(first: row {int(np.argmax(bad))}); a NaN score has no rank")
    cls = np.arange(scores.shape[1]) if classes is None else np.asarray(classes)
    if cls.shape != scores.shape[1:]:
        raise ValueError(f"classes names {cls.size} columns, the scores have {scores.shape[1]}")
    cols = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    order = np.lexsort((cols, -scores), axis=1)[:, :5]
    ranked = cls[order]
    return (
        float(np.mean(ranked[:, 0] == labels)),
        float(np.mean((ranked == labels[:, None]).any(axis=1))),
    )
