"""Optimizers and learning-rate schedules of the training adapters: LARS (+ LARC clipping).

LARS scales each parameter tensor's update by a trust ratio ``eta ||w|| / ||g + wd w||`` so
that every layer moves by a similar relative amount whatever its gradient scale; VICReg and
SwAV train with it. Biases and normalisation parameters (1-D tensors) are excluded from both
weight decay and the adaptation, as in the VICReg reference.

The learning rate is a pure function of the global step (:func:`lr_at`), so a resumed run
needs only the step counter to continue the schedule exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    r"""SGD with momentum and layer-wise adaptive rate scaling (You, Gitman & Ginsburg 2017).

    For a parameter group with ``lars=True``, each tensor ``w`` with gradient ``g``:

    .. math::
        d = g + \lambda w, \qquad
        q = \eta \frac{\lVert w \rVert}{\lVert d \rVert} \ \text{(1 if either norm is 0)}, \qquad
        \mu \leftarrow \beta \mu + q d, \qquad w \leftarrow w - \text{lr}\, \mu .

    With ``clip=True`` the ratio is LARC's clipped form (used by the SwAV reference through
    apex): ``q = min(eta ||w|| / (||g|| + lambda ||w||) / lr, 1)``, so adaptation only ever
    lowers the step. Groups with ``lars=False`` (see :func:`lars_param_groups`) take a plain
    momentum-SGD step without weight decay.

    A step updates all tensors of a group together with torch's list (``_foreach_*``)
    kernels: about 25 operations per step whatever the number of tensors, where a loop over
    ResNet-50's tensors dispatches about 1,200 (``benchmarks/bench_lars.py``).

    Examples
    --------
    >>> model = nn.Linear(4, 2)
    >>> opt = LARS(lars_param_groups(model, weight_decay=1e-6), lr=0.1)
    >>> model(torch.ones(3, 4)).sum().backward()
    >>> opt.step()
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float,
        *,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        eta: float = 0.001,
        clip: bool = False,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if eta <= 0:
            raise ValueError(f"eta must be > 0, got {eta}")
        defaults = dict(
            lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta, clip=clip, lars=True
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer API
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for params in _by_device_and_dtype(p for p in group["params"] if p.grad is not None):
                self._step_tensors(params, group)
        return loss

    def _step_tensors(self, params: list[torch.Tensor], group: dict) -> None:
        """One update of ``params`` (same device and dtype) with a few fused list operations."""
        grads = [p.grad for p in params]
        mus = []
        for p in params:
            state = self.state[p]
            if "mu" not in state:
                state["mu"] = torch.zeros_like(p)
            mus.append(state["mu"])
        steps = _adapted(params, grads, group) if group["lars"] else grads
        torch._foreach_mul_(mus, group["momentum"])
        torch._foreach_add_(mus, steps)
        torch._foreach_add_(params, mus, alpha=-group["lr"])


def _by_device_and_dtype(params: Iterable[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Split tensors into lists that share a device and dtype (what list kernels need)."""
    buckets: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for p in params:
        buckets.setdefault((p.device, p.dtype), []).append(p)
    return list(buckets.values())


def _adapted(
    params: list[torch.Tensor], grads: list[torch.Tensor], group: dict
) -> list[torch.Tensor]:
    """The LARS (or LARC-clipped) steps ``q d`` of every tensor, all norms computed at once."""
    wd, eta = group["weight_decay"], group["eta"]
    steps = torch._foreach_add(grads, params, alpha=wd)  # d = g + wd w
    w_norm = torch.stack(torch._foreach_norm(params))
    if group["clip"]:
        denom = torch.stack(torch._foreach_norm(grads)) + wd * w_norm
        ratio = torch.clamp(eta * w_norm / denom.clamp_min(1e-30) / group["lr"], max=1.0)
    else:
        denom = torch.stack(torch._foreach_norm(steps))
        ratio = eta * w_norm / denom.clamp_min(1e-30)
    # a zero weight or step norm leaves the step unscaled
    ratio = torch.where((w_norm > 0) & (denom > 0), ratio, torch.ones_like(ratio))
    torch._foreach_mul_(steps, list(ratio.unbind()))
    return steps


def lars_param_groups(model: nn.Module, *, weight_decay: float) -> list[dict]:
    """Split parameters into a LARS group (weights) and an excluded group (biases, norms).

    A tensor with one dimension is a bias or a normalisation scale/shift; the VICReg
    reference excludes those from weight decay and LARS adaptation.

    Examples
    --------
    >>> [len(g["params"]) for g in lars_param_groups(nn.Linear(4, 2), weight_decay=0.0)]
    [1, 1]
    """
    weights, excluded = [], []
    for p in model.parameters():
        if p.requires_grad:
            (excluded if p.ndim <= 1 else weights).append(p)
    return [
        {"params": weights, "weight_decay": weight_decay, "lars": True},
        {"params": excluded, "weight_decay": 0.0, "lars": False},
    ]


SCHEDULES = ("constant", "cosine")


def lr_at(
    step: int,
    *,
    base_lr: float,
    total_steps: int,
    schedule: str = "constant",
    warmup_steps: int = 0,
    final_lr: float = 0.0,
) -> float:
    r"""Learning rate at global ``step`` (0-based): linear warmup, then constant or cosine.

    .. math::
        \text{lr}(t) = \text{base} \frac{t+1}{W} \ (t < W), \qquad
        \text{lr}(t) = f + \tfrac12 (\text{base} - f)(1 + \cos(\pi \tfrac{t - W}{T - W}))
        \ \text{(cosine)}

    The E2MC reference continues training at a constant rate without warmup (the default).

    Examples
    --------
    >>> lr_at(0, base_lr=1.0, total_steps=10, schedule="cosine")
    1.0
    >>> lr_at(10, base_lr=1.0, total_steps=10, schedule="cosine")
    0.0
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return final_lr + 0.5 * (base_lr - final_lr) * (1.0 + math.cos(math.pi * progress))
