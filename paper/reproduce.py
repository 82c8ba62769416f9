"""Reproduce the paper's Table 1, Table 2 and ablations at CPU scale: ``python -m paper.reproduce``.

Usage::

    python -m paper.reproduce                 # the full run (about 2.5 h on 2 CPU cores)
    python -m paper.reproduce --quick         # smoke test of every unit kind (a few minutes)
    python -m paper.reproduce --only table1   # the units of one table (see --help for the names)
    python -m paper.reproduce --dry-run       # list the units, what is finished, a time estimate
    python -m paper.reproduce --tables-only   # rewrite results/ from what is stored
    python -m paper.reproduce --only study    # the converged-base study (paper/study.py)

Resumable: each unit (pretrain a base, continue-train base x criterion x seed, evaluate a
checkpoint with a protocol) is stored under ``<out>/runs/<hash of its configuration>/``; a second
invocation re-runs only what has no result, and a training unit killed half-way resumes from
its last checkpoint. Results, tables, figures and REPORT.md go to ``<out>/results/``; a
readable log is appended to ``<out>/runs/reproduce.log``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from paper import config as cfg
from paper.plan import Plan, build_plan
from paper.units import KINDS, RunStore, Unit, pending, run_units

log = logging.getLogger("paper")

PAPER_DIR = Path(__file__).resolve().parent
TABLE_NAMES = ("table1", "table2", "ablation", "sensitivity")

#: Wall seconds per optimizer step at batch 256 (augmentation + forward + backward) on this
#: 2-core machine when it was nearly idle (load 1.1), measured with
#: ``benchmarks/bench_paper_budget.py``: the mean of the runs with and without E2MC (see
#: benchmarks/results/paper.md). Under load from other jobs steps were 3-10x slower.
STEP_SECONDS = {"vicreg": 0.57, "swav": 1.15, "simsiam": 0.51}
#: Seconds of one evaluation unit of the full configuration, features excluded (counted once
#: per checkpoint below). linear and measure: the study's own units (``seconds`` in their
#: result.json, 2026-11-30, 2 cores): with the machine nearly idle a linear unit that found the
#: features cached took 50 s and a measure unit 44 s (57-65 s each at load 3.5-4); the first
#: estimate (1.3 s per L-BFGS fit x 6 fits per label fraction) was 5x too low. semisup from the
#: step time (1% of the labels x 20 epochs is about 45 single-view steps + one test pass); the
#: others rounded up from the quick run and the study's validate units (12 s).
EVAL_SECONDS = {"linear": 50.0, "knn": 5.0, "semisup": 30.0, "transfer": 3.0,
                "diagnostics": 10.0,
                # the study (paper.study): validation probes on 1% / 10% of the labels + kNN;
                # mechanism: test-split entropies, RankMe, Gaussian TC and KSG on 2,000 x 256
                "validate": 12.0, "measure": 45.0}
#: CPU seconds of the features of 70,000 images (measured: 24.9 s)
FEATURE_SECONDS = 25.0


def estimate_seconds(units: Sequence[Unit]) -> float:
    """Rough wall time of ``units`` from the measured step and protocol times above.

    Training: steps x seconds per step (scaled by batch / 256; a ``plateau`` base counts its
    cap, plus a training-split feature pass per curve point); evaluation: the protocol's
    measured time, scaled by the share of the 60,000 training images it uses, plus one feature
    extraction per checkpoint. An upper bound for the study: no base stops before its cap.
    """
    total = 0.0
    checkpoints = set()
    for u in units:
        c = u.config
        if u.kind in ("pretrain", "continue", "select-continue", "plateau"):
            model = c.get("model", c)
            batch = model["batch_size"]
            steps = (60_000 // batch) * model["epochs"]
            if model.get("max_steps") is not None:
                steps = min(steps, model["max_steps"])
            if u.kind == "plateau":
                points = c["rule"]["cap"] // c["rule"]["period"]
                if c["period_steps"] is not None:
                    steps = points * c["period_steps"]
                total += points * FEATURE_SECONDS * _share(c["eval_data"]) * 6 / 7
            total += steps * STEP_SECONDS[model["method"]] * batch / 256
        elif u.kind == "select":
            continue
        else:
            share = _share(c["data"])
            protocol = c.get("protocol", u.kind)
            total += EVAL_SECONDS[protocol] * share
            if u.deps[0].key not in checkpoints:
                checkpoints.add(u.deps[0].key)
                total += FEATURE_SECONDS * share
    return total


def _share(data: dict) -> float:
    limit = data.get("eval_train_limit")
    return 1.0 if limit is None else min(1.0, limit / 60_000)


def _setup_logging(log_file: Path, verbose: bool) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    log.setLevel(logging.INFO)
    for h in list(log.handlers):
        log.removeHandler(h)
    fh = logging.FileHandler(log_file)
    fh.setFormatter(fmt)
    log.addHandler(fh)
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(fmt)
    sh.setLevel(logging.INFO if verbose else logging.WARNING)
    log.addHandler(sh)
    log.propagate = False


def describe(plan: Plan, store: RunStore, tables: tuple[str, ...] | None) -> str:
    """Text listing of the units to run: finished or pending, with a time estimate."""
    units = plan.units(tables)
    todo = pending(units, store)
    todo_keys = {u.key for u in todo}
    lines = []
    for u in units:
        status = "pending " if u.key in todo_keys else "finished"
        lines.append(f"{status} {u.kind:8s} {u.key} {u.label}")
    counts = {k: sum(1 for u in units if u.kind == k) for k in KINDS}
    est = estimate_seconds(todo)
    lines.append(
        f"{len(units)} units ({', '.join(f'{n} {k}' for k, n in counts.items() if n)}): "
        f"{len(units) - len(todo)} finished, {len(todo)} pending; "
        f"estimated time of the pending units: {est / 60:.0f} min on 2 CPU cores"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 if a unit failed)."""
    parser = argparse.ArgumentParser(
        prog="python -m paper.reproduce", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true",
                        help="tiny subsets, 1 seed, a few steps: a smoke test of the pipeline")
    parser.add_argument("--only", choices=(*TABLE_NAMES, "study"),
                        help="run only the units of this table (tables are still written); "
                             "'study': the converged-base study of paper/study.py")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the units, which are finished, and a time estimate; run nothing")
    parser.add_argument("--tables-only", action="store_true",
                        help="write results/ from the stored unit results; run nothing")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder holding runs/ and results/ (default: paper/ for the full "
                             "run, paper/quick/ for --quick)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every unit to stderr")
    args = parser.parse_args(argv)

    experiment = cfg.quick() if args.quick else cfg.full()
    out = args.out if args.out is not None else PAPER_DIR / ("quick" if args.quick else "")
    store = RunStore(out / "runs")
    if args.only == "study":
        return _study(args, out, store)
    plan = build_plan(experiment)
    tables = None if args.only is None else (args.only,)
    if args.dry_run:
        print(describe(plan, store, tables))
        return 0
    _setup_logging(out / "runs" / "reproduce.log", args.verbose)
    # the command that produces every number of the tables (not this invocation's flags)
    command = "python -m paper.reproduce" + (" --quick" if args.quick else "")
    log.info("=== %s (out: %s)", shlex.join(sys.argv if argv is None else argv), out)
    from paper.execute import executors
    from paper.tables import write_results

    if args.tables_only:
        written = write_results(plan, store, out / "results", command=command)
        print(f"wrote {', '.join(p.name for p in written)} to {out / 'results'}")
        return 0
    start = time.perf_counter()
    try:
        summary = run_units(
            plan.units(tables), store, executors(progress=not args.no_progress),
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print("interrupted: finished units are stored and a training unit keeps its "
              "checkpoint; run the same command again to continue", file=sys.stderr)
        return 130
    written = write_results(plan, store, out / "results", command=command)
    message = (
        f"ran {len(summary.ran)} units, reused {len(summary.reused)}, failed "
        f"{len(summary.failed)}, skipped {len(summary.skipped)} in "
        f"{time.perf_counter() - start:.0f} s; results in {out / 'results'} "
        f"({', '.join(p.name for p in written)})"
    )
    log.info(message)
    print(message)
    if summary.failed:
        print(f"failed units (see error.txt in their folders): {summary.failed}", file=sys.stderr)
        return 1
    return 0


def _study(args: argparse.Namespace, out: Path, store: RunStore) -> int:
    """``--only study``: run (or list) the units of ``paper.study``; tables in results/study."""
    from paper import study
    from paper.study_tables import write_study_results

    plan = study.build_study(study.quick() if args.quick else study.full())
    if args.dry_run:
        print(describe(plan, store, None))
        return 0
    results = out / "results" / "study"
    if args.tables_only:
        written = write_study_results(plan, store, results)
        print(f"wrote {', '.join(p.name for p in written)} to {results}")
        return 0
    _setup_logging(out / "runs" / "reproduce.log", args.verbose)
    log.info("=== %s (out: %s)", shlex.join(sys.argv), out)
    try:
        summary = run_units(plan.units(), store, study.executors(progress=not args.no_progress),
                            progress=not args.no_progress)
    except KeyboardInterrupt:
        print("interrupted: finished units are stored and a training unit keeps its "
              "checkpoint; run the same command again to continue", file=sys.stderr)
        return 130
    written = write_study_results(plan, store, results)
    message = (f"ran {len(summary.ran)} units, reused {len(summary.reused)}, failed "
               f"{len(summary.failed)}, skipped {len(summary.skipped)} in {summary.seconds:.0f} s; "
               f"results in {results} ({', '.join(p.name for p in written)})")
    log.info(message)
    print(message)
    if summary.failed:
        print(f"failed units (see error.txt in their folders): {summary.failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
