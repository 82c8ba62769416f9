"""MMCR against a numpy SVD reference and its errors."""

import numpy as np
import pytest
import torch

from entropylib.criteria import MMCR


def reference_mmcr(views, weight=1.0):
    normed = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in views]
    centroids = sum(normed) / len(normed)
    return -weight * np.linalg.svd(centroids, compute_uv=False).sum()


@pytest.mark.parametrize(("n_views", "shape"), [(2, (30, 8)), (4, (10, 20)), (1, (12, 5))])
def test_matches_reference(n_views, shape):
    rng = np.random.default_rng(n_views)
    views = [rng.normal(size=shape) for _ in range(n_views)]
    loss, parts = MMCR(weight=1.5)(*[torch.from_numpy(v) for v in views])
    assert loss.item() == pytest.approx(reference_mmcr(views, 1.5), rel=1e-10)
    assert parts["nuclear_norm"].item() == pytest.approx(-loss.item() / 1.5, rel=1e-12)


def test_extremes():
    # identical views on orthonormal rows: M is orthonormal, ||M||_* = N (the maximum for
    # unit rows when N <= D); views that cancel exactly give M = 0.
    e = torch.eye(6, 10, dtype=torch.float64)
    assert MMCR()(e, e)[0].item() == pytest.approx(-6.0, rel=1e-12)
    assert MMCR()(e, -e)[0].item() == pytest.approx(0.0, abs=1e-12)


def test_gradcheck():
    views = [torch.randn(6, 4, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    assert torch.autograd.gradcheck(lambda a, b: MMCR()(a, b)[0], views)


def test_errors():
    with pytest.raises(ValueError, match="weight must be a finite number > 0"):
        MMCR(weight=0)
    with pytest.raises(ValueError, match="same shape"):
        MMCR()(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="at least 1 view"):
        MMCR()()
