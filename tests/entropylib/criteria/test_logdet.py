"""LogDet against numpy's slogdet of the D x D regularized covariance."""

import numpy as np
import pytest
import torch

from entropylib.criteria import LogDet


def reference(views, coeff=1.0, eps=1e-4):
    total = []
    for z in views:
        c = np.cov(z, rowvar=False) + eps * np.eye(z.shape[1])
        sign, logdet = np.linalg.slogdet(c)
        assert sign > 0
        total.append(logdet)
    return -coeff * np.sum(total), np.array(total)


@pytest.mark.parametrize(
    ("n", "d", "kwargs"), [(50, 8, {}), (12, 30, {}), (20, 20, {"eps": 0.3, "coeff": 2.0})]
)
def test_matches_reference(n, d, kwargs):
    # n < d exercises the Weinstein-Aronszajn path: the reference takes the D x D determinant
    rng = np.random.default_rng(n)
    views = [rng.normal(size=(n, d)) for _ in range(2)]
    loss, parts = LogDet(**kwargs)(*[torch.from_numpy(v) for v in views])
    ref, per_view = reference(views, **kwargs)
    assert loss.item() == pytest.approx(ref, rel=1e-10)
    np.testing.assert_allclose(parts["logdet"].numpy(), per_view, rtol=1e-10)


def test_gaussian_entropy_identity():
    # independent columns with variances s_d^2 and eps -> 0: logdet -> sum log s_d^2
    rng = np.random.default_rng(0)
    scales = np.array([0.5, 1.0, 2.0])
    z = rng.normal(size=(200000, 3)) * scales
    _, parts = LogDet(eps=1e-12)(torch.from_numpy(z))
    assert parts["logdet"].item() == pytest.approx(np.sum(np.log(scales**2)), abs=0.02)


def test_gradcheck():
    for n, d in ((10, 4), (4, 7)):
        z = torch.randn(n, d, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a: LogDet(eps=0.1)(a)[0], (z,))


def test_errors():
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        LogDet(eps=0)
    with pytest.raises(ValueError, match="coeff must be a finite number > 0"):
        LogDet(coeff=float("inf"))
    with pytest.raises(ValueError, match="same shape"):
        LogDet()(torch.randn(5, 3), torch.randn(5, 2))
    with pytest.raises(ValueError, match="at least 2"):
        LogDet()(torch.randn(1, 3))
