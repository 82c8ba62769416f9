"""VCReg's ablations: one coefficient may be 0 (only both at once is an error); the loss is
then the other term alone."""

import pytest
import torch

from entropylib.criteria import VCReg


@pytest.mark.parametrize(
    ("std_coeff", "cov_coeff", "term"), [(0.0, 1.0, "cov"), (1.0, 0.0, "variance")]
)
def test_vcreg_single_term_ablations(std_coeff, cov_coeff, term):
    z = torch.randn(32, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    loss, parts = VCReg(std_coeff=std_coeff, cov_coeff=cov_coeff)(z)
    assert loss.item() == pytest.approx(parts[term].sum().item(), rel=1e-12)
