"""MMCR on the smallest batch, one sample: the centroid matrix is one row
m = mean_v z_v / |z_v|, whose nuclear norm is |m|."""

import numpy as np
import pytest
import torch

from entropylib.criteria import MMCR


def test_mmcr_on_one_sample_is_the_norm_of_its_centroid():
    a = np.array([[3.0, 4.0, 0.0]])
    b = np.array([[0.0, 0.0, 2.0]])
    centroid = (a / np.linalg.norm(a) + b / np.linalg.norm(b)) / 2
    loss, parts = MMCR()(torch.from_numpy(a), torch.from_numpy(b))
    assert parts["nuclear_norm"].item() == pytest.approx(np.linalg.norm(centroid), rel=1e-12)
    assert loss.item() == pytest.approx(-np.linalg.norm(centroid), rel=1e-12)
