"""The converged-base study's tables and curve figure, from its stored units (``paper.study``).

``python -m paper.reproduce --only study --tables-only`` writes ``results/study/STUDY.md`` and
``results/study/curves.png``; whatever has not run yet shows as missing. The paired difference
of a row to "continued" uses the seeds both have: mean of the per-seed differences with a 95%
Student-t interval (n - 1 degrees of freedom).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from paper import config as cfg
from paper.plan import build_plan
from paper.study import CURVE_FILE, StudyPlan
from paper.tables import FORMATS, summarize
from paper.units import RunStore

ACCURACIES = (("linear_1", "lin 1%"), ("linear_10", "lin 10%"), ("linear_100", "lin 100%"),
              ("knn_20", "kNN"), ("semisup_1", "semi 1%"), ("transfer_digits", "digits"))
MECHANISM = (("entropy_mean", "mean H (nats)"), ("tc_gaussian", "TC Gaussian"),
             ("tc_ksg", "TC KSG (2,000 rows)"), ("offdiag_cov_energy", "cov energy"),
             ("rankme", "RankMe"), ("dead_constant", "constant"),
             ("dead_low_entropy", "below -3 nats"))
#: what the reproduction's diagnostics units measured (its Gaussian TC on 5,000 test rows)
SHORT_MECHANISM = (("entropy_mean", "mean H (nats)"),
                   ("total_correlation", "TC Gaussian (5,000 rows)"),
                   ("offdiag_cov_energy", "cov energy"), ("rankme", "RankMe"),
                   ("dead_constant", "constant"))
ROWS = ("base", "continued", "+E2MC reference", "+E2MC selected")
#: Table 1 row and diagnostics names of the 4-epoch reproduction, in the study's terms
SHORT_NAMES = {"+E2MC": "+E2MC reference", "dead_units": "dead_constant"}

#: {(base, row): {metric: {seed: value}}}
SeedValues = dict[tuple[str, str], dict[str, dict[int, float]]]


def paired_difference(
    row: Mapping[int, float], control: Mapping[int, float]
) -> tuple[float, float, float, int] | None:
    """Mean per-seed difference ``row - control`` and its 95% t interval: (mean, low, high, n).

    None when fewer than two seeds have both values.

    Examples
    --------
    >>> m, lo, hi, n = paired_difference({0: 2.0, 1: 4.0}, {0: 1.0, 1: 1.0})
    >>> m, n, round(hi - m, 3)  # differences 1 and 3: sd sqrt(2), t(0.975, 1) = 12.706
    (2.0, 2, 12.706)
    """
    from scipy.stats import t

    seeds = sorted(set(row) & set(control))
    d = [row[s] - control[s] for s in seeds]
    n = len(d)
    if n < 2:
        return None
    mean = math.fsum(d) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in d) / (n - 1))
    half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, n


def seed_values(cells: Iterable[Any], store: RunStore) -> SeedValues:
    """Stored metrics by (base, row), metric and seed, for cells with base/row/seed/unit."""
    out: SeedValues = {}
    for c in cells:
        record = store.load(c.unit)
        if record is None or c.seed is None:
            continue
        row = SHORT_NAMES.get(c.row, c.row)
        metrics = out.setdefault((c.base, row), {})
        for name, value in record["result"].get("metrics", {}).items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                metrics.setdefault(SHORT_NAMES.get(name, name), {})[c.seed] = float(value)
    return out


def _summary_table(values: SeedValues, base: str, rows: Sequence[str],
                   columns: Sequence[tuple[str, str]], seeds: int) -> list[str]:
    lines = ["| row | " + " | ".join(h for _, h in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for row in rows:
        metrics = values.get((base, row), {})
        cells = [summarize(list(metrics.get(m, {}).values()), seeds).text(_format(m))
                 for m, _ in columns]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def _format(metric: str) -> str:
    return FORMATS.get(metric, ".3g" if metric.startswith(("tc_", "offdiag")) else ".2f")


def _difference_table(values: SeedValues, base: str, rows: Sequence[str],
                      columns: Sequence[tuple[str, str]]) -> list[str]:
    lines = ["| row - continued | " + " | ".join(h for _, h in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    control = values.get((base, "continued"), {})
    for row in rows:
        metrics = values.get((base, row), {})
        cells = []
        for m, _ in columns:
            diff = paired_difference(metrics.get(m, {}), control.get(m, {}))
            f = "+" + _format(m)
            cells.append("-" if diff is None
                         else f"{diff[0]:{f}} [{diff[1]:{f}}, {diff[2]:{f}}]")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def excluding_zero(values: SeedValues, base: str, row: str,
                   columns: Sequence[tuple[str, str]]) -> tuple[list[str], list[str], int]:
    """Columns whose paired 95% interval to continued lies above 0, those below, and how many
    columns have an interval at all (at least two paired seeds)."""
    control = values.get((base, "continued"), {})
    metrics = values.get((base, row), {})
    above, below, paired = [], [], 0
    for m, header in columns:
        diff = paired_difference(metrics.get(m, {}), control.get(m, {}))
        if diff is None:
            continue
        paired += 1
        if diff[1] > 0:
            above.append(header)
        elif diff[2] < 0:
            below.append(header)
    return above, below, paired


def _summary_of_intervals(values: SeedValues, bases: Sequence[str]) -> list[str]:
    lines = ["| base | row | interval above 0 | interval below 0 | contain 0 |",
             "|---|---|---|---|---|"]
    for base in bases:
        for row in ROWS[2:]:
            above, below, paired = excluding_zero(values, base, row, ACCURACIES)
            contain = "-" if not paired else f"{paired - len(above) - len(below)} of {paired}"
            lines.append(f"| {base} | {row} | {', '.join(above) or '-'} | "
                         f"{', '.join(below) or '-'} | {contain} |")
    return lines


def _curves(plan: StudyPlan, store: RunStore) -> dict[str, tuple[list[dict], dict | None]]:
    out = {}
    for c in plan.cells:
        if c.table == "curve":
            path = store.root / c.unit.key / CURVE_FILE
            points = json.loads(path.read_text()) if path.is_file() else []
            record = store.load(c.unit)
            out[c.base] = (points, None if record is None else record["result"])
    return out


def curves_figure(plan: StudyPlan, store: RunStore, path: Path) -> bool:
    """Validation kNN accuracy against pretraining epochs, one line per base; False if empty."""
    from evaluation.figures import png_figure

    curves = {b: pts for b, (pts, _) in _curves(plan, store).items() if pts}
    if not curves:
        return False
    with png_figure(path) as (_, ax):
        for base, pts in curves.items():
            ax.plot([p["epoch"] for p in pts], [p["knn_val"] for p in pts], marker="o",
                    label=base)
        ax.set_xlabel("pretraining epoch")
        ax.set_ylabel("kNN top-1 on the validation split (%)")
        ax.legend()
    return True


def study_report(plan: StudyPlan, store: RunStore) -> str:
    """The study's tables as markdown (missing cells say so)."""
    seeds = len(plan.study.seeds)
    lines = ["# The converged-base study", "",
             "Generated by `paper/study_tables.py` from the stored units; design in "
             "`paper/study.py` and docs/reproducibility.md. Accuracies in % on the test split "
             "(mean ± std over seeds); differences to continued are paired by seed, with 95% "
             "t intervals.", "", "## Pretraining until the plateau (validation kNN)", "",
             "| base | curve (epoch: accuracy) | stopped at | why |", "|---|---|---|---|"]
    for base, (points, result) in _curves(plan, store).items():
        curve = ", ".join(f"{p['epoch']}: {p['knn_val']:.2f}" for p in points) or "-"
        stop = ("running", "-") if result is None else (result["stopped_epoch"],
                                                        result["stop_reason"])
        lines.append(f"| {base} | {curve} | {stop[0]} | {stop[1]} |")
    lines += ["", "## Selection on the validation split", "",
              "| base | selected | score of each setting (mean of lin 1%, lin 10%, kNN) |",
              "|---|---|---|"]
    for c in plan.cells:
        if c.table == "selection":
            rec = store.load(c.unit)
            scores = "-" if rec is None else ", ".join(
                f"{k}: {v}" for k, v in rec["result"]["scores"].items())
            lines.append(f"| {c.base} | {'-' if rec is None else rec['result']['selected']} "
                         f"| {scores} |")
    converged = seed_values((c for c in plan.cells if c.table == "comparison"), store)
    lines += ["", "## Which accuracy differences exclude 0", "",
              "Converged bases; each row's six accuracies (" +
              ", ".join(h for _, h in ACCURACIES) + ") minus continued, paired by seed. "
              "No correction for multiple comparisons.", ""]
    lines += _summary_of_intervals(converged, plan.study.methods)
    short_plan = build_plan(cfg.full())
    short = seed_values((c for c in short_plan.cells if c.table == "table1"), store)
    for base in plan.study.methods:
        lines += ["", f"## {base}", "", "Converged base:", ""]
        lines += _summary_table(converged, base, ROWS, ACCURACIES, seeds)
        lines += [""] + _difference_table(converged, base, ROWS[2:], ACCURACIES)
        lines += ["", "Mechanism (backbone features of the test split):", ""]
        lines += _summary_table(converged, base, ROWS, MECHANISM, seeds)
        lines += [""] + _difference_table(converged, base, ROWS[2:], MECHANISM)
        lines += ["", f"Short-trained base ({cfg.PRETRAIN_EPOCHS} epochs, the reproduction's "
                  f"Table 1 units; {cfg.CONTINUE_STEPS} continued steps):", ""]
        lines += _summary_table(short, base, ROWS[:3], ACCURACIES, seeds)
        lines += [""] + _difference_table(short, base, ROWS[2:3], ACCURACIES)
        lines += [""] + _summary_table(short, base, ROWS[:3], SHORT_MECHANISM, seeds)
    return "\n".join(lines) + "\n"


def write_study_results(plan: StudyPlan, store: RunStore, out: Path) -> list[Path]:
    """Write ``STUDY.md`` (and ``curves.png`` once a curve point exists) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "STUDY.md"]
    written[0].write_text(study_report(plan, store))
    if curves_figure(plan, store, out / "curves.png"):
        written.append(out / "curves.png")
    return written
