"""Fine-tuning's defaults are the documented semi-supervised protocol, and its learning rates
are checked.

docs/evaluation.md: SGD (momentum 0.9), no weight decay, trunk lr 0.03, head lr 0.08, a cosine
schedule over 20 epochs, batch 256 (VICReg's 1% setting); seeded (0) and loaded in the main
process by default, so a run gives the same numbers on any machine. Short tests fine-tune for
a few epochs, so nothing else would notice a changed default.
"""

import inspect

import pytest
import torch
from torch.utils.data import TensorDataset

from evaluation.finetune import finetune


def test_finetune_defaults_are_the_protocol():
    defaults = {name: p.default for name, p in inspect.signature(finetune).parameters.items()
                if p.default is not inspect.Parameter.empty}
    assert {k: defaults[k] for k in ("epochs", "trunk_lr", "head_lr", "batch_size",
                                     "weight_decay", "seed", "num_workers", "amp")} == {
        "epochs": 20, "trunk_lr": 0.03, "head_lr": 0.08, "batch_size": 256,
        "weight_decay": 0.0, "seed": 0, "num_workers": 0, "amp": "off"}


@pytest.mark.parametrize(("trunk_lr", "head_lr"), [(0.0, 0.1), (0.1, 0.0), (-0.5, 0.1),
                                                   (0.1, -0.5)])
def test_learning_rates_must_be_positive(trunk_lr, head_lr):
    data = TensorDataset(torch.randn(8, 2), torch.arange(8) % 2)
    with pytest.raises(ValueError, match="learning rates must be > 0"):
        finetune(torch.nn.Linear(2, 3), data, data, data, num_classes=2, trunk_lr=trunk_lr,
                 head_lr=head_lr, progress=False)
