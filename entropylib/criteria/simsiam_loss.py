r"""SimSiam loss: symmetric negative cosine with stop-gradient (Chen & He, CVPR 2021)."""

from __future__ import annotations

import torch
from torch import nn

from entropylib.criteria.views import check_views, full_precision, unit_rows, working_dtype

__all__ = ["SimSiamLoss", "negative_cosine"]


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    r""":math:`-\frac1N \sum_i \frac{p_i \cdot z_i}{\|p_i\| \|z_i\|}` with no gradient into ``z``.

    The cosines of ``torch.nn.CosineSimilarity`` (the reference's), from rows normalised at
    any scale (:func:`entropylib.criteria.views.unit_rows`): that module clamps norms below
    at 1e-8 and its norms overflow float32 from ``|z| ~ 1e19``, where a cosine came out 0. A zero
    row has cosine 0 with everything.

    Examples
    --------
    >>> import torch
    >>> negative_cosine(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]))
    tensor(-1.)
    """
    return -(unit_rows(p) * unit_rows(z.detach())).sum(dim=1).mean()


class SimSiamLoss(nn.Module):
    r"""SimSiam loss: :math:`\mathcal L = \tfrac12 D(p_1, \mathrm{sg}(z_2)) + \tfrac12 D(p_2,
    \mathrm{sg}(z_1))` with D the :func:`negative_cosine` and sg the stop-gradient.

    ``p1, p2`` are the predictor outputs and ``z1, z2`` the projector outputs of the two views
    (each (N, D)); the order is the one the official model returns. Computed on this rank's
    batch (the loss is a per-sample mean; DistributedDataParallel averages it over ranks).

    Reference: Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021, and
    the official ``simsiam/builder.py`` and ``main_simsiam.py``.

    forward(p1, p2, z1, z2) returns ``(loss, parts)``; ``parts["cosine"]`` is the detached mean
    cosine similarity (equal to ``-loss``).

    Examples
    --------
    >>> import torch
    >>> from entropylib.criteria import SimSiamLoss
    >>> p1, p2 = torch.randn(8, 16, requires_grad=True), torch.randn(8, 16, requires_grad=True)
    >>> z1, z2 = torch.randn(8, 16, requires_grad=True), torch.randn(8, 16, requires_grad=True)
    >>> loss, parts = SimSiamLoss()(p1, p2, z1, z2)
    >>> loss.backward()
    >>> z1.grad is None  # stop-gradient: the targets get no gradient from this loss
    True
    """

    def forward(
        self, p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_views((p1, p2, z1, z2), "SimSiamLoss", count=4)
        with full_precision((p1, p2, z1, z2)):
            p1, p2, z1, z2 = (v.to(working_dtype(v)) for v in (p1, p2, z1, z2))
            loss = 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)
        return loss, {"cosine": -loss.detach()}
