r"""VCReg: VICReg's variance and covariance regularizers alone, applied to an embedding."""

from __future__ import annotations

import torch
from torch import nn

from entropylib.criteria.vicreg_loss import covariance_penalty, variance_hinge
from entropylib.criteria.views import (
    check_coeff,
    check_finite_loss,
    check_views,
    full_precision,
    gather_views,
)

__all__ = ["VCReg"]


class VCReg(nn.Module):
    r"""Variance hinge + covariance penalty, the VICReg regularizers as an add-on criterion.

    For views :math:`z^{(1)}, \dots, z^{(V)}` (each (N, D), gathered over ranks with gradient):

    .. math::
        \mathcal L = \text{std\_coeff} \, \frac1V \sum_v
        \frac1D \sum_d \max\big(0, \gamma - \sqrt{\operatorname{Var}(z^{(v)}_d) + 10^{-4}}\big)
        + \text{cov\_coeff} \sum_v \frac1D \sum_{j \ne k} C^{(v)\,2}_{jk}

    with :math:`C^{(v)}` the (N - 1)-normalised covariance. Views are aggregated as in VICReg
    (variance averaged, covariance summed). Defaults are those of the E2MC paper's VCReg
    baseline: std_coeff 1, cov_coeff 0.01, gamma 1 (use :math:`1/\sqrt D` on the sphere).

    Reference: Bardes, Ponce & LeCun, ICLR 2022; as a regularizer on pre-trained embeddings,
    Chakraborty et al., AISTATS 2025 (Table 2).

    ``forward(*views)`` returns ``(loss, parts)`` with detached (V,) tensors ``parts["variance"]``
    and ``parts["cov"]``.

    Examples
    --------
    >>> import torch
    >>> from entropylib.criteria import VCReg
    >>> loss, parts = VCReg()(torch.randn(128, 16), torch.randn(128, 16))
    >>> parts["variance"].shape
    torch.Size([2])
    """

    def __init__(self, std_coeff: float = 1.0, cov_coeff: float = 0.01, gamma: float = 1.0) -> None:
        super().__init__()
        self.std_coeff = check_coeff("std_coeff", std_coeff)
        self.cov_coeff = check_coeff("cov_coeff", cov_coeff)
        if self.std_coeff == 0 and self.cov_coeff == 0:
            raise ValueError("std_coeff and cov_coeff are both 0: the criterion would be 0")
        self.gamma = check_coeff("gamma", gamma, positive=True)

    def extra_repr(self) -> str:
        return f"std_coeff={self.std_coeff}, cov_coeff={self.cov_coeff}, gamma={self.gamma}"

    def forward(self, *views: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_views(views, "VCReg")
        with full_precision(views):
            gathered = gather_views(views, "VCReg")
            variance = torch.stack([variance_hinge(z, gamma=self.gamma) for z in gathered])
            cov = torch.stack([covariance_penalty(z) for z in gathered])
            loss = self.std_coeff * variance.mean() + self.cov_coeff * cov.sum()
            check_finite_loss(loss, gathered, "VCReg")
        return loss, {"variance": variance.detach(), "cov": cov.detach()}
