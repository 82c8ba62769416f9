"""Wang & Isola's alignment over several pairs: the mean of |e_i - e'_i|^alpha, one number.

Written with numpy from the definition (e = z / |z|), on pairs at different distances so that
a missing mean (or a wrong one) shows.
"""

import numpy as np
import pytest
import torch

from entropylib.criteria import Uniformity
from entropylib.criteria.uniformity import alignment


def reference_alignment(z1: np.ndarray, z2: np.ndarray, alpha: float) -> float:
    e1 = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
    e2 = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
    return float(np.mean(np.linalg.norm(e1 - e2, axis=1) ** alpha))


@pytest.mark.parametrize("alpha", [2.0, 1.0])
def test_alignment_is_the_mean_over_pairs(alpha):
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    got = alignment(torch.from_numpy(z1), torch.from_numpy(z2), alpha=alpha)
    assert got.shape == ()
    assert got.item() == pytest.approx(reference_alignment(z1, z2, alpha), rel=1e-12)


def test_criterion_with_alignment_is_a_scalar_loss():
    rng = np.random.default_rng(1)
    z1, z2 = (torch.from_numpy(rng.normal(size=(6, 4))) for _ in range(2))
    loss, _ = Uniformity(unif_coeff=0.0, align_coeff=1.0)(z1, z2)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(reference_alignment(z1.numpy(), z2.numpy(), 2.0))
