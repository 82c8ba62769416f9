"""SimSiamLoss against a numpy reference, stop-gradient and errors."""

import numpy as np
import pytest
import torch

from entropylib.criteria import SimSiamLoss


def reference_simsiam(p1, p2, z1, z2):
    def cos(a, b):
        return np.mean(
            np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        )

    return -(cos(p1, z2) + cos(p2, z1)) / 2


def test_matches_reference():
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(25, 9)) for _ in range(4)]
    loss, parts = SimSiamLoss()(*[torch.from_numpy(a) for a in arrays])
    assert loss.item() == pytest.approx(reference_simsiam(*arrays), rel=1e-10, abs=1e-12)
    assert parts["cosine"].item() == pytest.approx(-loss.item(), rel=1e-12)


def test_stop_gradient_and_symmetry():
    p1, p2, z1, z2 = (torch.randn(12, 6, dtype=torch.float64, requires_grad=True) for _ in range(4))
    loss, _ = SimSiamLoss()(p1, p2, z1, z2)
    loss.backward()
    assert z1.grad is None and z2.grad is None
    assert p1.grad is not None and p2.grad is not None
    swapped, _ = SimSiamLoss()(p2, p1, z2, z1)
    assert swapped.item() == pytest.approx(loss.item(), rel=1e-12)
    # aligned predictions reach the minimum -1
    z = torch.randn(12, 6)
    assert SimSiamLoss()(2 * z, 3 * z, z, z)[0].item() == pytest.approx(-1.0, abs=1e-6)


def test_gradcheck():
    inputs = [torch.randn(6, 4, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    z1, z2 = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: SimSiamLoss()(a, b, z1, z2)[0], inputs)


def test_errors():
    with pytest.raises(TypeError, match="missing 2 required positional arguments"):
        SimSiamLoss()(torch.randn(5, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="same shape"):
        SimSiamLoss()(torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3), torch.randn(4, 3))
