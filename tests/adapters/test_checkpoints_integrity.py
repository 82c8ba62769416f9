"""Checkpoints without a training run: the stored checksum, the previous generation and the
messages of a failed write (``test_faults.py`` checks the same through the training command,
in subprocesses that take minutes)."""

import errno

import pytest
import torch

from adapters import checkpoints
from adapters.checkpoints import (
    CheckpointError,
    CheckpointWriteError,
    load_checkpoint,
    previous_path,
    save_checkpoint,
)


def test_a_checksum_that_does_not_match_the_payload_is_an_error(tmp_path):
    w = torch.arange(4.0)
    path = tmp_path / "last.pt"
    # the file save_checkpoint would write for {"w": w, "step": 1}, with one weight changed
    torch.save({"w": w + torch.tensor([0.0, 0.0, 1.0, 0.0]), "step": 1,
                checkpoints.INTEGRITY_KEY: {"sha256": checkpoints.payload_digest(
                    {"w": w, "step": 1})}}, path)
    with pytest.raises(CheckpointError, match="corrupt: its contents do not match"):
        load_checkpoint(path)
    # the same file without the change loads, without the checksum entry
    torch.save({"w": w, "step": 1, checkpoints.INTEGRITY_KEY: {
        "sha256": checkpoints.payload_digest({"w": w, "step": 1})}}, path)
    loaded = load_checkpoint(path)
    assert set(loaded) == {"w", "step"} and torch.equal(loaded["w"], w)


def test_a_file_without_a_checksum_loads_as_it_is(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "release.pt")  # e.g. an official release
    assert torch.equal(load_checkpoint(tmp_path / "release.pt")["w"], torch.ones(2))


def test_keep_previous_keeps_exactly_the_generation_before(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1}, keep_previous=True)  # nothing to keep yet
    assert not previous_path(path).exists()
    save_checkpoint(path, {"step": 2}, keep_previous=True)
    assert load_checkpoint(previous_path(path))["step"] == 1
    assert load_checkpoint(path)["step"] == 2
    save_checkpoint(path, {"step": 3})  # without keep_previous the older file stays as it was
    assert load_checkpoint(previous_path(path))["step"] == 1
    assert previous_path(path).name == "last.previous.pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.previous.pt", "last.pt"]


def _failing_save(error):
    def save(obj, f):
        f.write(b"PK\x03\x04 partial")
        raise error
    return save


def test_a_full_disk_is_named_and_says_the_previous_file_is_intact(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", {"step": 1})
    monkeypatch.setattr(checkpoints.torch, "save", _failing_save(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(CheckpointWriteError, match="no space left on the device") as err:
        save_checkpoint(path, {"step": 2})
    assert err.value.errno == errno.ENOSPC
    assert "the previous last.pt is intact" in str(err.value)
    with pytest.raises(CheckpointWriteError) as err:  # no previous file: nothing said intact
        save_checkpoint(tmp_path / "first.pt", {"step": 1})
    assert "intact" not in str(err.value)
    assert load_checkpoint(path)["step"] == 1


def test_other_write_errors_name_the_file_and_the_system_message(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints.torch, "save", _failing_save(
        OSError(errno.EIO, "Input/output error")))
    with pytest.raises(CheckpointWriteError, match="Input/output error") as err:
        save_checkpoint(tmp_path / "last.pt", {"step": 1})
    assert "no space" not in str(err.value) and "last.pt" in str(err.value)


def test_torchs_writer_error_with_the_os_error_as_its_context_is_a_write_error(
    tmp_path, monkeypatch
):
    # torch's zip writer reports a failed write as a RuntimeError raised while handling it
    def save(obj, f):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("unexpected pos")  # noqa: B904 - the context is the point

    monkeypatch.setattr(checkpoints.torch, "save", save)
    with pytest.raises(CheckpointWriteError, match="no space left"):
        save_checkpoint(tmp_path / "last.pt", {"step": 1})
    assert list(tmp_path.iterdir()) == []
