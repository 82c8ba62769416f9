r"""Uniformity (and optional alignment) on the hypersphere (Wang & Isola, ICML 2020)."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from entropylib.criteria.views import (
    check_coeff,
    check_views,
    full_precision,
    gather_views,
    unit_rows,
)

__all__ = ["Uniformity", "alignment", "uniformity"]


def uniformity(z: torch.Tensor, *, t: float = 2.0) -> torch.Tensor:
    r"""Wang & Isola's uniformity of the rows of ``z`` (N, D) after L2 normalisation.

    .. math::
        \mathcal L_{unif} = \log \frac{2}{N(N-1)} \sum_{i<j} e^{-t \|e_i - e_j\|^2},
        \qquad e_i = z_i / \|z_i\|

    computed as a log-sum-exp, so it stays finite for large t.

    Examples
    --------
    >>> import torch
    >>> uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), t=2.0)  # antipodal: -t * 4
    tensor(-8.)
    """
    n = z.shape[0]
    e = unit_rows(z)
    sq = e.pow(2).sum(dim=1)
    i, j = torch.triu_indices(n, n, offset=1, device=z.device)
    d2 = (sq[i] + sq[j] - 2 * (e[i] * e[j]).sum(dim=1)).clamp_min(0)
    return torch.logsumexp(-t * d2, dim=0) - math.log(d2.numel())


def alignment(z1: torch.Tensor, z2: torch.Tensor, *, alpha: float = 2.0) -> torch.Tensor:
    r"""Wang & Isola's alignment :math:`\frac1N \sum_i \|e_i - e'_i\|^\alpha` of positive pairs.

    Rows are L2-normalised first.

    Examples
    --------
    >>> import torch
    >>> alignment(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]]))  # ||(1, -1)||^2
    tensor(2.)
    """
    diff = unit_rows(z1) - unit_rows(z2)
    return diff.pow(2).sum(dim=1).pow(alpha / 2).mean()


class Uniformity(nn.Module):
    r"""Uniformity of L2-normalised embeddings, plus optional alignment of positive pairs.

    .. math::
        \mathcal L = \text{unif\_coeff} \, \frac1V \sum_v \mathcal L_{unif}(z^{(v)})
        + \text{align\_coeff} \, \binom{V}{2}^{-1} \sum_{v < w} \mathcal L_{align}(z^{(v)}, z^{(w)})

    over the global batch (views gathered over ranks with gradient); see :func:`uniformity`
    and :func:`alignment`. Defaults: t = 2 (Wang & Isola; the E2MC paper's AUH baseline uses
    3), alpha = 2, no alignment (the base SSL loss usually already aligns the views).

    Reference: Wang & Isola, "Understanding Contrastive Representation Learning through
    Alignment and Uniformity on the Hypersphere", ICML 2020.

    ``forward(*views)`` returns ``(loss, parts)`` with detached ``parts["uniformity"]`` (V,) and
    ``parts["alignment"]`` (a scalar; 0 with a single view).

    Examples
    --------
    >>> import torch
    >>> from entropylib.criteria import Uniformity
    >>> crit = Uniformity(t=3.0, align_coeff=1.0)
    >>> loss, parts = crit(torch.randn(64, 16), torch.randn(64, 16))
    >>> parts["uniformity"].shape
    torch.Size([2])
    """

    def __init__(
        self,
        t: float = 2.0,
        unif_coeff: float = 1.0,
        align_coeff: float = 0.0,
        alpha: float = 2.0,
    ) -> None:
        super().__init__()
        self.t = check_coeff("t", t, positive=True)
        self.unif_coeff = check_coeff("unif_coeff", unif_coeff)
        self.align_coeff = check_coeff("align_coeff", align_coeff)
        if self.unif_coeff == 0 and self.align_coeff == 0:
            raise ValueError("unif_coeff and align_coeff are both 0: the criterion would be 0")
        self.alpha = check_coeff("alpha", alpha, positive=True)

    def extra_repr(self) -> str:
        return (
            f"t={self.t}, unif_coeff={self.unif_coeff}, align_coeff={self.align_coeff}, "
            f"alpha={self.alpha}"
        )

    def forward(self, *views: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_views(views, "Uniformity", min_count=2 if self.align_coeff else 1)
        with full_precision(views):
            gathered = gather_views(views, "Uniformity")
            unif = torch.stack([uniformity(z, t=self.t) for z in gathered])
            pairs = list(itertools.combinations(gathered, 2))
            if pairs:
                align = torch.stack([alignment(a, b, alpha=self.alpha) for a, b in pairs]).mean()
            else:
                align = unif.new_zeros(())
            loss = self.unif_coeff * unif.mean() + self.align_coeff * align
        return loss, {"uniformity": unif.detach(), "alignment": align.detach()}
