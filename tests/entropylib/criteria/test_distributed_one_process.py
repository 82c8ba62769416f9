"""entropylib.criteria.distributed in one process (no process group): one rank, and
reductions that return a detached copy and leave the input alone."""

import torch

from entropylib.criteria.distributed import (
    all_reduce_max,
    all_reduce_sum,
    is_distributed,
    world_size,
)


def test_one_process_is_one_rank():
    assert not is_distributed()
    assert world_size() == 1


def test_reductions_return_a_detached_copy():
    for reduce in (all_reduce_sum, all_reduce_max):
        x = torch.tensor([1.0, -2.0], requires_grad=True)
        out = reduce(x)
        assert out is not x and not out.requires_grad
        torch.testing.assert_close(out, torch.tensor([1.0, -2.0]))
        out += 1.0  # the caller may update the result in place: the input stays as it was
        torch.testing.assert_close(x.detach(), torch.tensor([1.0, -2.0]))
