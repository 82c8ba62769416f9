r"""VICReg loss: invariance + variance + covariance (Bardes, Ponce & LeCun, ICLR 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from entropylib.criteria.views import (
    check_coeff,
    check_finite_loss,
    check_views,
    full_precision,
    gather_views,
    working_dtype,
)

__all__ = ["VICRegLoss", "covariance_penalty", "variance_hinge"]


def variance_hinge(z: torch.Tensor, *, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    r"""Mean over columns of :math:`\max(0, \gamma - \sqrt{\operatorname{Var}(z_d) + \epsilon})`.

    Var is the unbiased (N - 1) sample variance of each column of ``z`` (N, D).

    Examples
    --------
    >>> import torch
    >>> variance_hinge(torch.zeros(4, 3))  # no spread at all: the hinge is 1 - sqrt(1e-4)
    tensor(0.9900)
    """
    n = z.shape[0]
    c = z - z.mean(dim=0)
    # std = s sqrt(Var(z / s) + eps / s^2) for any constant s > 0: with s = max(|c|, 1) per
    # column the squares cannot overflow (z.var does at 1e20 in float32)
    s = c.detach().abs().amax(dim=0).clamp_min(1.0)
    std = s * torch.sqrt((c / s).pow(2).sum(dim=0) / (n - 1) + eps / (s * s))
    return F.relu(gamma - std).mean()


def covariance_penalty(z: torch.Tensor) -> torch.Tensor:
    r"""Sum of squared off-diagonal entries of :math:`C = \tilde z^\top \tilde z / (N-1)`, over D.

    :math:`\tilde z` is ``z`` (N, D) centred per column; N is the actual number of rows.

    Examples
    --------
    >>> import torch
    >>> covariance_penalty(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))  # C = [[.5, .5], [.5, .5]]
    tensor(0.2500)
    """
    n, d = z.shape
    c = z - z.mean(dim=0)
    # computed as s^4 times the penalty of c / s (s = max(|c|, 1)): finite whenever the
    # result is, and the diagonal is masked, not subtracted (inf - inf was NaN at 1e30)
    s = c.detach().abs().amax().clamp_min(1.0)
    cs = c / s
    cov = cs.T @ cs / (n - 1)
    off = (cov - torch.diag_embed(cov.diagonal())).pow(2).sum()
    return off / d * (s * s) * (s * s)


class VICRegLoss(nn.Module):
    r"""VICReg loss with the official semantics and defaults (25 / 25 / 1).

    .. math::
        \mathcal L = \lambda\, \tfrac{1}{N_{loc} D}\|z_1 - z_2\|_F^2
        + \mu\, \tfrac12 \big(v(Z_1) + v(Z_2)\big) + \nu \big(c(Z_1) + c(Z_2)\big)

    The invariance (MSE) term uses this rank's batch :math:`z_1, z_2` (N_loc, D); the variance
    hinge :func:`variance_hinge` (gamma 1, eps 1e-4) and :func:`covariance_penalty` use the
    batches :math:`Z_1, Z_2` gathered over all ranks with gradient (actual global N).

    Reference: Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization
    for Self-Supervised Learning", ICLR 2022, and its official ``main_vicreg.py``.

    forward(z1, z2) returns ``(loss, parts)`` with detached ``parts["invariance"]``,
    ``parts["variance"]`` and ``parts["covariance"]`` (the unweighted terms).

    Examples
    --------
    >>> import torch
    >>> from entropylib.criteria import VICRegLoss
    >>> z1, z2 = torch.randn(64, 16, requires_grad=True), torch.randn(64, 16)
    >>> loss, parts = VICRegLoss()(z1, z2)
    >>> loss.backward()
    >>> sorted(parts)
    ['covariance', 'invariance', 'variance']
    """

    def __init__(
        self,
        sim_coeff: float = 25.0,
        std_coeff: float = 25.0,
        cov_coeff: float = 1.0,
        gamma: float = 1.0,
    ) -> None:
        super().__init__()
        self.sim_coeff = check_coeff("sim_coeff", sim_coeff)
        self.std_coeff = check_coeff("std_coeff", std_coeff)
        self.cov_coeff = check_coeff("cov_coeff", cov_coeff)
        self.gamma = check_coeff("gamma", gamma, positive=True)

    def extra_repr(self) -> str:
        return (
            f"sim_coeff={self.sim_coeff}, std_coeff={self.std_coeff}, "
            f"cov_coeff={self.cov_coeff}, gamma={self.gamma}"
        )

    def forward(
        self, z1: torch.Tensor, z2: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_views((z1, z2), "VICRegLoss", count=2)
        with full_precision((z1, z2)):
            dtype = working_dtype(z1)
            invariance = F.mse_loss(z1.to(dtype), z2.to(dtype))
            g1, g2 = gather_views((z1, z2), "VICRegLoss")
            variance = (
                variance_hinge(g1, gamma=self.gamma) + variance_hinge(g2, gamma=self.gamma)
            ) / 2
            covariance = covariance_penalty(g1) + covariance_penalty(g2)
            loss = (
                self.sim_coeff * invariance
                + self.std_coeff * variance
                + self.cov_coeff * covariance
            )
            check_finite_loss(loss, (g1, g2), "VICRegLoss")
        parts = {
            "invariance": invariance.detach(),
            "variance": variance.detach(),
            "covariance": covariance.detach(),
        }
        return loss, parts
