r"""LogDet: Gaussian-entropy (log-determinant of covariance) maximization, CorInfoMax style."""

from __future__ import annotations

import math

import torch
from torch import nn

from entropylib.criteria.views import (
    check_coeff,
    check_finite_loss,
    check_views,
    full_precision,
    gather_views,
)

__all__ = ["LogDet", "logdet_covariance"]


def logdet_covariance(z: torch.Tensor, *, eps: float = 1e-4) -> torch.Tensor:
    r""":math:`\log\det(C + \epsilon I_D)` with :math:`C = \tilde z^\top \tilde z / (N-1)`.

    :math:`\tilde z` is ``z`` (N, D) centred per column. When N < D the D x D determinant is
    taken through the N x N one (Weinstein-Aronszajn identity, exact):
    :math:`\log\det(\epsilon I_D + A^\top A) = (D - N)\log\epsilon + \log\det(\epsilon I_N +
    A A^\top)` with :math:`A = \tilde z / \sqrt{N-1}`. The determinant comes from a Cholesky
    factorisation; NaN when it fails (a matrix that is not finite).

    Examples
    --------
    >>> import torch
    >>> z = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    >>> logdet_covariance(z, eps=0.0).exp()  # C = diag(2/3, 2/3)
    tensor(0.4444)
    """
    n, d = z.shape
    a = (z - z.mean(dim=0)) / math.sqrt(n - 1)
    small = a @ a.T if n < d else a.T @ a
    eye = torch.eye(small.shape[0], dtype=a.dtype, device=a.device)
    # cholesky_ex reports a failed factorisation (non-finite input) in ``info`` instead of
    # raising, which would read the device; the failure becomes a NaN for the caller to check
    chol, info = torch.linalg.cholesky_ex(small + eps * eye)
    logdet = torch.where(info == 0, 2 * chol.diagonal().log().sum(), torch.nan)
    if n < d:
        logdet = logdet + (d - n) * math.log(eps)
    return logdet


class LogDet(nn.Module):
    r"""Maximize :math:`\log\det(C + \epsilon I)` of each view's covariance (CorInfoMax style).

    .. math::
        \mathcal L = -\,\text{coeff} \sum_v \log\det\big(C^{(v)} + \epsilon I_D\big)

    over the global batch (views gathered over ranks with gradient), summed over views as in
    CorInfoMax; see :func:`logdet_covariance`. Up to constants this is the entropy of a Gaussian
    with the batch covariance. CorInfoMax tracks a moving-average covariance that is full
    rank; a single batch with D >= N is singular, so the ridge defaults to 1e-4 (not
    CorInfoMax's 1e-8), which keeps the gradient :math:`(C + \epsilon I)^{-1}` bounded.

    Reference: Ozsoy, Hamidi, Erdogan, Pretorius & Cichocki, "Self-Supervised Learning with an
    Information Maximization Criterion", NeurIPS 2022.

    ``forward(*views)`` returns ``(loss, parts)``; ``parts["logdet"]`` is the detached (V,) tensor.

    Examples
    --------
    >>> import torch
    >>> from entropylib.criteria import LogDet
    >>> loss, parts = LogDet()(torch.randn(64, 8), torch.randn(64, 8))
    >>> bool(torch.isclose(loss, -parts["logdet"].sum()))
    True
    """

    def __init__(self, coeff: float = 1.0, eps: float = 1e-4) -> None:
        super().__init__()
        self.coeff = check_coeff("coeff", coeff, positive=True)
        self.eps = check_coeff("eps", eps, positive=True)

    def extra_repr(self) -> str:
        return f"coeff={self.coeff}, eps={self.eps}"

    def forward(self, *views: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_views(views, "LogDet")
        with full_precision(views):
            gathered = gather_views(views, "LogDet")
            logdet = torch.stack([logdet_covariance(z, eps=self.eps) for z in gathered])
            loss = -self.coeff * logdet.sum()
            check_finite_loss(loss, gathered, "LogDet")
        return loss, {"logdet": logdet.detach()}
