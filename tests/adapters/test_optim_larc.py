"""LARS with LARC clipping (``clip=True``, SwAV's optimizer), in both regimes of the trust ratio.

LARC (You, Gitman & Ginsburg 2017, in NVIDIA apex's form used by SwAV), written here from its
definition for one weight tensor w with gradient g, weight decay wd, trust coefficient eta,
learning rate lr and momentum beta:

    local = eta ||w|| / (||g|| + wd ||w||)        (norms of g and w separately, not of g + wd w)
    q     = min(local / lr, 1)                     (clipping: adaptation never raises the step)
    mu   <- beta mu + q (g + wd w)
    w    <- w - lr mu

When local / lr >= 1 the step is plain momentum SGD with weight decay ("clipped"); below it the
step is lr * q = local per unit of (g + wd w), independent of lr ("adapted").
"""

import numpy as np
import pytest
import torch

from adapters.optim import LARS, lars_param_groups

LR, WD, ETA, BETA = 0.1, 0.01, 0.02, 0.9


def larc_reference(w, grads):
    """Weights after one LARC step per gradient in ``grads`` (numpy, float64), and the q's."""
    w = w.copy()
    mu = np.zeros_like(w)
    qs = []
    for g in grads:
        local = ETA * np.linalg.norm(w) / (np.linalg.norm(g) + WD * np.linalg.norm(w))
        q = min(local / LR, 1.0)
        qs.append(local / LR)
        mu = BETA * mu + q * (g + WD * w)
        w = w - LR * mu
    return w, qs


@pytest.mark.parametrize(("grad_scale", "clipped"), [(1e-3, True), (3.0, False)])
def test_larc_step_in_both_regimes(grad_scale, clipped):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(5, 4))
    b0 = rng.normal(size=5)
    grads = [rng.normal(size=(5, 4)) * grad_scale for _ in range(2)]
    bias_grads = [rng.normal(size=5) for _ in range(2)]
    want, qs = larc_reference(w0, grads)
    assert all((q > 1) == clipped for q in qs)  # the regime under test, at both steps
    assert all(abs(q - 1) > 0.1 for q in qs)

    module = torch.nn.Module()
    module.w = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    module.b = torch.nn.Parameter(torch.from_numpy(b0.copy()))
    opt = LARS(
        lars_param_groups(module, weight_decay=WD), lr=LR, momentum=BETA, eta=ETA, clip=True
    )
    for g, gb in zip(grads, bias_grads, strict=True):
        module.w.grad, module.b.grad = torch.from_numpy(g.copy()), torch.from_numpy(gb.copy())
        opt.step()
    np.testing.assert_allclose(module.w.detach().numpy(), want, rtol=1e-12, atol=1e-14)
    # a bias: plain momentum SGD, no weight decay, no adaptation, clipped or not
    want_b = b0 - LR * bias_grads[0] - LR * (BETA * bias_grads[0] + bias_grads[1])
    np.testing.assert_allclose(module.b.detach().numpy(), want_b, rtol=1e-12, atol=1e-14)
