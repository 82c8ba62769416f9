"""Tables and report from synthetic unit results whose means and stds are known."""

import csv
import dataclasses
import statistics
import zlib

import numpy as np
import pytest

from evaluation.model_data import TEST_SUBSET_SEED, TRAIN_SUBSET_SEED
from evaluation.subsets import limit_indices
from paper import config as cfg
from paper.plan import build_plan
from paper.tables import PAPER_TABLE1, summarize, write_results
from paper.units import RunStore

SEEDS = (0, 1, 2)


def _value(cell_row: str, base: str, metric: str, seed: int) -> float:
    """Synthetic metric: a deterministic, seed-dependent number per (row, base, metric)."""
    rng = np.random.default_rng(zlib.crc32(repr((cell_row, base, metric, seed)).encode()))
    return float(np.round(rng.uniform(40, 90), 3))


@pytest.fixture(scope="module")
def plan():
    return build_plan(dataclasses.replace(cfg.quick(), seeds=SEEDS))


@pytest.fixture()
def filled(tmp_path, plan):
    store = RunStore(tmp_path / "runs")
    truth: dict[tuple, float] = {}
    for c in plan.cells:
        if store.is_done(c.unit):
            continue
        seed = 0 if c.unit.config["seed"] is None else c.unit.config["seed"]
        if c.protocol == "linear":
            metrics = {f"linear_{f}": _value(c.row, c.base, f"l{f}", seed) for f in (10, 100)}
        elif c.protocol == "knn":
            metrics = {"knn_20": _value(c.row, c.base, "knn", c.seed)}
        elif c.protocol == "diagnostics":
            metrics = {"entropy_mean": 1.0, "offdiag_cov_energy": 0.5, "rankme": 3.0,
                       "fisher_ratio": 0.7, "silhouette": 0.1, "knn_purity": 80.0}
        else:
            continue  # semisup and transfer stay missing on purpose
        for k, v in metrics.items():
            truth[(c.table, c.base, c.row, k, c.unit.key)] = v
        result = {"metrics": metrics}
        if c.protocol == "diagnostics":
            result["entropy_profile"] = [0.1, 0.3, None, 0.2]
            result["map"] = {"x": [0.0, 1.0, 2.0], "y": [1.0, 0.0, 2.0], "label": [0, 1, 2]}
        store.save(c.unit, result, seconds=1.5)
    return plan, store, truth, tmp_path


def _expected(truth, table, base, row, metric):
    vals = [v for (t, b, r, m, _), v in truth.items() if (t, b, r, m) == (table, base, row, metric)]
    return vals


def _cell(md: str, base: str, row: str, header: str) -> str:
    lines = [line for line in md.splitlines() if line.startswith("|")]
    headers = [h.strip() for h in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [x.strip() for x in line.strip("|").split("|")]
        if cells[0] == base and cells[1] == row:
            return cells[headers.index(header)]
    raise AssertionError(f"no row {base} / {row}")


def _check(text: str, vals: list[float]) -> None:
    """``text`` is "mean ± std" of ``vals`` to the 2 printed decimals (statistics module)."""
    mean, std = (float(part) for part in text.split(" ± "))
    assert mean == pytest.approx(statistics.mean(vals), abs=0.0051)
    assert std == pytest.approx(statistics.stdev(vals), abs=0.0051)


def test_cells_are_mean_and_sample_std_over_seeds(filled):
    plan, store, truth, tmp = filled
    write_results(plan, store, tmp / "results")
    md = (tmp / "results" / "table1.md").read_text()
    for base in ("vicreg", "swav", "simsiam"):
        for row in ("continued", "+E2MC"):
            vals = _expected(truth, "table1", base, row, "linear_10")
            assert len(vals) == 3
            _check(_cell(md, base, row, "lin 10%"), vals)
        # the base row: 3 evaluation seeds of one checkpoint; kNN has no seed: one unit
        vals = _expected(truth, "table1", base, "base", "linear_100")
        _check(_cell(md, base, "base", "lin 100%"), vals)
        (knn,) = _expected(truth, "table1", base, "base", "knn_20")
        assert _cell(md, base, "base", "kNN k=20") == f"{knn:.2f}"
    # protocols with no stored result say so instead of showing a number
    assert _cell(md, "swav", "+E2MC", "semi 10%") == "missing (0/3)"


def test_missing_seed_is_reported(filled):
    plan, store, truth, tmp = filled
    victim = next(c for c in plan.cells if c.table == "table2" and c.row == "+MMCR"
                  and c.protocol == "linear" and c.seed == 1)
    (store.root / victim.unit.key / "result.json").unlink()
    write_results(plan, store, tmp / "results")
    md = (tmp / "results" / "table2.md").read_text()
    vals = [v for (t, b, r, m, key), v in truth.items()
            if (t, r, m) == ("table2", "+MMCR", "linear_100") and key != victim.unit.key]
    text = _cell(md, "swav", "+MMCR", "lin 100%")
    assert text.endswith(" (2/3 runs)")
    _check(text.removesuffix(" (2/3 runs)"), vals)


def test_csv_report_and_figures(filled):
    plan, store, truth, tmp = filled
    written = {p.name for p in write_results(plan, store, tmp / "results", command="CMD")}
    assert {"runs.csv", "table1.md", "table2.md", "ablation.md", "REPORT.md",
            "separability.png", "diagnostics.png"} <= written
    with open(tmp / "results" / "runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(plan.units())
    by_key = {r["key"]: r for r in rows}
    some = next(c for c in plan.cells if c.protocol == "linear" and c.table == "table1")
    assert by_key[some.unit.key]["status"] == "done"
    assert float(by_key[some.unit.key]["linear_10"]) == truth[
        ("table1", some.base, some.row, "linear_10", some.unit.key)]
    training = [r for r in rows if r["kind"] != "evaluate"]
    assert training and all(r["status"] == "missing" for r in training)
    report = (tmp / "results" / "REPORT.md").read_text()
    assert "`CMD`" in report
    assert f"{PAPER_TABLE1[('swav', '+E2MC')]['linear_1']:.2f}" in report
    assert "Incomplete" in report
    # the evaluation subsets are seeded random draws, not the first images of each split
    train_idx = limit_indices(60_000, plan.experiment.data.eval_train_limit,
                              seed=TRAIN_SUBSET_SEED)
    assert sorted(train_idx) != list(range(len(train_idx)))
    assert (f"seeded random draws of {plan.experiment.data.eval_train_limit} training "
            f"(seed {TRAIN_SUBSET_SEED}) and {plan.experiment.data.eval_test_limit} test images "
            f"(seed {TEST_SUBSET_SEED})") in report
    assert "first 512" not in report
    for name in ("separability.png", "diagnostics.png"):
        assert (tmp / "results" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_text():
    assert summarize([], 3).text() == "missing (0/3)"
    assert summarize([2.0], 1).text() == "2.00"
    s = summarize([1.0, 4.0], 3)
    assert s.text() == f"2.50 ± {statistics.stdev([1.0, 4.0]):.2f} (2/3 runs)"


def test_agreement_with_the_paper():
    from paper.tables import PAPER_NO_EFFECT, _agreement

    big = 3 * PAPER_NO_EFFECT
    assert _agreement(None, "missing", 1.0) == "-"
    assert _agreement(0.5, "higher", None) == "-"
    assert _agreement(0.5, "higher", big) == "agrees"
    assert _agreement(-0.5, "lower", -big) == "agrees"
    assert _agreement(-0.5, "lower", big) == "disagrees"
    assert _agreement(0.01, "within noise", big) == "ours within noise"
    # a paper single-run change this small is its own no-change level
    assert _agreement(0.01, "within noise", PAPER_NO_EFFECT / 2) == "agrees (no effect)"
    assert _agreement(-0.8, "lower", PAPER_NO_EFFECT / 2) == "ours moves, paper flat"
    assert _agreement(0.8, "higher", -PAPER_NO_EFFECT) == "ours moves, paper flat"


def test_training_signals_average_the_seeds(filled):
    from paper.tables import training_signals_md

    plan, store = filled[:2]
    runs = {}
    for c in plan.cells:
        if (c.table, c.base, c.row) == ("table1", "vicreg", "+E2MC"):
            runs.update({d.key: d for d in c.unit.deps if d.kind == "continue"})
    assert len(runs) == len(SEEDS)
    for i, unit in enumerate(runs.values()):
        tail = {"base_loss": 1.0 + i, "criterion_loss": 2.0 * i, "e2mc.cov": 0.5,
                "e2mc.cov.0": 9.0, "vicreg.invariance": 0.1 * (i + 1)}
        store.save(unit, {"tail_means": tail}, seconds=1.0)
    lines = training_signals_md(plan, store, "table1")
    assert lines[0] == "| base | row | runs | base loss | criterion loss | parts |"
    (row,) = [line for line in lines if line.startswith("| vicreg | +E2MC |")]
    n = len(SEEDS)
    base = sum(1.0 + i for i in range(n)) / n
    crit = sum(2.0 * i for i in range(n)) / n
    inv = sum(0.1 * (i + 1) for i in range(n)) / n
    assert row == (f"| vicreg | +E2MC | {n}/{n} | {base:.3f} | {crit:.3f} | "
                   f"e2mc.cov 0.5, vicreg.invariance {inv:.3g} |")
    assert any(line.startswith("| vicreg | continued | 0/") and "missing" in line
               for line in lines)
