"""Units of work of the reproduction, the store of their results, and the loop that runs them.

A :class:`Unit` is one step (pretrain a base model, continue-train a checkpoint, evaluate a
checkpoint with one protocol), named by the hash of its full configuration and of the units it
depends on. :class:`RunStore` keeps each unit's outcome in ``<root>/<key>/``: ``result.json``
(small, committed: the configuration, the metrics, the wall time) next to large artifacts
(checkpoints, feature caches; git-ignored). :func:`run_units` runs what is not finished yet, in
order, so a killed reproduction continues where it stopped.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paper.config import canonical, config_hash

log = logging.getLogger("paper")

#: the study's kinds (``paper.study``) run with that module's executors
KINDS = ("pretrain", "continue", "evaluate",
         "plateau", "validate", "select", "select-continue", "measure")

RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"

#: git-ignore rules written into every runs folder: results are kept, artifacts are not
RUNS_GITIGNORE = """\
# Written by paper.units: unit results (*.json) are committed, large artifacts are not.
*.pt
*.pth
*.npz
*.npy
*.tmp
*.jsonl
*.csv
*.log
error.txt
features/
tensorboard/
"""


@dataclass(frozen=True)
class Unit:
    """One step of the reproduction.

    ``config`` holds everything that determines the step's outcome (data, model, optimisation,
    protocol, seed); ``deps`` are the units whose outputs it reads. ``label`` is for people
    only and is not part of the key.

    Examples
    --------
    >>> a = Unit("pretrain", {"method": "vicreg", "epochs": 10})
    >>> b = Unit("continue", {"criterion": "e2mc"}, deps=(a,))
    >>> a.key != b.key and len(a.key) == 16
    True
    """

    kind: str
    config: Mapping[str, Any]
    deps: tuple[Unit, ...] = ()
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unit kind must be one of {KINDS}, got {self.kind!r}")
        canonical(self.config)  # fail now, not when the key is first needed

    @property
    def key(self) -> str:
        """Hash of kind, configuration and the keys of the dependencies."""
        return config_hash(
            {"kind": self.kind, "config": self.config, "deps": [d.key for d in self.deps]}
        )

    def __str__(self) -> str:
        return f"{self.kind} {self.label or dict(self.config)} [{self.key}]"


class RunStore:
    """Results of units, one folder per unit key under ``root``.

    A unit is finished when ``<root>/<key>/result.json`` exists and names the same key; its
    artifacts (checkpoints) may be absent on a fresh checkout, which :meth:`missing_artifacts`
    reports so that the unit is re-run only when a later unit needs them.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def folder(self, unit: Unit) -> Path:
        """The unit's folder (created on demand)."""
        path = self.root / unit.key
        path.mkdir(parents=True, exist_ok=True)
        return path

    def ensure_gitignore(self) -> None:
        """Write ``<root>/.gitignore`` so that only the small JSON results get committed."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / ".gitignore"
        if not target.is_file() or target.read_text() != RUNS_GITIGNORE:
            target.write_text(RUNS_GITIGNORE)

    def load(self, unit: Unit) -> dict[str, Any] | None:
        """The stored record of ``unit`` (None when it has not finished)."""
        path = self.root / unit.key / RESULT_FILE
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError:
            log.warning("ignoring unreadable %s; the unit will run again", path)
            return None
        if record.get("key") != unit.key:
            log.warning("ignoring %s: it records key %r", path, record.get("key"))
            return None
        return record

    def is_done(self, unit: Unit) -> bool:
        """Whether ``unit`` has a stored result."""
        return self.load(unit) is not None

    def missing_artifacts(self, unit: Unit) -> list[str]:
        """Artifacts a finished unit recorded (``result["artifacts"]``) that are not on disk."""
        record = self.load(unit)
        if record is None:
            return []
        names = record.get("result", {}).get("artifacts", [])
        return [n for n in names if not (self.root / unit.key / n).exists()]

    def save(self, unit: Unit, result: Mapping[str, Any], seconds: float) -> dict[str, Any]:
        """Store ``result`` of ``unit`` atomically (temporary file + rename); returns the record.

        ``seconds`` is the wall time of the run that finished the unit, kept to the millisecond:
        the earlier runs of a unit resumed from its checkpoint are not included.
        """
        record = {
            "key": unit.key,
            "kind": unit.kind,
            "label": unit.label,
            "config": canonical(unit.config),
            "deps": [d.key for d in unit.deps],
            "result": canonical(result),
            "seconds": round(float(seconds), 3),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "host": {
                "machine": platform.machine(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            },
        }
        folder = self.folder(unit)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".json.tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=1, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, folder / RESULT_FILE)
        error = folder / ERROR_FILE
        if error.exists():
            error.unlink()
        return record

    def records(self) -> list[dict[str, Any]]:
        """Every stored record under ``root`` (finished units of any configuration)."""
        out = []
        for path in sorted(self.root.glob(f"*/{RESULT_FILE}")):
            try:
                out.append(json.loads(path.read_text()))
            except json.JSONDecodeError:
                log.warning("skipping unreadable %s", path)
        return out


#: ``executor(unit, folder, store) -> result`` runs one unit kind
Executor = Callable[[Unit, Path, RunStore], Mapping[str, Any]]


@dataclass
class RunSummary:
    """What :func:`run_units` did."""

    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def closure(units: Iterable[Unit]) -> list[Unit]:
    """``units`` and all their dependencies, each once, dependencies before dependents."""
    order: list[Unit] = []
    seen: set[str] = set()

    def visit(u: Unit) -> None:
        if u.key in seen:
            return
        for d in u.deps:
            visit(d)
        seen.add(u.key)
        order.append(u)

    for u in units:
        visit(u)
    return order


def pending(units: Iterable[Unit], store: RunStore) -> list[Unit]:
    """The units of ``closure(units)`` that must run.

    A unit runs if it has no result, or if a unit that runs depends on it and its recorded
    artifacts (a checkpoint) are gone, e.g. on a fresh checkout where only results were
    committed.
    """
    order = closure(units)
    todo = {u.key for u in order if not store.is_done(u)}
    # walk backwards so a re-run parent is seen before its own parents are checked
    for u in reversed(order):
        if u.key not in todo:
            continue
        for d in u.deps:
            if d.key not in todo and store.missing_artifacts(d):
                log.info("re-running %s: its artifacts are needed by %s", d, u.label or u.key)
                todo.add(d.key)
    return [u for u in order if u.key in todo]


def run_units(
    units: Iterable[Unit],
    store: RunStore,
    executors: Mapping[str, Executor],
    *,
    progress: bool = True,
) -> RunSummary:
    """Run every unit of ``units`` (and their dependencies) that is not finished yet.

    A failing unit is logged with its traceback in ``<folder>/error.txt``; units that depend
    on it are skipped; the others still run. Progress is a tqdm bar over the pending units.
    """
    from tqdm.auto import tqdm

    summary = RunSummary()
    start = time.perf_counter()
    order = closure(units)
    todo = pending(order, store)
    todo_keys = {u.key for u in todo}
    summary.reused = [u.key for u in order if u.key not in todo_keys]
    store.ensure_gitignore()
    log.info("%d units: %d finished before, %d to run", len(order), len(summary.reused), len(todo))
    broken: set[str] = set()
    bar = tqdm(todo, desc="units", unit="unit", disable=not progress)
    for unit in bar:
        bar.set_postfix_str(f"{unit.kind} {unit.label}"[:60])
        if any(d.key in broken for d in unit.deps):
            log.warning("skipping %s: a unit it depends on failed", unit)
            summary.skipped.append(unit.key)
            broken.add(unit.key)
            continue
        if unit.kind not in executors:
            raise ValueError(f"no executor for unit kind {unit.kind!r}")
        folder = store.folder(unit)
        log.info("start %s", unit)
        t0 = time.perf_counter()
        try:
            result = executors[unit.kind](unit, folder, store)
        except KeyboardInterrupt:
            log.warning("interrupted during %s; run again to continue from here", unit)
            raise
        except Exception as err:  # noqa: BLE001 - one failed unit must not stop the others
            (folder / ERROR_FILE).write_text(traceback.format_exc())
            log.error("FAILED %s: %s (traceback in %s)", unit, err, folder / ERROR_FILE)
            summary.failed.append(unit.key)
            broken.add(unit.key)
            continue
        seconds = time.perf_counter() - t0
        store.save(unit, result, seconds)
        summary.ran.append(unit.key)
        log.info("done  %s in %.1f s", unit, seconds)
    summary.seconds = time.perf_counter() - start
    return summary
