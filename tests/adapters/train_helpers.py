"""Tiny configurations shared by the training tests (FakeData 3x32x32, SmallCNN, batch 8)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adapters.train import TrainConfig

#: heads small enough for a 2-step CPU run
TINY_HEADS = {
    "vicreg": {"expander_dim": 32},
    "swav": {"out_dim": 16, "n_prototypes": 12},
    "simsiam": {"dim": 32, "pred_dim": 8},
}
#: SwAV with two local crops instead of six
TINY_VIEWS = {"swav": {"n_local_crops": 2}}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: extra intra-op threads only spin (10x CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(out: Path, method: str = "vicreg", **overrides) -> TrainConfig:
    """A pretraining run on FakeData that a test can finish in well under a second per step."""
    fields = dict(
        out=str(out), mode="pretrain", method=method, backbone="small_cnn", dataset="fake",
        batch_size=8, max_steps=2, criterion="none", head_options=dict(TINY_HEADS[method]),
        view_options=dict(TINY_VIEWS.get(method, {})), progress=False,
    )
    fields.update(overrides)
    return TrainConfig(**fields)


def state_tensors(payload: dict) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint's model and optimizer state, by a flat name."""
    flat: dict[str, torch.Tensor] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, torch.Tensor):
            flat[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}/{i}", v)

    walk("model", payload["model"])
    walk("optimizer", payload["optimizer"]["state"])
    return flat
