"""How often the training loop waits for the device, and which collectives a step calls.

Counted on CPU: every call that would make the host wait for a GPU (reading a value with
``item``, ``bool``, ``float``, ``tolist``..., a blocking copy to another device, a tensor made
from Python data on a device, an operation whose output size depends on the values) is seen by
a ``TorchFunctionMode`` and charged to the step during which it happens. Data loading (the
images are made on the host) and checkpoint saves (which copy the state to the host on
purpose) are not counted. A step reads nothing; the loop reads every pending step's values in
one transfer every ``log_every`` steps and before each checkpoint.
"""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.overrides import TorchFunctionMode

import adapters.train as train_module
from adapters.train import train
from tests.adapters.train_helpers import one_thread, tiny_config  # noqa: F401

#: calls that read a tensor's values on the host
READS = {
    torch.Tensor.item, torch.Tensor.__bool__, torch.Tensor.__float__, torch.Tensor.__int__,
    torch.Tensor.__index__, torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.__array__,
    torch.Tensor.__format__, torch.Tensor.__repr__, torch.Tensor.cpu, torch.Tensor.is_nonzero,
    torch.is_nonzero, torch.equal, torch.Tensor.equal, torch.allclose, torch.Tensor.allclose,
    torch.nonzero, torch.Tensor.nonzero, torch.unique, torch.Tensor.unique, torch.masked_select,
    torch.Tensor.masked_select,
}
#: calls that make a tensor from host data, an upload when given a device
MAKERS = {torch.tensor, torch.as_tensor}
COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "all_gather_object",
               "broadcast", "broadcast_object_list", "reduce_scatter", "reduce", "barrier")
STEPS, LOG_EVERY = 7, 3


def _is_sync(func, args, kwargs) -> bool:
    if func in READS:
        return True
    if func in MAKERS:
        return kwargs.get("device") is not None
    if func is torch.Tensor.to:  # a copy to a device that the host waits for
        to_device = any(isinstance(a, (torch.device, str)) for a in args[1:]) or (
            kwargs.get("device") is not None)
        return to_device and not kwargs.get("non_blocking", False)
    if func is torch.Tensor.__getitem__:  # a boolean mask: the output size is read
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index)
    return False


class Counting(TorchFunctionMode):
    """Charges each synchronising call and each collective to the step in progress."""

    def __init__(self) -> None:
        super().__init__()
        self.step = 0
        self.on = False
        self.syncs: Counter[int] = Counter()
        self.collectives: dict[int, Counter[str]] = {}
        self.what: dict[int, list[str]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.on and _is_sync(func, args, kwargs):
            self.syncs[self.step] += 1
            self.what.setdefault(self.step, []).append(getattr(func, "__name__", str(func)))
        return func(*args, **kwargs)

    def paused(self, function):
        def call(*args, **kwargs):
            on, self.on = self.on, False
            try:
                return function(*args, **kwargs)
            finally:
                self.on = on
        return call


def _instrument(monkeypatch, counting: Counting) -> None:
    """Count from the first step to the end of the loop, without data loading and saves."""
    train_step, loop = train_module.train_step, train_module._loop
    start = train_module.start_workers

    def counted_step(state, *args, **kwargs):
        counting.step, counting.on = state.step + 1, True
        return train_step(state, *args, **kwargs)

    def counted_loop(*args, **kwargs):
        try:
            return loop(*args, **kwargs)
        finally:
            counting.on = False

    def loading_not_counted(loader):
        batches = start(loader)
        fetch = counting.paused(lambda: next(batches, None))
        while (batch := fetch()) is not None:
            yield batch

    monkeypatch.setattr(train_module, "train_step", counted_step)
    monkeypatch.setattr(train_module, "_loop", counted_loop)
    monkeypatch.setattr(train_module, "start_workers", loading_not_counted)
    monkeypatch.setattr(train_module.CheckpointWriter, "save",
                        counting.paused(train_module.CheckpointWriter.save))
    for name in COLLECTIVES:
        if hasattr(dist, name):
            monkeypatch.setattr(dist, name, _counted_collective(counting, name,
                                                                getattr(dist, name)))


def _counted_collective(counting: Counting, name: str, function):
    def call(*args, **kwargs):
        if counting.on:
            counting.collectives.setdefault(counting.step, Counter())[name] += 1
        return function(*args, **kwargs)
    return call


#: the steps after which the loop reads the device: every LOG_EVERY steps, and at the last
#: step, which checkpoints
READ_STEPS = {s for s in range(1, STEPS + 1) if s % LOG_EVERY == 0 or s == STEPS}
#: one read at those steps, none at the others
EXPECTED_SYNCS = {s: int(s in READ_STEPS) for s in range(1, STEPS + 1)}
CASES = {
    "vicreg+e2mc": dict(method="vicreg", criterion="e2mc"),
    "swav+e2mc, queue used from step 2": dict(
        method="swav", criterion="e2mc",
        head_options={"out_dim": 16, "n_prototypes": 12, "queue_length": 8}),
    "simsiam+none": dict(method="simsiam", criterion="none"),
    "vicreg+logdet": dict(method="vicreg", criterion="logdet"),
    "vicreg+vcreg": dict(method="vicreg", criterion="vcreg"),
    "simsiam+uniformity": dict(method="simsiam", criterion="uniformity"),
    # not mmcr: its SVD checks for convergence on the host inside torch (README)
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_step_reads_nothing_from_the_device(case, tmp_path, monkeypatch):
    counting = Counting()
    _instrument(monkeypatch, counting)
    config = tiny_config(tmp_path, max_steps=STEPS, log_every=LOG_EVERY, **CASES[case])
    with counting:
        train(config)
    per_step = {s: counting.syncs[s] for s in range(1, STEPS + 1)}
    assert per_step == EXPECTED_SYNCS, counting.what
    assert counting.collectives == {}  # one process: no collective at all


WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    counting = Counting()
    with pytest.MonkeyPatch.context() as monkeypatch:
        _instrument(monkeypatch, counting)
        config = tiny_config(Path(out), "vicreg", criterion="e2mc", batch_size=4,
                             max_steps=STEPS, log_every=LOG_EVERY)
        with counting:
            train(config)
    Path(f"{out}.{rank}.json").write_text(json.dumps({
        "syncs": {s: counting.syncs[s] for s in range(1, STEPS + 1)},
        "collectives": {s: dict(counting.collectives.get(s, {})) for s in range(1, STEPS + 1)},
    }))
    dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_gloo_available(), reason="torch built without gloo")
def test_two_processes_step_collectives_and_reads(tmp_path):
    """VICReg + E2MC on 2 gloo processes. Per step: 4 all_gathers (the two views, gathered by
    VICReg's loss and by E2MC; no gather of row counts, since the loop states that every
    process has a full batch) and 5 all_reduces (the 4 gathers' backward passes and the
    flags: mean loss, non-finite count, signal count). DDP's bucketed gradient all_reduces
    run inside its C++ reducer and are not counted. Reads: as in one process."""
    out = str(tmp_path / "run")
    mp.spawn(_worker, args=(_free_port(), out), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        counts = json.loads(Path(f"{out}.{rank}.json").read_text())
        assert {int(s): n for s, n in counts["syncs"].items()} == EXPECTED_SYNCS
        for step, collectives in counts["collectives"].items():
            assert collectives == {"all_gather": 4, "all_reduce": 5}, (rank, step)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_reading_every_n_steps_logs_every_step_as_reading_each(tmp_path):
    """Rows of a run read every 3 steps (across an epoch end, which checkpoints and reads)
    equal those of a run read at every step; each row's numbers sit under their own names."""
    import numpy as np

    from adapters.optim import lr_at

    # 512 FakeData images / 100 = 5 steps per epoch
    run = dict(criterion="e2mc", batch_size=100, max_steps=7, epochs=2, schedule="cosine")
    every = train(tiny_config(tmp_path / "every", log_every=1, **run))
    batched = train(tiny_config(tmp_path / "batched", log_every=3, **run))
    rows_every, rows = _rows(tmp_path / "every"), _rows(tmp_path / "batched")
    assert [r["step"] for r in rows] == list(range(1, 8))
    assert [r["epoch"] for r in rows] == [0] * 5 + [1] * 2
    timing = "samples_per_s"
    assert all(r[timing] > 0 for r in rows)
    assert [{k: v for k, v in r.items() if k != timing} for r in rows] == [
        {k: v for k, v in r.items() if k != timing} for r in rows_every]
    assert (tmp_path / "batched" / "metrics.csv").read_text().splitlines()[0] == (
        tmp_path / "every" / "metrics.csv").read_text().splitlines()[0]
    for r in rows:
        # the loss is the float32 sum of its two parts; a part's mean is that of its entries
        assert r["loss"] == np.float32(r["base_loss"]) + np.float32(r["criterion_loss"])
        for part in ("e2mc.entropy", "e2mc.cov"):
            views = np.array([r[f"{part}.0"], r[f"{part}.1"]], dtype=np.float32)
            assert r[part] == views.sum(dtype=np.float32) / np.float32(2)
        assert r["lr"] == lr_at(r["step"] - 1, base_lr=0.2 * 100 / 256, total_steps=10,
                                schedule="cosine")
    assert batched.metrics == rows[-1]
    assert every.step == batched.step == 7
