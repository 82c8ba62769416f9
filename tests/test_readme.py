"""The README's self-contained code blocks run as written, and its dtype claim holds."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import entropylib

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def _block(first_line: str) -> str:
    (block,) = [b for b in BLOCKS if b.startswith(first_line)]
    return block


def test_estimator_block_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(_block("import numpy as np, torch, entropylib"), {})


def test_criteria_block_runs_and_losses_are_pairs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(_block("import torch\nfrom entropylib.criteria import"), scope)
    assert scope["base_loss"].ndim == 0 and set(scope["base_parts"]) >= {"invariance"}
    assert scope["total"].ndim == 0 and scope["parts"]["entropy"].shape == (2,)


@pytest.mark.parametrize(
    ("dtype", "result"),
    [(torch.float16, torch.float32), (torch.bfloat16, torch.float32),
     (torch.float32, torch.float32), (torch.float64, torch.float64),
     (torch.int32, torch.float64)],
)
def test_tensor_result_dtypes_are_the_documented_ones(dtype, result):
    x = torch.as_tensor(np.random.default_rng(0).normal(size=(400, 2)) * 100).to(dtype)
    assert entropylib.estimate(x, "m_spacing", ties="jitter").dtype == result
    assert "float16 and bfloat16 are computed in and returned as float32" in " ".join(
        README.split())
