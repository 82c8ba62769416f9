"""Feature extraction under torchrun: shards gathered in data-set order, as one process.

Two gloo processes on CPU, started the way torchrun starts them (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT in the environment), each extract the features of a data set
whose size is not a multiple of two; every rank must return the one-process matrix and
labels exactly, in the same order.
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from evaluation import features
from evaluation.features import data_loader, extract_features, shard_bounds

WORLD = 2
# a gather chunk of 5 feature rows (6 float32 columns) forces several exchanges (shards of 19
# and 18 rows)
GATHER_BYTES = 5 * WORLD * 6 * 4


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 6), nn.BatchNorm1d(6))
    model(torch.randn(16, 3, 6, 6))  # non-trivial BatchNorm running statistics
    return model


def _exact_model() -> nn.Module:
    """Integer weights: on the integer images every sum is exact in float32.

    A matrix product's rounding depends on how the batch is blocked (so on the batch
    composition, which differs between a shard and the whole set); with exact sums it
    cannot, and the features of any sharding must equal the one-process ones bit for bit.
    The pooling divides by 16 (exact) and BatchNorm acts elementwise.
    """
    model = _model()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for layer in (model[0], model[4]):
            layer.weight.copy_(torch.randint(-3, 4, layer.weight.shape, generator=g))
            layer.bias.copy_(torch.randint(-3, 4, layer.bias.shape, generator=g))
    return model


def _data(n: int) -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    # each label is the sample's index, so the order of the gathered rows is visible
    images = torch.randint(-8, 9, (n, 3, 6, 6), generator=g).float()
    return TensorDataset(images, torch.arange(n))


def _worker(rank: int, port: int, n: int, out: str) -> None:
    features._GATHER_BYTES = GATHER_BYTES
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        model, seen, received = _exact_model(), [], []
        model.register_forward_hook(lambda _m, inputs, _o: seen.append(len(inputs[0])))
        gather = dist.all_gather

        def counting_gather(parts, piece):  # bytes this process receives per collective
            received.append(sum(p.numel() * p.element_size() for p in parts))
            return gather(parts, piece)

        dist.all_gather = counting_gather
        feats, labels = extract_features(model, _data(n), batch_size=4, progress=False)
        np.savez(f"{out}.{rank}.npz", features=feats, labels=labels, seen=sum(seen),
                 received=np.array(received, dtype=np.int64))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_gloo_available(), reason="torch built without gloo")
@pytest.mark.parametrize("n", [37, 1])  # odd; and fewer samples than processes
def test_two_processes_return_the_one_process_features_in_order(tmp_path, n):
    out = str(tmp_path / "feats")
    mp.spawn(_worker, args=(_free_port(), n, out), nprocs=WORLD, join=True)
    torch.set_num_threads(1)
    single, single_labels = extract_features(_exact_model(), _data(n), batch_size=4,
                                             progress=False)
    np.testing.assert_array_equal(single_labels, np.arange(n))
    seen = []
    for rank in range(WORLD):
        with np.load(f"{out}.{rank}.npz") as got:
            seen.append(int(got["seen"]))
            np.testing.assert_array_equal(got["labels"], single_labels)
            np.testing.assert_array_equal(got["features"], single)
            assert got["features"].dtype == np.float32
            # features and labels are exchanged in chunks: a process never receives more
            # than _GATHER_BYTES per collective (the bound on GPU memory)
            assert 0 < got["received"].max() <= GATHER_BYTES
    # the work was split: each process ran the model on its own shard only
    assert seen == np.diff(shard_bounds(n, WORLD)).tolist()


def test_shards_cover_every_sample_once():
    for n in (0, 1, 5, 37, 64):
        for world in (1, 2, 3, 8):
            bounds = shard_bounds(n, world)
            sizes = np.diff(bounds)
            assert bounds[0] == 0 and bounds[-1] == n and len(sizes) == world
            assert sizes.min() >= 0 and sizes.max() - sizes.min() <= 1


def test_amp_features_are_float32_and_close_to_full_precision():
    data = TensorDataset(torch.randn(20, 3, 6, 6), torch.arange(20))
    full, _ = extract_features(_model(), data, batch_size=8, progress=False)
    half, labels = extract_features(_model(), data, batch_size=8, progress=False, amp="bf16")
    assert half.dtype == np.float32 and labels.dtype == np.int64
    assert not np.array_equal(half, full)  # autocast did run in bfloat16
    np.testing.assert_allclose(half, full, rtol=0.05, atol=0.05)
    with pytest.raises(ValueError, match="amp must be one of"):
        extract_features(_model(), data, amp="fp8", progress=False)
    with pytest.raises(ValueError, match="process group"):
        extract_features(_model(), data, distributed=True, progress=False)


def test_loader_pins_memory_by_default_only_for_cuda():
    data = _data(4)
    assert data_loader(data, batch_size=2, device="cuda:1").pin_memory
    assert not data_loader(data, batch_size=2, device="cpu").pin_memory
    assert not data_loader(data, batch_size=2, device="cuda", pin_memory=False).pin_memory
    loader = data_loader(data, batch_size=2, device="cpu", num_workers=2)
    assert isinstance(loader, DataLoader) and loader.num_workers == 2
    with pytest.raises(ValueError, match="num_workers"):
        data_loader(data, batch_size=2, device="cpu", num_workers=-1)
