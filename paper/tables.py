"""Tables, figures and the report of the reproduction, from the stored unit results only.

:func:`write_results` writes into ``results/``:

* ``runs.csv``: one line per unit of the plan (finished or not) with its metrics;
* ``table1.md``, ``table2.md``, ``ablation.md``: mean +- sample standard deviation (ddof 1)
  over the distinct evaluated units of each cell, with the number of units; a cell with fewer
  results than seeds says so, an empty cell says "missing";
* ``separability.png`` (2-D PCA maps of test features per criterion, with Fisher ratio,
  silhouette and kNN purity), ``diagnostics.png`` (marginal entropy profiles and off-diagonal
  covariance energy of each base before and after continued training);
* ``REPORT.md``: our tables beside the paper's (docs/reproducibility.md), where the direction of
  each effect agrees or not, and how every number was produced.

Nothing here computes a metric: every number is read from a ``result.json``.
"""

from __future__ import annotations

import csv
import math
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adapters.data import CLASS_NAMES
from evaluation.figures import class_colors, class_legend, png_figure
from paper.plan import Cell, Plan
from paper.units import RunStore, Unit

#: docs/reproducibility.md: the paper's ResNet-50 / ImageNet numbers (top-1 %, VOC07 mAP).
#: Keys: (base, row) -> {column: value}; SwAV is the 800-epoch checkpoint.
PAPER_TABLE1: dict[tuple[str, str], dict[str, float]] = {
    ("vicreg", "base"): {"linear_1": 53.50, "linear_10": 66.57, "linear_100": 73.20,
                         "semisup_1": 54.53, "semisup_10": 67.97},
    ("vicreg", "continued"): {"linear_1": 53.51, "linear_10": 66.57, "linear_100": 73.16},
    ("vicreg", "+E2MC"): {"linear_1": 54.54, "linear_10": 66.82, "linear_100": 73.45,
                          "semisup_1": 55.05, "semisup_10": 68.12},
    ("swav", "base"): {"linear_1": 53.70, "linear_10": 68.86, "linear_100": 75.30,
                       "semisup_1": 53.89, "semisup_10": 70.22},
    ("swav", "continued"): {"linear_1": 53.69, "linear_10": 68.87, "linear_100": 75.32},
    ("swav", "+E2MC"): {"linear_1": 55.27, "linear_10": 68.98, "linear_100": 75.41,
                        "semisup_1": 53.94, "semisup_10": 70.32},
    ("simsiam", "base"): {"linear_1": 43.71, "linear_10": 60.15, "linear_100": 68.37},
    ("simsiam", "continued"): {"linear_1": 43.78, "linear_10": 60.23, "linear_100": 68.45},
    ("simsiam", "+E2MC"): {"linear_1": 43.78, "linear_10": 60.23, "linear_100": 68.52},
}
PAPER_TABLE2: dict[str, dict[str, float]] = {
    "continued": {"linear_1": 53.69, "linear_10": 68.87, "linear_100": 75.32},
    "+VCReg": {"linear_1": 54.02, "linear_10": 68.88, "linear_100": 75.36},
    "+MMCR": {"linear_1": 53.30, "linear_10": 68.77, "linear_100": 75.27},
    "+Uniformity (AUH)": {"linear_1": 53.84, "linear_10": 68.90, "linear_100": 75.33},
    "+E2MC": {"linear_1": 55.27, "linear_10": 68.98, "linear_100": 75.41},
}

@dataclass(frozen=True)
class Column:
    """A table column: the metric key (of :mod:`evaluation.protocols`) it reads, its header,
    the experiment protocol that produces it and the setting it needs: ``(option, value)``
    where the protocol's option equals or contains ``value``; the option ``"data.transfer"``
    is the experiment's transfer data set."""

    header: str
    protocol: str
    needs: tuple[str, Any] | None = None


#: metrics shown in the tables, in column order (metric key -> column)
COLUMNS: dict[str, Column] = {
    "linear_1": Column("lin 1%", "linear", ("fractions", 1)),
    "linear_10": Column("lin 10%", "linear", ("fractions", 10)),
    "linear_100": Column("lin 100%", "linear", ("fractions", 100)),
    "semisup_1": Column("semi 1%", "semisup", ("fractions", 1)),
    "semisup_10": Column("semi 10%", "semisup", ("fractions", 10)),
    "knn_20": Column("kNN k=20", "knn", ("k", 20)),
    "transfer_digits": Column("digits (transfer)", "transfer", ("data.transfer", "digits")),
    "entropy_mean": Column("mean H (nats)", "diagnostics"),
    "offdiag_cov_energy": Column("cov energy", "diagnostics"),
    "rankme": Column("RankMe", "diagnostics"),
}

#: number formats of the non-accuracy columns
FORMATS = {"entropy_mean": ".3f", "offdiag_cov_energy": ".3g", "rankme": ".1f"}


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (ddof 1, 0 for one value) and counts of one table cell."""

    mean: float | None
    std: float | None
    n: int
    expected: int

    def text(self, fmt: str = ".2f") -> str:
        """``"mean +- std"`` with ``(n/expected)`` when runs are missing, or ``"missing"``."""
        if self.n == 0 or self.mean is None:
            return f"missing (0/{self.expected})"
        body = f"{self.mean:{fmt}}"
        if self.n > 1:
            body += f" ± {self.std:{fmt}}"
        if self.n < self.expected:
            body += f" ({self.n}/{self.expected} runs)"
        return body


def summarize(values: Sequence[float], expected: int) -> Summary:
    """Mean and sample standard deviation of ``values`` (the runs of one cell).

    Examples
    --------
    >>> s = summarize([1.0, 2.0, 3.0], 3)
    >>> (s.mean, s.std, s.text())
    (2.0, 1.0, '2.00 ± 1.00')
    """
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return Summary(None, None, 0, expected)
    mean = math.fsum(vals) / len(vals)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(
        vals
    ) > 1 else 0.0
    return Summary(mean, std, len(vals), expected)


def cell_values(
    cells: Iterable[Cell], store: RunStore, metric: str
) -> tuple[list[float], int]:
    """Values of ``metric`` over the distinct units of ``cells``, and how many were expected."""
    units: dict[str, Unit] = {}
    for c in cells:
        units.setdefault(c.unit.key, c.unit)
    values = []
    for unit in units.values():
        record = store.load(unit)
        if record is not None:
            value = record["result"].get("metrics", {}).get(metric)
            if value is not None:
                values.append(float(value))
    return values, len(units)


def table_grid(plan: Plan, store: RunStore, table: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of ``table``: one row per (base, row label), one Summary per metric."""
    cfg = next(t for t in plan.experiment.tables if t.name == table)
    cells = [c for c in plan.cells if c.table == table]
    rows = []
    present: list[str] = []
    for base in cfg.bases:
        for row in cfg.rows:
            mine = [c for c in cells if c.base == base and c.row == row.label]
            out: dict[str, Any] = {"base": base, "row": row.label}
            for metric in COLUMNS:
                relevant = [c for c in mine if c.protocol == COLUMNS[metric].protocol]
                if not relevant or not _metric_configured(plan, metric):
                    continue
                values, expected = cell_values(relevant, store, metric)
                out[metric] = summarize(values, expected)
                if metric not in present:
                    present.append(metric)
            rows.append(out)
    columns = [m for m in COLUMNS if m in present]
    return columns, rows


def _metric_configured(plan: Plan, metric: str) -> bool:
    """Whether the experiment's protocols produce ``metric`` (e.g. linear_1 needs fraction 1)."""
    column = COLUMNS[metric]
    try:
        cfg = plan.experiment.protocol(column.protocol)
    except KeyError:
        return False
    if column.needs is None:
        return True
    option, value = column.needs
    have = plan.experiment.data.transfer if option == "data.transfer" else cfg.option(option)
    return value in have if isinstance(have, (tuple, list)) else value == have


def markdown_table(plan: Plan, store: RunStore, table: str) -> str:
    """``table`` as a markdown document (title, notes, the grid)."""
    cfg = next(t for t in plan.experiment.tables if t.name == table)
    columns, rows = table_grid(plan, store, table)
    lines = [f"# {cfg.title}", ""]
    lines.append(
        "Fashion-MNIST, `small_cnn` backbone; top-1 % on the official test split (mean ± sample "
        "std over seeds; a cell shows (n/expected runs) when runs are missing). Linear = "
        "cached-feature logistic-regression probe (C selected on a validation split of the "
        "training labels). Diagnostics on backbone features of the test split."
    )
    lines += ["", "| base | row | " + " | ".join(COLUMNS[c].header for c in columns) + " |"]
    lines.append("|---|---|" + "---|" * len(columns))
    for r in rows:
        cells = [r[c].text(FORMATS.get(c, ".2f")) if c in r else "-" for c in columns]
        lines.append(f"| {r['base']} | {r['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def runs_csv(plan: Plan, store: RunStore, path: Path) -> None:
    """One line per unit of the plan: key, kind, label, status, seconds, metrics."""
    units = plan.units()
    records = {u.key: store.load(u) for u in units}
    metric_names: list[str] = []
    for rec in records.values():
        if rec is not None:
            for k in rec["result"].get("metrics", {}):
                if k not in metric_names:
                    metric_names.append(k)
    header = ["key", "kind", "label", "status", "seconds", "steps", *metric_names]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for u in units:
            rec = records[u.key]
            if rec is None:
                w.writerow([u.key, u.kind, u.label, "missing", "", ""] + [""] * len(metric_names))
                continue
            m = rec["result"].get("metrics", {})
            w.writerow(
                [u.key, u.kind, u.label, "done", rec["seconds"], rec["result"].get("steps", "")]
                + [m.get(k, "") for k in metric_names]
            )


def _diag_record(plan: Plan, store: RunStore, table: str, base: str, row: str) -> dict | None:
    seed = plan.experiment.seeds[0]
    for c in plan.cells:
        if (c.table, c.base, c.row, c.protocol, c.seed) == (table, base, row, "diagnostics", seed):
            return store.load(c.unit)
    return None


def separability_figure(plan: Plan, store: RunStore, path: Path) -> bool:
    """2-D maps of the SwAV criteria of Table 2 (first seed); False when nothing is stored."""
    table = "table2" if any(t.name == "table2" for t in plan.experiment.tables) else None
    if table is None:
        return False
    cfg = next(t for t in plan.experiment.tables if t.name == table)
    base = cfg.bases[0]
    panels = [(r.label, _diag_record(plan, store, table, base, r.label)) for r in cfg.rows]
    panels = [(label, rec) for label, rec in panels if rec is not None and "map" in rec["result"]]
    if not panels:
        return False
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    size = (4.0 * ncols, 4.0 * nrows)
    with png_figure(path, nrows=nrows, ncols=ncols, figsize=size, squeeze=False, dpi=110) as (
        fig,
        axes,
    ):
        for ax in axes.flat[len(panels):]:
            ax.axis("off")
        for ax, (label, rec) in zip(axes.flat[: len(panels)], panels, strict=True):
            mp, m = rec["result"]["map"], rec["result"]["metrics"]
            ax.scatter(mp["x"], mp["y"], c=class_colors(mp["label"]), s=3, linewidths=0)
            ax.set_title(
                f"{base} {label}\nFisher {m['fisher_ratio']:.3f}  silh {m['silhouette']:.3f}\n"
                f"kNN purity {m['knn_purity']:.1f}%",
                fontsize=8,
            )
            ax.set_xticks([])
            ax.set_yticks([])
        names = CLASS_NAMES.get(plan.experiment.data.name)
        class_legend(fig, np.concatenate([rec["result"]["map"]["label"] for _, rec in panels]),
                     names)
        fig.suptitle("Test features, 2-D PCA of L2-normalised backbone features (colour = class)")
    return True


def diagnostics_figure(plan: Plan, store: RunStore, path: Path) -> bool:
    """Sorted marginal entropies and covariance energy, base vs continued vs +E2MC (Table 1)."""
    table = "table1"
    cfg = next((t for t in plan.experiment.tables if t.name == table), None)
    if cfg is None:
        return False
    series = {
        base: [(r.label, _diag_record(plan, store, table, base, r.label)) for r in cfg.rows]
        for base in cfg.bases
    }
    series = {b: [(lab, rec) for lab, rec in s if rec is not None] for b, s in series.items()}
    series = {b: s for b, s in series.items() if s}
    if not series:
        return False
    size = (4.2 * len(series), 6.4)
    with png_figure(path, nrows=2, ncols=len(series), figsize=size, squeeze=False, dpi=110) as (
        _,
        axes,
    ):
        _diagnostics_panels(axes, series)
        axes[0, 0].figure.suptitle(
            f"Backbone features of the test split (seed {plan.experiment.seeds[0]} of each row)"
        )
    return True


def _diagnostics_panels(axes: Any, series: Mapping[str, list]) -> None:
    for j, (base, items) in enumerate(series.items()):
        for label, rec in items:
            prof = sorted(h for h in rec["result"]["entropy_profile"] if h is not None)
            axes[0, j].plot(prof[::-1], label=label)
        axes[0, j].set_title(f"{base}: marginal entropies (sorted)", fontsize=9)
        axes[0, j].set_xlabel("feature rank")
        axes[0, j].set_ylabel("H (nats, m-spacing)")
        axes[0, j].legend(fontsize=7)
        labels = [lab for lab, _ in items]
        energy = [rec["result"]["metrics"]["offdiag_cov_energy"] for _, rec in items]
        axes[1, j].bar(range(len(labels)), energy, color="tab:gray")
        axes[1, j].set_xticks(range(len(labels)), labels, fontsize=8)
        axes[1, j].set_title(f"{base}: off-diagonal covariance energy", fontsize=9)


def _direction(ours: Summary | None, ref: Summary | None) -> tuple[float | None, str]:
    """Difference of means (ours - reference) and whether it exceeds the seed noise."""
    if ours is None or ref is None or ours.mean is None or ref.mean is None:
        return None, "missing"
    diff = ours.mean - ref.mean
    # standard error of the difference of two means; a single run has no noise estimate
    if ours.n > 1 and ref.n > 1:
        se = math.sqrt(ours.std**2 / ours.n + ref.std**2 / ref.n)
        if abs(diff) <= 2 * se:
            return diff, "within noise"
    return diff, "higher" if diff > 0 else ("lower" if diff < 0 else "equal")


#: a single-run difference in the paper at or below this many points counts as no effect: the
#: paper's own "continued" rows, which change nothing by design, differ from their base by up
#: to 0.08 points (docs/reproducibility.md)
PAPER_NO_EFFECT = 0.1


def _agreement(diff: float | None, verdict: str, p_diff: float | None) -> str:
    """How our difference (with its seed-noise verdict) compares with the paper's single run."""
    if diff is None or p_diff is None:
        return "-"
    ours_flat = verdict == "within noise"
    if abs(p_diff) <= PAPER_NO_EFFECT:
        return "agrees (no effect)" if ours_flat else "ours moves, paper flat"
    if ours_flat:
        return "ours within noise"
    return "agrees" if (diff > 0) == (p_diff > 0) else "disagrees"


def _comparison_lines(
    plan: Plan, store: RunStore, table: str, reference_row: str, paper: Mapping
) -> list[str]:
    """Markdown rows: each criterion vs ``reference_row``, ours and the paper's differences."""
    columns, rows = table_grid(plan, store, table)
    metrics = [m for m in ("linear_1", "linear_10", "linear_100", "semisup_1", "semisup_10",
                           "knn_20", "transfer_digits") if m in columns]
    lines = ["| base | row vs " + reference_row + " | metric | ours Δ (pts) | ours | paper Δ "
             "| direction |", "|---|---|---|---|---|---|---|"]
    verdicts: dict[str, int] = {}
    for r in rows:
        if r["row"] == reference_row:
            continue
        ref = next((x for x in rows if x["base"] == r["base"] and x["row"] == reference_row), None)
        if ref is None:
            continue
        for m in metrics:
            diff, verdict = _direction(r.get(m), ref.get(m))
            p_row = paper.get((r["base"], r["row"])) if table == "table1" else paper.get(r["row"])
            p_ref = paper.get((r["base"], reference_row)) if table == "table1" else paper.get(
                reference_row
            )
            p_diff = None
            if p_row and p_ref and m in p_row and m in p_ref:
                p_diff = p_row[m] - p_ref[m]
            agree = _agreement(diff, verdict, p_diff)
            lines.append(
                f"| {r['base']} | {r['row']} | {COLUMNS[m].header} | "
                f"{'-' if diff is None else f'{diff:+.2f}'} | {verdict} | "
                f"{'-' if p_diff is None else f'{p_diff:+.2f}'} | {agree} |"
            )
            verdicts[agree] = verdicts.get(agree, 0) + 1
    verdicts.pop("-", None)
    if verdicts:
        lines += ["", "Against the paper: " + ", ".join(
            f"{name} {count}" for name, count in sorted(verdicts.items(), key=lambda kv: -kv[1])
        ) + "."]
    return lines


def training_signals_md(plan: Plan, store: RunStore, table: str) -> list[str]:
    """Markdown rows: the losses at the end of continued training, mean over seeds.

    Each continued-training unit stores the mean of its last logged steps (``tail_means``):
    the method's own loss, the added criterion's, and their named parts (per-view parts
    left out). They show how strongly a criterion at its reference coefficients pulls against
    the method's objective at this scale.
    """
    runs: dict[tuple[str, str], dict[str, Unit]] = {}
    for c in plan.cells:
        if c.table != table:
            continue
        for dep in c.unit.deps:
            if dep.kind == "continue":
                runs.setdefault((c.base, c.row), {})[dep.key] = dep
    lines = ["| base | row | runs | base loss | criterion loss | parts |",
             "|---|---|---|---|---|---|"]
    for (base, row), units in runs.items():
        tails = [r["result"]["tail_means"] for r in (store.load(u) for u in units.values())
                 if r is not None and "tail_means" in r["result"]]
        if not tails:
            lines.append(f"| {base} | {row} | 0/{len(units)} | missing | missing | |")
            continue
        mean = {k: sum(t[k] for t in tails) / len(tails) for k in tails[0]
                if all(k in t for t in tails)}
        parts = ", ".join(f"{k} {v:.3g}" for k, v in sorted(mean.items())
                          if "." in k and not k.rsplit(".", 1)[1].isdigit())
        lines.append(f"| {base} | {row} | {len(tails)}/{len(units)} | {mean['base_loss']:.3f} | "
                     f"{mean['criterion_loss']:.3f} | {parts} |")
    return lines


def _paper_table_md() -> list[str]:
    cols = ["linear_1", "linear_10", "linear_100", "semisup_1", "semisup_10"]
    lines = ["| base | row | " + " | ".join(COLUMNS[c].header for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for (base, row), vals in PAPER_TABLE1.items():
        lines.append(f"| {base} | {row} | " + " | ".join(
            f"{vals[c]:.2f}" if c in vals else "-" for c in cols) + " |")
    lines += ["", "| SwAV 800 ep + | " + " | ".join(COLUMNS[c].header for c in cols[:3]) + " |",
              "|---|" + "---|" * 3]
    for row, vals in PAPER_TABLE2.items():
        lines.append(f"| {row} | " + " | ".join(f"{vals[c]:.2f}" for c in cols[:3]) + " |")
    return lines


def report(plan: Plan, store: RunStore, *, command: str, notes: Sequence[str] = ()) -> str:
    """REPORT.md: our tables, the paper's, the directions, and how the numbers were produced."""
    exp = plan.experiment
    units = plan.units()
    records = [store.load(u) for u in units]
    done = [r for r in records if r is not None]
    by_kind: dict[str, list[float]] = {}
    for r in done:
        by_kind.setdefault(r["kind"], []).append(r["seconds"])
    hosts = sorted({f"{r['host']['machine']}, {r['host']['cpus']} CPUs, Python "
                    f"{r['host']['python']}" for r in done})
    lines = [
        "# Reproducing E2MC's Table 1, Table 2 and ablations at CPU scale (Fashion-MNIST)",
        "",
        "Written by `paper/tables.py` from the stored unit results in `paper/runs/`; every "
        "number below was produced by the command in 'How these numbers were produced'. "
        f"Units finished: {len(done)} of {len(units)}.",
        "",
    ]
    if len(done) < len(units):
        lines += [f"**Incomplete:** {len(units) - len(done)} units have no result yet; their "
                  "cells say 'missing' or show (n/expected runs).", ""]
    for t in exp.tables:
        lines += [markdown_table(plan, store, t.name).replace("# ", "## ", 1), ""]
    lines += ["## The paper's numbers (ResNet-50, ImageNet; docs/reproducibility.md)", ""]
    lines += _paper_table_md()
    lines += ["", "## Direction of each effect: ours vs the paper", "",
              "Δ = row minus control in percentage points. 'within noise': |Δ| <= 2 standard "
              "errors of the difference over seeds. The paper reports single runs; a paper Δ "
              f"of at most {PAPER_NO_EFFECT:g} points counts as no effect (its 'continued' rows, "
              "which change nothing by design, move by up to 0.08).", ""]
    for t in exp.tables:
        if t.name == "table1":
            lines += ["### Table 1: vs continued", ""]
            lines += _comparison_lines(plan, store, "table1", "continued", PAPER_TABLE1) + [""]
        elif t.name in ("table2", "ablation"):
            lines += [f"### {t.name}: vs continued", ""]
            lines += _comparison_lines(plan, store, t.name, "continued", PAPER_TABLE2) + [""]
        else:  # no counterpart in the paper
            lines += [f"### {t.name}: vs continued (the paper has no such table)", ""]
            lines += _comparison_lines(plan, store, t.name, "continued", {}) + [""]
    lines += ["## Losses at the end of continued training", "",
              "Mean over seeds of the last logged steps of each continued-training run "
              "(`tail_means` in its result.json): the method's own loss, the added criterion's "
              "(weighted by its coefficients), and their parts (unweighted, averaged over "
              "views). Where the criterion dominates, the method's own objective gets worse "
              "(e.g. a lower SimSiam cosine similarity between views).",
              ""]
    for t in exp.tables:
        lines += [f"### {t.title}", ""] + training_signals_md(plan, store, t.name) + [""]
    lines += ["## How these numbers were produced", "", f"Command: `{command}`", ""]
    lines += [
        f"- Data: {exp.data.name} from `{exp.data.root}` (official split: training 60,000 "
        "images used without labels for all SSL training; test 10,000 images only scored). "
        f"Selection (probe C, fine-tuning epoch) on a validation split of {exp.data.val_fraction:g}"
        " of the labelled training images, per seed."
        + _subsets_text(exp.data),
        "- Base models: " + "; ".join(
            f"{b.method} ({b.backbone}, {b.epochs} epochs, batch {b.batch_size}, seed {b.seed}"
            + (f", capped at {b.max_steps} steps" if b.max_steps else "") + ")" for b in exp.bases
        ) + "; method defaults of `adapters.methods` (optimizer, lr, heads, augmentations).",
        "- Base checkpoints are not committed (7-22 MB each with the optimizer state): the "
        "pretrain units regenerate them from a fixed seed, bit for bit on the same machine and "
        "thread count (a same-seed run is tested to be bitwise equal in "
        "`tests/adapters/test_resume.py`; torch does not promise it across CPUs). SHA-256 of "
        "the base backbones behind these tables: " + _base_digests(units, store) + ".",
        f"- Continued training: {exp.continue_epochs} epoch(s)"
        + (f" capped at {exp.continue_max_steps} steps" if exp.continue_max_steps else "")
        + f", batch {exp.continue_batch_size}, constant lr (reference), seeds "
        f"{list(exp.seeds)}; criteria at the reference coefficients (E2MC per docs/method.md, "
        "'Reference settings': "
        + "; ".join(f"{m}: {dict(v)}" for m, v in exp.e2mc_defaults.items()) + ").",
        "- Protocols: " + "; ".join(f"{p.name} {dict(p.options)}" for p in exp.protocols) + ".",
        "- Linear and transfer probes: scikit-learn `LogisticRegression` (lbfgs) on standardised "
        f"features with `max_iter={_probe_max_iter()}` (the `evaluation.linear_probe` default); "
        "at some C values lbfgs stops at that cap with a ConvergenceWarning. The cap is the "
        "same for every row and C is chosen on validation, so it acts as part of the "
        "regularisation.",
        f"- Hardware: {', '.join(hosts) or 'n/a'} ({platform.system()}); no GPU.",
        "- Wall time of finished units: " + ", ".join(
            f"{k} {len(v)} units, {sum(v) / 60:.1f} min" for k, v in sorted(by_kind.items())
        ) + f"; total {sum(sum(v) for v in by_kind.values()) / 60:.1f} min.",
    ]
    lines += [f"- {n}" for n in notes]
    lines += ["", "Per-unit configurations and metrics: `runs.csv` and `paper/runs/<key>/"
              "result.json`."]
    return "\n".join(lines) + "\n"


def _subsets_text(data: Any) -> str:
    """How the evaluation subsets were drawn (empty when the whole splits were used)."""
    if not data.eval_train_limit:
        return ""
    from evaluation.model_data import TEST_SUBSET_SEED, TRAIN_SUBSET_SEED

    return (f" Evaluation subsets: seeded random draws of {data.eval_train_limit} training "
            f"(seed {TRAIN_SUBSET_SEED}) and {data.eval_test_limit} test images "
            f"(seed {TEST_SUBSET_SEED}).")


def _base_digests(units: Iterable[Unit], store: RunStore) -> str:
    """'method sha256-prefix' of each base backbone, as its pretrain unit recorded it.

    Read from the stored results, never from the checkpoints, which a fresh checkout lacks.
    """
    parts = []
    for unit in units:
        if unit.kind != "pretrain":
            continue
        record = store.load(unit)
        digest = None if record is None else record["result"].get("backbone_digest")
        method = unit.config["model"]["method"]
        parts.append(f"{method} `{digest}`" if digest else f"{method} (not recorded)")
    return "; ".join(parts) or "none"


def _probe_max_iter() -> int:
    import inspect

    from evaluation.linear import linear_probe

    return inspect.signature(linear_probe).parameters["max_iter"].default


def write_results(
    plan: Plan,
    store: RunStore,
    out: str | os.PathLike[str],
    *,
    command: str = "python -m paper.reproduce",
    notes: Sequence[str] = (),
) -> list[Path]:
    """Write runs.csv, the table markdown files, the figures and REPORT.md into ``out``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "runs.csv"]
    runs_csv(plan, store, written[0])
    for t in plan.experiment.tables:
        path = folder / f"{t.name}.md"
        path.write_text(markdown_table(plan, store, t.name))
        written.append(path)
    for name, fn in (("separability.png", separability_figure),
                     ("diagnostics.png", diagnostics_figure)):
        if fn(plan, store, folder / name):
            written.append(folder / name)
    if (folder / "FINDINGS.md").is_file():
        notes = [*notes, "The interpretation of these tables, written by hand after the run: "
                 "[FINDINGS.md](FINDINGS.md)."]
    if (folder / "study" / "STUDY.md").is_file():
        notes = [*notes, "The converged-base study (bases pretrained to a validation plateau, "
                 "E2MC coefficients selected on validation; `python -m paper.reproduce --only "
                 "study`): [study/STUDY.md](study/STUDY.md)."]
    path = folder / "REPORT.md"
    path.write_text(report(plan, store, command=command, notes=notes))
    written.append(path)
    return written
