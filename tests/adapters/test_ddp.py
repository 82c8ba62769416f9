"""Two gloo processes on CPU compute the same loss and gradients as one process on the batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from adapters.backbones import build_backbone
from adapters.checkpoints import load_checkpoint
from adapters.methods import METHODS
from adapters.train import NonFiniteLoss, SSLModel, build_criterion, compute_loss, train
from tests.adapters.train_helpers import one_thread, state_tensors, tiny_config  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
WORLD = 2
LOCAL_BATCH = 8
CASES = [("vicreg", "e2mc"), ("swav", "e2mc"), ("simsiam", "e2mc"), ("vicreg", "none"),
         ("vicreg", "vcreg"), ("vicreg", "mmcr"), ("vicreg", "uniformity"),
         ("vicreg", "logdet")]


def _model(method: str) -> SSLModel:
    torch.manual_seed(0)
    backbone = build_backbone("small_cnn", in_channels=1)
    heads = METHODS[method](backbone.feature_dim, **tiny_config("x", method).head_options)
    # eval mode: BatchNorm uses its running statistics, so a sample's features do not depend
    # on which process's batch it is in (CPU has no SyncBatchNorm); every cross-sample term
    # left is in the losses and criteria, which is what is being tested
    return SSLModel(backbone, heads).eval()


def _views(method: str) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    n = WORLD * LOCAL_BATCH
    views = [torch.randn(n, 1, 16, 16, generator=g) for _ in range(2)]
    if method == "swav":
        views += [torch.randn(n, 1, 8, 8, generator=g) for _ in range(2)]
    return views


def _loss_and_grads(model: nn.Module, method: str, criterion: str, views):
    crit = build_criterion(tiny_config("x", method, criterion=criterion))
    model.module.heads.before_step() if hasattr(model, "module") else model.heads.before_step()
    out = compute_loss(model, crit, views)
    out.loss.backward()
    params = model.module if hasattr(model, "module") else model
    grads = {k: p.grad.clone() for k, p in params.named_parameters() if p.grad is not None}
    return out.loss.detach(), grads


def _worker(rank: int, port: int, result_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    results = {}
    for method, criterion in CASES:
        ddp = nn.parallel.DistributedDataParallel(_model(method), broadcast_buffers=False)
        rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        loss, grads = _loss_and_grads(ddp, method, criterion,
                                      [v[rows] for v in _views(method)])
        # the loss the training loop logs: the mean over processes
        dist.all_reduce(loss)
        results[(method, criterion)] = (loss / WORLD, grads)
    if rank == 0:
        torch.save(results, result_path)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    path = str(tmp_path / "ddp.pt")
    mp.spawn(_worker, args=(_free_port(), path), nprocs=WORLD, join=True)
    distributed = torch.load(path)
    for method, criterion in CASES:
        loss, grads = _loss_and_grads(_model(method), method, criterion, _views(method))
        ddp_loss, ddp_grads = distributed[(method, criterion)]
        assert abs(ddp_loss.item() - loss.item()) <= 1e-5 * max(1.0, abs(loss.item())), (
            method, criterion, ddp_loss.item(), loss.item())
        assert ddp_grads.keys() == grads.keys()
        for key in grads:
            # relative to the tensor's scale: float32 sums in another order differ by ~1e-6;
            # a missing or doubled world-size factor would be off by 50% or 100%
            error = (ddp_grads[key] - grads[key]).abs().max() / grads[key].abs().max()
            assert error <= 1e-4, f"{method}+{criterion}: gradient of {key} off by {error:.2e}"


#: a tiny VICReg + E2MC pretraining on fake data (global batch 2 x 4 = 8 >= 5, as E2MC needs)
TINY_VICREG_E2MC = ("--method", "vicreg", "--backbone", "small_cnn", "--dataset", "fake",
                    "--batch-size", "4", "--criterion", "e2mc",
                    "--head-option", "expander_dim=32", "--no-progress", "--device", "cpu")


def _torchrun(*args: str) -> None:
    """``python -m adapters.pretrain *args`` under torchrun with 2 gloo processes; must succeed."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_port", str(_free_port()), "-m", "adapters.pretrain", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.skipif(not dist.is_gloo_available(), reason="torch built without gloo")
def test_torchrun_training_run(tmp_path):
    _torchrun(*TINY_VICREG_E2MC, "--max-steps", "2", "--out", str(tmp_path))
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 2 and state["data_order"]["world_size"] == 2
    # rank 0 alone writes metrics; the global batch (2 x 4 = 8 >= 5) satisfies E2MC
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def _nan_on_one_rank_worker(rank: int, port: int, out: str, criterion: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    forward = METHODS["simsiam"].forward
    calls = [0]

    def nan_on_rank_1_at_step_2(self, backbone, views):
        calls[0] += 1
        if rank == 1 and calls[0] == 2:
            views = [v.clone() for v in views]
            views[0][0] = float("nan")  # rank 1's embeddings go non-finite, rank 0's stay finite
        return forward(self, backbone, views)

    METHODS["simsiam"].forward = nan_on_rank_1_at_step_2
    config = tiny_config(Path(out), "simsiam", criterion=criterion, batch_size=4, max_steps=6,
                         log_every=3)
    try:
        train(config)
        outcome = "trained"
    except NonFiniteLoss as err:
        outcome = str(err)
    Path(f"{out}.{rank}").write_text(outcome)
    dist.destroy_process_group()


@pytest.mark.parametrize("criterion", ["none", "e2mc"])
def test_non_finite_embeddings_on_one_rank_stop_every_rank(tmp_path, criterion):
    """Rank 1 skipped E2MC while rank 0 waited in its all_gather: both hung. Now every rank
    runs the same collectives, and the finiteness flags, summed over the ranks on the device,
    stop every rank at the next read (step 3 with log_every 3) naming step 2. SimSiam's loss
    needs no collective: with --criterion none only rank 1's loss is NaN."""
    ctx = mp.get_context("spawn")
    port, out = _free_port(), str(tmp_path / "run")
    procs = [ctx.Process(target=_nan_on_one_rank_worker, args=(r, port, out, criterion))
             for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    hung = [p.pid for p in procs if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert not hung, "the ranks deadlocked"
    assert [p.exitcode for p in procs] == [0, 0]
    messages = [Path(f"{out}.{r}").read_text() for r in range(WORLD)]
    bad = 1 if criterion == "none" else 2  # E2MC gathers rank 1's NaN rows into both losses
    for message in messages:
        assert message.startswith("loss is nan at step 2 (epoch 0)"), message
        assert f"not finite in {bad} of 2 process(es)" in message
        assert "No checkpoint of this run was written" in message
    # the step before the divergence is logged, nothing after it is
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1]


@pytest.mark.skipif(not dist.is_gloo_available(), reason="torch built without gloo")
def test_resume_on_another_number_of_processes_is_refused(tmp_path, capsys):
    from adapters.continue_train import EXIT_BAD_INPUT, main

    _torchrun(*TINY_VICREG_E2MC, "--max-steps", "2", "--out", str(tmp_path))
    before = (tmp_path / "checkpoint.pt").read_bytes()
    code = main(["--resume", "--out", str(tmp_path), "--max-steps", "4"], mode="pretrain")
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "saved by a run of 2 process(es) (global batch 8)" in err
    assert "this is 1 process(es) (global batch 4)" in err
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


@pytest.mark.skipif(not dist.is_gloo_available(), reason="torch built without gloo")
def test_swav_queue_is_split_over_the_processes_and_each_rank_resumes_its_own(tmp_path):
    # a global queue of 8 rows: 4 per process, full after one step of 4 images per process, so
    # every step after the first (and both steps after the resume) use it
    run = ["--method", "swav", "--backbone", "small_cnn", "--dataset", "fake",
           "--batch-size", "4", "--criterion", "none", "--head-option", "out_dim=16",
           "--head-option", "n_prototypes=12", "--head-option", "queue_length=8",
           "--view-option", "n_local_crops=2", "--no-progress", "--device", "cpu"]
    _torchrun(*run, "--max-steps", "4", "--out", str(tmp_path / "straight"))
    _torchrun(*run, "--max-steps", "2", "--out", str(tmp_path / "halves"))
    half = load_checkpoint(tmp_path / "halves" / "checkpoint.pt")
    queues = [s["queue"] for s in half["process_states"]]
    assert [tuple(q.shape) for q in queues] == [(2, 4, 16), (2, 4, 16)]
    assert not torch.equal(queues[0], queues[1])  # each rank queued its own images
    _torchrun("--resume", "--out", str(tmp_path / "halves"), "--max-steps", "4")
    # rank 1 resumed with its own queue, not rank 0's: the run is the uninterrupted one
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "halves" / "checkpoint.pt")
    assert b["step"] == 4
    ta, tb = state_tensors(a), state_tensors(b)
    assert [k for k in ta if not torch.equal(ta[k], tb[k])] == []
    for sa, sb in zip(a["process_states"], b["process_states"], strict=True):
        assert torch.equal(sa["queue"], sb["queue"])


@pytest.mark.skipif(not dist.is_gloo_available(), reason="torch built without gloo")
def test_sigterm_under_torchrun_stops_every_process_after_the_same_step(tmp_path):
    """A scheduler signals the whole process group, DataLoader workers included (they ignore
    it). Each process learns that a signal reached any of them from the flags summed over the
    processes, read every --log-every steps, so all stop after the same step and the
    checkpoint (which every process helps write) is that step's; the run resumes from it."""
    import signal
    import time

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_port", str(_free_port()), "-m", "adapters.pretrain", *TINY_VICREG_E2MC,
           "--epochs", "100", "--log-every", "2", "--workers", "1", "--out", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert err.count("stopped by signal SIGTERM") == WORLD, err[-3000:]  # each process
    assert "killed by signal" not in err
    step = load_checkpoint(tmp_path / "checkpoint.pt")["step"]
    rows = [json.loads(r)["step"] for r in metrics.read_text().splitlines()]
    assert rows == list(range(1, step + 1)) and step % 2 == 0
    _torchrun("--resume", "--out", str(tmp_path), "--max-steps", str(step + 2))
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == step + 2
