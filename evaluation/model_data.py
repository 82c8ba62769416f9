"""One checkpoint ready to be evaluated: its encoder, its data seen through the model's own
normalisation, the evaluation subsets and the cached features.

Everything that can fail on bad input (the checkpoint, the data sets, the channel count of a
transfer set, subset-list files) is checked when a :class:`ModelData` is built or a second data
set is :meth:`ModelData.check`-ed, before any feature is extracted; features are extracted on
first use and cached on disk (:func:`evaluation.features.cached_features`).

This is the one place where a data set is opened for evaluation, so the command line
(``python -m evaluation``) and the paper's executor see the same images, subsets and features.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from entropylib.validation import is_integer
from evaluation.features import (
    AMP_MODES,
    cached_features,
    checkpoint_fingerprint,
    feature_cache_key,
)
from evaluation.subsets import limit_indices, read_subset_file, subset_from_names

#: seeds of the evaluation subsets of the train and test splits (``max_train`` / ``max_test``)
TRAIN_SUBSET_SEED, TEST_SUBSET_SEED = 0, 1


@dataclass(frozen=True)
class DataSpec:
    """A data set to evaluate on: its name, its root and caps on the number of images used.

    ``max_train`` / ``max_test`` keep a seeded random subset of that many images of each split
    (:func:`evaluation.subsets.limit_indices`); None keeps the whole split.
    """

    name: str
    root: str | None = None
    max_train: int | None = None
    max_test: int | None = None


def model_view(info: Any, meta: Mapping[str, Any], checkpoint: str | os.PathLike) -> Any:
    """``info`` (an ``adapters.data.DatasetInfo``) with the normalisation the encoder was
    trained with, after checking that the encoder takes that many channels."""
    channels = meta.get("in_channels", info.channels)
    if channels != info.channels:
        raise ValueError(
            f"the model of {os.fspath(checkpoint)} takes {channels}-channel images but "
            f"{info.name!r} has {info.channels}"
        )
    stats = {k: tuple(meta[k]) for k in ("mean", "std") if meta.get(k) is not None}
    return dataclasses.replace(info, **stats)


class ModelData:
    """A checkpoint's encoder with its evaluation data, checked up front.

    Parameters
    ----------
    checkpoint : path
        A ``checkpoint.pt`` or ``backbone.pt`` (``adapters.load_encoder``).
    data : DataSpec
        The evaluation data set and its subset caps.
    features : {"backbone", "projector"}
        Which output of the model is evaluated.
    cache_dir : path
        Feature cache folder (created on first extraction).
    subset_lists : mapping of label fraction -> path, optional
        SimCLR-style file lists that fix the labelled subset of a fraction (ImageFolder only).
    batch_size, device, progress
        Feature extraction and training settings the protocols use.
    num_workers : int
        DataLoader worker processes of the feature extraction and of the trained probes'
        and fine-tuning's loaders (0 loads in the main process); results do not depend on it.
    amp : {"off", "bf16", "fp16"}
        Autocast of the feature extraction (features are stored in float32 and cached under
        their own key) and of the forward passes of the trained probes and fine-tuning.
    content_hash : bool
        Identify the checkpoint by a SHA-256 of its bytes (else path + size + mtime).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        data: DataSpec,
        *,
        features: str = "backbone",
        cache_dir: str | os.PathLike,
        subset_lists: Mapping[float, str | os.PathLike] | None = None,
        batch_size: int = 256,
        device: str | None = None,
        progress: bool = True,
        content_hash: bool = True,
        num_workers: int = 0,
        amp: str = "off",
    ) -> None:
        import adapters
        from adapters.data import eval_transform

        self.checkpoint = os.fspath(checkpoint)
        self.data = data
        self.cache_dir = os.fspath(cache_dir)
        if not is_integer(num_workers) or num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        if amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
        self.batch_size, self.device, self.progress = batch_size, device, progress
        self.num_workers, self.amp = num_workers, amp
        self.model, self.meta = adapters.load_encoder(self.checkpoint, features=features)
        # the same file gives other features through the projector: part of the cache key
        fingerprint = checkpoint_fingerprint(self.checkpoint, content_hash=content_hash)
        self.fingerprint = f"{fingerprint}:{features}"
        self._datasets: dict[tuple, Any] = {}
        self.info = self.check(data)
        self.eval_transform = eval_transform(self.info)
        # ImageFolder's class count is the folder's, not the ImageNet default of dataset_info
        classes = getattr(self.dataset(data, True), "classes", None)
        self.num_classes = len(classes) if classes else self.info.num_classes
        self.train_idx = self.indices(data, True)
        self.test_idx = self.indices(data, False)
        self._listed = {f: self._listed_positions(p) for f, p in (subset_lists or {}).items()}

    def check(self, data: DataSpec) -> Any:
        """Open both splits of ``data`` and check the encoder can take its images; returns
        the data set's info with the model's normalisation."""
        from adapters.data import dataset_info

        info = model_view(dataset_info(data.name), self.meta, self.checkpoint)
        for train in (True, False):
            self.dataset(data, train)
        for cap in ("max_train", "max_test"):
            value = getattr(data, cap)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ValueError(f"{cap} must be a positive integer or None, got {value!r}")
        return info

    def dataset(self, data: DataSpec, train: bool, transform: Any = None) -> Any:
        """The whole split of ``data`` (opened once per transform)."""
        from adapters.data import load_dataset

        # transforms are kept alive by the cache, so their ids are not reused
        key = (data.name, data.root, train, id(transform))
        if key not in self._datasets:
            split = load_dataset(data.name, data.root, train=train, transform=transform)
            self._datasets[key] = (split, transform)
        return self._datasets[key][0]

    def indices(self, data: DataSpec, train: bool) -> np.ndarray:
        """Positions of the evaluated images of a split: the one subset rule for every caller."""
        n = len(self.dataset(data, train))
        if train:
            return limit_indices(n, data.max_train, seed=TRAIN_SUBSET_SEED)
        return limit_indices(n, data.max_test, seed=TEST_SUBSET_SEED)

    def images(self, train: bool, transform: Any, idx: Any, data: DataSpec | None = None) -> Any:
        """A ``Subset`` of a split's images (positions in the whole split) under ``transform``."""
        from torch.utils.data import Subset

        return Subset(self.dataset(data or self.data, train, transform), [int(i) for i in idx])

    def features(
        self, data: DataSpec, train: bool, transform: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels of the evaluated images of a split of ``data`` (cached)."""
        from adapters.data import eval_transform

        if transform is None:
            transform = self.eval_transform if data == self.data else eval_transform(
                self.check(data)
            )
        full = self.dataset(data, train, transform)
        idx = self.indices(data, train)
        key = feature_cache_key(
            checkpoint=self.fingerprint,
            dataset=data.name,
            split="train" if train else "test",
            transform=transform,
            root=data.root,
            length=len(full),
            indices=idx,
            amp=self.amp,
        )
        return cached_features(
            self.model,
            self.images(train, transform, idx, data),
            cache_dir=self.cache_dir,
            key=key,
            batch_size=self.batch_size,
            device=self.device,
            num_workers=self.num_workers,
            amp=self.amp,
            progress=self.progress,
            desc=f"{data.name} {'train' if train else 'test'} features",
        )

    @cached_property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels of the evaluated training images."""
        return self.features(self.data, True)

    @cached_property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels of the evaluated test images."""
        return self.features(self.data, False)

    def labelled(self, fraction: float, seed: int) -> np.ndarray:
        """Positions (within :attr:`train`) of the labelled subset of ``fraction``: the
        subset list given for it, else a class-stratified seeded draw."""
        from evaluation.subsets import label_subset

        if fraction in self._listed:
            return self._listed[fraction]
        return label_subset(self.train[1], fraction, seed=seed, num_classes=self.num_classes)

    def _listed_positions(self, path: str | os.PathLike) -> np.ndarray:
        if not Path(path).is_file():
            raise FileNotFoundError(f"subset list {os.fspath(path)!r} does not exist")
        full = self.dataset(self.data, True)
        if not hasattr(full, "samples"):
            raise ValueError(
                f"a subset list needs a data set with file names (ImageFolder); "
                f"{self.data.name!r} has none"
            )
        wanted = subset_from_names([p for p, _ in full.samples], read_subset_file(path))
        pos = np.searchsorted(self.train_idx, wanted)
        inside = pos < self.train_idx.size
        inside[inside] = self.train_idx[pos[inside]] == wanted[inside]
        if not inside.all():
            raise ValueError(
                f"{(~inside).sum()} images of {os.fspath(path)} are outside the max_train subset"
            )
        return pos
