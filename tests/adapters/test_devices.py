"""Which device a training process uses, alone or as one of several under torchrun (the CUDA
cases are checked on CPU with torch told that CUDA is available)."""

from __future__ import annotations

import pytest
import torch

from adapters.continue_train import EXIT_BAD_INPUT, main
from adapters.train import Process, resolve_device
from tests.adapters.train_helpers import tiny_config


@pytest.fixture
def cuda_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    current: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    return current


def test_each_process_takes_the_gpu_of_its_local_rank(cuda_available):
    assert resolve_device("cuda", world=2, local_rank=1) == torch.device("cuda", 1)
    assert resolve_device(None, world=2, local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cpu", world=2, local_rank=1) == torch.device("cpu")
    # one process may name its GPU
    assert resolve_device("cuda:1", world=1, local_rank=0) == torch.device("cuda", 1)


def test_an_explicit_gpu_under_torchrun_is_refused(cuda_available):
    with pytest.raises(ValueError, match=r"--device cuda:0 would put every torchrun process on "
                                         r"one device.*LOCAL_RANK"):
        resolve_device("cuda:0", world=2, local_rank=1)


def test_the_process_makes_its_gpu_current(cuda_available, monkeypatch, tmp_path):
    """Without it, pinned memory and NCCL open a context on GPU 0 in every process."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    process = Process.from_environment(tiny_config(tmp_path, device="cuda"))
    assert process.device == torch.device("cuda", 1)
    assert cuda_available == [torch.device("cuda", 1)]


def test_cpu_processes_leave_cuda_alone(cuda_available, tmp_path):
    assert Process.from_environment(tiny_config(tmp_path, device="cpu")).device.type == "cpu"
    assert cuda_available == []


def test_the_command_refuses_an_explicit_gpu_under_torchrun(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    code = main(["--method", "vicreg", "--backbone", "small_cnn", "--dataset", "fake",
                 "--device", "cuda:0", "--no-progress", "--out", str(tmp_path / "run")],
                mode="pretrain")
    assert code == EXIT_BAD_INPUT
    assert "LOCAL_RANK" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
