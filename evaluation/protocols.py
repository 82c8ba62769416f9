"""The evaluation protocols by name: the one layer that ``python -m evaluation`` and the paper's
executor (``paper.execute``) both drive.

A protocol is a function ``(data: ModelData, options) -> ProtocolResult``: ``data`` is one
checkpoint with its checked data and cached features (:class:`evaluation.model_data.ModelData`),
``options`` a frozen dataclass of typed options with the protocol's defaults. The result's
metric keys are fixed by the protocol and its options (``"knn_20"``, ``"linear_1"``, ...), never
by who calls it; accuracies are fractions in [0, 1] and listed in ``ProtocolResult.accuracies``;
metrics repeated over seeds are :class:`evaluation.report.SeedSummary`.

==============  ===========================================================================
name            metrics (f a label percentage, k a neighbour count)
==============  ===========================================================================
knn             ``knn_{k}``, ``knn_{k}_top5``: weighted kNN (:func:`~evaluation.knn_accuracy`)
linear          ``linear_{f}``, ``linear_{f}_top5``: cached-feature probe, C chosen on val
sgd-linear      ``sgd-linear_{f}``: the augmented SGD probe on the frozen backbone
semisup         ``semisup_{f}``: whole-network fine-tuning, epoch chosen on val
transfer        ``transfer_{dataset}``: cached-feature probe on another data set
diagnostics     RankMe, uniformity, entropy, covariance energy, ``alignment``
separability    ``fisher_ratio``, ``silhouette``, ``knn_purity``
==============  ===========================================================================

Adding a protocol
-----------------
Two files: the module with the maths, and this one. Say ``evaluation/margin.py`` defines
``class_margin(features, labels) -> float``. Here, add its options and a registered driver::

    @dataclass(frozen=True)
    class MarginOptions:
        max_test: int = 1000

    @register("margin", MarginOptions)
    def _margin(data: ModelData, options: MarginOptions) -> ProtocolResult:
        from evaluation.margin import class_margin

        x, y = data.test
        n = options.max_test
        return ProtocolResult({"margin": class_margin(x[:n], y[:n])})

``python -m evaluation --protocols margin`` now runs it (an option field named like a command
line flag, e.g. ``seeds`` or ``cs``, takes that flag's value) and the paper can name it in a
``ProtocolConfig``. ``tests/evaluation/test_protocols.py`` registers such a toy protocol.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evaluation.linear import DEFAULT_CS
from evaluation.model_data import DataSpec, ModelData
from evaluation.report import SeedSummary

Metric = float | SeedSummary


@dataclass(frozen=True)
class ProtocolResult:
    """What a protocol returns.

    ``metrics`` maps fixed keys to numbers (or :class:`SeedSummary` over seeds);
    ``accuracies`` names the metrics that are accuracies in [0, 1] (shown in percent);
    ``details`` holds what was selected or measured on the way (chosen C, entropy profile...);
    ``not_converged`` counts (fits that stopped at their iteration cap, fits).
    """

    metrics: dict[str, Metric]
    accuracies: frozenset[str] = frozenset()
    details: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    not_converged: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Protocol:
    """A registered protocol: its driver and its options class."""

    name: str
    run: Callable[[ModelData, Any], ProtocolResult]
    options: type


#: every protocol by name, in registration order (the order of ``--protocols`` help)
PROTOCOLS: dict[str, Protocol] = {}


def register(name: str, options: type) -> Callable:
    """Decorator: register ``fn(data, options) -> ProtocolResult`` as protocol ``name``."""
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"the options of protocol {name!r} must be a dataclass, got {options!r}")
    if name in PROTOCOLS:
        raise ValueError(f"a protocol named {name!r} is already registered")

    def add(fn: Callable[[ModelData, Any], ProtocolResult]) -> Callable:
        PROTOCOLS[name] = Protocol(name, fn, options)
        return fn

    return add


def protocol(name: str) -> Protocol:
    """The registered protocol ``name``, or a ValueError listing the known ones."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose from {list(PROTOCOLS)}") from None


def make_options(name: str, values: Mapping[str, Any]) -> Any:
    """The options of protocol ``name`` from ``values``; keys it does not take are ignored,
    so one mapping of shared settings (seeds, fractions, ...) serves every protocol."""
    cls = protocol(name).options
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})


def run_protocol(name: str, data: ModelData, options: Any = None) -> ProtocolResult:
    """Run protocol ``name`` on ``data`` with ``options`` (its defaults when None)."""
    proto = protocol(name)
    if options is None:
        options = proto.options()
    if not isinstance(options, proto.options):
        raise TypeError(
            f"protocol {name!r} takes {proto.options.__name__}, got {type(options).__name__}"
        )
    return proto.run(data, options)


def percent_label(fraction: float) -> str:
    """Label fraction 0.01 -> "1" (the percentage of the metric keys).

    Examples
    --------
    >>> percent_label(0.01), percent_label(0.1), percent_label(0.005)
    ('1', '10', '0.5')
    """
    return f"{round(100 * fraction, 6):g}"


# ---------------------------------------------------------------------------- protocols


@dataclass(frozen=True)
class KNNOptions:
    """Weighted kNN: neighbour counts, vote temperature, search backend."""

    k: tuple[int, ...] = (20, 200)
    temperature: float = 0.07
    knn_backend: str = "auto"


@register("knn", KNNOptions)
def _knn(data: ModelData, options: KNNOptions) -> ProtocolResult:
    from evaluation.knn import knn_accuracy

    (xtr, ytr), (xte, yte) = data.train, data.test
    res = knn_accuracy(xtr, ytr, xte, yte, k=options.k, temperature=options.temperature,
                       num_classes=data.num_classes, backend=options.knn_backend)
    metrics: dict[str, Metric] = {}
    used = {}
    for k in options.k:  # keys name the requested k; a k above the bank is clamped
        got = res[min(k, len(ytr))]
        metrics[f"knn_{k}"], metrics[f"knn_{k}_top5"] = got.top1, got.top5
        used[k] = got.k
    return ProtocolResult(metrics, frozenset(metrics), {"k_used": used},
                          f"weighted kNN (cosine, k={list(options.k)}, T={options.temperature})")


@dataclass(frozen=True)
class LinearOptions:
    """Cached-feature logistic-regression probe on label fractions, over seeds."""

    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    seeds: tuple[int, ...] = (0,)
    cs: tuple[float, ...] = DEFAULT_CS
    val_fraction: float = 0.2


@register("linear", LinearOptions)
def _linear(data: ModelData, options: LinearOptions) -> ProtocolResult:
    from tqdm.auto import tqdm

    from evaluation.linear import linear_probe

    (xtr, ytr), (xte, yte) = data.train, data.test
    runs = [(f, s) for f in options.fractions for s in options.seeds]
    probes = {}
    for f, seed in tqdm(runs, desc="linear probes", disable=not data.progress, leave=False):
        idx = data.labelled(f, seed)
        probes[f, seed] = linear_probe(xtr[idx], ytr[idx], xte, yte, Cs=options.cs,
                                       val_fraction=options.val_fraction, seed=seed)
    metrics: dict[str, Metric] = {}
    details = {}
    for f in options.fractions:
        mine = [probes[f, s] for s in options.seeds]
        key = f"linear_{percent_label(f)}"
        metrics[key] = SeedSummary.of([p.top1 for p in mine])
        metrics[f"{key}_top5"] = SeedSummary.of([p.top5 for p in mine])
        details[key] = [{"seed": s, "C": p.C, "val_top1": p.val_top1, "n_train": p.n_train,
                         "n_val": p.n_val} for s, p in zip(options.seeds, mine, strict=True)]
    bad = sum(p.not_converged for p in probes.values())
    fits = sum(p.n_fits for p in probes.values())
    return ProtocolResult(metrics, frozenset(metrics), details,
                          "cached-feature linear probe", (bad, fits))


@dataclass(frozen=True)
class SGDLinearOptions:
    """The paper's augmented SGD linear probe on the frozen backbone."""

    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    seeds: tuple[int, ...] = (0,)
    val_fraction: float = 0.2
    probe_epochs: int = 100
    probe_lr: float = 0.3
    batch_size: int = 256


@dataclass(frozen=True)
class SemisupOptions:
    """Whole-network fine-tuning on label fractions (semi-supervised protocol)."""

    fractions: tuple[float, ...] = (0.01, 0.1)
    seeds: tuple[int, ...] = (0,)
    val_fraction: float = 0.2
    finetune_epochs: int = 20
    trunk_lr: float = 0.03
    head_lr: float = 0.08
    batch_size: int = 256


def _train_on_subset(data: ModelData, fraction: float, seed: int, options: Any) -> Any:
    """A classifier trained on the labelled subset's augmented views, selected on validation."""
    from evaluation.finetune import finetune
    from evaluation.linear import probe_train_transform, sgd_linear_probe
    from evaluation.subsets import validation_split

    labels = np.zeros(len(data.dataset(data.data, True)), dtype=np.int64)
    labels[data.train_idx] = data.train[1]
    labelled = data.train_idx[data.labelled(fraction, seed)]
    fit_idx, val_idx = validation_split(labels, labelled, fraction=options.val_fraction,
                                        seed=seed)
    train_set = data.images(True, probe_train_transform(data.info), fit_idx)
    val_set = data.images(True, data.eval_transform, val_idx)
    test_set = data.images(False, data.eval_transform, data.test_idx)
    common = dict(num_classes=data.num_classes, batch_size=options.batch_size,
                  device=data.device, seed=seed, num_workers=data.num_workers,
                  amp=data.amp, progress=data.progress)
    if isinstance(options, SemisupOptions):
        return finetune(copy.deepcopy(data.model), train_set, val_set, test_set,
                        epochs=options.finetune_epochs, trunk_lr=options.trunk_lr,
                        head_lr=options.head_lr, **common)
    return sgd_linear_probe(data.model, train_set, val_set, test_set,
                            epochs=options.probe_epochs, lr=options.probe_lr, **common)


def _trained(name: str, description: str) -> Callable:
    def run(data: ModelData, options: Any) -> ProtocolResult:
        metrics: dict[str, Metric] = {}
        details = {}
        for f in options.fractions:
            key = f"{name}_{percent_label(f)}"
            res = [_train_on_subset(data, f, s, options) for s in options.seeds]
            metrics[key] = SeedSummary.of([r.top1 for r in res])
            details[key] = [{"seed": s, "best_epoch": r.best_epoch, "val_top1": r.val_top1}
                            for s, r in zip(options.seeds, res, strict=True)]
        return ProtocolResult(metrics, frozenset(metrics), details, description)

    return run


register("sgd-linear", SGDLinearOptions)(_trained("sgd-linear", "augmented SGD linear probe"))
register("semisup", SemisupOptions)(_trained("semisup", "fine-tuning (evaluation.finetune)"))


@dataclass(frozen=True)
class TransferOptions:
    """Cached-feature probe on a second data set, seen with the model's normalisation."""

    transfer_dataset: str = "digits"
    transfer_root: str | None = None
    transfer_fraction: float = 1.0
    max_train: int | None = None
    max_test: int | None = None
    seeds: tuple[int, ...] = (0,)
    cs: tuple[float, ...] = DEFAULT_CS
    val_fraction: float = 0.2

    @property
    def spec(self) -> DataSpec:
        """The transfer data set and its caps."""
        return DataSpec(self.transfer_dataset, self.transfer_root, self.max_train, self.max_test)


@register("transfer", TransferOptions)
def _transfer(data: ModelData, options: TransferOptions) -> ProtocolResult:
    from evaluation.linear import linear_probe
    from evaluation.subsets import label_subset

    xtr, ytr = data.features(options.spec, True)
    xte, yte = data.features(options.spec, False)

    def probe(seed: int) -> Any:
        idx = label_subset(ytr, options.transfer_fraction, seed=seed)
        return linear_probe(xtr[idx], ytr[idx], xte, yte, Cs=options.cs,
                            val_fraction=options.val_fraction, seed=seed)

    probes = [probe(s) for s in options.seeds]
    key = f"transfer_{options.transfer_dataset}"
    details = [{"seed": s, "C": p.C, "n_train": p.n_train, "n_val": p.n_val}
               for s, p in zip(options.seeds, probes, strict=True)]
    return ProtocolResult(
        {key: SeedSummary.of([p.top1 for p in probes])}, frozenset([key]), {key: details},
        f"cached-feature linear probe on {options.transfer_dataset} "
        f"({percent_label(options.transfer_fraction)}% of its training labels)",
        (sum(p.not_converged for p in probes), sum(p.n_fits for p in probes)),
    )


@dataclass(frozen=True)
class DiagnosticsOptions:
    """Label-free diagnostics of the test features; ``alignment_pairs`` augmented pairs of
    test images for the alignment (0 skips it)."""

    alignment_pairs: int = 512


@register("diagnostics", DiagnosticsOptions)
def _diagnostics(data: ModelData, options: DiagnosticsOptions) -> ProtocolResult:
    from evaluation.diagnostics import embedding_diagnostics, marginal_entropy_profile

    x = data.test[0]
    metrics: dict[str, Metric] = dict(embedding_diagnostics(x, seed=0))
    if options.alignment_pairs > 0:
        metrics["alignment"] = _alignment(data, options.alignment_pairs)
    profile = marginal_entropy_profile(x)
    return ProtocolResult(metrics, frozenset(), {"entropy_profile": profile},
                          "diagnostics of the test features")


def _alignment(data: ModelData, n_pairs: int) -> float:
    """Alignment of two augmentations of test images, in the model's own recipe when known."""
    import torch

    from adapters.data import ssl_views
    from adapters.methods import METHODS
    from evaluation.diagnostics import alignment

    method = data.meta.get("method") if data.meta.get("method") in METHODS else "simsiam"
    pairs = data.images(False, ssl_views(method, data.info), data.test_idx[:n_pairs])
    views: list[list[Any]] = [[], []]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for i in range(len(pairs)):
            items = pairs[i][0]
            views[0].append(items[0])
            views[1].append(items[1])
    was_training = data.model.training
    data.model.eval()
    with torch.inference_mode():
        f1, f2 = (data.model(torch.stack(v)).float().cpu().numpy() for v in views)
    data.model.train(was_training)
    return alignment(f1, f2)


@dataclass(frozen=True)
class SeparabilityOptions:
    """Class separability of the test features; ``map_points`` > 0 adds a 2-D PCA map of
    that many random test points to the details."""

    purity_k: int = 20
    knn_backend: str = "auto"
    map_points: int = 0


@register("separability", SeparabilityOptions)
def _separability(data: ModelData, options: SeparabilityOptions) -> ProtocolResult:
    from evaluation.separability import embed_2d, fisher_ratio, knn_purity, silhouette

    x, y = data.test
    metrics: dict[str, Metric] = {
        "fisher_ratio": fisher_ratio(x, y),
        "silhouette": silhouette(x, y),
        "knn_purity": knn_purity(x, y, k=min(options.purity_k, len(y) - 1),
                                 backend=options.knn_backend),
    }
    details = {}
    if options.map_points > 0:
        n_map = min(options.map_points, len(x))
        pick = np.sort(np.random.default_rng(0).choice(len(x), n_map, replace=False))
        coords = embed_2d(x[pick], method="pca", seed=0)
        details["map"] = {"method": "pca", "x": coords[:, 0], "y": coords[:, 1],
                          "label": y[pick]}
    return ProtocolResult(metrics, frozenset({"knn_purity"}), details,
                          "class separability of the test features")


def convergence_note(results: Mapping[str, ProtocolResult]) -> str | None:
    """One line on the fits that stopped at their iteration cap, or None when all converged."""
    bad = {n: r.not_converged for n, r in results.items() if r.not_converged[0]}
    if not bad:
        return None
    parts = ", ".join(f"{n}: {b} of {t}" for n, (b, t) in bad.items())
    return f"note: logistic-regression fits that stopped at max_iter before converging ({parts})"


__all__ = [
    "PROTOCOLS",
    "DiagnosticsOptions",
    "KNNOptions",
    "LinearOptions",
    "Protocol",
    "ProtocolResult",
    "SGDLinearOptions",
    "SemisupOptions",
    "SeparabilityOptions",
    "TransferOptions",
    "convergence_note",
    "make_options",
    "percent_label",
    "protocol",
    "register",
    "run_protocol",
]
