"""Criteria built on L2-normalised rows (MMCR, Uniformity with alignment, SimSiamLoss) at any
finite embedding scale: they depend only on each row's direction, so scaling a view by a power
of 2 must leave the loss unchanged and divide the gradient by that power."""

import numpy as np
import pytest
import torch

from entropylib.criteria import MMCR, SimSiamLoss, Uniformity
from entropylib.criteria.views import unit_rows

LOSSES = {
    "mmcr": lambda a, b: MMCR()(a, b)[0],
    "uniformity": lambda a, b: Uniformity(align_coeff=1.0)(a, b)[0],
    "simsiam": lambda a, b: SimSiamLoss()(a, b, b, a)[0],
}
#: powers of 2 whose squares overflow or underflow each dtype (float32: |z| ~ 1e21, 1e-21;
#: subnormal at 2^-130; float64: |z| ~ 1e180, 1e-180)
SCALES = {torch.float32: (70, -70, -130), torch.float64: (600, -600)}
PARAMS = [(dtype, e) for dtype, exps in SCALES.items() for e in exps]


def loss_and_grad(name, a, b):
    a = a.clone().requires_grad_()
    loss = LOSSES[name](a, b)
    loss.backward()
    return loss.detach(), a.grad


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize(("dtype", "exponent"), PARAMS)
def test_normalised_criteria_do_not_depend_on_the_embedding_scale(name, dtype, exponent):
    """At |z| ~ 1e21 in float32 the row norms overflowed to inf and every direction became 0
    (MMCR and SimSiam returned -0, Uniformity 0); below the normalisation's eps (1e-12, 1e-8)
    rows were divided by eps instead of their norm. Both silently."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(32, 6, generator=g, dtype=dtype) for _ in range(2))
    loss, grad = loss_and_grad(name, a, b)
    scale = 2.0**exponent
    scaled_loss, scaled_grad = loss_and_grad(name, a * scale, b * scale)
    # a subnormal float32 row keeps only ~20 bits of its direction
    rel = 1e-4 if dtype == torch.float32 and exponent < -126 else 1e-6
    assert scaled_loss.item() == pytest.approx(loss.item(), rel=rel)
    torch.testing.assert_close(scaled_grad * scale, grad, rtol=rel * 10, atol=rel)


def test_unit_rows_keeps_zero_rows_and_unit_norms_at_any_scale():
    z = torch.tensor([[3e30, 4e30], [0.0, 0.0], [3e-40, 4e-40], [-3.0, 4.0]])
    expected = torch.tensor([[0.6, 0.8], [0.0, 0.0], [0.6, 0.8], [-0.6, 0.8]])
    torch.testing.assert_close(unit_rows(z), expected, rtol=1e-5, atol=0)


def test_e2mc_takes_numpy_integer_windows_and_numpy_bools():
    """E2MC(m=np.int64(8)) (a window read from a numpy config or computed with numpy) was
    refused as "m must be None or a positive integer", and bias_correction=np.True_ too."""
    from entropylib.criteria import E2MC

    g = torch.Generator().manual_seed(0)
    z1, z2 = (torch.randn(64, 4, generator=g) for _ in range(2))
    expected, _ = E2MC(m=8, bias_correction=True)(z1, z2)
    loss, _ = E2MC(m=np.int64(8), bias_correction=np.True_)(z1, z2)
    assert loss.item() == expected.item()
    assert type(E2MC(m=np.int32(8)).m) is int
