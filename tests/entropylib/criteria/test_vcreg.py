"""VCReg against a numpy reference and its errors."""

import numpy as np
import pytest
import torch

from entropylib.criteria import VCReg


def reference_vcreg(views, std_coeff=1.0, cov_coeff=0.01, gamma=1.0):
    hinges, covs = [], []
    for z in views:
        d = z.shape[1]
        hinges.append(np.mean(np.maximum(0.0, gamma - np.sqrt(z.var(axis=0, ddof=1) + 1e-4))))
        c = np.cov(z, rowvar=False)
        covs.append((c[~np.eye(d, dtype=bool)] ** 2).sum() / d)
    return std_coeff * np.mean(hinges) + cov_coeff * np.sum(covs)


@pytest.mark.parametrize(
    ("n_views", "kwargs"), [(2, {}), (1, {}), (3, {"gamma": 0.5, "cov_coeff": 2.0})]
)
def test_matches_reference(n_views, kwargs):
    rng = np.random.default_rng(n_views)
    views = [rng.normal(size=(30, 10)) * rng.uniform(0.2, 1.5, size=10) for _ in range(n_views)]
    loss, parts = VCReg(**kwargs)(*[torch.from_numpy(v) for v in views])
    assert loss.item() == pytest.approx(reference_vcreg(views, **kwargs), rel=1e-10, abs=1e-12)
    assert parts["variance"].shape == parts["cov"].shape == (n_views,)


def test_gradcheck():
    z = torch.randn(8, 3, dtype=torch.float64, requires_grad=True) * 0.5
    assert torch.autograd.gradcheck(
        lambda a: VCReg(cov_coeff=1.0)(a)[0], (z.detach().requires_grad_(),)
    )


def test_errors():
    with pytest.raises(ValueError, match="std_coeff must be a finite number >= 0"):
        VCReg(std_coeff=-0.1)
    with pytest.raises(ValueError, match="both 0"):
        VCReg(std_coeff=0, cov_coeff=0)
    with pytest.raises(ValueError, match="gamma must be a finite number > 0"):
        VCReg(gamma=-1)
    with pytest.raises(ValueError, match="same shape"):
        VCReg()(torch.randn(5, 3), torch.randn(6, 3))
    with pytest.raises(ValueError, match="2-D"):
        VCReg()(torch.randn(5, 3, 1))
    with pytest.raises(ValueError, match="at least 2"):
        VCReg()(torch.randn(1, 3))
