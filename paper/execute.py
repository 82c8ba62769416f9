"""How each unit kind runs: training through ``adapters.train``, metrics through ``evaluation``.

* ``pretrain`` / ``continue``: :func:`adapters.train.train` with the unit's configuration,
  writing ``train/checkpoint.pt`` (every ``SAVE_EVERY`` steps and every epoch) and
  ``train/backbone.pt`` into the unit folder. A folder that already holds a checkpoint from a
  killed attempt is resumed (``train(..., resume=...)``), which continues the run exactly.
* ``evaluate``: the checkpoint's backbone and data through :class:`evaluation.ModelData`
  (features of the evaluation split cached under the checkpoint's folder, ``features/``,
  git-ignored), then the unit's protocol from :mod:`evaluation.protocols`, the registry that
  ``python -m evaluation`` uses too (docs/evaluation.md).

Every executor returns a small JSON-able dict; accuracies are in percent.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from paper.config import data_folder
from paper.units import RunStore, Unit

log = logging.getLogger("paper")

#: steps between checkpoints of a training unit, so a killed unit loses little work
SAVE_EVERY = 50
TRAIN_DIR = "train"
CHECKPOINT = f"{TRAIN_DIR}/checkpoint.pt"
BACKBONE = f"{TRAIN_DIR}/backbone.pt"
#: BLAS threads during evaluation (see :func:`evaluate`)
BLAS_THREADS = 1
#: E2MC options that ``adapters.train.TrainConfig`` takes as fields rather than as a dict
_E2MC_FIELDS = ("transform", "ent_coeff", "cov_coeff", "m", "eps")


def _train(unit: Unit, folder: Path, config_fields: dict[str, Any], progress: bool) -> dict:
    from adapters.train import TrainConfig, TrainingInterrupted, train

    out = folder / TRAIN_DIR
    checkpoint = out / "checkpoint.pt"
    config = TrainConfig(out=str(out), save_every=SAVE_EVERY, progress=progress, **config_fields)
    try:
        if checkpoint.is_file():
            log.info("resuming %s from %s", unit.label, checkpoint)
            result = train(config, resume=str(checkpoint))
        else:
            result = train(config)
    except TrainingInterrupted as err:
        # Ctrl-C / SIGTERM: the checkpoint is on disk; stop the whole reproduction, not the unit
        raise KeyboardInterrupt(str(err)) from err
    summary = _metrics_summary(out / "metrics.jsonl")
    return {
        "artifacts": [CHECKPOINT, BACKBONE],
        # checkpoints are not committed: the result keeps which backbone it was (REPORT.md)
        "backbone_digest": backbone_digest(folder / BACKBONE),
        "steps": result.step,
        "epoch": result.epoch,
        "final_metrics": {k: v for k, v in result.metrics.items() if np.isfinite(v)},
        **summary,
    }


def backbone_digest(path: Path) -> str:
    """The first 16 hex digits of the SHA-256 of a backbone file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _metrics_summary(path: Path) -> dict[str, Any]:
    """Median throughput and the mean of each logged quantity over the last 10% of steps."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return {}
    tail = rows[-max(1, len(rows) // 10) :]
    keys = sorted({k for r in tail for k, v in r.items() if isinstance(v, (int, float))})
    means = {}
    for k in keys:
        vals = [float(r[k]) for r in tail if isinstance(r.get(k), (int, float))]
        if vals and np.all(np.isfinite(vals)):
            means[k] = float(np.mean(vals))
    speeds = [float(r["samples_per_s"]) for r in rows if "samples_per_s" in r]
    return {
        "logged_steps": len(rows),
        "median_samples_per_s": float(np.median(speeds)) if speeds else None,
        "tail_means": means,
    }


def pretrain(unit: Unit, folder: Path, store: RunStore, *, progress: bool = True) -> dict:
    """Train a base model from scratch (``mode="pretrain"``, base loss only)."""
    model = unit.config["model"]
    data = unit.config["data"]
    fields = {
        "mode": "pretrain",
        "method": model["method"],
        "backbone": model["backbone"],
        "dataset": data["name"],
        "data_root": data_folder(data["root"]),
        "epochs": model["epochs"],
        "max_steps": model["max_steps"],
        "batch_size": model["batch_size"],
        "seed": model["seed"],
        "criterion": "none",
        "head_options": {k: v for k, v in model["options"]},
    }
    return _train(unit, folder, fields, progress)


def continue_training(
    unit: Unit, folder: Path, store: RunStore, *, progress: bool = True
) -> dict:
    """Continue the base checkpoint with the base loss plus the unit's criterion."""
    (base,) = unit.deps
    cfg = unit.config
    options = dict(cfg["options"])
    fields: dict[str, Any] = {
        "mode": "continue",
        "method": cfg["method"],
        "checkpoint": str(store.folder(base) / CHECKPOINT),
        "dataset": cfg["data"]["name"],
        "data_root": data_folder(cfg["data"]["root"]),
        "epochs": cfg["epochs"],
        "max_steps": cfg["max_steps"],
        "batch_size": cfg["batch_size"],
        "seed": cfg["seed"],
        "criterion": cfg["criterion"],
    }
    if cfg["criterion"] == "e2mc":
        for name in _E2MC_FIELDS:
            if name in options:
                fields[name] = options.pop(name)
    fields["criterion_options"] = options
    return _train(unit, folder, fields, progress)


# ----------------------------------------------------------------------------------------
# evaluation

#: the registry protocols (evaluation.protocols) behind a protocol of the experiment when they
#: differ from its own name: the paper's "diagnostics" unit holds the label-free diagnostics
#: and the class separability
REGISTRY_PROTOCOLS: dict[str, tuple[str, ...]] = {"diagnostics": ("diagnostics", "separability")}


def _checkpoint_of(unit: Unit, store: RunStore) -> Path:
    (source,) = unit.deps
    return store.folder(source) / CHECKPOINT


def model_data(unit: Unit, store: RunStore, *, progress: bool = True) -> Any:
    """The unit's checkpoint with its evaluation data (features cached beside the checkpoint,
    under ``features/``)."""
    from evaluation.model_data import DataSpec, ModelData

    data = unit.config["data"]
    path = _checkpoint_of(unit, store)
    spec = DataSpec(
        data["name"], data_folder(data["root"]), data["eval_train_limit"], data["eval_test_limit"]
    )
    return ModelData(path, spec, cache_dir=path.parent.parent / "features", progress=progress)


def protocol_settings(unit: Unit) -> dict[str, Any]:
    """The unit's protocol options in the registry's terms (label fractions as fractions, the
    unit's seed, the experiment's validation share and transfer set); options named like a
    registry option field pass through unchanged."""
    options = dict(unit.config["options"])
    data = unit.config["data"]
    settings: dict[str, Any] = {
        **options,
        "val_fraction": data["val_fraction"],
        "transfer_dataset": data["transfer"],
        "max_train": data["transfer_limit"],
        "alignment_pairs": 0,  # the paper's diagnostics read features only
    }
    if unit.config["seed"] is not None:  # None for the seedless protocols (knn, diagnostics)
        settings["seeds"] = (unit.config["seed"],)
    if "fractions" in options:
        settings["fractions"] = tuple(f / 100 for f in options["fractions"])
    if "fraction" in options:
        settings["transfer_fraction"] = options["fraction"] / 100
    if "Cs" in options:
        settings["cs"] = tuple(options["Cs"])
    if "k" in options:
        settings["k"] = (int(options["k"]),)
    if "temperature" in options:
        settings["temperature"] = options["temperature"]
    if "epochs" in options:
        settings["finetune_epochs"] = int(options["epochs"])
    if "map_points" in options:
        settings["map_points"] = int(options["map_points"])
    return settings


def _pct(x: float) -> float:
    return round(100.0 * float(x), 4)


def _rounded(values: Any, digits: int) -> list[float | None]:
    return [round(float(v), digits) if np.isfinite(v) else None for v in values]


def evaluate(unit: Unit, folder: Path, store: RunStore, *, progress: bool = True) -> dict:
    """Run the unit's protocol on its checkpoint; returns ``{"metrics": {...}, ...}``.

    The metrics are those of :mod:`evaluation.protocols` under the same keys, accuracies in
    percent; one seed per unit, so a metric is that seed's value.

    BLAS runs single-threaded here: scikit-learn's L-BFGS probe does many small matrix
    products, and with two OpenBLAS threads on a busy 2-core machine one 512 x 256 fit took
    1.5 s against 0.055 s single-threaded (measured on this machine while other jobs ran).
    """
    from threadpoolctl import threadpool_limits

    from evaluation.protocols import make_options, protocol, run_protocol
    from evaluation.report import jsonable

    names = REGISTRY_PROTOCOLS.get(unit.config["protocol"], (unit.config["protocol"],))
    for name in names:
        protocol(name)  # an unknown name fails here, before the checkpoint is loaded
    data = model_data(unit, store, progress=progress)
    settings = protocol_settings(unit)
    metrics: dict[str, float] = {}
    details: dict[str, Any] = {}
    descriptions = []
    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        for proto in names:
            res = run_protocol(proto, data, make_options(proto, settings))
            for key, value in res.metrics.items():
                value = float(getattr(value, "mean", value))
                metrics[key] = _pct(value) if key in res.accuracies else value
            details.update(res.details)
            descriptions.append(res.description)
    out: dict[str, Any] = {"metrics": metrics, "protocol": "; ".join(descriptions)}
    profile = details.pop("entropy_profile", None)
    if profile is not None:
        out["entropy_profile"] = _rounded(profile, 5)
    the_map = details.pop("map", None)
    if the_map is not None:
        out["map"] = {"method": the_map["method"], "x": _rounded(the_map["x"], 4),
                      "y": _rounded(the_map["y"], 4),
                      "label": [int(v) for v in the_map["label"]]}
    out["details"] = jsonable(details)
    return out


def executors(*, progress: bool = True) -> dict[str, Any]:
    """The executor of each unit kind, for :func:`paper.units.run_units`."""
    return {
        "pretrain": lambda u, f, s: pretrain(u, f, s, progress=progress),
        "continue": lambda u, f, s: continue_training(u, f, s, progress=progress),
        "evaluate": lambda u, f, s: evaluate(u, f, s, progress=progress),
    }
