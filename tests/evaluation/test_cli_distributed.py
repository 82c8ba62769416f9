"""`python -m evaluation` under torchrun: two gloo processes on CPU give the one-process report,
written once, and agree on the exit status when one of them fails."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.evaluation.test_cli import _export

REPO = Path(__file__).resolve().parents[2]
WORLD = 2

pytestmark = pytest.mark.skipif(not dist.is_gloo_available(), reason="torch built without gloo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _argv(ckpt: Path, out: Path) -> list[str]:
    # shards of 60 train / 20 test images cut into the same batches of 20 as one process
    return ["--checkpoint", str(ckpt), "--dataset", "digits", "--protocols", "knn,linear",
            "--max-train", "120", "--max-test", "40", "--batch-size", "20", "--k", "5,20",
            "--fractions", "50,100", "--seeds", "2", "--cs", "0.1,1", "--no-progress",
            "--device", "cpu", "--out", str(out)]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, *cmd], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)


def _cache(out: Path) -> dict[str, dict[str, np.ndarray]]:
    found = {}
    for path in sorted((out / "feature_cache").iterdir()):
        with np.load(path) as stored:
            found[path.name] = {k: stored[k] for k in stored.files}
    return found


def test_torchrun_report_equals_the_one_process_report(tmp_path):
    ckpt = _export(tmp_path / "m" / "backbone.pt", 0)
    one = _run(["-m", "evaluation", *_argv(ckpt, tmp_path / "one")])
    assert one.returncode == 0, one.stderr[-3000:]
    two = _run(["-m", "torch.distributed.run", f"--nproc_per_node={WORLD}", "--master_port",
                str(_free_port()), "-m", "evaluation", *_argv(ckpt, tmp_path / "two")])
    assert two.returncode == 0, two.stderr[-3000:]
    # one report, written and announced by the first process only
    assert two.stdout.count("wrote results.json") == 1
    assert sorted(os.listdir(tmp_path / "two")) == ["feature_cache", "results.json",
                                                     "results.md"]
    single, sharded = (json.loads((tmp_path / d / "results.json").read_text())
                       for d in ("one", "two"))
    assert {"knn_5", "knn_20", "linear_50", "linear_100"} <= set(single["results"]["m/backbone"])
    assert sharded["results"] == single["results"]
    assert sharded["models"] == single["models"]
    # the gathered features are the one-process features, under the same cache keys
    cached_one, cached_two = _cache(tmp_path / "one"), _cache(tmp_path / "two")
    assert cached_two.keys() == cached_one.keys() and len(cached_one) == 2
    for name, arrays in cached_one.items():
        np.testing.assert_array_equal(cached_two[name]["labels"], arrays["labels"])
        np.testing.assert_allclose(cached_two[name]["features"], arrays["features"],
                                   rtol=1e-6, atol=1e-6)


def _worker(rank: int, port: int, ckpt: str, out: str, fail: str, codes: str) -> None:
    import torch

    import evaluation.__main__ as cli

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)

    def broken(*_args, **_kwargs):
        raise ValueError(f"{fail} failed here")

    if fail == "prepare" and rank == 1:  # an input only the second process cannot read
        cli.ModelData = broken
    if fail == "plots" and rank == 0:  # the report, written by the first process alone
        cli._plots = broken
    code = cli.main(_argv(Path(ckpt), Path(out))[:-2] + ["--protocols", "knn", "--out", out])
    Path(f"{codes}.{rank}").write_text(f"{code} {dist.is_initialized()}")


@pytest.mark.parametrize(("fail", "status"), [("prepare", 2), ("plots", 1)])
def test_a_failure_on_one_process_gives_every_process_its_status(tmp_path, fail, status):
    ckpt = _export(tmp_path / "m" / "backbone.pt", 0)
    codes = str(tmp_path / "code")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(r, port, str(ckpt), str(tmp_path / "out"), fail,
                                               codes))
             for port in [_free_port()] for r in range(WORLD)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    hung = [p.pid for p in procs if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert not hung, "a process waited forever for the one that failed"
    # the same status everywhere, and the process group was destroyed on the way out
    got = [Path(f"{codes}.{r}").read_text() for r in range(WORLD)]
    assert got == [f"{status} False"] * WORLD


def test_a_device_index_under_torchrun_is_a_usage_error(tmp_path, monkeypatch, capsys):
    from evaluation.__main__ import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as exc:
        main(["--checkpoint", "x.pt", "--dataset", "digits", "--device", "cuda:0",
              "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert "LOCAL_RANK" in capsys.readouterr().err
    assert not dist.is_initialized()
