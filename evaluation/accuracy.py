"""Top-k accuracy of class scores: the leaf module the probes and the training loop share."""

from __future__ import annotations

import numpy as np


def topk_accuracy(
    scores: np.ndarray, labels: np.ndarray, classes: np.ndarray | None = None
) -> tuple[float, float]:
    """Top-1 and top-5 accuracy of (m, C) class scores; ties go to the lower class index."""
    scores = np.asarray(scores)
    cls = np.arange(scores.shape[1]) if classes is None else np.asarray(classes)
    cols = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    order = np.lexsort((cols, -scores), axis=1)[:, :5]
    ranked = cls[order]
    labels = np.asarray(labels)
    return (
        float(np.mean(ranked[:, 0] == labels)),
        float(np.mean((ranked == labels[:, None]).any(axis=1))),
    )
