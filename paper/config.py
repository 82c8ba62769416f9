"""Every setting of the paper reproduction in one place, and the hash that names a run by them.

The experiment (issue 7) at CPU scale on Fashion-MNIST: pretrain three base models (VICReg,
SwAV, SimSiam, ``small_cnn`` backbone, fixed epoch budget and seed), continue each for about
10% more epochs with the base loss alone ("continued") or with a criterion added, over three
seeds, and evaluate every checkpoint with the protocols of docs/evaluation.md.

:func:`full` is the configuration whose numbers go in ``paper/results/``; :func:`quick` shrinks
it (tiny subsets, one seed, a few steps) into a smoke test of the whole pipeline.

A run is named by :func:`config_hash`: the SHA-256 of the canonical JSON of its full
configuration (dataclasses as dicts with sorted keys, tuples as lists), so equal settings
give the same name in every process and any changed field gives a new one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from entropylib.criteria import REFERENCE_SETTINGS

#: bumped when the meaning of a stored result changes, so old results are not reused
SCHEMA_VERSION = 1

#: the Fashion-MNIST folder recorded in every unit's configuration. It is part of each unit's
#: name, so it stays Debian's folder on every machine (the committed results keep their names);
#: the images are read from :func:`data_folder`, which honours ENTROPYLIB_FASHION_MNIST.
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"


def data_folder(root: str) -> str:
    """The folder to read a unit's data from, given the ``root`` its configuration records.

    The recorded default :data:`FASHION_MNIST_ROOT` means "wherever this machine keeps
    Fashion-MNIST": ``adapters.data.fashion_mnist_root()`` (``$ENTROPYLIB_FASHION_MNIST`` if
    set). Any other recorded folder is used as it is.
    """
    if root != FASHION_MNIST_ROOT:
        return root
    from adapters.data import fashion_mnist_root

    return str(fashion_mnist_root())


@dataclass(frozen=True)
class DataConfig:
    """The data every unit uses.

    Training always sees the whole official training split (60,000 images, no labels).
    ``eval_train_limit`` / ``eval_test_limit`` evaluate on a seeded random subset of N images
    of each official split, kept in data-set order (:func:`evaluation.subsets.limit_indices`;
    None: all 60,000 / 10,000); only ``--quick`` sets them. ``val_fraction`` of
    the labelled training images is carved out (class-balanced, per seed) for every selection a
    protocol makes (regularisation of a probe, fine-tuning epoch); the test split is only ever
    scored.
    """

    name: str = "fashion-mnist"
    root: str = FASHION_MNIST_ROOT
    eval_train_limit: int | None = None
    eval_test_limit: int | None = None
    val_fraction: float = 0.1
    #: second data set for the transfer linear probe (scikit-learn digits, resized to 28x28)
    transfer: str = "digits"
    transfer_limit: int | None = None


@dataclass(frozen=True)
class PretrainConfig:
    """One base model trained from scratch with ``adapters.pretrain``."""

    method: str
    backbone: str = "small_cnn"
    epochs: int = 10
    batch_size: int = 256
    seed: int = 0
    #: cap on the optimizer steps of the run (None: ``epochs`` full epochs); only ``--quick``
    max_steps: int | None = None
    #: extra keyword options of the method (head sizes, ...), as ``(name, value)`` pairs
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class ContinueConfig:
    """Continued training of a base checkpoint: the base loss plus ``criterion`` (or nothing).

    ``criterion`` is ``"none"`` (the "continued" control) or a key of
    ``entropylib.criteria.CRITERIA``; ``coefficients`` are its keyword options, written out
    in full so that the run's name records them.
    """

    criterion: str
    coefficients: tuple[tuple[str, Any], ...] = ()
    epochs: int = 1
    batch_size: int = 256
    seed: int = 0
    max_steps: int | None = None


@dataclass(frozen=True)
class ProtocolConfig:
    """One evaluation protocol (docs/evaluation.md) with its options.

    Names: ``linear`` (cached-feature logistic regression with label fractions),
    ``knn`` (weighted kNN), ``semisup`` (fine-tuning on label fractions), ``transfer``
    (linear probe on the transfer data set), ``diagnostics`` (marginal entropies, covariance
    energy, RankMe, separability and a 2-D map of test features).
    """

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, key: str, default: Any = None) -> Any:
        """The value of option ``key`` (``default`` if not set)."""
        return dict(self.options).get(key, default)


@dataclass(frozen=True)
class Row:
    """One row of a table: a label and the continued-training setting (None: the base itself)."""

    label: str
    criterion: str | None
    coefficients: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class TableConfig:
    """A results table: for each base method, its rows, evaluated with ``protocols``."""

    name: str
    title: str
    bases: tuple[str, ...]
    rows: tuple[Row, ...]
    protocols: tuple[str, ...]


@dataclass(frozen=True)
class Experiment:
    """The whole reproduction: data, bases, continued-training budget, seeds, tables."""

    data: DataConfig
    bases: tuple[PretrainConfig, ...]
    continue_epochs: int
    continue_batch_size: int
    continue_max_steps: int | None
    seeds: tuple[int, ...]
    protocols: tuple[ProtocolConfig, ...]
    tables: tuple[TableConfig, ...]
    #: per-method E2MC reference defaults (docs/method.md): transform, ent_coeff, cov_coeff
    e2mc_defaults: Mapping[str, tuple[tuple[str, Any], ...]] = field(default_factory=dict)

    def base(self, method: str) -> PretrainConfig:
        """The base model configuration of ``method``."""
        for b in self.bases:
            if b.method == method:
                return b
        raise KeyError(f"no base model {method!r}; configured: {[b.method for b in self.bases]}")

    def protocol(self, name: str) -> ProtocolConfig:
        """The configuration of protocol ``name``."""
        for p in self.protocols:
            if p.name == name:
                return p
        raise KeyError(f"no protocol {name!r}; configured: {[p.name for p in self.protocols]}")


#: E2MC's reference transform and coefficients per base method (docs/method.md, "Reference
#: settings"), as (name, value) pairs read from their one source
E2MC_REFERENCE: dict[str, tuple[tuple[str, Any], ...]] = {
    method: tuple(settings.items()) for method, settings in REFERENCE_SETTINGS.items()
}

#: docs/method.md, 'Comparison criteria': coefficients of the comparison criteria; the criteria read
#: the tensor E2MC sees (SwAV: projection-head output before L2 normalisation)
COMPARISON_REFERENCE: dict[str, tuple[tuple[str, Any], ...]] = {
    "vcreg": (("std_coeff", 1.0), ("cov_coeff", 0.01)),
    "mmcr": (("weight", 1.0),),
    "uniformity": (("t", 3.0),),
    "logdet": (("eps", 1e-4),),
}

#: inverse regularisation strengths of the cached-feature probes, selected on validation
#: (evaluation.linear's default log grid)
PROBE_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)

TABLE1_PROTOCOLS = ("linear", "knn", "semisup", "transfer", "diagnostics")
TABLE2_PROTOCOLS = ("linear", "knn", "transfer", "diagnostics")
#: the SimSiam covariance-coefficient check after the reference setting overrode SimSiam's
#: objective (paper/results/FINDINGS.md): smaller cov_coeff, same everything else
SENSITIVITY_PROTOCOLS = ("linear", "knn", "diagnostics")


def _tables(swav: str = "swav") -> tuple[TableConfig, ...]:
    e2mc = E2MC_REFERENCE[swav]
    ent = dict(e2mc)["ent_coeff"]
    cov = dict(e2mc)["cov_coeff"]
    without = lambda key, value: tuple((k, value if k == key else v) for k, v in e2mc)  # noqa: E731
    simsiam = E2MC_REFERENCE["simsiam"]
    s_ent, s_cov = dict(simsiam)["ent_coeff"], dict(simsiam)["cov_coeff"]
    with_cov = lambda value: tuple(  # noqa: E731
        (k, value if k == "cov_coeff" else v) for k, v in simsiam
    )
    return (
        TableConfig(
            name="table1",
            title="Table 1 analog: continuing each base model with and without E2MC",
            bases=("vicreg", "swav", "simsiam"),
            rows=(
                Row("base", None),
                Row("continued", "none"),
                Row("+E2MC", "e2mc"),
            ),
            protocols=TABLE1_PROTOCOLS,
        ),
        TableConfig(
            name="table2",
            title="Table 2 analog: criteria added to continued SwAV training",
            bases=(swav,),
            rows=(
                Row("continued", "none"),
                Row("+VCReg", "vcreg", COMPARISON_REFERENCE["vcreg"]),
                Row("+MMCR", "mmcr", COMPARISON_REFERENCE["mmcr"]),
                Row("+Uniformity (AUH)", "uniformity", COMPARISON_REFERENCE["uniformity"]),
                Row("+LogDet (CorInfoMax)", "logdet", COMPARISON_REFERENCE["logdet"]),
                Row("+E2MC", "e2mc"),
            ),
            protocols=TABLE2_PROTOCOLS,
        ),
        TableConfig(
            name="ablation",
            title="Ablation on SwAV: both E2MC terms, entropy only, covariance only",
            bases=(swav,),
            rows=(
                Row("continued", "none"),
                Row(f"+E2MC (ent {ent:g}, cov {cov:g})", "e2mc"),
                Row("+E2MC entropy only (cov_coeff 0)", "e2mc", without("cov_coeff", 0.0)),
                Row("+E2MC covariance only (ent_coeff 0)", "e2mc", without("ent_coeff", 0.0)),
            ),
            protocols=TABLE2_PROTOCOLS,
        ),
        TableConfig(
            name="sensitivity",
            title="E2MC coefficient sensitivity on SimSiam (reported, not used for selection)",
            bases=("simsiam",),
            rows=(
                Row("continued", "none"),
                Row(f"+E2MC (ent {s_ent:g}, cov {s_cov:g}; reference)", "e2mc"),
                Row("+E2MC (cov 5)", "e2mc", with_cov(5.0)),
                Row("+E2MC (cov 1)", "e2mc", with_cov(1.0)),
            ),
            protocols=SENSITIVITY_PROTOCOLS,
        ),
    )


#: optimizer steps per epoch of the 60,000 training images at batch 256 (last batch dropped)
STEPS_PER_EPOCH = 60_000 // 256
#: base-model budget: every base gets the same epochs at batch 256, seed 0
PRETRAIN_EPOCHS = 4
#: continued training: 10% of the pretraining steps (the issue's 5-10%), less than one epoch
CONTINUE_STEPS = round(0.10 * PRETRAIN_EPOCHS * STEPS_PER_EPOCH)


def full() -> Experiment:
    """The configuration of the committed results (about 2.5 h on 2 CPU cores).

    The budget follows from step times measured with ``benchmarks/bench_paper_budget.py``
    (see ``paper.reproduce.STEP_SECONDS``): 3 bases x 4 epochs of pretraining, 36
    continued-training units (24 of them SwAV, whose 2 + 6 multi-crop step costs twice the
    others) of 10% of the pretraining steps (``CONTINUE_STEPS``), and 39 evaluated
    checkpoints. Semi-supervised fine-tuning (20 epochs) fits only with 1% of the labels and
    only for Table 1 (10% would add about 45 minutes).
    """
    return Experiment(
        data=DataConfig(),
        bases=tuple(
            PretrainConfig(method=m, epochs=PRETRAIN_EPOCHS, batch_size=256, seed=0)
            for m in ("vicreg", "swav", "simsiam")
        ),
        continue_epochs=1,
        continue_batch_size=256,
        continue_max_steps=CONTINUE_STEPS,
        seeds=(0, 1, 2),
        protocols=(
            ProtocolConfig("linear", (("fractions", (1, 10, 100)), ("Cs", PROBE_CS))),
            ProtocolConfig("knn", (("k", 20), ("temperature", 0.07))),
            ProtocolConfig("semisup", (("fractions", (1,)), ("epochs", 20))),
            ProtocolConfig("transfer", (("fraction", 100), ("Cs", PROBE_CS))),
            ProtocolConfig("diagnostics", (("map_points", 1000),)),
        ),
        tables=_tables(),
        e2mc_defaults=E2MC_REFERENCE,
    )


def quick() -> Experiment:
    """:func:`full` shrunk to a smoke test of every unit kind: a couple of minutes on 2 cores."""
    exp = full()
    return dataclasses.replace(
        exp,
        data=dataclasses.replace(
            exp.data, eval_train_limit=512, eval_test_limit=256, transfer_limit=300
        ),
        bases=tuple(
            dataclasses.replace(b, epochs=1, batch_size=64, max_steps=3) for b in exp.bases
        ),
        continue_epochs=1,
        continue_batch_size=64,
        continue_max_steps=2,
        seeds=(0,),
        protocols=(
            ProtocolConfig("linear", (("fractions", (10, 100)), ("Cs", (1.0,)))),
            ProtocolConfig("knn", (("k", 20), ("temperature", 0.07))),
            ProtocolConfig("semisup", (("fractions", (10,)), ("epochs", 1))),
            ProtocolConfig("transfer", (("fraction", 100), ("Cs", (1.0,)))),
            ProtocolConfig("diagnostics", (("map_points", 200),)),
        ),
    )


def canonical(value: Any) -> Any:
    """``value`` as plain JSON data: dataclasses to dicts, tuples to lists, sorted mappings.

    Floats must be finite (JSON has no NaN); a non-serialisable value is a TypeError naming it.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"configuration values must be finite, got {value!r}")
        return value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise TypeError(
        f"configuration values must be dataclasses, mappings, sequences, str, int, float, bool "
        f"or None; got {type(value).__name__}: {value!r}"
    )


def config_hash(value: Any, *, length: int = 16) -> str:
    """Hex SHA-256 (first ``length`` characters) of the canonical JSON of ``value``.

    Examples
    --------
    >>> config_hash({"b": 1, "a": (1, 2)}) == config_hash({"a": [1, 2], "b": 1})
    True
    >>> len(config_hash(PretrainConfig(method="vicreg")))
    16
    """
    if not 8 <= length <= 64:
        raise ValueError(f"length must be between 8 and 64 hex characters, got {length}")
    text = json.dumps(
        {"schema": SCHEMA_VERSION, "config": canonical(value)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:length]
