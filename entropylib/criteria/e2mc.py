r"""E2MC: effective entropy maximization criterion (marginal m-spacing entropies + decorrelation).

Chakraborty, LeCun, Rudner & Learned-Miller, "Improving Pre-trained Self-Supervised Embeddings
Through Effective Entropy Maximization", AISTATS 2025 (arXiv 2411.15931).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from entropylib import spacings, validation
from entropylib.criteria.views import check_coeff, check_views, full_precision, gather_views

__all__ = ["E2MC", "REFERENCE_SETTINGS", "TRANSFORMS", "hypercov", "marginal_entropy", "squash"]

TRANSFORMS = ("sigmoid", "gaussian_cdf")

#: The reference's transform and coefficients per base method (docs/method.md).
REFERENCE_SETTINGS: dict[str, dict[str, Any]] = {
    "vicreg": {"transform": "sigmoid", "ent_coeff": 10.0, "cov_coeff": 1.0},
    "swav": {"transform": "gaussian_cdf", "ent_coeff": 10.0, "cov_coeff": 1.0},
    "simsiam": {"transform": "gaussian_cdf", "ent_coeff": 1.0, "cov_coeff": 25.0},
}


def squash(z: torch.Tensor, transform: str) -> torch.Tensor:
    r"""Map every coordinate into (0, 1) with a fixed increasing map T.

    ``"sigmoid"``: :math:`T(z) = 1 / (1 + e^{-z})` (the reference's "hypercube");
    ``"gaussian_cdf"``: :math:`T(z) = \Phi(z) = \tfrac12 \operatorname{erfc}(-z/\sqrt2)`, the
    standard normal CDF, written with erfc so the lower tail keeps its relative precision.

    Examples
    --------
    >>> import torch
    >>> squash(torch.tensor([0.0]), "gaussian_cdf")
    tensor([0.5000])
    """
    if transform == "sigmoid":
        return torch.sigmoid(z)
    if transform == "gaussian_cdf":
        return 0.5 * torch.erfc(-z / math.sqrt(2.0))
    raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")


def marginal_entropy(
    u: torch.Tensor, *, m: int, eps: float = 1e-7, bias_correction: bool = False
) -> torch.Tensor:
    r"""Per-column m-spacing entropies (D,) of ``u`` (N, D), the RADICAL form used by E2MC.

    .. math::
        H_d = \frac{1}{N-m} \sum_{i=1}^{N-m}
              \log\Big(\frac{N+1}{m}\big(u_{(i+m),d} - u_{(i),d}\big) + \epsilon\Big)

    This is :func:`entropylib.spacings.m_spacing` with ``ties="floor"``: a zero spacing (tied
    values, e.g. coordinates saturated to exactly 0 or 1 by the transform) is replaced by one
    ulp of its column's range, ``finfo(dtype).eps * (max - min)``, and carries no gradient.
    A tie therefore adds a finite constant to the loss and never a 1/eps-sized gradient.
    Spacings above that floor are genuine and keep their exact gradient.

    Examples
    --------
    >>> import torch
    >>> u = torch.rand(400, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> marginal_entropy(u, m=20).abs().max() < 0.1  # U(0,1) has entropy 0
    tensor(True)
    """
    return spacings.m_spacing(u, m=m, eps=eps, bias_correction=bias_correction, ties="floor")


def hypercov(u: torch.Tensor) -> torch.Tensor:
    r"""Off-diagonal covariance energy of ``u`` (N, D), divided by D (VICReg's penalty).

    .. math::
        C = \frac{1}{N-1} \tilde u^\top \tilde u, \qquad
        \text{penalty} = \frac1D \sum_{j \ne k} C_{jk}^2

    with :math:`\tilde u` the column-centred ``u`` and N the actual number of rows. Computed
    as :math:`(\|C\|_F^2 - \sum_j C_{jj}^2)/D`, with :math:`\|C\|_F = \|\tilde u \tilde u^\top\|_F
    / (N-1)` when N < D, so the cost is :math:`O(N D \min(N, D))` instead of :math:`O(N D^2)`.

    Examples
    --------
    >>> import torch
    >>> hypercov(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))  # C = [[.5, .5], [.5, .5]]
    tensor(0.2500)
    """
    n, d = u.shape
    c = u - u.mean(dim=0)
    diag = c.pow(2).sum(dim=0)
    gram = c @ c.T if n < d else c.T @ c
    off = gram.pow(2).sum() - diag.pow(2).sum()
    return off / ((n - 1) ** 2 * d)


class E2MC(nn.Module):
    r"""E2MC loss: maximize marginal entropies of T(z), penalize covariance of T(z).

    For views :math:`z^{(1)}, \dots, z^{(V)}`, each (N, D) and all-gathered over ranks with
    gradient (N is the global batch), and :math:`u^{(v)} = T(z^{(v)})`:

    .. math::
        \mathcal L = \text{cov\_coeff} \sum_{v} \text{hypercov}(u^{(v)})
        - \text{ent\_coeff} \, \frac1V \sum_{v} \frac1D \sum_{d} H_d(u^{(v)})

    exactly the reference's aggregation: covariance summed over views, entropy averaged.
    :math:`H_d` is the m-spacing estimate (:func:`marginal_entropy`, from
    :func:`entropylib.spacings.m_spacing`) with ``m = round(sqrt(N))`` of the actual batch
    unless ``m`` is given; ``hypercov`` divides by the actual ``N - 1``.

    Unlike the reference, the criterion is always computed in float32 (float64 for float64
    input) with autocast disabled, so fp16/bf16 inputs neither saturate the transform early
    nor lose spacings to rounding. Ties (tied inputs, or coordinates the transform saturates
    to exactly 0 or 1) contribute a finite constant and no gradient, see :func:`marginal_entropy`.
    Entropy-only and covariance-only ablations are ``cov_coeff=0`` and ``ent_coeff=0``.
    :data:`REFERENCE_SETTINGS` holds the reference's transform and coefficients per base method.

    ``forward(*views)`` returns ``(loss, parts)``; ``parts["entropy"]`` and ``parts["cov"]`` are
    detached (V,) tensors holding each view's mean marginal entropy and covariance penalty.

    Parameters
    ----------
    transform : {"sigmoid", "gaussian_cdf"}
        The squashing map T (see :func:`squash`).
    ent_coeff, cov_coeff : float
        Weights of the entropy and covariance terms (>= 0, not both 0).
    m : int, optional
        Spacing window; None for ``round(sqrt(N))``. N must be at least ``2 m + 1``.
    eps : float
        Constant inside the log (> 0, so a constant column still has a finite entropy).
    bias_correction : bool
        Subtract the estimator's exact bias on uniform samples (a constant).

    Examples
    --------
    >>> import torch
    >>> from entropylib.criteria import E2MC
    >>> crit = E2MC(transform="gaussian_cdf", ent_coeff=10.0, cov_coeff=1.0)
    >>> z1, z2 = torch.randn(256, 32, requires_grad=True), torch.randn(256, 32)
    >>> loss, parts = crit(z1, z2)
    >>> loss.backward()
    >>> parts["entropy"].shape, parts["cov"].shape
    (torch.Size([2]), torch.Size([2]))
    """

    def __init__(
        self,
        transform: str = "sigmoid",
        ent_coeff: float = 10.0,
        cov_coeff: float = 1.0,
        m: int | None = None,
        eps: float = 1e-7,
        bias_correction: bool = False,
    ) -> None:
        super().__init__()
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
        self.transform = transform
        self.ent_coeff = check_coeff("ent_coeff", ent_coeff)
        self.cov_coeff = check_coeff("cov_coeff", cov_coeff)
        if self.ent_coeff == 0 and self.cov_coeff == 0:
            raise ValueError("ent_coeff and cov_coeff are both 0: the criterion would be 0")
        if m is not None and not (validation.is_integer(m) and m >= 1):
            raise ValueError(f"m must be None or a positive integer, got {m!r}")
        self.m = None if m is None else int(m)
        self.eps = check_coeff("eps", eps, positive=True)
        if not isinstance(bias_correction, (bool, np.bool_)):
            raise ValueError(f"bias_correction must be True or False, got {bias_correction!r}")
        self.bias_correction = bool(bias_correction)

    def extra_repr(self) -> str:
        return (
            f"transform={self.transform!r}, ent_coeff={self.ent_coeff}, "
            f"cov_coeff={self.cov_coeff}, m={self.m}, eps={self.eps}, "
            f"bias_correction={self.bias_correction}"
        )

    def forward(self, *views: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_views(views, "E2MC")
        entropies, covs = [], []
        with full_precision(views):
            for z in gather_views(views, "E2MC", min_rows=1):
                # Column-major u: the per-column sort inside m_spacing then runs over
                # contiguous memory, which is markedly faster on CPU than a strided sort.
                u = squash(z.T.contiguous(), self.transform).T
                # A term with coefficient 0 (an ablation) is still computed for logging,
                # but without building its graph.
                with torch.set_grad_enabled(torch.is_grad_enabled() and self.ent_coeff != 0):
                    h = marginal_entropy(
                        u,
                        m=self._window(z.shape[0]),
                        eps=self.eps,
                        bias_correction=self.bias_correction,
                    )
                    entropies.append(h.mean())
                with torch.set_grad_enabled(torch.is_grad_enabled() and self.cov_coeff != 0):
                    covs.append(hypercov(u))
            entropy = torch.stack(entropies)
            cov = torch.stack(covs)
            loss = self.cov_coeff * cov.sum() - self.ent_coeff * entropy.mean()
        return loss, {"entropy": entropy.detach(), "cov": cov.detach()}

    def _window(self, n: int) -> int:
        m = spacings.default_window(n) if self.m is None else self.m
        if n < 2 * m + 1:
            raise ValueError(
                f"E2MC with window m={m} needs a (global) batch of at least {2 * m + 1} "
                f"samples, got N={n}"
            )
        return m
