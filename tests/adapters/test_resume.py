"""Resumption is exact, and a run stopped by a signal or killed leaves a loadable checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from adapters.checkpoints import CheckpointError, load_checkpoint
from adapters.continue_train import main
from adapters.train import TrainingInterrupted, train
from entropylib.criteria import CRITERIA
from tests.adapters.train_helpers import one_thread, state_tensors, tiny_config  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "method, overrides",
    [
        # 512 FakeData images / 129 = 3 steps per epoch: the resumed half crosses an epoch
        ("vicreg", {"criterion": "e2mc", "batch_size": 129, "epochs": 2}),
        ("swav", {"criterion": "e2mc", "head_options": {"out_dim": 16, "n_prototypes": 12,
                                                         "queue_length": 16}}),
        ("simsiam", {"criterion": "vcreg", "schedule": "cosine", "warmup_epochs": 0.02}),
    ],
)
def test_resume_is_bitwise_identical(method, overrides, tmp_path):
    straight = train(tiny_config(tmp_path / "a", method, **{**overrides, "max_steps": 4}))
    first = tiny_config(tmp_path / "b", method, **{**overrides, "max_steps": 2})
    train(first)
    half = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert half["step"] == 2
    first.max_steps = 4
    resumed = train(first, resume=str(tmp_path / "b" / "checkpoint.pt"))
    assert resumed.step == straight.step == 4

    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    ta, tb = state_tensors(a), state_tensors(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"tensors differ after resume: {different[:5]}"
    assert (a["epoch"], a["epoch_step"]) == (b["epoch"], b["epoch_step"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    # the per-step losses of steps 3 and 4 are the same numbers
    assert [r["loss"] for r in _metrics(tmp_path / "a")] == [
        r["loss"] for r in _metrics(tmp_path / "b")
    ]
    # and the resumed run did not just copy the first half: it trained
    assert any(not torch.equal(half["model"]["backbone"][k], v)
               for k, v in b["model"]["backbone"].items() if v.is_floating_point())


class _SignalAtSecondCall(CRITERIA["e2mc"]):
    calls = 0

    def forward(self, *views):
        type(self).calls += 1
        if type(self).calls == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return super().forward(*views)


def test_sigint_writes_checkpoint_before_exit(tmp_path, monkeypatch):
    monkeypatch.setitem(CRITERIA, "e2mc", _SignalAtSecondCall)
    _SignalAtSecondCall.calls = 0
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match="SIGINT"):
        train(tiny_config(tmp_path, criterion="e2mc", max_steps=50))
    # the signal arrived during step 2; that step completes and is saved
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2
    assert signal.getsignal(signal.SIGINT) is handler


def _start(out: Path, *extra: str, new_session: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "adapters.pretrain", "--method", "vicreg",
           "--backbone", "small_cnn", "--dataset", "fake", "--batch-size", "8",
           "--head-option", "expander_dim=32", "--epochs", "100", "--max-steps", "100000",
           "--no-progress", "--out", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=new_session)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("training made no progress")
        time.sleep(0.2)


def _loadable_step(path: Path) -> int:
    try:
        return load_checkpoint(path)["step"]
    except (FileNotFoundError, CheckpointError):
        return -1


def test_sigkill_mid_epoch_leaves_loadable_checkpoint(tmp_path):
    proc = _start(tmp_path, "--save-every", "1")
    _wait_for(lambda: _loadable_step(tmp_path / "checkpoint.pt") >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] >= 3 and state["epoch_step"] == state["step"]  # still epoch 0
    # and the run goes on from it
    config = tiny_config(tmp_path, max_steps=state["step"] + 1)
    assert train(config, resume=str(tmp_path / "checkpoint.pt")).step == state["step"] + 1


def test_sigterm_writes_checkpoint_before_exit(tmp_path):
    proc = _start(tmp_path)  # no periodic checkpoints: only the signal writes one
    _wait_for(lambda: (tmp_path / "metrics.jsonl").exists()
              and len((tmp_path / "metrics.jsonl").read_text().splitlines()) >= 2, proc)
    assert not (tmp_path / "checkpoint.pt").exists()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM" in err
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == _metrics(tmp_path)[-1]["step"]


def test_sigterm_to_the_process_group_with_workers_writes_checkpoint(tmp_path):
    # a scheduler cancelling or preempting a job signals the whole process group, so the
    # DataLoader workers receive SIGTERM too; the run must still stop cleanly and resumably
    proc = _start(tmp_path, "--workers", "2", new_session=True)
    _wait_for(lambda: (tmp_path / "metrics.jsonl").exists()
              and len((tmp_path / "metrics.jsonl").read_text().splitlines()) >= 3, proc)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "killed by signal" not in err
    step = load_checkpoint(tmp_path / "checkpoint.pt")["step"]
    assert step == _metrics(tmp_path)[-1]["step"] >= 3
    resumed = ["--resume", "--out", str(tmp_path), "--max-steps", str(step + 1)]
    assert main(resumed, mode="pretrain") == 0
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == step + 1
