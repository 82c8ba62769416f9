"""Criteria built on L2-normalised rows (MMCR, Uniformity with alignment, SimSiamLoss) at any
finite embedding scale: they depend only on each row's direction, so scaling a view by a power
of 2 must leave the loss unchanged and divide the gradient by that power."""

import numpy as np
import pytest
import torch

from entropylib.criteria import MMCR, SimSiamLoss, SwAVLoss, Uniformity
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


def log_domain_sinkhorn(scores, eps, iters=3):
    """Sinkhorn-Knopp on log Q in float64 with scipy's logsumexp (Q = exp(S / eps) / sum),
    prototypes (columns) to mass 1/K, then samples (rows) to 1/B; rows returned as
    distributions."""
    from scipy.special import logsumexp

    b, k = scores.shape
    log_q = scores / eps
    log_q = log_q - logsumexp(log_q)
    for _ in range(iters):
        log_q = log_q - logsumexp(log_q, axis=0, keepdims=True) - np.log(k)
        log_q = log_q - logsumexp(log_q, axis=1, keepdims=True) - np.log(b)
    return np.exp(log_q + np.log(b))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("scale", "eps"), [(50.0, 0.05), (1.0, 0.005)])
def test_sinkhorn_codes_stay_finite_for_any_score_range(dtype, scale, eps):
    """exp(S / eps) underflowed to 0 over a whole prototype column (a prototype far from every
    sample, here cosine ~ -1 against ~ 1 for the others) once the gap exceeded ~90 * eps in
    float32 (~700 * eps in float64): with scores not normalised to cosines (x 50) or a small
    epsilon (0.005) the column sum was 0 and the codes, and the SwAV loss with them, NaN."""
    from entropylib.criteria.swav_loss import sinkhorn_knopp

    g = torch.Generator().manual_seed(0)
    scores = torch.rand(24, 10, generator=g, dtype=torch.float64) * 2 - 1
    scores[:, 0] = -1 + 0.1 * scores[:, 0].abs()  # a dead prototype
    scores = scores * scale
    q = sinkhorn_knopp(scores.to(dtype), epsilon=eps)
    expected = log_domain_sinkhorn(scores.numpy(), eps)
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    np.testing.assert_allclose(q.double().numpy(), expected, rtol=tol, atol=tol)
    crops = [scores.to(dtype), scores.flip(0).to(dtype)]
    loss, _ = SwAVLoss(epsilon=eps)(*crops)
    assert torch.isfinite(loss)


def test_swav_takes_numpy_integer_options():
    """SwAVLoss(sinkhorn_iterations=np.int64(3)) and crops_for_assign=np.array([0, 1])
    (np.arange, a numpy config) were refused as not integers."""
    g = torch.Generator().manual_seed(0)
    crops = [torch.randn(8, 5, generator=g) for _ in range(3)]
    expected, _ = SwAVLoss(sinkhorn_iterations=3, crops_for_assign=(0, 1))(*crops)
    crit = SwAVLoss(sinkhorn_iterations=np.int64(3), crops_for_assign=np.array([0, 1]))
    assert crit(*crops)[0].item() == expected.item()
    assert crit.crops_for_assign == (0, 1) and type(crit.sinkhorn_iterations) is int
    for bad in (np.True_, np.float64(3.0)):
        with pytest.raises(ValueError, match="sinkhorn_iterations must be a positive integer"):
            SwAVLoss(sinkhorn_iterations=bad)
