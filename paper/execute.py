"""How each unit kind runs: training through ``adapters.train``, metrics through ``evaluation``.

* ``pretrain`` / ``continue``: :func:`adapters.train.train` with the unit's configuration,
  writing ``train/checkpoint.pt`` (every ``SAVE_EVERY`` steps and every epoch) and
  ``train/backbone.pt`` into the unit folder. A folder that already holds a checkpoint from a
  killed attempt is resumed (``train(..., resume=...)``), which continues the run exactly.
* ``evaluate``: the checkpoint's backbone through :func:`adapters.load_encoder`, features of the
  evaluation split cached under the checkpoint's folder (``features/``, git-ignored), then one
  protocol of docs/evaluation.md with the public functions of :mod:`evaluation`.

Every executor returns a small JSON-able dict; accuracies are in percent.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping
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


@dataclasses.dataclass
class _Features:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def _checkpoint_of(unit: Unit, store: RunStore) -> Path:
    (source,) = unit.deps
    return store.folder(source) / CHECKPOINT


def _limit(dataset: Any, limit: int | None) -> Any:
    from torch.utils.data import Subset

    if limit is None or limit >= len(dataset):
        return dataset
    return Subset(dataset, range(limit))


def _datasets(name: str, root: str | None, meta: Mapping[str, Any], limits: tuple) -> tuple:
    """Train and test splits of ``name`` with the model's own normalisation."""
    from adapters.data import dataset_info, eval_transform, load_dataset

    info = dataset_info(name)
    # the model was trained on inputs normalised with its training data's statistics; a
    # transfer data set goes through the same normalisation so the encoder sees what it knows
    info = dataclasses.replace(info, mean=tuple(meta["mean"]), std=tuple(meta["std"]))
    transform = eval_transform(info)
    data_root = data_folder(root) if name == "fashion-mnist" else None
    train = _limit(load_dataset(name, data_root, train=True, transform=transform), limits[0])
    test = _limit(load_dataset(name, data_root, train=False, transform=transform), limits[1])
    return info, transform, train, test


def _features(
    unit: Unit, store: RunStore, dataset_name: str, limits: tuple, progress: bool
) -> _Features:
    from adapters import load_encoder
    from evaluation.features import cached_features, checkpoint_fingerprint, feature_cache_key

    data = unit.config["data"]
    path = _checkpoint_of(unit, store)
    encoder, meta = load_encoder(path)
    _, transform, train, test = _datasets(dataset_name, data["root"], meta, limits)
    fingerprint = checkpoint_fingerprint(path)
    cache = path.parent.parent / "features"
    out = []
    for split, ds in (("train", train), ("test", test)):
        key = feature_cache_key(
            checkpoint=fingerprint,
            dataset=dataset_name,
            split=split,
            transform=transform,
            root=data["root"] if dataset_name == "fashion-mnist" else None,
            length=len(ds),
        )
        out.extend(
            cached_features(
                encoder, ds, cache_dir=cache, key=key, progress=progress, desc=f"{split} features"
            )
        )
    return _Features(*out)


def _labels(dataset: Any) -> np.ndarray:
    """Class labels of a data set (or a ``Subset`` of one) without decoding its images."""
    from torch.utils.data import Subset

    if isinstance(dataset, Subset):
        return _labels(dataset.dataset)[np.asarray(dataset.indices)]
    if hasattr(dataset, "targets"):
        return np.asarray(dataset.targets, dtype=np.int64)
    return np.array([dataset[i][1] for i in range(len(dataset))], dtype=np.int64)


def _pct(x: float) -> float:
    return round(100.0 * float(x), 4)


def evaluate(unit: Unit, folder: Path, store: RunStore, *, progress: bool = True) -> dict:
    """Run the unit's protocol on its checkpoint; returns ``{"metrics": {...}, ...}``.

    BLAS runs single-threaded here: scikit-learn's L-BFGS probe does many small matrix
    products, and with two OpenBLAS threads on a busy 2-core machine one 512 x 256 fit took
    1.5 s against 0.055 s single-threaded (measured on this machine while other jobs ran).
    """
    from threadpoolctl import threadpool_limits

    protocol = unit.config["protocol"]
    if protocol not in _PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {sorted(_PROTOCOLS)}")
    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        return _PROTOCOLS[protocol](unit, store, dict(unit.config["options"]), progress)


def _fm_features(unit: Unit, store: RunStore, progress: bool) -> _Features:
    data = unit.config["data"]
    return _features(
        unit, store, data["name"], (data["eval_train_limit"], data["eval_test_limit"]), progress
    )


def _linear(unit: Unit, store: RunStore, options: dict, progress: bool) -> dict:
    from evaluation.linear import linear_probe
    from evaluation.subsets import label_subset

    f = _fm_features(unit, store, progress)
    seed = unit.config["seed"]
    val_fraction = unit.config["data"]["val_fraction"]
    metrics, details = {}, {}
    for fraction in options["fractions"]:
        idx = label_subset(f.train_y, fraction / 100, seed=seed)
        res = linear_probe(
            f.train_x[idx], f.train_y[idx], f.test_x, f.test_y,
            Cs=options["Cs"], val_fraction=val_fraction, seed=seed,
        )
        metrics[f"linear_{fraction}"] = _pct(res.top1)
        details[f"linear_{fraction}"] = {
            "C": res.C, "val_top1": {str(c): _pct(v) for c, v in res.val_top1.items()},
            "n_train": res.n_train, "n_val": res.n_val, "top5": _pct(res.top5),
        }
    return {"metrics": metrics, "details": details, "protocol": "cached-feature linear probe"}


def _knn(unit: Unit, store: RunStore, options: dict, progress: bool) -> dict:
    from evaluation.knn import knn_accuracy

    f = _fm_features(unit, store, progress)
    k = int(options["k"])
    res = knn_accuracy(
        f.train_x, f.train_y, f.test_x, f.test_y, k=k, temperature=options["temperature"]
    )
    (got,) = res.values()  # k is clamped to the bank size on tiny data
    return {
        "metrics": {f"knn_{k}": _pct(got.top1)},
        "details": {"k_used": got.k, "top5": _pct(got.top5)},
        "protocol": f"weighted kNN (cosine, k={k}, T={options['temperature']})",
    }


def _transfer(unit: Unit, store: RunStore, options: dict, progress: bool) -> dict:
    from evaluation.linear import linear_probe
    from evaluation.subsets import label_subset

    data = unit.config["data"]
    name = data["transfer"]
    f = _features(unit, store, name, (data["transfer_limit"], None), progress)
    seed = unit.config["seed"]
    idx = label_subset(f.train_y, options["fraction"] / 100, seed=seed)
    res = linear_probe(
        f.train_x[idx], f.train_y[idx], f.test_x, f.test_y,
        Cs=options["Cs"], val_fraction=data["val_fraction"], seed=seed,
    )
    return {
        "metrics": {f"transfer_{name}": _pct(res.top1)},
        "details": {"C": res.C, "n_train": res.n_train, "n_val": res.n_val},
        "protocol": f"cached-feature linear probe on {name} (train on its train split)",
    }


def _semisup(unit: Unit, store: RunStore, options: dict, progress: bool) -> dict:
    import torch
    from torch.utils.data import Subset

    from adapters import load_encoder
    from adapters.data import dataset_info, load_dataset
    from evaluation.finetune import finetune
    from evaluation.linear import probe_train_transform
    from evaluation.subsets import label_subset, validation_split

    data = unit.config["data"]
    seed = unit.config["seed"]
    encoder, meta = load_encoder(_checkpoint_of(unit, store))
    info, transform, train_eval, test = _datasets(
        data["name"], data["root"], meta, (data["eval_train_limit"], data["eval_test_limit"])
    )
    train_aug = _limit(
        load_dataset(data["name"], data_folder(data["root"]), train=True,
                     transform=probe_train_transform(info)),
        data["eval_train_limit"],
    )
    labels = _labels(train_eval)
    metrics, details = {}, {}
    for fraction in options["fractions"]:
        labelled = label_subset(labels, fraction / 100, seed=seed)
        fit_idx, val_idx = validation_split(
            labels, labelled, fraction=data["val_fraction"], seed=seed
        )
        torch.manual_seed(seed)
        res = finetune(
            copy.deepcopy(encoder),
            Subset(train_aug, fit_idx.tolist()),
            Subset(train_eval, val_idx.tolist()),
            test,
            num_classes=dataset_info(data["name"]).num_classes,
            epochs=int(options["epochs"]),
            seed=seed,
            progress=progress,
        )
        metrics[f"semisup_{fraction}"] = _pct(res.top1)
        details[f"semisup_{fraction}"] = {
            "best_epoch": res.best_epoch, "val_top1": [_pct(v) for v in res.val_top1],
            "n_train": int(fit_idx.size), "n_val": int(val_idx.size),
        }
    return {"metrics": metrics, "details": details, "protocol": "fine-tuning (evaluation.finetune)"}


def _diagnostics(unit: Unit, store: RunStore, options: dict, progress: bool) -> dict:
    from evaluation.diagnostics import embedding_diagnostics, marginal_entropy_profile
    from evaluation.separability import embed_2d, fisher_ratio, knn_purity, silhouette

    f = _fm_features(unit, store, progress)
    x, y = f.test_x, f.test_y
    metrics = {k: float(v) for k, v in embedding_diagnostics(x).items()}
    metrics["fisher_ratio"] = fisher_ratio(x, y)
    metrics["silhouette"] = silhouette(x, y)
    metrics["knn_purity"] = _pct(knn_purity(x, y, k=min(20, len(x) - 1)))
    profile = marginal_entropy_profile(x)
    n_map = min(int(options["map_points"]), len(x))
    pick = np.sort(np.random.default_rng(0).choice(len(x), n_map, replace=False))
    coords = embed_2d(x[pick], method="pca", seed=0)
    return {
        "metrics": metrics,
        "entropy_profile": [round(float(h), 5) if np.isfinite(h) else None for h in profile],
        "map": {
            "method": "pca",
            "x": [round(float(v), 4) for v in coords[:, 0]],
            "y": [round(float(v), 4) for v in coords[:, 1]],
            "label": [int(v) for v in y[pick]],
        },
        "protocol": "diagnostics of backbone features of the test split",
    }


_PROTOCOLS = {
    "linear": _linear,
    "knn": _knn,
    "transfer": _transfer,
    "semisup": _semisup,
    "diagnostics": _diagnostics,
}


def executors(*, progress: bool = True) -> dict[str, Any]:
    """The executor of each unit kind, for :func:`paper.units.run_units`."""
    return {
        "pretrain": lambda u, f, s: pretrain(u, f, s, progress=progress),
        "continue": lambda u, f, s: continue_training(u, f, s, progress=progress),
        "evaluate": lambda u, f, s: evaluate(u, f, s, progress=progress),
    }
