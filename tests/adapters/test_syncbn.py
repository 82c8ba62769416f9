"""Synchronised BatchNorm: the ImageNet recipes ask for it, and what CPU can check of it.

torch's SyncBatchNorm normalises over the global batch only on GPUs: in training mode under
an initialised process group it refuses CPU tensors, and ``aten::batch_norm_stats`` has no
CPU kernel. So the statistics exchange itself cannot run here. What is checked on CPU: every
ImageNet recipe's training command turns ``--sync-bn`` on in the training configuration; with
two gloo processes, a run asked for ``--sync-bn`` on CPU stops on every rank with a message
naming the option (never a hang, never a silent plain-BatchNorm run); a converted model keeps
BatchNorm's parameter and buffer names, so a ``--sync-bn`` run's checkpoint loads into the
plain model the evaluation builds; one process (no sync needed) normalises exactly like
BatchNorm, as the recipes' CPU dry-run relies on.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from adapters.backbones import build_backbone
from adapters.continue_train import build_parser, config_from_args
from paper.imagenet import recipes

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
@pytest.mark.parametrize("criterion", ["none", "e2mc"])
def test_imagenet_recipes_train_with_synchronised_batchnorm(name, criterion):
    cmd = recipes.train_command(recipes.RECIPES[name], criterion)
    module = cmd.index("-m")
    assert cmd[module + 1] == "adapters.continue_train"
    args = build_parser("continue").parse_args(cmd[module + 2:])
    assert config_from_args(args, "continue").sync_bn


def test_converted_model_keeps_batchnorm_names_and_normalises_alike():
    torch.manual_seed(0)
    plain = build_backbone("resnet18_small", in_channels=3)
    x = torch.randn(6, 3, 16, 16)
    plain.train()(x)  # non-trivial running statistics
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(build_backbone("resnet18_small",
                                                                    in_channels=3))
    assert any(isinstance(m, nn.SyncBatchNorm) for m in synced.modules())
    assert synced.state_dict().keys() == plain.state_dict().keys()
    synced.load_state_dict(plain.state_dict())
    reloaded = build_backbone("resnet18_small", in_channels=3)
    reloaded.load_state_dict(synced.state_dict())  # a --sync-bn checkpoint, evaluated plain
    for mode in ("train", "eval"):
        for m in (plain, synced):
            getattr(m, mode)()
        torch.testing.assert_close(synced(x), plain(x), rtol=0, atol=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_gloo_available(), reason="torch built without gloo")
def test_two_gloo_processes_refuse_sync_bn_on_cpu_with_a_message(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_port", str(_free_port()), "-m", "adapters.pretrain",
           "--method", "vicreg", "--backbone", "small_cnn", "--dataset", "fake",
           "--batch-size", "4", "--max-steps", "1", "--criterion", "none", "--sync-bn",
           "--head-option", "expander_dim=32", "--no-progress", "--device", "cpu",
           "--out", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    # both ranks say why, before any collective could hang
    assert len(re.findall(r"error: .*--sync-bn", proc.stderr)) == 2, proc.stderr[-3000:]
    assert not (tmp_path / "checkpoint.pt").exists()
