"""Fault injection: whatever stops a run, the checkpoint left behind is good and resuming from it
gives the uninterrupted run bit for bit (weights, optimizer state, metrics logs), with nothing
left behind."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from adapters.checkpoints import load_checkpoint, previous_path
from adapters.continue_train import EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_IO_FAILURE, main
from adapters.train import NonFiniteLoss, train
from tests.adapters.train_helpers import one_thread, state_tensors, tiny_config  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
STEPS = 6
#: a tiny pretraining run (64 steps per epoch) that checkpoints every 2 steps
RUN = ["--method", "vicreg", "--backbone", "small_cnn", "--dataset", "fake", "--batch-size", "8",
       "--head-option", "expander_dim=32", "--criterion", "e2mc", "--no-progress",
       "--save-every", "2", "--max-steps", str(STEPS)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    torch.set_num_threads(1)
    assert main([*RUN, "--out", str(out)], mode="pretrain") == 0
    return out


def _faulty(kind: str, n: int, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "tests.adapters.faults", kind, str(n), "--", *RUN,
         "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )


def _rows_jsonl(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in rows]


def _rows_csv(out: Path) -> list[list[str]]:
    with (out / "metrics.csv").open(newline="") as f:
        header, *rows = list(csv.reader(f))
    drop = header.index("samples_per_s")
    return [[v for i, v in enumerate(r) if i != drop] for r in [header, *rows]]


def assert_same_run(out: Path, reference: Path) -> None:
    """Same files, same final weights and optimizer state, same metrics rows (but timing)."""
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())
    a, b = load_checkpoint(out / "checkpoint.pt"), load_checkpoint(reference / "checkpoint.pt")
    assert (a["step"], a["epoch"], a["epoch_step"]) == (b["step"], b["epoch"], b["epoch_step"])
    ta, tb = state_tensors(a), state_tensors(b)
    assert ta.keys() == tb.keys()
    assert [k for k in ta if not torch.equal(ta[k], tb[k])] == []
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert _rows_jsonl(out) == _rows_jsonl(reference)
    assert _rows_csv(out) == _rows_csv(reference)


def test_reference_keeps_two_generations(reference):
    assert load_checkpoint(reference / "checkpoint.pt")["step"] == STEPS
    assert load_checkpoint(previous_path(reference / "checkpoint.pt"))["step"] == STEPS - 2


def test_sigkill_after_logging_past_the_checkpoint(tmp_path, reference):
    # killed after step 5's row: the checkpoint is step 4's, the logs hold step 5 too
    out = tmp_path / "run"
    assert _faulty("kill-after-log", 5, out).returncode == -9
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4
    assert [r["step"] for r in _rows_jsonl(out)] == [1, 2, 3, 4, 5]
    assert main(["--resume", "--out", str(out)], mode="pretrain") == 0
    assert_same_run(out, reference)


@pytest.mark.parametrize("save", [1, 2])
def test_sigkill_inside_a_save(save, tmp_path, reference):
    # the save-th checkpoint (step 2 * save) is half written when the process dies
    out = tmp_path / "run"
    assert _faulty("kill-in-save", save, out).returncode == -9
    assert list(out.glob(".checkpoint.pt.*.tmp")), "the fault left no partial temp file"
    if save == 1:
        assert not (out / "checkpoint.pt").exists()
        assert main([*RUN, "--out", str(out), "--overwrite"], mode="pretrain") == 0
    else:
        assert load_checkpoint(out / "checkpoint.pt")["step"] == 2
        assert main(["--resume", "--out", str(out)], mode="pretrain") == 0
    assert_same_run(out, reference)


def _flip_tensor_bytes(path: Path) -> None:
    """Overwrite 16 bytes in the middle of the largest tensor's data inside the zip."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename),
                   key=lambda i: i.file_size)
    with path.open("r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
        start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        f.seek(start)
        original = f.read(16)
        f.seek(start)
        f.write(bytes(b ^ 0xFF for b in original))


def test_corrupted_checkpoint_names_itself_and_the_previous_one(tmp_path, reference, capsys):
    out = tmp_path / "run"
    assert main([*RUN[:-1], "4", "--out", str(out)], mode="pretrain") == 0
    latest = out / "checkpoint.pt"
    _flip_tensor_bytes(latest)
    capsys.readouterr()
    assert main(["--resume", "--out", str(out), "--max-steps", str(STEPS)],
                mode="pretrain") == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"{latest}' is corrupt" in err
    assert f"previous checkpoint '{previous_path(latest)}' (step 2) is intact" in err
    # resuming from the older generation gives the uninterrupted run
    assert main(["--resume", str(previous_path(latest)), "--out", str(out), "--max-steps",
                 str(STEPS)], mode="pretrain") == 0
    assert_same_run(out, reference)
    assert load_checkpoint(previous_path(latest))["step"] == STEPS - 2


def test_weights_that_overflow_are_never_saved(tmp_path):
    # SGD at lr 1e38: the loss of step 1 is finite, the weights after it are not
    config = tiny_config(tmp_path, optimizer="sgd", lr=1e38, save_every=1, max_steps=3)
    with pytest.raises(NonFiniteLoss, match=r"state after step 1 .* is not finite .*backbone"):
        train(config)
    assert not (tmp_path / "checkpoint.pt").exists()
    assert main(["--resume", "--out", str(tmp_path)], mode="pretrain") == EXIT_BAD_INPUT


def test_weights_that_overflow_exit_with_the_divergence_code(tmp_path, capsys):
    code = main([*RUN, "--optimizer", "sgd", "--lr", "1e38", "--out", str(tmp_path / "run")],
                mode="pretrain")
    assert code == EXIT_DIVERGED
    assert "No checkpoint of this run was written" in capsys.readouterr().err


def _mount_tmpfs(where: Path, options: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; run the tests as root to test this")
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.fixture
def tmpfs(tmp_path):
    where = tmp_path / "tmpfs"
    yield where
    subprocess.run(["umount", str(where)], capture_output=True)


def test_unwritable_out_is_refused_before_anything_is_loaded(tmp_path, tmpfs, monkeypatch,
                                                             capsys):
    if os.geteuid() == 0:
        _mount_tmpfs(tmpfs, "ro,size=1m")  # root writes through permission bits
        parent = tmpfs
    else:
        parent = tmp_path / "locked"
        parent.mkdir(mode=0o555)
    import adapters.data

    def no_loading(*args, **kwargs):
        raise AssertionError("data was loaded before --out was checked")

    monkeypatch.setattr(adapters.data, "load_dataset", no_loading)
    code = main([*RUN, "--out", str(parent / "run")], mode="pretrain")
    assert code == EXIT_IO_FAILURE
    assert f"--out '{parent / 'run'}' is not writable" in capsys.readouterr().err


def test_full_disk_is_said_and_keeps_the_checkpoint(tmpfs, reference, capsys):
    _mount_tmpfs(tmpfs, "size=16m")  # a run needs ~11 MB: 3 checkpoints during a save
    out = tmpfs / "run"
    assert main([*RUN[:-1], "2", "--out", str(out)], mode="pretrain") == 0
    before = (out / "checkpoint.pt").read_bytes()
    # fill the disk, leaving room for a few metrics rows but not for a checkpoint
    filler = tmpfs / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    free_up = 64 * 1024
    os.truncate(filler, filler.stat().st_size - free_up)
    capsys.readouterr()
    code = main(["--resume", "--out", str(out), "--max-steps", str(STEPS)], mode="pretrain")
    assert code == EXIT_IO_FAILURE
    err = capsys.readouterr().err
    assert "no space left on the device" in err and "checkpoint.pt is intact" in err
    assert (out / "checkpoint.pt").read_bytes() == before
    assert not list(out.glob(".*.tmp"))
    filler.unlink()
    assert main(["--resume", "--out", str(out), "--max-steps", str(STEPS)],
                mode="pretrain") == 0
    assert_same_run(out, reference)
