"""Matplotlib figures written to PNG files, headless (Agg), closed after saving."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def png_figure(
    path: str | os.PathLike, *, ncols: int = 1, figsize: tuple[float, float] = (5.5, 4)
) -> Iterator[tuple[Any, Any]]:
    """Yield ``(fig, axes)`` for ``ncols`` side-by-side axes; save ``path`` at 120 dpi on exit.

    Matplotlib is imported here, on first use, so importing :mod:`evaluation` stays light.
    The figure is closed even if drawing fails.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=figsize)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
