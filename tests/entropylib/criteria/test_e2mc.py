"""E2MC against a numpy/scipy reference, its statistical properties, precision and errors."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from entropylib import spacings
from entropylib.criteria import E2MC, REFERENCE_SETTINGS
from entropylib.criteria.e2mc import hypercov, marginal_entropy, squash


def reference_e2mc(views, transform, ent_coeff, cov_coeff, m=None, eps=1e-7):
    """The reference formula of docs/method.md, written with numpy and scipy."""
    ents, covs = [], []
    for z in views:
        u = 1 / (1 + np.exp(-z)) if transform == "sigmoid" else norm.cdf(z)
        n, d = u.shape
        w = int(np.floor(np.sqrt(n) + 0.5)) if m is None else m
        s = np.sort(u, axis=0)
        h = np.log((n + 1) / w * (s[w:] - s[:-w]) + eps).mean(axis=0)
        ents.append(h.mean())
        c = np.cov(u, rowvar=False)  # ddof 1: divides by N - 1
        covs.append((c**2).sum() - (np.diag(c) ** 2).sum())
        covs[-1] /= d
    return cov_coeff * sum(covs) - ent_coeff * np.mean(ents), np.array(ents), np.array(covs)


@pytest.mark.parametrize("transform", ["sigmoid", "gaussian_cdf"])
@pytest.mark.parametrize(
    ("n_views", "m", "eps"), [(2, None, 1e-7), (1, None, 0.05), (3, 5, 0.05), (2, 4, 1e-7)]
)
def test_matches_reference_formula(transform, n_views, m, eps):
    rng = np.random.default_rng(7)
    views = [rng.normal(size=(90, 6)) * rng.uniform(0.5, 3, size=6) for _ in range(n_views)]
    crit = E2MC(transform=transform, ent_coeff=3.0, cov_coeff=2.0, m=m, eps=eps)
    loss, parts = crit(*[torch.from_numpy(v) for v in views])
    ref, ents, covs = reference_e2mc(views, transform, 3.0, 2.0, m=m, eps=eps)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(ref, abs=1e-10, rel=1e-10)
    np.testing.assert_allclose(parts["entropy"].numpy(), ents, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(parts["cov"].numpy(), covs, rtol=1e-10, atol=1e-14)


def test_covariance_uses_gram_form_exactly_when_n_below_d():
    rng = np.random.default_rng(1)
    u = rng.uniform(size=(20, 50))
    c = np.cov(u, rowvar=False)
    expected = ((c**2).sum() - (np.diag(c) ** 2).sum()) / 50
    assert hypercov(torch.from_numpy(u)).item() == pytest.approx(expected, rel=1e-10)


def test_entropy_comes_from_the_library_m_spacing():
    u = torch.rand(200, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    expected = spacings.m_spacing(u, m=14, eps=1e-7)
    torch.testing.assert_close(marginal_entropy(u, m=14), expected, rtol=0, atol=0)


def test_bias_correction_subtracts_the_uniform_bias():
    z = torch.randn(100, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    plain = E2MC(ent_coeff=1.0, cov_coeff=0.0)(z)[1]["entropy"]
    corrected = E2MC(ent_coeff=1.0, cov_coeff=0.0, bias_correction=True)(z)[1]["entropy"]
    # E[m-spacing] on U(0,1) is log((n+1)/m) + psi(m) - psi(n+1) = log((n+1)/m) - sum_{k=m}^{n} 1/k
    exact = math.log(101 / 10) - sum(1 / k for k in range(10, 101))
    assert (plain - corrected).item() == pytest.approx(exact, abs=1e-12)


def test_bias_corrected_entropy_of_phi_of_standard_normal_is_zero():
    # Phi(X) ~ U(0,1) for X ~ N(0,1), entropy 0, and the bias-corrected m-spacing estimate is
    # exactly unbiased there; its standard deviation over 4000 x 16 values is ~0.002.
    z = torch.randn(4000, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    crit = E2MC(transform="gaussian_cdf", ent_coeff=1.0, cov_coeff=0.0, bias_correction=True)
    assert abs(crit(z)[1]["entropy"].item()) < 0.01


@pytest.mark.parametrize(
    ("transform", "sampler"),
    [
        ("gaussian_cdf", lambda g, s: s * torch.randn(2000, 16, generator=g)),
        # the standard logistic is the law whose sigmoid is uniform
        (
            "sigmoid",
            lambda g, s: s * torch.logit(torch.rand(2000, 16, generator=g).clamp(1e-6, 1 - 1e-6)),
        ),
    ],
)
def test_entropy_term_is_maximal_for_uniform_marginals(transform, sampler):
    crit = E2MC(transform=transform, ent_coeff=1.0, cov_coeff=0.0)
    g = torch.Generator().manual_seed(11)
    h = {s: crit(sampler(g, s))[1]["entropy"].item() for s in (0.5, 1.0, 2.0)}
    assert h[1.0] > h[0.5] + 0.1
    assert h[1.0] > h[2.0] + 0.1


def test_covariance_of_shuffled_columns_is_zero_in_expectation():
    # D columns that are independent permutations of one sample x: for independent
    # permutations E[C_jk^2] = s_x^4 / (N - 1) exactly, so E[penalty] = (D - 1) s_x^4 / (N - 1),
    # which goes to 0 with N, while duplicated columns give (D - 1) s_x^4 for every N.
    n, d = 400, 12
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, dtype=torch.float64, generator=g)
    u = squash(x, "gaussian_cdf")
    s4 = u.var().item() ** 2
    crit = E2MC(transform="gaussian_cdf", ent_coeff=0.0, cov_coeff=1.0)
    draws = []
    for _ in range(20):
        perm = torch.stack([x[torch.randperm(n, generator=g)] for _ in range(d)], dim=1)
        draws.append(crit(perm)[1]["cov"].item())
    assert np.mean(draws) == pytest.approx((d - 1) * s4 / (n - 1), rel=0.15)
    duplicated = crit(x[:, None].repeat(1, d))[1]["cov"].item()
    assert duplicated == pytest.approx((d - 1) * s4, rel=1e-10)
    assert duplicated > 100 * np.mean(draws)


def tie_trap(n=256, d=64):
    """float32 embeddings with saturated coordinates and dead (tied) units."""
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(n, d, generator=g)
    x[:40, :10] = 20.0  # sigmoid(20) == 1.0 exactly in float32 and below
    x[:100, 20:30] = 0.0  # more than m tied values where sigmoid' = 1/4
    x[:60, 30:40] = 8.0  # Phi(8) == 1.0 exactly
    return x


def naive_float32_e2mc(z):
    u = torch.sigmoid(z)
    n = u.shape[0]
    m = round(math.sqrt(n))
    s = torch.sort(u, dim=0).values
    h = torch.log((n + 1) / m * (s[m:] - s[:-m]) + 1e-7).mean()
    return -10 * h


@pytest.mark.parametrize("transform", ["sigmoid", "gaussian_cdf"])
def test_ties_give_finite_bounded_gradients(transform):
    x = tie_trap()
    unprotected = x.clone().requires_grad_()
    naive_float32_e2mc(unprotected).backward()
    assert unprotected.grad.abs().max() > 1e3  # the data really hold the 1/eps trap

    z = x.clone().requires_grad_()
    loss, _ = E2MC(transform=transform)(z)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(z.grad).all()
    assert z.grad.abs().max() < 1.0


@pytest.mark.parametrize("transform", ["sigmoid", "gaussian_cdf"])
def test_half_precision_inputs_are_computed_in_float32(transform):
    x = tie_trap()
    crit = E2MC(transform=transform)
    expected = crit(x)[0]
    x16 = x.half().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss16, _ = crit(x16)
        loss32_autocast, _ = crit(x)
    assert loss16.dtype == torch.float32
    assert abs(loss16.item() - expected.item()) < 1e-3
    # float32 input under bf16 autocast is not lowered to bf16 (its matmul would be)
    assert abs(loss32_autocast.item() - expected.item()) < 1e-5
    loss16.backward()
    assert x16.grad.dtype == torch.float16
    assert torch.isfinite(x16.grad).all()

    xb = x.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lossb, _ = crit(xb)
    lossb.backward()
    torch.testing.assert_close(lossb, crit(xb.detach().float())[0], rtol=0, atol=1e-6)
    assert torch.isfinite(xb.grad).all()


def test_tie_free_half_input_equals_float32_within_1e3():
    x = torch.randn(512, 32, generator=torch.Generator().manual_seed(4))
    crit = E2MC(transform="gaussian_cdf")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert abs(crit(x.half())[0].item() - crit(x)[0].item()) < 1e-3


@pytest.mark.parametrize("transform", ["sigmoid", "gaussian_cdf"])
def test_gradcheck(transform):
    z1 = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    z2 = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    crit = E2MC(transform=transform, ent_coeff=2.0, cov_coeff=3.0)
    assert torch.autograd.gradcheck(
        lambda a, b: crit(a, b)[0], (z1.requires_grad_(), z2.requires_grad_())
    )


def test_ablations_and_parts_are_detached():
    z = torch.randn(64, 8, requires_grad=True)
    full_loss, full = E2MC()(z)
    ent_loss, ent_parts = E2MC(cov_coeff=0.0)(z)
    cov_loss, cov_parts = E2MC(ent_coeff=0.0)(z)
    assert ent_loss.item() == pytest.approx(-10 * full["entropy"].item(), rel=1e-6)
    assert cov_loss.item() == pytest.approx(full["cov"].item(), rel=1e-6)
    assert full_loss.item() == pytest.approx(ent_loss.item() + cov_loss.item(), rel=1e-6)
    # an ablated term is still reported for logging
    torch.testing.assert_close(ent_parts["cov"], full["cov"])
    torch.testing.assert_close(cov_parts["entropy"], full["entropy"])
    assert not any(p.requires_grad for p in full.values())


def test_m_from_actual_batch():
    # a short last batch: m = round(sqrt(N)) of the batch, covariance over N - 1
    rng = np.random.default_rng(3)
    z = rng.normal(size=(37, 5))
    loss, _ = E2MC(transform="gaussian_cdf")(torch.from_numpy(z))
    assert loss.item() == pytest.approx(
        reference_e2mc([z], "gaussian_cdf", 10.0, 1.0)[0], rel=1e-10
    )


def test_reference_settings():
    assert REFERENCE_SETTINGS["vicreg"] == {
        "transform": "sigmoid",
        "ent_coeff": 10.0,
        "cov_coeff": 1.0,
    }
    for settings in REFERENCE_SETTINGS.values():
        E2MC(**settings)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"transform": "tanh"}, "transform must be one of"),
        ({"ent_coeff": -1.0}, "ent_coeff must be a finite number >= 0"),
        ({"cov_coeff": float("nan")}, "cov_coeff must be a finite number"),
        ({"ent_coeff": True}, "ent_coeff must be a real number"),
        ({"ent_coeff": np.True_}, "ent_coeff must be a real number"),
        ({"ent_coeff": "10"}, "ent_coeff must be a real number"),
        ({"cov_coeff": np.float32("nan")}, "cov_coeff must be a finite number"),
        ({"ent_coeff": 0.0, "cov_coeff": 0}, "both 0"),
        ({"m": 0}, "m must be None or a positive integer"),
        ({"m": 2.5}, "m must be None or a positive integer"),
        ({"eps": 0.0}, "eps must be a finite number > 0"),
        ({"bias_correction": "yes"}, "bias_correction must be True or False"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        E2MC(**kwargs)


def test_bad_inputs():
    crit = E2MC()
    with pytest.raises(ValueError, match="at least 1 view"):
        crit()
    with pytest.raises(ValueError, match=r"must be 2-D \(N, D\)"):
        crit(torch.randn(50))
    with pytest.raises(ValueError, match=r"must be 2-D \(N, D\)"):
        crit(torch.randn(50, 2, 2))
    with pytest.raises(ValueError, match="same shape"):
        crit(torch.randn(50, 4), torch.randn(50, 5))
    with pytest.raises(ValueError, match="same shape"):
        crit(torch.randn(50, 4), torch.randn(49, 4))
    with pytest.raises(TypeError, match="floating"):
        crit(torch.ones(50, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least 9 samples, got N=8"):
        E2MC(m=4)(torch.randn(8, 3))
    with pytest.raises(ValueError, match="at least 5 samples, got N=4"):
        crit(torch.randn(4, 3))
    bad = torch.randn(50, 4)
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="view 0 has NaN or infinite"):
        crit(bad)
