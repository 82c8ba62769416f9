"""entropylib.criteria.views: what a criterion says about a view without rows."""

import pytest
import torch

from entropylib.criteria import MMCR, VCReg


@pytest.mark.parametrize("criterion", [MMCR(), VCReg()])
def test_a_view_without_rows_is_named_empty(criterion):
    """Not "a batch of at least n, got 0" (the gathered batch is checked later, and under
    torchrun other ranks' rows would hide an empty local view): the view is empty."""
    z = torch.randn(4, 3)
    name = type(criterion).__name__
    with pytest.raises(ValueError, match=rf"{name}: view 1 is empty \(shape \(0, 3\)\)"):
        criterion(z, z[:0])
