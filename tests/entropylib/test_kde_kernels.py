"""The numba KDE kernels on the cases the estimator never feeds them: the log of an empty
kernel sum (one point, its own images left out) is -inf on every backend."""

import numpy as np
import pytest
import torch

from entropylib.kde import log_cross_sums


@pytest.mark.parametrize("backend", ["numpy", "numba", "torch"])
def test_leaving_out_the_only_point_gives_an_empty_sum(backend):
    q = np.array([[0.3]])
    images = np.array([[-0.3], [1.7]])  # the point's mirror images at bounds 0 and 1
    if backend == "torch":
        out = log_cross_sums(torch.from_numpy(q), torch.from_numpy(images), skip_own=True)
        out = out.numpy()
    else:
        out = log_cross_sums(q, images, skip_own=True, use_numba=backend == "numba")
    assert out.tolist() == [-np.inf]
