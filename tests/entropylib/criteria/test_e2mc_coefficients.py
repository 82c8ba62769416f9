"""Each E2MC term's gradient is linear in its coefficient, at the reference coefficient 1 too.

The criterion skips building the graph of a term whose coefficient is 0; the gradient must
still flow for every nonzero coefficient, including 1.0 (SimSiam's ent_coeff, VICReg's and
SwAV's cov_coeff).
"""

import pytest
import torch

from entropylib.criteria import E2MC


def grad_of(**coeffs: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    mixing = torch.eye(5, dtype=torch.float64) + 0.5  # correlated columns: a sizeable cov term
    z = torch.randn(64, 5, dtype=torch.float64, generator=g) @ mixing
    z.requires_grad_()
    E2MC(transform="gaussian_cdf", **coeffs)(z)[0].backward()
    return z.grad


@pytest.mark.parametrize("term", ["ent_coeff", "cov_coeff"])
def test_gradient_scales_with_the_coefficient(term):
    other = "cov_coeff" if term == "ent_coeff" else "ent_coeff"
    g1 = grad_of(**{term: 1.0, other: 0.0})
    g3 = grad_of(**{term: 3.0, other: 0.0})
    assert g1.abs().max() > 1e-5  # not a term without gradient
    torch.testing.assert_close(g3, 3 * g1, rtol=1e-12, atol=1e-15)
    both = grad_of(**{term: 1.0, other: 1.0})
    alone = grad_of(**{term: 0.0, other: 1.0})
    torch.testing.assert_close(both, g1 + alone, rtol=1e-12, atol=1e-15)
