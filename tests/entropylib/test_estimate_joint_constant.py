"""A joint estimate with a constant column: the joint law is degenerate, entropy -inf.

It raises under ties="raise" and is -inf (never +inf or a finite number) with a RuntimeWarning
under the other tie policies, for every joint method and both array kinds.
"""

import numpy as np
import pytest
import torch

import entropylib


@pytest.mark.parametrize("method", ["gaussian", "knn", "kde"])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_joint_with_a_constant_column_is_minus_inf(method, as_tensor):
    x = np.random.default_rng(0).normal(size=(100, 3))
    x[:, 2] = -1.0
    data = torch.from_numpy(x) if as_tensor else x
    with pytest.raises(ValueError, match="constant"):
        entropylib.estimate(data, method, joint=True)
    with pytest.warns(RuntimeWarning, match="constant"):
        h = entropylib.estimate(data, method, joint=True, ties="floor")
    assert float(h) == -np.inf
