r"""SwAV loss: swapped prediction of Sinkhorn-Knopp codes (Caron et al., NeurIPS 2020)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from entropylib import validation
from entropylib.criteria.distributed import all_reduce_max, all_reduce_sum, global_rows
from entropylib.criteria.views import check_coeff, check_views, full_precision, working_dtype

__all__ = ["SwAVLoss", "sinkhorn_knopp"]


@torch.no_grad()
def sinkhorn_knopp(
    scores: torch.Tensor, *, epsilon: float = 0.05, iterations: int = 3
) -> torch.Tensor:
    r"""Soft codes (B, K) that split the global batch equally over K prototypes.

    With :math:`Q = \exp(S / \epsilon)` over the global batch (rows of every rank, B in all),
    normalised to total mass 1, each iteration rescales every prototype (column) to mass
    :math:`1/K` (column sums all-reduced over ranks) and then every sample (row) to mass
    :math:`1/B`; the result is multiplied by B so each row is a distribution over prototypes.
    The scaling is done on :math:`\log Q` with log-sum-exp normalisers: the official code's
    :math:`\exp` underflows to 0 over a whole column when a prototype scores far below the
    best (a gap beyond about 90 epsilon in float32), and its codes become NaN. No gradient
    flows through the codes.

    Reference: Cuturi, "Sinkhorn distances", NeurIPS 2013; the distributed form of SwAV's
    official ``distributed_sinkhorn``.

    Examples
    --------
    >>> import torch
    >>> q = sinkhorn_knopp(torch.randn(32, 10))
    >>> torch.allclose(q.sum(dim=1), torch.ones(32))
    True
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (B, K), got shape {tuple(scores.shape)}")
    k = scores.shape[1]
    with full_precision([scores]):
        s = scores.detach().to(working_dtype(scores))
        b = global_rows(s)  # an int, or a tensor of s's dtype on its device (no host read)
        log_b = b.log() if isinstance(b, torch.Tensor) else math.log(b)
        log_q = s / epsilon
        log_q = log_q - _global_log_sum_exp(log_q, dim=None)
        for _ in range(iterations):
            log_q = log_q - (_global_log_sum_exp(log_q, dim=0) + math.log(k))
            log_q = log_q - (torch.logsumexp(log_q, dim=1, keepdim=True) + log_b)
        return torch.exp(log_q + log_b)


def _global_log_sum_exp(x: torch.Tensor, dim: int | None) -> torch.Tensor:
    """log of the sum of exp(x) over ``dim`` (every entry if None) and over ranks; the global
    maximum is factored out, so the sum is at least 1 and never underflows."""
    peak = all_reduce_max(x.amax() if dim is None else x.amax(dim=dim, keepdim=True))
    total = torch.exp(x - peak)
    total = total.sum() if dim is None else total.sum(dim=dim, keepdim=True)
    return torch.log(all_reduce_sum(total)) + peak


class SwAVLoss(nn.Module):
    r"""SwAV swapped-prediction loss over multi-crop prototype scores (official semantics).

    ``scores[v]`` is the (B, K) matrix of prototype scores of crop v (L2-normalised embedding
    times L2-normalised prototypes), the global crops first. For every crop ``a`` in
    ``crops_for_assign`` (the two global crops), codes :math:`q_a` come from
    :func:`sinkhorn_knopp` on that crop's detached scores, after the optional queue scores of
    slot ``a`` have been prepended (only the batch's rows are kept). Then

    .. math::
        \mathcal L = \frac{1}{|A|} \sum_{a \in A} \frac{1}{V - 1} \sum_{v \ne a}
        -\frac1B \sum_i \sum_k q_{a,ik} \log \operatorname{softmax}(s_{v,i} / \tau)_k

    Sinkhorn-Knopp runs over the global batch (sums all-reduced), the rest on this rank's
    batch. The caller owns the queue: ``queue_scores[j]`` is the (L, K) score matrix of the
    queued embeddings for slot ``crops_for_assign[j]`` (queue embeddings times the current
    prototypes), passed once the queue is full, as in the official code.

    Reference: Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
    Assignments", NeurIPS 2020, and the official ``main_swav.py`` (3 Sinkhorn iterations,
    epsilon 0.05, temperature 0.1).

    ``forward(*scores, queue_scores=None)`` returns ``(loss, parts)``; ``parts["per_assignment"]``
    is the detached (``|A|``,) tensor of the swapped-prediction loss of each assigned crop.

    Examples
    --------
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from entropylib.criteria import SwAVLoss
    >>> prototypes = F.normalize(torch.randn(30, 16), dim=1)
    >>> crops = [F.normalize(torch.randn(8, 16), dim=1) for _ in range(4)]  # 2 global + 2 local
    >>> loss, parts = SwAVLoss()(*[c @ prototypes.T for c in crops])
    >>> parts["per_assignment"].shape
    torch.Size([2])
    """

    def __init__(
        self,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        crops_for_assign: Sequence[int] = (0, 1),
    ) -> None:
        super().__init__()
        self.temperature = check_coeff("temperature", temperature, positive=True)
        self.epsilon = check_coeff("epsilon", epsilon, positive=True)
        if not (validation.is_integer(sinkhorn_iterations) and sinkhorn_iterations >= 1):
            raise ValueError(
                f"sinkhorn_iterations must be a positive integer, got {sinkhorn_iterations!r}"
            )
        self.sinkhorn_iterations = int(sinkhorn_iterations)
        crops = tuple(crops_for_assign)
        if not crops or not all(validation.is_integer(c) and c >= 0 for c in crops):
            raise ValueError(
                f"crops_for_assign must be a non-empty sequence of crop indices >= 0, got {crops!r}"
            )
        crops = tuple(int(c) for c in crops)
        if len(set(crops)) != len(crops):
            raise ValueError(f"crops_for_assign has repeated indices: {crops!r}")
        self.crops_for_assign = crops

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, epsilon={self.epsilon}, "
            f"sinkhorn_iterations={self.sinkhorn_iterations}, "
            f"crops_for_assign={self.crops_for_assign}"
        )

    def forward(
        self, *scores: torch.Tensor, queue_scores: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_views(scores, "SwAVLoss", min_count=2)
        if max(self.crops_for_assign) >= len(scores):
            raise ValueError(
                f"crops_for_assign={self.crops_for_assign} needs at least "
                f"{max(self.crops_for_assign) + 1} crops, got {len(scores)}"
            )
        if queue_scores is not None:
            self._check_queue(queue_scores, scores[0].shape[1])
        n = scores[0].shape[0]
        dtype = working_dtype(scores[0])
        sublosses = []
        with full_precision(scores):
            log_p = [F.log_softmax(s.to(dtype) / self.temperature, dim=1) for s in scores]
            for j, a in enumerate(self.crops_for_assign):
                out = scores[a].detach()
                if queue_scores is not None:
                    out = torch.cat([queue_scores[j].detach().to(out.dtype), out])
                q = sinkhorn_knopp(out, epsilon=self.epsilon, iterations=self.sinkhorn_iterations)
                q = q[-n:]
                terms = [-(q * log_p[v]).sum(dim=1).mean() for v in range(len(scores)) if v != a]
                sublosses.append(torch.stack(terms).sum() / (len(scores) - 1))
            per_assignment = torch.stack(sublosses)
            loss = per_assignment.mean()
        return loss, {"per_assignment": per_assignment.detach()}

    def _check_queue(self, queue_scores: Sequence[torch.Tensor], k: int) -> None:
        if len(queue_scores) != len(self.crops_for_assign):
            raise ValueError(
                f"queue_scores needs one (L, K) tensor per assigned crop "
                f"({len(self.crops_for_assign)}), got {len(queue_scores)}"
            )
        for j, qs in enumerate(queue_scores):
            if not isinstance(qs, torch.Tensor) or qs.ndim != 2 or qs.shape[1] != k:
                shape = tuple(qs.shape) if isinstance(qs, torch.Tensor) else type(qs).__name__
                raise ValueError(f"queue_scores[{j}] must be (L, {k}), got {shape}")
