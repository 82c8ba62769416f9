"""The converged-base study: does E2MC help a model trained until it stops improving?

``python -m paper.reproduce --only study`` runs it as resumable units; ``--dry-run`` lists them
with a time estimate. Everything below was fixed before any of its runs.

1. **Converged bases.** VICReg, SimSiam and SwAV (``small_cnn``, Fashion-MNIST, batch 256,
   seed 0, constant learning rate) are pretrained from scratch in periods of
   ``PlateauRule.period`` epochs. After each period the checkpoint is scored by weighted kNN
   (k = 20, T = 0.07) on a validation split of the training images: 10% of the 60,000 training
   images (class-balanced, seed 0) are the queries, the other 90% the labelled bank. Training
   stops at the first evaluated epoch t >= ``min_epochs`` where
   ``acc(t) - acc(s) < min_gain`` (0.3 points), s the latest evaluated epoch at or before
   4t/5 (the gain over at least the last fifth of training), or at the cap ``cap`` epochs,
   whichever comes first (:func:`plateau_decision`). Each curve point is stored in the
   unit's ``curve.json`` with a checkpoint, so a killed run resumes at the period it was in
   and the decision is always made from stored points. With a constant learning rate and the
   same seed, epochs 0-4 of these runs are the 4-epoch "short-trained" bases of Table 1.
2. **Selection on validation only.** For each base a plus-shaped grid of E2MC settings around
   the reference (docs/method.md, 'Reference settings'): the reference, the entropy
   coefficient x0.1 and x10, the covariance coefficient x0.1 and x10 (5 settings, seed 0,
   the comparison's continued-training budget). Each is scored on the same validation split:
   linear probe with 1% and 10% of the remaining labels, and kNN. **Rule**
   (:func:`select_setting`): the highest mean of the three accuracies, rounded to 0.01
   points; ties go to the reference, then to the earlier setting in grid order; a setting
   whose training diverged (non-finite loss) is not eligible. The ``select`` unit depends on
   the ``validate`` units only and refuses any record that is not a validation score, and
   the ``validate`` and ``plateau`` units never load the test split: no choice can see it.
3. **Comparison.** Per base: the base itself, continued (base loss alone), +E2MC reference and
   +E2MC selected, each continued for the same ``continue_steps`` optimizer steps (one epoch),
   seeds 0, 1, 2. Scored on the test split: linear probe 1/10/100% labels, kNN, semi-supervised
   fine-tuning with 1% labels, linear transfer to digits. The report gives mean, std and the
   paired difference to continued (same seed) with a 95% t confidence interval.
4. **Mechanism** (``measure`` units, backbone features of the 10,000 test images): mean
   marginal entropy (m-spacing, nats), total correlation in two labelled forms (Gaussian,
   -1/2 log det R, on all rows; KSG, ``entropylib.total_correlation(..., "ksg1")``, k = 3, on
   the raw (not standardised) features of a seeded subsample of ``tc_samples`` rows, biased
   low in 256 dimensions), off-diagonal
   covariance energy, RankMe, and dead features (constant, and below -3 nats).
5. **Short-trained column.** The 4-epoch bases of Table 1 (``paper.config.full``) are already
   stored; ``paper.study_tables`` puts them beside the converged ones.

Budget (``--dry-run``, idle-machine step times of ``paper.reproduce``): at most about 5.3
hours of unit time, with every base at the 16-epoch cap. What the 6-hour budget forced: the
cap (16 epochs, 4x the short-trained bases), a period of 2 epochs, one epoch of continued
training, a 5-point one-at-a-time grid instead of a full 3x3 one, and 3 seeds instead of 5.

Extra unit kinds (the others are ``paper.execute``'s): ``plateau``, ``validate``, ``select``,
``select-continue`` (continued training at the coefficients its ``select`` unit chose; the
seed-0 run is the grid's own run, copied) and ``measure``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paper import config as cfg
from paper.plan import SEEDLESS_PROTOCOLS, Cell, architecture, criterion_options
from paper.units import RunStore, Unit, closure

log = logging.getLogger("paper")

CURVE_FILE = "curve.json"
#: (entropy factor, covariance factor) of each grid setting; the reference comes first
GRID_FACTORS = ((1.0, 1.0), (0.1, 1.0), (10.0, 1.0), (1.0, 0.1), (1.0, 10.0))
#: accuracies (percent) on the validation split that the selection averages
SELECTION_METRICS = ("linear_1", "linear_10", "knn")
COMPARISON_PROTOCOLS = ("linear", "knn", "semisup", "transfer")
#: a feature whose m-spacing entropy on the test split is below this (nats) counts as dying
DEAD_ENTROPY = -3.0


@dataclass(frozen=True)
class PlateauRule:
    """When a base model's pretraining stops (see the module docstring, point 1).

    Curve points are taken every ``period`` epochs; at an evaluated epoch t >= ``min_epochs``
    training stops if the validation kNN accuracy gained less than ``min_gain`` points since
    the latest point at or before t * (tail - 1) / tail; it always stops at ``cap``.
    """

    period: int = 2
    min_epochs: int = 8
    cap: int = 16
    tail: int = 5
    min_gain: float = 0.3

    def __post_init__(self) -> None:
        if not 1 <= self.period <= self.min_epochs <= self.cap:
            raise ValueError(f"need 1 <= period <= min_epochs <= cap, got {self}")
        if self.cap % self.period or self.min_epochs % self.period:
            raise ValueError(f"min_epochs and cap must be multiples of period, got {self}")
        if self.tail < 2:
            raise ValueError(f"tail must be >= 2 (the last 1/tail of training), got {self.tail}")
        if self.reference_epoch(self.min_epochs) < self.period:
            raise ValueError(f"min_epochs must leave a curve point in its first "
                             f"{self.tail - 1}/{self.tail}, got {self}")

    def reference_epoch(self, t: int) -> int:
        """The latest curve epoch at or before t * (tail - 1) / tail (integer arithmetic)."""
        return self.period * ((t * (self.tail - 1)) // (self.tail * self.period))


def plateau_decision(curve: Sequence[tuple[int, float]], rule: PlateauRule) -> str | None:
    """``"plateau"``, ``"cap"`` or None (go on) after the last point of ``curve``.

    ``curve`` holds (epoch, validation kNN accuracy in percent) at epochs period, 2 period, ...

    Examples
    --------
    >>> rule = PlateauRule(period=2, min_epochs=8, cap=16)
    >>> plateau_decision([(2, 70.0), (4, 75.0), (6, 78.0), (8, 78.2)], rule)
    'plateau'
    >>> plateau_decision([(2, 70.0), (4, 75.0), (6, 78.0), (8, 78.3)], rule) is None
    True
    """
    epochs = [e for e, _ in curve]
    expected = list(range(rule.period, rule.period * (len(curve) + 1), rule.period))
    if epochs != expected:
        raise ValueError(f"curve epochs must be {expected} (every {rule.period}), got {epochs}")
    if not curve:
        return None
    acc = dict(curve)
    if not all(np.isfinite(a) for a in acc.values()):
        raise ValueError(f"curve accuracies must be finite, got {list(acc.values())}")
    t = epochs[-1]
    # accuracies carry 4 decimals: round the gain so that 78.3 - 78.0 is 0.3, not 0.29999...
    if t >= rule.min_epochs and round(acc[t] - acc[rule.reference_epoch(t)], 6) < rule.min_gain:
        return "plateau"
    return "cap" if t >= rule.cap else None


def stopping_epoch(curve: Sequence[tuple[int, float]], rule: PlateauRule) -> tuple[int, str]:
    """The epoch where :func:`plateau_decision` first stops along ``curve``, and why."""
    for i in range(1, len(curve) + 1):
        reason = plateau_decision(curve[:i], rule)
        if reason is not None:
            return curve[i - 1][0], reason
    raise ValueError(f"the rule does not stop within this curve (last epoch {curve[-1][0]})")


@dataclass(frozen=True)
class ValidationScores:
    """Accuracies (percent) of one grid setting on the validation split of the training images.

    ``split`` must be ``"validation"``: the selection takes nothing else.
    """

    split: str
    linear_1: float
    linear_10: float
    knn: float

    def __post_init__(self) -> None:
        if self.split != "validation":
            raise ValueError(
                f"selection takes validation scores only, got scores of split {self.split!r}"
            )
        values = [self.linear_1, self.linear_10, self.knn]
        if not all(np.isfinite(v) and 0 <= v <= 100 for v in values):
            raise ValueError(f"scores must be accuracies in [0, 100], got {values}")

    @property
    def score(self) -> float:
        """The selection score: the mean of the three accuracies, rounded to 0.01 points."""
        return round((self.linear_1 + self.linear_10 + self.knn) / 3, 2)


@dataclass(frozen=True)
class Candidate:
    """One grid setting: its label, E2MC options, whether it is the reference, its scores.

    ``scores`` None means its training diverged (not eligible).
    """

    label: str
    options: Mapping[str, Any]
    reference: bool
    scores: ValidationScores | None


def select_setting(candidates: Sequence[Candidate]) -> Candidate:
    """The rule of the module docstring, point 2: best score; ties to the reference, then order.

    Examples
    --------
    >>> v = lambda a, b, c: ValidationScores("validation", a, b, c)
    >>> best = select_setting([Candidate("ref", {}, True, v(70, 80, 82)),
    ...                        Candidate("ent x0.1", {}, False, v(70, 80, 82.004))])
    >>> best.label  # 77.3347 and 77.3333 are both 77.33: a tie, the reference keeps it
    'ref'
    """
    if sum(c.reference for c in candidates) != 1:
        raise ValueError("the grid must hold exactly one reference setting")
    for c in candidates:
        if c.scores is not None and not isinstance(c.scores, ValidationScores):
            raise TypeError(f"{c.label}: scores must be ValidationScores, got {type(c.scores)}")
    eligible = [c for c in candidates if c.scores is not None]
    if not eligible:
        raise ValueError("every grid setting diverged: nothing to select")
    best = max(c.scores.score for c in eligible)
    tied = [c for c in eligible if c.scores.score == best]
    return next((c for c in tied if c.reference), tied[0])


@dataclass(frozen=True)
class Study:
    """The whole study: the paper experiment's data and protocols plus the settings above."""

    experiment: cfg.Experiment
    methods: tuple[str, ...]
    rule: PlateauRule
    pretrain_batch: int
    #: --quick only: optimizer steps per period instead of ``rule.period`` whole epochs
    period_steps: int | None
    grid: tuple[tuple[float, float], ...]
    continue_steps: int
    continue_batch: int
    seeds: tuple[int, ...]
    #: share of the training images held out as the validation split, and its seed
    protocols: tuple[str, ...] = COMPARISON_PROTOCOLS
    validation_fraction: float = 0.1
    validation_seed: int = 0
    tc_samples: int = 2000


def full() -> Study:
    """The study's configuration (module docstring)."""
    return Study(
        experiment=cfg.full(), methods=("vicreg", "simsiam", "swav"), rule=PlateauRule(),
        pretrain_batch=256, period_steps=None, grid=GRID_FACTORS,
        continue_steps=cfg.STEPS_PER_EPOCH, continue_batch=256, seeds=(0, 1, 2),
    )


def quick() -> Study:
    """:func:`full` shrunk to a smoke test: one base, two 2-step periods, a 2-point grid, two
    seeds, two protocols, tiny subsets."""
    exp = cfg.quick()
    # 2,000 training images: the 1% validation probe needs 2 labels per class
    exp = dataclasses.replace(exp, data=dataclasses.replace(exp.data, eval_train_limit=2000))
    return dataclasses.replace(
        full(), experiment=exp, methods=("simsiam",),
        rule=PlateauRule(period=1, min_epochs=2, cap=2), pretrain_batch=64, period_steps=2,
        grid=GRID_FACTORS[:2], continue_steps=2, continue_batch=64, seeds=(0, 1),
        protocols=("linear", "knn"), tc_samples=200,
    )


@dataclass(frozen=True)
class StudyPlan:
    """Every unit of the study, grouped by base so that each base finishes as a whole."""

    study: Study
    cells: tuple[Cell, ...]

    def units(self, tables: tuple[str, ...] | None = None) -> list[Unit]:
        """Units (with dependencies, in run order); ``tables`` is accepted for
        ``paper.reproduce.describe`` and ignored."""
        return closure(c.unit for c in self.cells)


def grid_settings(study: Study, method: str) -> list[tuple[str, dict[str, Any], bool]]:
    """(label, full E2MC options, is reference) of each grid setting of ``method``."""
    ref = dict(study.experiment.e2mc_defaults[method])
    out = []
    for fe, fc in study.grid:
        over = {"ent_coeff": ref["ent_coeff"] * fe, "cov_coeff": ref["cov_coeff"] * fc}
        options = criterion_options("e2mc", method, over, study.experiment)
        label = f"ent {over['ent_coeff']:g}, cov {over['cov_coeff']:g}"
        out.append((label, options, (fe, fc) == (1.0, 1.0)))
    return out


def build_study(study: Study) -> StudyPlan:
    """The units of the study as :class:`paper.plan.Cell` objects whose ``table`` is the part of
    the study: curve, grid, selection or comparison."""
    exp = study.experiment
    data = exp.data
    train_data = {"name": data.name, "root": data.root}
    eval_data = cfg.canonical(data)
    cells: list[Cell] = []
    for method in study.methods:
        model = cfg.PretrainConfig(method=method, epochs=study.rule.cap,
                                   batch_size=study.pretrain_batch, seed=0)
        base = Unit("plateau", {
            "data": train_data, "eval_data": eval_data, "model": cfg.canonical(model),
            "architecture": architecture(method, model.backbone, {}, data.name),
            "rule": cfg.canonical(study.rule), "period_steps": study.period_steps,
            "validation": _validation(study),
        }, label=f"{method} converged base")
        cells.append(Cell("curve", method, "base", "plateau", None, base))

        continued = functools.partial(_continue_config, study, train_data, method)
        settings = grid_settings(study, method)
        validations, labels = [], []
        for label, options, is_ref in settings:
            run = Unit("continue", continued("e2mc", options, 0), deps=(base,),
                       label=f"{method} grid {label} seed 0")
            val = Unit("validate", {"data": eval_data, "validation": _validation(study)},
                       deps=(run,), label=f"validation scores of {run.label}")
            cells.append(Cell("grid", method, label, "validate", 0, val))
            validations.append(val)
            labels.append({"label": label, "options": options, "reference": is_ref})
        select = Unit("select", {"settings": labels, "metrics": list(SELECTION_METRICS)},
                      deps=tuple(validations), label=f"{method} selection")
        cells.append(Cell("selection", method, "selected", "select", None, select))

        reference = next(o for _, o, is_ref in settings if is_ref)
        rows: list[tuple[str, Any]] = [("base", None)]
        for seed in study.seeds:
            rows.append(("continued", Unit("continue", continued("none", {}, seed),
                                           deps=(base,), label=f"{method} continued seed {seed}")))
        for seed in study.seeds:
            rows.append(("+E2MC reference", Unit(
                "continue", continued("e2mc", reference, seed), deps=(base,),
                label=f"{method} +E2MC reference seed {seed}")))
        for seed in study.seeds:
            sel = continued("e2mc", {}, seed)
            del sel["options"]
            rows.append(("+E2MC selected", Unit("select-continue", sel, deps=(base, select),
                                                label=f"{method} +E2MC selected seed {seed}")))
        cells.extend(_comparison_cells(study, method, base, rows, eval_data))
    return StudyPlan(study, tuple(cells))


def _continue_config(study: Study, train_data: Mapping[str, Any], method: str, criterion: str,
                     options: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """A ``continue`` unit's configuration, the same fields as ``paper.plan`` writes."""
    return {"data": dict(train_data), "method": method, "criterion": criterion,
            "options": dict(options), "epochs": 1, "batch_size": study.continue_batch,
            "max_steps": study.continue_steps, "seed": seed}


def _validation(study: Study) -> dict[str, Any]:
    knn = study.experiment.protocol("knn")
    linear = study.experiment.protocol("linear")
    return {"fraction": study.validation_fraction, "seed": study.validation_seed,
            "k": knn.option("k"), "temperature": knn.option("temperature"),
            "label_fractions": [1, 10], "Cs": list(linear.option("Cs"))}


def _comparison_cells(study: Study, method: str, base: Unit, rows: list[tuple[str, Any]],
                      eval_data: Mapping[str, Any]) -> list[Cell]:
    exp = study.experiment
    cells = []
    for row, checkpoint in rows:
        seeds = study.seeds if checkpoint is None else (checkpoint.config["seed"],)
        source = base if checkpoint is None else checkpoint
        for seed in seeds:
            for name in study.protocols:
                eval_seed = None if name in SEEDLESS_PROTOCOLS else seed
                unit = Unit("evaluate", {
                    "data": eval_data, "protocol": name,
                    "options": cfg.canonical(exp.protocol(name).options), "seed": eval_seed,
                }, deps=(source,), label=f"{name} of {source.label}"
                    + ("" if eval_seed is None else f" (eval seed {eval_seed})"))
                cells.append(Cell("comparison", method, row, name, seed, unit))
            measure = Unit("measure", {"data": eval_data, "tc_samples": study.tc_samples,
                                       "dead_entropy": DEAD_ENTROPY},
                           deps=(source,), label=f"mechanism of {source.label}")
            cells.append(Cell("comparison", method, row, "measure", seed, measure))
    return cells


# ----------------------------------------------------------------------------------------
# executors


def _checkpoint(unit: Unit, store: RunStore) -> Path:
    from paper.execute import CHECKPOINT

    return store.folder(unit) / CHECKPOINT


def split_features(checkpoint: Path, data: Mapping[str, Any], *, train: bool,
                   cache: bool = True, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Backbone features and labels of one Fashion-MNIST split (first ``eval_*_limit`` images).

    Cached under the checkpoint's unit folder with the key ``paper.execute`` uses, so the
    evaluation units of the same checkpoint reuse them.
    """
    from torch.utils.data import Subset

    from adapters import load_encoder
    from adapters.data import dataset_info, eval_transform, load_dataset
    from evaluation.features import (
        cached_features,
        checkpoint_fingerprint,
        extract_features,
        feature_cache_key,
    )

    encoder, meta = load_encoder(checkpoint)
    info = dataclasses.replace(dataset_info(data["name"]), mean=tuple(meta["mean"]),
                               std=tuple(meta["std"]))
    transform = eval_transform(info)
    ds = load_dataset(data["name"], cfg.data_folder(data["root"]), train=train,
                      transform=transform)
    limit = data["eval_train_limit"] if train else data["eval_test_limit"]
    if limit is not None and limit < len(ds):
        ds = Subset(ds, range(limit))
    split = "train" if train else "test"
    if not cache:
        return extract_features(encoder, ds, progress=progress, desc=f"{split} features")
    key = feature_cache_key(checkpoint=checkpoint_fingerprint(checkpoint), dataset=data["name"],
                            split=split, transform=transform, root=data["root"], length=len(ds))
    return cached_features(encoder, ds, cache_dir=checkpoint.parent.parent / "features",
                           key=key, progress=progress, desc=f"{split} features")


def _validation_parts(y: np.ndarray, validation: Mapping[str, Any]) -> tuple:
    from evaluation.subsets import validation_split

    return validation_split(y, fraction=validation["fraction"], seed=validation["seed"])


def validation_knn(x: np.ndarray, y: np.ndarray, validation: Mapping[str, Any]) -> float:
    """kNN accuracy (percent) of the validation images against the rest of the training ones."""
    from evaluation.knn import knn_accuracy

    fit, val = _validation_parts(y, validation)
    (res,) = knn_accuracy(x[fit], y[fit], x[val], y[val], k=validation["k"],
                          temperature=validation["temperature"]).values()
    return round(100.0 * res.top1, 4)


def validation_scores(x: np.ndarray, y: np.ndarray, validation: Mapping[str, Any],
                      val_fraction: float) -> dict[str, float]:
    """The selection's accuracies on the validation split, from training-split features only.

    Linear probes use ``label_fractions`` percent of the non-validation images' labels (C
    chosen on ``val_fraction`` of those labels), kNN all of them as the bank.
    """
    from evaluation.linear import linear_probe
    from evaluation.subsets import label_subset

    fit, val = _validation_parts(y, validation)
    out = {}
    for fraction in validation["label_fractions"]:
        idx = fit[label_subset(y[fit], fraction / 100, seed=validation["seed"])]
        res = linear_probe(x[idx], y[idx], x[val], y[val], Cs=validation["Cs"],
                           val_fraction=val_fraction, seed=validation["seed"])
        out[f"linear_{fraction}"] = round(100.0 * res.top1, 4)
    out["knn"] = validation_knn(x, y, validation)
    return out


def _write_json(path: Path, value: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(value, fh, indent=1)
    os.replace(tmp, path)


def plateau(unit: Unit, folder: Path, store: RunStore, *, progress: bool = True) -> dict:
    """Pretrain period by period until :func:`plateau_decision` stops; resumable per period."""
    from paper import execute

    c = unit.config
    rule = PlateauRule(**c["rule"])
    path = folder / CURVE_FILE
    curve = json.loads(path.read_text()) if path.is_file() else []
    while True:
        reason = plateau_decision([(p["epoch"], p["knn_val"]) for p in curve], rule)
        epoch = curve[-1]["epoch"] if curve else 0
        epoch += 0 if reason else rule.period
        steps = None if c["period_steps"] is None else epoch // rule.period * c["period_steps"]
        stage = Unit("pretrain", {"data": c["data"], "architecture": c["architecture"],
                                  "model": {**c["model"], "epochs": epoch, "max_steps": steps}},
                     label=f"{unit.label} to epoch {epoch}" if reason is None else
                     f"{unit.label}, stopped at epoch {epoch} ({reason}): its final state")
        trained = execute.pretrain(stage, folder, store, progress=progress)
        if reason is not None:
            break
        x, y = split_features(folder / execute.CHECKPOINT, c["eval_data"], train=True,
                              cache=False, progress=progress)
        curve.append({"epoch": epoch, "step": trained["steps"],
                      "knn_val": validation_knn(x, y, c["validation"])})
        _write_json(path, curve)
        log.info("%s: epoch %d, validation kNN %.2f", unit.label, epoch, curve[-1]["knn_val"])
    return {**trained, "curve": curve, "stopped_epoch": epoch, "stop_reason": reason}


def _diverged(unit: Unit, store: RunStore) -> bool:
    record = store.load(unit)
    return bool(record and record["result"].get("diverged"))


def validate(unit: Unit, folder: Path, store: RunStore, *, progress: bool = True) -> dict:
    """Score a grid checkpoint on the validation split (training images only)."""
    from threadpoolctl import threadpool_limits

    from paper.execute import BLAS_THREADS

    (run,) = unit.deps
    if _diverged(run, store):
        return {"split": "validation", "diverged": True, "metrics": {}}
    data = unit.config["data"]
    x, y = split_features(_checkpoint(run, store), data, train=True, progress=progress)
    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        metrics = validation_scores(x, y, unit.config["validation"], data["val_fraction"])
    return {"split": "validation", "metrics": metrics, "n_images": int(len(y))}


def select(unit: Unit, folder: Path, store: RunStore, *, progress: bool = True) -> dict:
    """Apply :func:`select_setting` to the stored validation scores of the grid."""
    candidates = []
    for setting, dep in zip(unit.config["settings"], unit.deps, strict=True):
        record = store.load(dep)
        if dep.kind != "validate" or record is None or record["result"].get("split") != (
            "validation"
        ):
            raise ValueError(f"selection reads validation scores only; got {dep}")
        result = record["result"]
        scores = None if result.get("diverged") else ValidationScores(
            "validation", *(result["metrics"][m] for m in unit.config["metrics"]))
        candidates.append(Candidate(setting["label"], setting["options"], setting["reference"],
                                    scores))
    best = select_setting(candidates)
    return {
        "selected": best.label, "options": dict(best.options), "is_reference": best.reference,
        "scores": {c.label: None if c.scores is None else c.scores.score for c in candidates},
    }


def select_continue(unit: Unit, folder: Path, store: RunStore, *, progress: bool = True) -> dict:
    """Continued training at the selected coefficients; an identical stored run is copied."""
    from paper.execute import TRAIN_DIR

    base, chosen = unit.deps
    selection = store.load(chosen)
    if selection is None:
        raise RuntimeError(f"{chosen} has no result")
    run = Unit("continue", {**unit.config, "options": selection["result"]["options"]},
               deps=(base,), label=unit.label)
    extra = {"selected": selection["result"]["selected"], "run": run.key}
    if store.is_done(run) and not store.missing_artifacts(run):
        if not _diverged(run, store):
            target = folder / TRAIN_DIR
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(store.folder(run) / TRAIN_DIR, target)
        return {**store.load(run)["result"], **extra, "copied": True}
    return {**_continue(run, folder, store, progress=progress), **extra}


def _continue(unit: Unit, folder: Path, store: RunStore, *, progress: bool = True) -> dict:
    """``paper.execute.continue_training``; a non-finite loss is a result (diverged), not a
    failure, so that the selection and the tables can say so."""
    from adapters.train import NonFiniteLoss
    from paper.execute import continue_training

    try:
        return continue_training(unit, folder, store, progress=progress)
    except NonFiniteLoss as err:
        log.warning("%s diverged: %s", unit, err)
        return {"diverged": True, "error": str(err), "artifacts": []}


def _evaluate(unit: Unit, folder: Path, store: RunStore, *, progress: bool = True) -> dict:
    from paper.execute import evaluate

    if _diverged(unit.deps[0], store):
        return {"diverged": True, "metrics": {}}
    return evaluate(unit, folder, store, progress=progress)


def measure(unit: Unit, folder: Path, store: RunStore, *, progress: bool = True) -> dict:
    """The mechanism measurements (module docstring, point 4) on test-split features."""
    (source,) = unit.deps
    if _diverged(source, store):
        return {"diverged": True, "metrics": {}}
    c = unit.config
    x, _ = split_features(_checkpoint(source, store), c["data"], train=False, progress=progress)
    metrics, tc_rows = mechanism_metrics(x, tc_samples=c["tc_samples"],
                                         dead_entropy=c["dead_entropy"])
    return {"metrics": metrics, "features": int(x.shape[1]), "tc_ksg_rows": tc_rows,
            "protocol": "mechanism measurements of backbone features of the test split"}


def mechanism_metrics(features: np.ndarray, *, tc_samples: int,
                      dead_entropy: float) -> tuple[dict[str, Any], int]:
    """The ``measure`` unit's numbers for an (n, D) feature matrix, and the rows KSG used."""
    import warnings

    import entropylib
    from evaluation.diagnostics import (
        marginal_entropy_profile,
        offdiag_covariance_energy,
        rankme,
    )

    x = np.asarray(features, dtype=np.float64)
    live = np.ptp(x, axis=0) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant features: -inf, counted below
        h = marginal_entropy_profile(x[:, live])
    rows = np.sort(np.random.default_rng(0).choice(len(x), min(tc_samples, len(x)),
                                                   replace=False))
    metrics = {
        "entropy_mean": float(h.mean()),
        # the Gaussian form needs more rows than columns (a regular covariance)
        "tc_gaussian": _finite(entropylib.total_correlation(x[:, live], "gaussian"))
        if live.sum() < len(x) else None,
        # on the raw features (standardize=False): the study's first units were measured
        # before total_correlation standardised columns by default, and every row of the
        # table must use the same estimator
        "tc_ksg": _finite(entropylib.total_correlation(x[rows][:, live], "ksg1", k=3,
                                                       ties="jitter", standardize=False)),
        "offdiag_cov_energy": offdiag_covariance_energy(x),
        "rankme": rankme(x),
        "dead_constant": int((~live).sum()),
        "dead_low_entropy": int((h < dead_entropy).sum()),
    }
    return metrics, int(len(rows))


def _finite(value: Any) -> float | None:
    """``value`` as a float, or None when it is not finite (collinear features: +inf)."""
    v = float(value)
    return v if np.isfinite(v) else None


def executors(*, progress: bool = True) -> dict[str, Any]:
    """Executors of every unit kind the study uses, for :func:`paper.units.run_units`."""
    from paper.execute import pretrain

    def bind(fn: Any) -> Any:
        return lambda u, f, s: fn(u, f, s, progress=progress)

    return {
        "pretrain": bind(pretrain), "continue": bind(_continue), "evaluate": bind(_evaluate),
        "plateau": bind(plateau), "validate": bind(validate), "select": bind(select),
        "select-continue": bind(select_continue), "measure": bind(measure),
    }
