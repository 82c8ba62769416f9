"""The seeding that makes a resumed run continue bit for bit (adapters.sampling), without a
training run: per-sample seeds, the per-epoch generator, seeded views and the sampler that
starts part-way into an epoch (``test_resume.py`` checks the whole through training)."""

import random

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from adapters.sampling import ResumableSampler, SeededViews, epoch_generator, sample_seed


def test_sample_seeds_are_32_bit_python_ints_that_differ_by_seed_epoch_and_index():
    seeds = [sample_seed(s, e, i) for s in (0, 1) for e in (0, 1) for i in (0, 1, 2)]
    assert all(type(s) is int and 0 <= s < 2**32 for s in seeds)
    assert len(set(seeds)) == len(seeds)
    assert sample_seed(1, 0, 2) == sample_seed(1, 0, 2)


def test_epoch_generators_are_torch_generators_seeded_per_seed_and_epoch():
    g = epoch_generator(0, 3)
    assert isinstance(g, torch.Generator)
    assert g.initial_seed() == epoch_generator(0, 3).initial_seed()
    assert len({epoch_generator(s, e).initial_seed() for s in (0, 1) for e in (0, 1)}) == 4


class _Draws(Dataset):
    """Each item is one draw from each of the three global generators."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return torch.rand(()).item(), random.random(), np.random.rand()  # noqa: NPY002


def _draws_seeded_with(s):
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s)  # noqa: NPY002
    return torch.rand(()).item(), random.random(), np.random.rand()  # noqa: NPY002


def test_seeded_views_draw_from_the_sample_seed_of_their_epoch_and_restore_the_generators():
    views = SeededViews(_Draws(), seed=3)
    state = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())  # noqa: NPY002
    first = views[5]
    after = (random.getstate(), np.random.get_state()[1], torch.get_rng_state())  # noqa: NPY002
    assert after[0] == state[0] and np.array_equal(after[1], state[1])
    assert torch.equal(after[2], state[2])
    # a new wrapper is at epoch 0: sample 5 is drawn from seed (3, 0, 5) whatever ran before
    expected = _draws_seeded_with(sample_seed(3, 0, 5))
    assert first == expected
    views.epoch = 1
    assert views[5] == _draws_seeded_with(sample_seed(3, 1, 5))
    assert views[5] != first


def test_a_sampler_started_part_way_yields_the_rest_of_the_epochs_shard():
    data = list(range(11))
    full = list(DistributedSampler(data, num_replicas=2, rank=1, shuffle=True, seed=4,
                                   drop_last=True))
    sampler = ResumableSampler(data, num_replicas=2, rank=1, seed=4)
    assert list(sampler) == full and len(sampler) == len(full) == 5
    sampler.start = 2
    it = iter(sampler)
    assert next(it) == full[2] and list(it) == full[3:]
    assert len(sampler) == 3
    sampler.set_epoch(1)
    sampler.start = 0
    assert list(sampler) != full  # another epoch, another order
