"""Spacing estimates under ties="floor" against the definition, and the torch column sums.

Under ties="floor" a zero spacing counts as one ulp of the column's range,
finfo(dtype).eps * (max - min). The expected values below are written from that definition on
small samples with hand-placed ties.
"""

import numpy as np
import pytest
import torch

from entropylib.spacings import m_spacing, vasicek

EPS = np.finfo(np.float64).eps


@pytest.mark.parametrize("as_tensor", [False, True])
def test_m_spacing_floors_a_tie_at_one_ulp_of_the_range(as_tensor):
    x = np.array([4.0, 1.0, 0.0, 7.0, 1.0, 2.0])  # sorted 0 1 1 2 4 7: one zero spacing at m = 1
    gaps = np.array([1.0, 7.0 * EPS, 1.0, 2.0, 3.0])
    want = np.mean(np.log(7 / 1 * gaps))
    arg = torch.from_numpy(x[:, None]) if as_tensor else x[:, None]
    got = np.asarray(m_spacing(arg, m=1, ties="floor"))[0]
    assert got == pytest.approx(want, rel=1e-14)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_vasicek_floors_a_tie_at_one_ulp_of_the_range(as_tensor):
    x = np.array([1.0, 0.0, 7.0, 1.0, 4.0, 1.0, 2.0])  # sorted 0 1 1 1 2 4 7
    # x_(i+1) - x_(i-1), indices clipped to the sample: 1, 1, 0 (a tie), 1, 3, 5, 3
    gaps = np.array([1.0, 1.0, 7.0 * EPS, 1.0, 3.0, 5.0, 3.0])
    want = np.mean(np.log(7 / 2 * gaps))
    arg = torch.from_numpy(x[:, None]) if as_tensor else x[:, None]
    got = np.asarray(vasicek(arg, m=1, ties="floor"))[0]
    assert got == pytest.approx(want, rel=1e-14)


def test_torch_lone_long_column_equals_its_column_in_a_wider_tensor_bit_for_bit():
    """torch reduces one long row across threads in another order than several rows; the
    estimate of a lone column must still equal that column's estimate in a wider tensor."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(2**20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        wide = m_spacing(x, m=100)
        lone = m_spacing(x[:, :1].contiguous(), m=100)
    finally:
        torch.set_num_threads(threads)
    assert lone.item() == wide[0].item()
