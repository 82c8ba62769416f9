"""LARS on a tensor whose step is zero (no gradient signal and no weight decay): the weights stay
as they are. The trust ratio eta ||w|| / ||d|| is then eta ||w|| / 0, and only the fallback to an
unscaled step keeps it from multiplying the zero step by infinity (NaN weights)."""

import pytest
import torch
from torch import nn

from adapters.optim import LARS


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize(("dtype", "value"), [
    (torch.float16, 2.0),     # 1e-30, the norm's floor, is 0 in half precision
    (torch.float32, 1e12),    # eta ||w|| / 1e-30 overflows float32
])
def test_a_zero_step_leaves_the_weights_as_they_are(clip, dtype, value):
    w = nn.Parameter(torch.full((3, 2), value, dtype=dtype))
    opt = LARS([w], lr=0.5, clip=clip)  # no weight decay: d = g = 0
    w.grad = torch.zeros_like(w)
    for _ in range(2):
        opt.step()
    assert torch.equal(w.detach(), torch.full((3, 2), value, dtype=dtype))
