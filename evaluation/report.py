"""The comparison table and result files of an evaluation run (JSON and markdown).

Results are ``{model name: {metric name: value}}``; a value is a number, or for metrics
repeated over seeds a :class:`SeedSummary` (mean, sample std, the per-seed values).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evaluation.subsets import mean_std


@dataclass(frozen=True)
class SeedSummary:
    """Mean and sample standard deviation (ddof=1) of a metric over seeds."""

    mean: float
    std: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> SeedSummary:
        """Summarise per-seed values.

        Examples
        --------
        >>> SeedSummary.of([0.5, 0.7]).mean
        0.6
        """
        mean, std = mean_std(values)
        return cls(mean=mean, std=std, values=tuple(float(v) for v in values))


def _cell(value: Any, percent: bool) -> str:
    if value is None:
        return "-"
    scale = 100.0 if percent else 1.0
    if isinstance(value, SeedSummary):
        if len(value.values) == 1:
            return f"{scale * value.mean:.2f}"
        return f"{scale * value.mean:.2f} ± {scale * value.std:.2f}"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    return f"{scale * value:.2f}" if percent else f"{value:.4g}"


def comparison_table(
    results: Mapping[str, Mapping[str, Any]], percent: Collection[str] = ()
) -> str:
    """Markdown table: one row per metric, one column per model; the metrics named in
    ``percent`` (accuracies in [0, 1]) are shown in %.

    Examples
    --------
    >>> print(comparison_table({"a": {"knn_20": 0.5}, "b": {"knn_20": 0.75}}, {"knn_20"}))
    | metric | a | b |
    |---|---|---|
    | knn_20 (%) | 50.00 | 75.00 |
    """
    models = list(results)
    metrics: list[str] = []
    for per_model in results.values():
        metrics += [m for m in per_model if m not in metrics]
    lines = [
        "| metric | " + " | ".join(models) + " |",
        "|---" * (len(models) + 1) + "|",
    ]
    for metric in metrics:
        pct = metric in percent
        label = f"{metric} (%)" if pct else metric
        cells = [_cell(results[m].get(metric), pct) for m in models]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def jsonable(value: Any) -> Any:
    """``value`` as JSON data: SeedSummary and mappings to dicts, arrays to lists, non-finite
    floats to strings."""
    if isinstance(value, SeedSummary):
        return asdict(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    return str(value)


def write_report(
    results: Mapping[str, Mapping[str, Any]],
    out_dir: str | os.PathLike,
    *,
    config: Mapping[str, Any] | None = None,
    models: Mapping[str, Any] | None = None,
    percent: Collection[str] = (),
    details: Mapping[str, Any] | None = None,
    pending: Sequence[str] = (),
) -> str:
    """Write ``results.json`` and ``results.md`` to ``out_dir``; return the markdown table.

    ``config`` (the run's settings), ``models`` (per-model metadata) and ``details`` (what
    each protocol selected on the way) go into the JSON; ``percent`` names the accuracy
    metrics; ``pending`` lists the protocols not finished yet (a partial report says so).
    Each file is replaced atomically, so a crash never leaves half a report.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(results, percent)
    payload = {
        "config": jsonable(config or {}),
        "models": jsonable(models or {}),
        "accuracies": sorted(percent),
        "pending": list(pending),
        "results": jsonable(results),
        "details": jsonable(details or {}),
    }
    _write_atomic(out / "results.json", json.dumps(payload, indent=2) + "\n")
    note = (
        "Accuracies in % (mean ± sample std over seeds where repeated). `linear` is the "
        "cached-feature logistic-regression probe, `sgd-linear` the augmented SGD probe; "
        "selection always on a validation split of the training labels.\n\n"
    )
    if pending:
        note += f"**Partial report**: not finished yet: {', '.join(pending)}.\n\n"
    _write_atomic(out / "results.md", note + table + "\n")
    return table


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
