"""Matplotlib figures written to PNG files, headless (Agg), closed after saving."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


@contextmanager
def png_figure(
    path: str | os.PathLike,
    *,
    nrows: int = 1,
    ncols: int = 1,
    figsize: tuple[float, float] = (5.5, 4),
    squeeze: bool = True,
    dpi: int = 120,
) -> Iterator[tuple[Any, Any]]:
    """Yield ``(fig, axes)`` for an ``nrows`` x ``ncols`` grid of axes; save ``path`` on exit.

    ``axes`` is shaped as by ``plt.subplots(nrows, ncols, squeeze=squeeze)``. Matplotlib is
    imported here, on first use, so importing :mod:`evaluation` stays light. The figure is
    closed even if drawing fails, and nothing is written then.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=squeeze)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)


def class_legend(fig: Any, labels: Any, names: Any = None) -> None:
    """One legend for the whole figure: a tab10 marker per class present in ``labels``.

    ``names[c]`` names class c (default "class c"); colours match :func:`class_colors`.
    """
    from matplotlib.lines import Line2D

    classes = np.unique(np.asarray(labels)).astype(int)
    if names is not None and len(names) <= classes.max():
        raise ValueError(
            f"class_names has {len(names)} names but the labels go up to {classes.max()}"
        )
    handles = [
        Line2D([], [], marker="o", linestyle="", color=class_colors(np.array([c]))[0])
        for c in classes
    ]
    text = [str(names[c]) if names is not None else f"class {c}" for c in classes]
    # placed right of the axes; png_figure saves with bbox_inches="tight", which keeps it
    fig.legend(handles, text, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)


def class_colors(labels: Any) -> np.ndarray:
    """RGBA colour of each integer label: tab10, cycling after 10 classes."""
    import matplotlib

    return matplotlib.colormaps["tab10"](np.asarray(labels).astype(int) % 10)
