"""Every criterion treats bad input alike: NaN/inf views and overflow raise one clear
ValueError, numpy scalar coefficients are real numbers, zero embeddings give bounded gradients."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from entropylib.criteria import CRITERIA, E2MC, MMCR, NonFiniteInput, VCReg, VICRegLoss
from entropylib.criteria.mmcr import centroid_nuclear_norm
from entropylib.criteria.views import caller_checks_finite

ALL = {**{name: CRITERIA[name] for name in ("e2mc", "vcreg", "mmcr", "uniformity", "logdet")},
       "vicreg_loss": VICRegLoss}


def views(n=32, d=6, scale=1.0, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=dtype) * scale for _ in range(2)]


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("which", [0, 1])
def test_non_finite_views_raise_one_clear_error(name, bad, which):
    """VCReg, Uniformity and VICRegLoss returned NaN; MMCR and LogDet raised LinAlgError."""
    z = views()
    z[which][3, 2] = bad
    # a ValueError to a user; its own class lets a training loop report a divergence instead
    with pytest.raises(NonFiniteInput, match=rf"view {which} has NaN or infinite values"):
        ALL[name]()(*z)
    assert issubclass(NonFiniteInput, ValueError)


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_caller_that_checks_finiteness_gets_no_exception(name, bad):
    """A training loop checks its loss and embeddings on the device and reads the result later:
    the criterion must not raise on one process only (LogDet's Cholesky factorisation did on
    NaN, MMCR's SVD on inf). A NaN reaches the loss, and an inf need not (E2MC's sigmoid maps
    it to 1): the caller checks the embeddings as well."""
    z = views()
    z[1][3, 2] = bad
    with caller_checks_finite():
        loss, _ = ALL[name]()(*z)
    if bad != bad:  # NaN
        assert not torch.isfinite(loss)
    with pytest.raises(NonFiniteInput):  # outside the block the check is back
        ALL[name]()(*z)


@pytest.mark.parametrize("value", [np.float32(2), np.int64(2), np.float64(0.5), np.uint8(3)])
def test_numpy_scalar_coefficients_are_accepted(value):
    expected = float(value)
    assert E2MC(ent_coeff=value).ent_coeff == expected
    assert VCReg(std_coeff=value).std_coeff == expected
    assert MMCR(weight=value).weight == expected
    assert CRITERIA["uniformity"](t=value).t == expected
    assert CRITERIA["logdet"](coeff=value).coeff == expected
    assert VICRegLoss(sim_coeff=value).sim_coeff == expected


@pytest.mark.parametrize("value", [True, np.True_, "1", None, [1.0], 1 + 0j])
def test_bools_and_non_numbers_are_refused(value):
    for make in (lambda: E2MC(ent_coeff=value), lambda: VCReg(cov_coeff=value),
                 lambda: MMCR(weight=value), lambda: VICRegLoss(std_coeff=value)):
        with pytest.raises(ValueError, match="must be a real number"):
            make()


def reference_vcreg(z, gamma=1.0, eps=1e-4):
    """VICReg's terms written with numpy in float64 (np.var / np.cov)."""
    z = z.detach().double().numpy()
    hinge = np.maximum(0.0, gamma - np.sqrt(np.var(z, axis=0, ddof=1) + eps)).mean()
    cov = np.cov(z, rowvar=False)
    off = (cov**2).sum() - (np.diag(cov) ** 2).sum()
    return hinge, off / z.shape[1]


@pytest.mark.parametrize(("scale", "dtype"), [(1e30, torch.float64), (1e8, torch.float32),
                                              (1e-20, torch.float32)])
def test_vcreg_and_vicreg_at_large_scale(scale, dtype):
    """At 1e30 (float64) the covariance penalty is 1e120: it was NaN (inf - inf)."""
    z1, z2 = views(scale=scale, dtype=dtype)
    (h1, c1), (h2, c2) = reference_vcreg(z1), reference_vcreg(z2)
    loss, parts = VCReg()(z1, z2)
    assert float(loss) == pytest.approx((h1 + h2) / 2 + 0.01 * (c1 + c2), rel=1e-4)
    loss, parts = VICRegLoss()(z1, z2)
    mse = float(((z1.double() - z2.double()) ** 2).mean())
    expected = 25 * mse + 25 * (h1 + h2) / 2 + (c1 + c2)
    assert float(loss) == pytest.approx(expected, rel=1e-4)


def test_loss_beyond_the_dtype_raises():
    """float32 at 1e30: the penalty (~1e120) does not exist in float32; say so, no NaN."""
    z1, z2 = views(scale=1e30, dtype=torch.float32)
    for crit in (VCReg(), VICRegLoss()):
        with pytest.raises(NonFiniteInput, match="overflows torch.float32 at this embedding"):
            crit(z1, z2)


def test_variance_hinge_gradient_at_large_scale():
    """The hinge is flat (std >> gamma) and the covariance gradient finite at 1e30, float64."""
    z1, z2 = (v.requires_grad_() for v in views(scale=1e30))
    loss, _ = VCReg()(z1, z2)
    loss.backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()


def test_mmcr_gradient_on_zero_embeddings():
    """All-zero embeddings have no direction: bounded (zero) gradient, not 4e12."""
    z = torch.zeros(8, 4, requires_grad=True)
    loss, parts = MMCR()(z, torch.zeros(8, 4))
    loss.backward()
    assert float(parts["nuclear_norm"]) == 0.0
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_mmcr_nonzero_rows_keep_the_normalize_gradient():
    """Rows away from zero: the same loss and gradient as with F.normalize."""
    z1, z2 = views(dtype=torch.float64)
    z1[0] = 0.0  # one dead row does not disturb the others
    a = z1.clone().requires_grad_()
    b = z1.clone().requires_grad_()
    ours = centroid_nuclear_norm(a, z2)
    ref_centroids = torch.stack([F.normalize(b, dim=1), F.normalize(z2, dim=1)]).mean(dim=0)
    ref = torch.linalg.matrix_norm(ref_centroids, ord="nuc")
    (ga,) = torch.autograd.grad(ours, a)
    (gb,) = torch.autograd.grad(ref, b)
    assert float(ours.detach()) == pytest.approx(float(ref.detach()), rel=1e-12)
    torch.testing.assert_close(ga[1:], gb[1:], rtol=1e-9, atol=1e-12)
    assert torch.equal(ga[0], torch.zeros(6, dtype=torch.float64))
