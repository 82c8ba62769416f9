"""The supervised loop of the probes and fine-tuning: the test set is scored with the model of
the selected epoch, small training sets still train, defaults load in the main process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset, get_worker_info

from evaluation.training import train_classifier


def _sets(seed: int, n_train: int = 48):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + 60, 4, generator=g)
    y = (x[:, 0] + 0.8 * torch.randn(len(x), generator=g) > 0).long()  # noisy: val acc moves
    cut = n_train + 30
    return (TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:cut], y[n_train:cut]),
            TensorDataset(x[cut:], y[cut:]))


class _Recording(nn.Module):
    """A trunk that copies its weights at every forward pass in eval mode (validation, test)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.eval_weights: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            self.eval_weights.append(self.net[0].weight.detach().clone())
        return self.net(x)


def test_the_test_set_is_scored_with_the_trunk_of_the_best_validation_epoch():
    train, val, test = _sets(0)
    torch.manual_seed(0)
    trunk = _Recording()
    trunk.feature_dim = 8
    res = train_classifier(trunk, train, val, test, num_classes=2, epochs=8, head_lr=2.0,
                           trunk_lr=1.0, batch_size=8, device="cpu", progress=False)
    best = int(np.argmax(res.val_top1))  # the earliest best epoch
    assert best < 7, "the check needs a best epoch before the last"
    assert res.best_epoch == best + 1
    # a validation pass per epoch, then the test pass: 30 samples each, 4 batches of <= 8
    assert len(trunk.eval_weights) == 4 * 8 + 4
    assert torch.equal(trunk.eval_weights[-1], trunk.eval_weights[4 * best])
    assert not torch.equal(trunk.eval_weights[-1], trunk.eval_weights[4 * 7])  # not the last
    assert torch.equal(trunk.net[0].weight, trunk.eval_weights[4 * best])  # left at that epoch


class _Counting(nn.Module):
    """A trainable trunk that counts the samples it sees in train mode."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 4)
        self.feature_dim = 4
        self.trained_on = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.trained_on += len(x) if self.training else 0
        return self.net(x)


@pytest.mark.parametrize(("n_train", "seen"), [(5, 5), (16, 16), (17, 16)])
def test_each_epoch_trains_on_whole_batches_or_on_a_set_smaller_than_one(n_train, seen):
    # a last partial batch is dropped (batch norm cannot normalise a batch of one sample),
    # unless the whole set is smaller than a batch: it is then the one batch of the epoch
    train, val, test = _sets(1, n_train=n_train)
    torch.manual_seed(0)
    trunk = _Counting()
    res = train_classifier(trunk, train, val, test, num_classes=2, epochs=1, head_lr=0.5,
                           trunk_lr=0.1, batch_size=8, device="cpu", progress=False)
    assert trunk.trained_on == seen
    assert len(res.val_top1) == 1 and res.best_epoch == 1


class _MainProcessOnly(Dataset):
    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        if get_worker_info() is not None:
            raise RuntimeError("read in a worker process although none was asked for")
        return self.data[i]


def test_defaults_load_in_the_main_process_and_show_no_bar_without_progress(capsys):
    train, val, test = (_MainProcessOnly(s) for s in _sets(3))
    trunk = nn.Identity()
    trunk.feature_dim = 4
    train_classifier(trunk, train, val, test, num_classes=2, epochs=2, head_lr=0.5,
                     trunk_lr=None, batch_size=16, device="cpu", progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("epochs", [0, -1])
def test_fewer_than_one_epoch_is_refused(epochs):
    train, val, test = _sets(4)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        train_classifier(nn.Identity(), train, val, test, num_classes=2, epochs=epochs,
                         head_lr=0.5, trunk_lr=None, device="cpu", progress=False)
