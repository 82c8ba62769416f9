"""VICRegLoss against a numpy reference of the official loss, and its errors."""

import numpy as np
import pytest
import torch

from entropylib.criteria import VICRegLoss


def reference_vicreg(x, y, sim=25.0, std=25.0, cov=1.0):
    n, d = x.shape
    invariance = np.mean((x - y) ** 2)

    def hinge(a):
        return np.mean(np.maximum(0.0, 1.0 - np.sqrt(a.var(axis=0, ddof=1) + 1e-4)))

    def off_diagonal(a):
        c = np.cov(a, rowvar=False)
        return (c[~np.eye(d, dtype=bool)] ** 2).sum() / d

    return (
        sim * invariance
        + std * (hinge(x) + hinge(y)) / 2
        + cov * (off_diagonal(x) + off_diagonal(y)),
        invariance,
    )


@pytest.mark.parametrize("coeffs", [(25.0, 25.0, 1.0), (1.0, 0.5, 3.0)])
def test_matches_reference(coeffs):
    rng = np.random.default_rng(0)
    # scales around 1 so that some columns are inside and some outside the hinge
    x = rng.normal(size=(40, 12)) * rng.uniform(0.3, 2.0, size=12)
    y = x + 0.5 * rng.normal(size=(40, 12))
    loss, parts = VICRegLoss(*coeffs)(torch.from_numpy(x), torch.from_numpy(y))
    ref, invariance = reference_vicreg(x, y, *coeffs)
    assert loss.item() == pytest.approx(ref, rel=1e-10, abs=1e-12)
    assert parts["invariance"].item() == pytest.approx(invariance, rel=1e-10)
    assert loss.item() == pytest.approx(
        coeffs[0] * parts["invariance"].item()
        + coeffs[1] * parts["variance"].item()
        + coeffs[2] * parts["covariance"].item(),
        rel=1e-10,
    )


def test_symmetric_in_the_views():
    x, y = torch.randn(30, 8, dtype=torch.float64), torch.randn(30, 8, dtype=torch.float64)
    assert VICRegLoss()(x, y)[0].item() == pytest.approx(VICRegLoss()(y, x)[0].item(), rel=1e-12)


def test_gradcheck():
    x = torch.randn(10, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(10, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: VICRegLoss()(a, b)[0], (x, y))


def test_errors():
    with pytest.raises(ValueError, match="sim_coeff must be a finite number >= 0"):
        VICRegLoss(sim_coeff=-1)
    with pytest.raises(ValueError, match="gamma must be a finite number > 0"):
        VICRegLoss(gamma=0)
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        VICRegLoss()(torch.randn(5, 3))
    with pytest.raises(ValueError, match="same shape"):
        VICRegLoss()(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="2-D"):
        VICRegLoss()(torch.randn(5), torch.randn(5))
    with pytest.raises(ValueError, match="at least 2"):
        VICRegLoss()(torch.randn(1, 3), torch.randn(1, 3))
