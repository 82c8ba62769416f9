"""The comparison table and result files of an evaluation run (JSON and markdown).

Results are ``{model name: {metric name: value}}``; a value is a number, or for metrics
repeated over seeds a :class:`SeedSummary` (mean, sample std, the per-seed values).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
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


def _is_accuracy(metric: str) -> bool:
    return "top1" in metric or "top5" in metric


def comparison_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table: one row per metric, one column per model (accuracies in %).

    Examples
    --------
    >>> print(comparison_table({"a": {"knn k=20 top1": 0.5}, "b": {"knn k=20 top1": 0.75}}))
    | metric | a | b |
    |---|---|---|
    | knn k=20 top1 (%) | 50.00 | 75.00 |
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
        pct = _is_accuracy(metric)
        label = f"{metric} (%)" if pct else metric
        cells = [_cell(results[m].get(metric), pct) for m in models]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, SeedSummary):
        return asdict(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    return str(value)


def write_report(
    results: Mapping[str, Mapping[str, Any]],
    out_dir: str | os.PathLike,
    *,
    config: Mapping[str, Any] | None = None,
    models: Mapping[str, Any] | None = None,
) -> str:
    """Write ``results.json`` and ``results.md`` to ``out_dir``; return the markdown table.

    ``config`` (the run's settings) and ``models`` (per-model metadata) go into the JSON.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(results)
    payload = {
        "config": _jsonable(config or {}),
        "models": _jsonable(models or {}),
        "results": _jsonable(results),
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    note = (
        "Accuracies in % (mean ± sample std over seeds where repeated). `linear` is the "
        "cached-feature logistic-regression probe, `sgd-linear` the augmented SGD probe; "
        "selection always on a validation split of the training labels.\n\n"
    )
    (out / "results.md").write_text(note + table + "\n", encoding="utf-8")
    return table
