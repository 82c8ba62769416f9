"""Uniformity / alignment against a numpy reference of Wang & Isola's formulas."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.special import logsumexp

from entropylib.criteria import Uniformity


def reference(views, t=2.0, unif_coeff=1.0, align_coeff=0.0, alpha=2.0):
    normed = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in views]
    unif = [np.log(np.mean(np.exp(-t * pdist(e, "sqeuclidean")))) for e in normed]
    aligns = [
        np.mean(np.linalg.norm(normed[a] - normed[b], axis=1) ** alpha)
        for a in range(len(views))
        for b in range(a + 1, len(views))
    ]
    align = np.mean(aligns) if aligns else 0.0
    return unif_coeff * np.mean(unif) + align_coeff * align, np.array(unif)


@pytest.mark.parametrize(
    ("n_views", "kwargs"),
    [
        (1, {}),
        (2, {"t": 3.0, "align_coeff": 1.0}),
        (3, {"t": 0.5, "align_coeff": 0.7, "alpha": 1.0, "unif_coeff": 2.0}),
    ],
)
def test_matches_reference(n_views, kwargs):
    rng = np.random.default_rng(n_views)
    views = [rng.normal(size=(25, 6)) * 3 for _ in range(n_views)]
    loss, parts = Uniformity(**kwargs)(*[torch.from_numpy(v) for v in views])
    ref, unif = reference(views, **kwargs)
    assert loss.item() == pytest.approx(ref, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(parts["uniformity"].numpy(), unif, rtol=1e-10)


def test_large_t_stays_finite():
    # exp(-t d^2) underflows to 0 in float32 for t = 200: a direct log(mean(exp)) gives -inf
    z = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    loss, _ = Uniformity(t=200.0)(z)
    e = torch.nn.functional.normalize(z.double(), dim=1).numpy()
    expected = logsumexp(-200.0 * pdist(e, "sqeuclidean")) - np.log(40 * 39 / 2)
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_gradcheck_with_duplicate_points():
    z = torch.randn(6, 3, dtype=torch.float64)
    z[1] = z[0]  # zero distance: no sqrt singularity in the gradient
    crit = Uniformity(align_coeff=1.0)
    assert torch.autograd.gradcheck(
        lambda a, b: crit(a, b)[0], (z.requires_grad_(), torch.randn(6, 3, dtype=torch.float64))
    )


def test_errors():
    with pytest.raises(ValueError, match="t must be a finite number > 0"):
        Uniformity(t=0)
    with pytest.raises(ValueError, match="both 0"):
        Uniformity(unif_coeff=0, align_coeff=0)
    with pytest.raises(ValueError, match="at least 2 view"):
        Uniformity(align_coeff=1.0)(torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        Uniformity()(torch.randn(1, 3))
    with pytest.raises(ValueError, match="same shape"):
        Uniformity()(torch.randn(5, 3), torch.randn(5, 2))
