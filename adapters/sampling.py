"""Seeding and the resumable data order: what makes a run continue bit for bit after a restart.

The data order of epoch ``e`` is a permutation seeded by ``(seed, e)``; sample ``i`` of epoch
``e`` is augmented from generators seeded by ``(seed, e, i)`` whatever process or worker makes
it; the python, numpy and torch generator states of the main process are saved with every
checkpoint (:func:`rng_state`) and restored on resume (:func:`set_rng_state`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for one sample's augmentation, independent of process and worker."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator a DataLoader draws its workers' base seed from in epoch ``epoch``."""
    return torch.Generator().manual_seed(
        int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    )


def seed_all(seed: int) -> None:
    """Seed the python, numpy and torch generators (heads and backbones initialise from them)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """python, numpy and torch generator states in plain types (lists, ints, a tensor)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    return {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    keys = np.asarray(keys, dtype=np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(state["torch"])


class SeededViews(Dataset):
    """Wrap a dataset so sample ``i`` of epoch ``e`` is augmented from seed ``(seed, e, i)``.

    The python, numpy and torch generators are seeded for the call and restored after it, so
    the augmentation of a sample never depends on which worker makes it or on what ran before.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        s = sample_seed(self.seed, self.epoch, index)
        # The legacy global numpy generator is what third-party transforms draw from.
        py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                random.seed(s)
                np.random.seed(s)  # noqa: NPY002
                return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)  # noqa: NPY002


class ResumableSampler(DistributedSampler):
    """DistributedSampler (seeded shuffle per epoch, one shard per rank) that can start
    part-way into an epoch: ``start`` indices of this rank's shard are skipped."""

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
            drop_last=True,
        )
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start :])

    def __len__(self) -> int:
        return super().__len__() - self.start
