"""The probe / fine-tune loop loads its train, validation and test data with workers."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, get_worker_info

from evaluation.training import train_classifier


class _WorkerOnly(Dataset):
    """Refuses to be read in the main process when workers were asked for."""

    def __init__(self, n: int, *, need_worker: bool, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, 2, 2, generator=g)
        self.y = torch.arange(n) % 3
        self.x[torch.arange(n), 0, 0, 0] += 3 * self.y  # learnable
        self.need_worker = need_worker

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        if self.need_worker and get_worker_info() is None:
            raise RuntimeError("read in the main process although num_workers > 0")
        return self.x[i], int(self.y[i])


def _train(num_workers: int):
    torch.manual_seed(0)
    trunk = nn.Flatten()
    trunk.feature_dim = 4  # known: no sample read in the main process to find it
    sets = [_WorkerOnly(n, need_worker=num_workers > 0, seed=s)
            for n, s in ((24, 0), (9, 1), (12, 2))]
    return train_classifier(trunk, *sets, num_classes=3, epochs=2, head_lr=0.5, trunk_lr=None,
                            batch_size=8, device="cpu", num_workers=num_workers,
                            progress=False)


def test_every_loader_uses_the_workers_and_results_do_not_change():
    with_workers = _train(1)
    assert with_workers == _train(0)


def test_amp_autocasts_the_forward_passes_and_keeps_float32_weights():
    for amp, dtype in (("off", torch.float32), ("bf16", torch.bfloat16)):
        torch.manual_seed(0)
        trunk = nn.Sequential(nn.Flatten(), nn.Linear(4, 6))
        trunk.feature_dim = 6  # no shape probe: every forward pass seen is a real one
        seen = set()
        trunk.register_forward_hook(lambda _m, _i, out, seen=seen: seen.add(out.dtype))
        sets = [_WorkerOnly(n, need_worker=False, seed=s) for n, s in ((24, 0), (9, 1), (12, 2))]
        res = train_classifier(trunk, *sets, num_classes=3, epochs=2, head_lr=0.5, trunk_lr=0.1,
                               batch_size=8, device="cpu", amp=amp, progress=False)
        assert seen == {dtype}, amp  # training, validation and test passes alike
        assert all(p.dtype == torch.float32 for p in trunk.parameters())
        assert 0 <= res.top1 <= 1 and len(res.val_top1) == 2
    with pytest.raises(ValueError, match="amp must be one of"):
        train_classifier(trunk, *sets, num_classes=3, epochs=1, head_lr=0.5, trunk_lr=None,
                         device="cpu", amp="fp8", progress=False)
