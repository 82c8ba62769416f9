r"""MMCR: maximum manifold capacity representations (Yerxa et al., NeurIPS 2023)."""

from __future__ import annotations

import torch
from torch import nn

from entropylib.criteria.views import (
    check_coeff,
    check_views,
    full_precision,
    gather_views,
    unit_rows,
)

__all__ = ["MMCR", "centroid_nuclear_norm"]


def centroid_nuclear_norm(*views: torch.Tensor) -> torch.Tensor:
    r"""Nuclear norm :math:`\|M\|_* = \sum_k \sigma_k(M)` of the centroid matrix M (N, D).

    :math:`M_i = \frac1V \sum_v z^{(v)}_i / \|z^{(v)}_i\|`: the mean of sample i's
    L2-normalised views (a zero row counts as zero, see
    :func:`entropylib.criteria.views.unit_rows`).

    Examples
    --------
    >>> import torch
    >>> e = torch.eye(3)
    >>> centroid_nuclear_norm(e, e)  # identical orthonormal views: three singular values 1
    tensor(3.)
    """
    centroids = torch.stack([unit_rows(z) for z in views]).mean(dim=0)
    # the SVD raises on a non-finite matrix; NaN instead, for a caller that checks the loss
    # (views.caller_checks_finite) and must not read the device or stop on one process only
    finite = torch.isfinite(centroids).all()
    nuclear = torch.linalg.matrix_norm(torch.where(finite, centroids, 0.0), ord="nuc")
    return torch.where(finite, nuclear, torch.nan)


class MMCR(nn.Module):
    r"""Minus the nuclear norm of the per-sample centroids of L2-normalised views.

    .. math::
        \mathcal L = -\,\text{weight}\, \|M\|_*, \qquad
        M_i = \frac1V \sum_v \frac{z^{(v)}_i}{\|z^{(v)}_i\|}

    over the global batch (views gathered over ranks with gradient). Weight 1 as in the E2MC
    paper's MMCR baseline.

    Reference: Yerxa, Kuang, Simoncelli & Chung, "Learning Efficient Coding of Natural Images
    with Maximum Manifold Capacity Representations", NeurIPS 2023.

    ``forward(*views)`` returns ``(loss, parts)``; ``parts["nuclear_norm"]`` is detached.

    Examples
    --------
    >>> import torch
    >>> from entropylib.criteria import MMCR
    >>> loss, parts = MMCR()(torch.randn(64, 16), torch.randn(64, 16))
    >>> bool(loss == -parts["nuclear_norm"])
    True
    """

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = check_coeff("weight", weight, positive=True)

    def extra_repr(self) -> str:
        return f"weight={self.weight}"

    def forward(self, *views: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_views(views, "MMCR")
        with full_precision(views):
            nuclear = centroid_nuclear_norm(*gather_views(views, "MMCR", min_rows=1))
        return -self.weight * nuclear, {"nuclear_norm": nuclear.detach()}
