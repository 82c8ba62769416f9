"""From the experiment's configuration to the units that produce every table cell.

Each table cell (table, base model, row, protocol, seed) is one ``evaluate`` unit whose
dependency chain is ``pretrain`` (the base) -> ``continue`` (the row's criterion and seed) ->
``evaluate``. Rows shared by several tables (SwAV continued and +E2MC appear in all three)
resolve to the same unit keys, so they run once.

Criterion options are written out in full at planning time: the row's own coefficients over
the reference defaults (docs/method.md for E2MC, the criterion class's keyword defaults
for the others), so a changed default gives a new unit key instead of a stale result.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paper.config import Experiment, TableConfig, canonical, config_hash
from paper.units import Unit, closure

#: protocols whose outcome does not depend on a seed (all labels, no random split)
SEEDLESS_PROTOCOLS = ("knn", "diagnostics")


@dataclass(frozen=True)
class Cell:
    """One evaluated (table, base, row, protocol, seed) combination and the unit that fills it.

    ``seed`` is the replicate; cells of the base row or of a seedless protocol may share one
    unit across seeds, and tables count each unit once.
    """

    table: str
    base: str
    row: str
    protocol: str
    seed: int | None
    unit: Unit


@dataclass(frozen=True)
class Plan:
    """Every cell of every table, and the units needed to fill them (in run order)."""

    experiment: Experiment
    cells: tuple[Cell, ...]

    def units(self, tables: tuple[str, ...] | None = None) -> list[Unit]:
        """Units (with dependencies, in run order) of ``tables`` (None: all tables)."""
        wanted = [c.unit for c in self.cells if tables is None or c.table in tables]
        return closure(wanted)


def criterion_options(
    criterion: str, method: str, overrides: Mapping[str, Any], experiment: Experiment
) -> dict[str, Any]:
    """All keyword options of ``criterion`` as used for base ``method``.

    ``"none"`` has none; E2MC starts from the per-method reference (transform and
    coefficients), every criterion from its class's keyword defaults, then ``overrides``.
    """
    if criterion == "none":
        if overrides:
            raise ValueError(f"criterion 'none' takes no options, got {dict(overrides)}")
        return {}
    from entropylib.criteria import CRITERIA

    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; expected 'none' or {sorted(CRITERIA)}")
    options = {
        name: p.default
        for name, p in inspect.signature(CRITERIA[criterion]).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    if criterion == "e2mc":
        options.update(dict(experiment.e2mc_defaults.get(method, ())))
    unknown = set(overrides) - set(options)
    if unknown:
        raise ValueError(
            f"criterion {criterion!r} has no option(s) {sorted(unknown)}; "
            f"it takes {sorted(options)}"
        )
    options.update(overrides)
    canonical(options)
    return options


def architecture(method: str, backbone: str, head_options: Mapping[str, Any], dataset: str) -> str:
    """Hash of the printed backbone and method heads (layer types, sizes, strides, ...).

    Part of a base unit's key, so that results trained with an older network definition are
    not reused after ``adapters`` changes it (a stored checkpoint would no longer load).
    """
    from adapters.backbones import build_backbone
    from adapters.data import dataset_info
    from adapters.methods import METHODS

    net = build_backbone(backbone, in_channels=dataset_info(dataset).channels)
    heads = METHODS[method](net.feature_dim, **dict(head_options))
    return config_hash({"backbone": repr(net), "heads": repr(heads)})


def build_plan(experiment: Experiment) -> Plan:
    """Every cell of ``experiment.tables`` with its unit chain.

    Examples
    --------
    >>> from paper.config import quick
    >>> plan = build_plan(quick())
    >>> sorted({c.table for c in plan.cells})
    ['ablation', 'sensitivity', 'table1', 'table2']
    """
    data = experiment.data
    train_data = {"name": data.name, "root": data.root}
    eval_data = canonical(data)
    bases: dict[str, Unit] = {}
    for b in experiment.bases:
        arch = architecture(b.method, b.backbone, dict(b.options), data.name)
        bases[b.method] = Unit(
            "pretrain",
            {"data": train_data, "model": canonical(b), "architecture": arch},
            label=f"{b.method} base",
        )
    cells: list[Cell] = []
    for table in experiment.tables:
        cells.extend(_table_cells(table, experiment, bases, train_data, eval_data))
    return Plan(experiment=experiment, cells=tuple(cells))


def _table_cells(
    table: TableConfig,
    experiment: Experiment,
    bases: Mapping[str, Unit],
    train_data: Mapping[str, Any],
    eval_data: Mapping[str, Any],
) -> list[Cell]:
    cells = []
    for method in table.bases:
        if method not in bases:
            raise ValueError(f"table {table.name!r} uses base {method!r}, which is not configured")
        base = bases[method]
        for row in table.rows:
            for seed in experiment.seeds:
                if row.criterion is None:
                    checkpoint = base
                else:
                    options = criterion_options(
                        row.criterion, method, dict(row.coefficients), experiment
                    )
                    checkpoint = Unit(
                        "continue",
                        {
                            "data": train_data,
                            "method": method,
                            "criterion": row.criterion,
                            "options": options,
                            "epochs": experiment.continue_epochs,
                            "batch_size": experiment.continue_batch_size,
                            "max_steps": experiment.continue_max_steps,
                            "seed": seed,
                        },
                        deps=(base,),
                        label=f"{method} {row.label} seed {seed}",
                    )
                for name in table.protocols:
                    protocol = experiment.protocol(name)
                    eval_seed = None if name in SEEDLESS_PROTOCOLS else seed
                    unit = Unit(
                        "evaluate",
                        {
                            "data": eval_data,
                            "protocol": name,
                            "options": canonical(protocol.options),
                            "seed": eval_seed,
                        },
                        deps=(checkpoint,),
                        label=f"{name} of {checkpoint.label}"
                        + ("" if eval_seed is None else f" (eval seed {eval_seed})"),
                    )
                    cells.append(Cell(table.name, method, row.label, name, seed, unit))
    return cells
