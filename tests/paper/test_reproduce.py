"""End to end: ``python -m paper.reproduce --quick`` into a temporary folder, then resumed."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from paper import config as cfg
from paper.plan import build_plan
from paper.reproduce import STEP_SECONDS, describe, estimate_seconds, main
from paper.units import RunStore

pytest.importorskip("adapters.train")
pytest.importorskip("evaluation.linear")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "paper.reproduce", *args], capture_output=True, text=True,
        timeout=900,
    )


@pytest.mark.slow
@pytest.mark.requires_fashion_mnist
def test_quick_end_to_end_and_resume(tmp_path):
    out = tmp_path / "quick"
    first = _run("--quick", "--out", str(out), "--no-progress")
    assert first.returncode == 0, first.stderr[-3000:]
    plan = build_plan(cfg.quick())
    n_units = len(plan.units())
    assert f"ran {n_units} units, reused 0, failed 0" in first.stdout

    results = out / "results"
    for name in ("runs.csv", "table1.md", "table2.md", "ablation.md", "REPORT.md",
                 "separability.png", "diagnostics.png"):
        assert (results / name).is_file(), name
    with open(results / "runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n_units and all(r["status"] == "done" for r in rows)
    accs = [float(r["linear_100"]) for r in rows if r.get("linear_100")]
    assert accs and all(0 <= a <= 100 for a in accs)
    # ten classes: even a few training steps give features far above chance on a probe
    assert max(accs) > 30
    assert "missing (" not in (results / "table1.md").read_text()

    # results are small JSON; checkpoints sit next to them and are git-ignored
    store = RunStore(out / "runs")
    base = next(u for u in plan.units() if u.kind == "pretrain")
    record = json.loads((out / "runs" / base.key / "result.json").read_text())
    assert record["key"] == base.key and record["result"]["steps"] == 3
    assert (out / "runs" / base.key / "train" / "checkpoint.pt").is_file()
    assert "*.pt" in (out / "runs" / ".gitignore").read_text()

    # second invocation: nothing runs
    second = _run("--quick", "--out", str(out), "--no-progress")
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"ran 0 units, reused {n_units}" in second.stdout

    # one deleted evaluation runs again, and only it
    victim = next(c.unit for c in plan.cells if c.protocol == "knn")
    (out / "runs" / victim.key / "result.json").unlink()
    assert "1 pending" in describe(plan, store, None)
    third = _run("--quick", "--out", str(out), "--no-progress", "--only", "table1")
    assert third.returncode == 0, third.stderr[-3000:]
    assert "ran 1 units" in third.stdout
    assert store.is_done(victim)


def test_dry_run_lists_units_without_running(tmp_path):
    res = _run("--quick", "--dry-run", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    n_units = len(build_plan(cfg.quick()).units())
    assert f"{n_units} units" in res.stdout and f"{n_units} pending" in res.stdout
    assert not (tmp_path / "runs").exists()


def test_estimate_counts_steps_and_protocols():
    plan = build_plan(cfg.full())
    training = [u for u in plan.units() if u.kind != "evaluate"]
    by_hand = 0.0
    for u in training:
        model = u.config.get("model", u.config)
        steps = (60_000 // model["batch_size"]) * model["epochs"]
        if model["max_steps"] is not None:
            steps = min(steps, model["max_steps"])
        by_hand += steps * STEP_SECONDS[model["method"]] * model["batch_size"] / 256
    assert estimate_seconds(training) == pytest.approx(by_hand)
    # continued runs are capped at 10% of the pretraining steps
    cont = [u for u in training if u.kind == "continue"]
    assert {u.config["max_steps"] for u in cont} == {
        round(0.10 * cfg.PRETRAIN_EPOCHS * (60_000 // 256))
    }


def test_tables_only_on_a_fresh_checkout_rewrites_nothing(tmp_path):
    """The committed results (result.json files, no checkpoints) give back the committed
    tables and report byte for byte: --tables-only changes no committed file."""
    paper = Path(cfg.__file__).parent
    store = RunStore(paper / "runs")
    records = {u.key for u in build_plan(cfg.full()).units() if store.is_done(u)}
    assert records, "no committed unit results"
    for key in records:
        (tmp_path / "runs" / key).mkdir(parents=True)
        shutil.copy(paper / "runs" / key / "result.json", tmp_path / "runs" / key)
    (tmp_path / "results").mkdir()
    shutil.copy(paper / "results" / "FINDINGS.md", tmp_path / "results")
    if (paper / "results" / "study").is_dir():  # written by --only study; REPORT.md links it
        shutil.copytree(paper / "results" / "study", tmp_path / "results" / "study")
    assert main(["--tables-only", "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert written == sorted(p.name for p in (paper / "results").iterdir())
    for name in written:
        if name.endswith((".md", ".csv")):
            ours = (tmp_path / "results" / name).read_text()
            assert ours == (paper / "results" / name).read_text(), name


def test_study_tables_only_on_a_fresh_checkout_rewrites_nothing(tmp_path):
    """The committed study units (result.json, curve.json) give back the committed STUDY.md
    byte for byte, whatever part of the study has run."""
    from paper import study

    paper = Path(cfg.__file__).parent
    committed = paper / "results" / "study" / "STUDY.md"
    if not committed.is_file():
        pytest.skip("no study report committed yet")
    units = study.build_study(study.full()).units()
    for short in build_plan(cfg.full()).units():  # the short-trained column reads these
        units.append(short)
    # a base still pretraining has its curve so far and no result yet
    for key in {u.key for u in units}:
        for name in ("result.json", study.CURVE_FILE):
            if (paper / "runs" / key / name).is_file():
                (tmp_path / "runs" / key).mkdir(parents=True, exist_ok=True)
                shutil.copy(paper / "runs" / key / name, tmp_path / "runs" / key)
    assert main(["--only", "study", "--tables-only", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "results" / "study" / "STUDY.md").read_text() == committed.read_text()
