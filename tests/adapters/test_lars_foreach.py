"""LARS / LARC with list (foreach) kernels: the update of the definition, every tensor at once.

The reference below is written from the definitions (You, Gitman & Ginsburg 2017 for LARS;
LARC's clipped trust ratio as used by SwAV) in float64 with Python scalars per tensor; the
optimizer must agree with it to float32 rounding over several steps with momentum, weight
decay, an excluded (bias / norm) group, a zero-norm weight and a parameter without gradient.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from adapters.optim import LARS, lars_param_groups

REPO = Path(__file__).resolve().parents[2]
LR, WD, ETA, MOMENTUM = 0.3, 0.05, 0.02, 0.9


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Module()
    model.conv = nn.Conv2d(3, 4, 3)
    model.fc = nn.Linear(5, 6)
    model.zero = nn.Linear(3, 2, bias=False)  # zero weights: the ratio falls back to 1
    nn.init.zeros_(model.zero.weight)
    model.frozen_grad = nn.Linear(2, 2)       # gets no gradient: skipped, no state
    model.norm = nn.BatchNorm1d(5)
    return model


def _gradients(model: nn.Module, step: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    grads = {name: torch.randn(p.shape, generator=g) for name, p in model.named_parameters()
             if not name.startswith("frozen_grad")}
    # a tiny gradient makes LARC's unclipped ratio exceed 1, so its clamp is exercised
    grads["fc.weight"] *= 1e-6
    return grads


def _reference(weights, grads, mus, *, clip: bool, lars_names: set[str]):
    """One step by the definition, float64, one tensor at a time."""
    out_w, out_mu = {}, {}
    for name, g in grads.items():
        w = weights[name].double()
        g = g.double()
        if name in lars_names:
            w_norm, g_norm = math.sqrt(float((w * w).sum())), math.sqrt(float((g * g).sum()))
            d = g + WD * w
            d_norm = math.sqrt(float((d * d).sum()))
            if clip:
                denom = g_norm + WD * w_norm
                trust = min(ETA * w_norm / denom / LR, 1.0) if w_norm > 0 and denom > 0 else 1.0
            else:
                trust = ETA * w_norm / d_norm if w_norm > 0 and d_norm > 0 else 1.0
            d = trust * d
        else:  # excluded: plain momentum SGD, no weight decay
            d = g
        out_mu[name] = MOMENTUM * mus.get(name, torch.zeros_like(d)) + d
        out_w[name] = w - LR * out_mu[name]
    return out_w, out_mu


@pytest.mark.parametrize("clip", [False, True])
def test_foreach_step_equals_the_definition(clip):
    model = _model()
    opt = LARS(lars_param_groups(model, weight_decay=WD), lr=LR, momentum=MOMENTUM, eta=ETA,
               clip=clip)
    lars_names = {n for n, p in model.named_parameters() if p.ndim > 1}
    weights = {n: p.detach().double().clone() for n, p in model.named_parameters()}
    mus: dict[str, torch.Tensor] = {}
    clamped = []
    for step in range(4):
        grads = _gradients(model, step)
        for name, p in model.named_parameters():
            p.grad = grads[name].clone() if name in grads else None
        opt.step()
        w_norm, g_norm = weights["fc.weight"].norm(), grads["fc.weight"].norm()
        clamped.append(float(ETA * w_norm / (g_norm + WD * w_norm) / LR) > 1)
        weights, mus = _reference(weights, grads, mus, clip=clip, lars_names=lars_names)
        for name, p in model.named_parameters():
            if name in grads:
                torch.testing.assert_close(p.detach().double(), weights[name],
                                           rtol=1e-6, atol=1e-7, msg=f"{name}, step {step}")
    assert all(p.grad is None for p in model.frozen_grad.parameters())
    assert not any(p in opt.state for p in model.frozen_grad.parameters())
    assert model.zero.weight.abs().sum() > 0  # moved by the unscaled step
    if clip:
        assert all(clamped)  # the tiny-gradient tensor hit LARC's clamp at 1 every step


def _former_implementation() -> type[LARS]:
    spec = importlib.util.spec_from_file_location("bench_lars", REPO / "benchmarks/bench_lars.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PerParameterLARS


@pytest.mark.parametrize("clip", [False, True])
def test_foreach_agrees_with_the_former_per_parameter_loop(clip):
    former = _former_implementation()
    models = [_model(), _model()]
    opts = [cls(lars_param_groups(m, weight_decay=WD), lr=LR, momentum=MOMENTUM, eta=ETA,
                clip=clip) for cls, m in zip((former, LARS), models, strict=True)]
    for step in range(5):
        grads = _gradients(models[0], step)
        for model, opt in zip(models, opts, strict=True):
            for name, p in model.named_parameters():
                p.grad = grads[name].clone() if name in grads else None
            opt.step()
    for (name, old), new in zip(models[0].named_parameters(), models[1].parameters(),
                                strict=True):
        torch.testing.assert_close(new, old, rtol=1e-6, atol=1e-8, msg=name)
    # same optimizer state layout: a checkpoint of one resumes in the other
    old_state, new_state = (o.state_dict() for o in opts)
    assert old_state["param_groups"] == new_state["param_groups"]
    assert old_state["state"].keys() == new_state["state"].keys()
    for key, value in old_state["state"].items():
        torch.testing.assert_close(new_state["state"][key]["mu"], value["mu"],
                                   rtol=1e-6, atol=1e-8)


def test_mixed_dtypes_in_one_group_step_each_in_its_own_dtype():
    w32 = nn.Parameter(torch.randn(3, 4))
    w64 = nn.Parameter(torch.randn(2, 5, dtype=torch.float64))
    start = [w32.detach().double().clone(), w64.detach().clone()]
    opt = LARS([w32, w64], lr=LR, weight_decay=WD, momentum=MOMENTUM, eta=ETA)
    grads = [torch.randn(3, 4), torch.randn(2, 5, dtype=torch.float64)]
    w32.grad, w64.grad = grads[0].clone(), grads[1].clone()
    opt.step()
    assert (w32.dtype, w64.dtype) == (torch.float32, torch.float64)
    for p, w, g in zip((w32, w64), start, grads, strict=True):
        d = g.double() + WD * w
        torch.testing.assert_close(p.detach().double(), w - LR * ETA * w.norm() / d.norm() * d,
                                   rtol=1e-6, atol=1e-7)
