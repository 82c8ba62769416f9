"""Command line: compare checkpoints on one data set with several evaluation protocols.

Example::

    python -m evaluation --checkpoint runs/a/last.pt --checkpoint runs/b/last.pt \\
        --dataset fashion-mnist --protocols knn,linear,semisup,transfer,diagnostics \\
        --fractions 1,10,100 --seeds 3 --out reports/ab

prints one comparison table and writes ``results.json``, ``results.md`` and PNG plots to
``--out``. Models come from ``adapters.load_encoder`` and data from ``adapters.data``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.diagnostics import (
    alignment,
    embedding_diagnostics,
    marginal_entropy_profile,
    plot_entropy_profiles,
    plot_spectra,
)
from evaluation.features import cached_features, checkpoint_fingerprint, feature_cache_key
from evaluation.finetune import finetune
from evaluation.knn import knn_accuracy
from evaluation.linear import (
    DEFAULT_CS,
    linear_probe,
    probe_train_transform,
    sgd_linear_probe,
)
from evaluation.report import SeedSummary, write_report
from evaluation.separability import fisher_ratio, knn_purity, plot_embeddings_2d, silhouette
from evaluation.subsets import (
    label_subset,
    read_subset_file,
    subset_from_names,
    validation_split,
)

PROTOCOLS = ("knn", "linear", "sgd-linear", "semisup", "transfer", "diagnostics", "separability")

#: test images used for the alignment of two augmented views and for the 2-D maps
N_PAIRS = 512


def parse_protocols(text: str) -> list[str]:
    """Split a comma list of protocol names and reject unknown ones.

    Examples
    --------
    >>> parse_protocols("knn, linear")
    ['knn', 'linear']
    """
    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in PROTOCOLS]
    if unknown or not names:
        raise ValueError(f"unknown protocol(s) {unknown or [text]}; choose from {list(PROTOCOLS)}")
    return names


def parse_fractions(text: str) -> list[float]:
    """Label percentages "1,10,100" -> fractions [0.01, 0.1, 1.0]."""
    try:
        pct = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"--fractions must be percentages like 1,10,100, got {text!r}") from None
    if not pct or any(not 0 < p <= 100 for p in pct):
        raise ValueError(f"--fractions must be percentages in (0, 100], got {text!r}")
    return [p / 100 for p in pct]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m evaluation``."""
    p = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", action="append", required=True, help="repeat per model")
    p.add_argument("--name", action="append", help="display name per checkpoint (same order)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--features", default="backbone", choices=("backbone", "projector"),
                   help="evaluate backbone features, or the projector output the criteria see "
                   "(needs checkpoint.pt files)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--protocols", default="knn,linear,diagnostics,separability",
                   help=f"comma list of {','.join(PROTOCOLS)}")
    p.add_argument("--fractions", default="1,10,100", help="label percentages")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..n-1)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--subset-list", action="append", default=[], metavar="PCT=FILE",
                   help="fixed subset list (SimCLR format: one file name per line) for label "
                        "percentage PCT instead of seeded random subsets (seeds then vary only "
                        "the validation split), e.g. 1=1percent.txt")
    p.add_argument("--max-train", type=int, default=None, help="random subset of the train split")
    p.add_argument("--max-test", type=int, default=None, help="random subset of the test split")
    p.add_argument("--k", default="20,200", help="kNN neighbour counts")
    p.add_argument("--temperature", type=float, default=0.07, help="kNN vote temperature")
    p.add_argument("--cs", default=",".join(f"{c:g}" for c in DEFAULT_CS),
                   help="inverse regularisation strengths tried by the cached-feature probe")
    p.add_argument("--knn-backend", default="auto", choices=("auto", "faiss", "brute"))
    p.add_argument("--transfer-dataset", default="digits")
    p.add_argument("--transfer-root", default=None)
    p.add_argument("--probe-epochs", type=int, default=100, help="sgd-linear epochs")
    p.add_argument("--probe-lr", type=float, default=0.3)
    p.add_argument("--finetune-epochs", type=int, default=20)
    p.add_argument("--trunk-lr", type=float, default=0.03)
    p.add_argument("--head-lr", type=float, default=0.08)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None)
    p.add_argument("--cache-dir", default=None, help="feature cache (default OUT/feature_cache)")
    p.add_argument("--fast-hash", action="store_true",
                   help="identify checkpoints by path+size+mtime instead of a content hash")
    p.add_argument("--map", default="pca", choices=("pca", "tsne"), help="2-D map method")
    p.add_argument("--no-progress", action="store_true")
    return p


def _subset_lists(items: Sequence[str]) -> dict[float, str]:
    lists = {}
    for item in items:
        pct, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--subset-list must look like 1=path/1percent.txt, got {item!r}")
        lists[parse_fractions(pct)[0]] = path
    return lists


def _load_encoder(path: str, features: str = "backbone") -> tuple[Any, dict]:
    import adapters

    return adapters.load_encoder(path, features=features)


def _model_view(info: Any, meta: dict, path: str) -> Any:
    """The data set's info with the normalisation the encoder was trained with."""
    channels = meta.get("in_channels", info.channels)
    if channels != info.channels:
        raise ValueError(
            f"{path} takes {channels}-channel images but {info.name!r} has {info.channels}"
        )
    stats = {k: tuple(meta[k]) for k in ("mean", "std") if meta.get(k) is not None}
    return dataclasses.replace(info, **stats)


def _limit(n: int, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise ValueError(f"--max-train/--max-test must be >= 1, got {limit}")
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def _names(args: argparse.Namespace) -> list[str]:
    if args.name:
        if len(args.name) != len(args.checkpoint):
            raise ValueError("give one --name per --checkpoint, or none")
        names = list(args.name)
    else:
        names = [f"{Path(c).parent.name}/{Path(c).stem}".lstrip("/") for c in args.checkpoint]
    if len(set(names)) != len(names):
        names = [f"{i}:{n}" for i, n in enumerate(names)]
    return names


class _Run:
    """Everything one checkpoint needs: model, data, cached features."""

    def __init__(self, args: argparse.Namespace, path: str) -> None:
        from torch.utils.data import Subset

        from adapters.data import dataset_info, eval_transform, load_dataset

        self.args, self.path = args, path
        self.model, self.meta = _load_encoder(path, args.features)
        self.info = _model_view(dataset_info(args.dataset), self.meta, path)
        # the same file gives other features through the projector: part of the cache key
        fingerprint = checkpoint_fingerprint(path, content_hash=not args.fast_hash)
        self.fingerprint = f"{fingerprint}:{args.features}"
        self.eval_tf = eval_transform(self.info)
        self.aug_tf = probe_train_transform(self.info)
        self._load, self._subset = load_dataset, Subset
        self._cache: dict[tuple, Any] = {}
        # ImageFolder's class count is the folder's, not the ImageNet default of dataset_info
        classes = getattr(self._dataset(True, None), "classes", None)
        self.num_classes = len(classes) if classes else self.info.num_classes
        self.train_idx = _limit(len(self._dataset(True, None)), args.max_train, seed=0)
        self.test_idx = _limit(len(self._dataset(False, None)), args.max_test, seed=1)
        self.xtr, self.ytr = self.features(args.dataset, True, self.eval_tf, self.train_idx)
        self.xte, self.yte = self.features(args.dataset, False, self.eval_tf, self.test_idx)

    def _dataset(self, train: bool, transform: Any, name: str | None = None) -> Any:
        name = name or self.args.dataset
        root = self.args.data_root if name == self.args.dataset else self.args.transfer_root
        # transforms are kept alive by the cache, so their ids are not reused
        key = (name, train, id(transform))
        if key not in self._cache:
            self._cache[key] = (self._load(name, root, train=train, transform=transform), transform)
        return self._cache[key][0]

    def subset(self, train: bool, transform: Any, idx: Sequence[int], name: str | None = None):
        return self._subset(self._dataset(train, transform, name), [int(i) for i in idx])

    def labelled(self, frac: float, seed: int) -> np.ndarray:
        """Positions (in the possibly limited train features) of the labelled subset."""
        path = self.args.subset_lists.get(frac)
        if path is None:
            return label_subset(self.ytr, frac, seed=seed, num_classes=self.num_classes)
        full = self._dataset(True, None)
        if not hasattr(full, "samples"):
            raise ValueError(
                f"--subset-list needs a data set with file names (ImageFolder); "
                f"{self.args.dataset!r} has none"
            )
        wanted = subset_from_names([p for p, _ in full.samples], read_subset_file(path))
        pos = np.searchsorted(self.train_idx, wanted)
        inside = pos < self.train_idx.size
        inside[inside] = self.train_idx[pos[inside]] == wanted[inside]
        if not inside.all():
            raise ValueError(f"{(~inside).sum()} images of {path} are outside --max-train's subset")
        return pos

    def features(self, name: str, train: bool, transform: Any, idx: np.ndarray):
        full = self._dataset(train, transform, name)
        key = feature_cache_key(
            checkpoint=self.fingerprint,
            dataset=name,
            split="train" if train else "test",
            transform=transform,
            root=self.args.data_root if name == self.args.dataset else self.args.transfer_root,
            length=len(full),
            indices=idx,
        )
        return cached_features(
            self.model,
            self._subset(full, [int(i) for i in idx]),
            cache_dir=self.args.cache_dir,
            key=key,
            batch_size=self.args.batch_size,
            device=self.args.device,
            progress=not self.args.no_progress,
            desc=f"{name} {'train' if train else 'test'} features",
        )


def _seeded(fn, seeds: int) -> SeedSummary:
    return SeedSummary.of([fn(seed) for seed in range(seeds)])


def _pct(f: float) -> str:
    return f"{100 * f:g}%"


def evaluate_checkpoint(
    run: _Run, protocols: Sequence[str], fractions: Sequence[float], args: argparse.Namespace
) -> dict[str, Any]:
    """All requested protocols for one checkpoint; returns {metric name: value}."""
    out: dict[str, Any] = {}
    n_cls = run.num_classes
    if "knn" in protocols:
        ks = [int(k) for k in args.k.split(",")]
        res = knn_accuracy(run.xtr, run.ytr, run.xte, run.yte, k=ks, num_classes=n_cls,
                           temperature=args.temperature, backend=args.knn_backend)
        for k, r in res.items():
            out[f"knn k={k} top1"] = r.top1
            out[f"knn k={k} top5"] = r.top5
    for frac in fractions if "linear" in protocols else []:
        def probe(seed: int, frac: float = frac) -> float:
            idx = run.labelled(frac, seed)
            return linear_probe(run.xtr[idx], run.ytr[idx], run.xte, run.yte, Cs=args.cs,
                                seed=seed).top1

        out[f"linear {_pct(frac)} top1"] = _seeded(probe, args.seeds)
    for frac in fractions if "sgd-linear" in protocols else []:
        out[f"sgd-linear {_pct(frac)} top1"] = _seeded(
            lambda seed, frac=frac: _train_on_subset(run, frac, seed, args, finetuning=False),
            args.seeds,
        )
    for frac in fractions if "semisup" in protocols else []:
        out[f"semisup {_pct(frac)} top1"] = _seeded(
            lambda seed, frac=frac: _train_on_subset(run, frac, seed, args, finetuning=True),
            args.seeds,
        )
    if "transfer" in protocols:
        out.update(_transfer(run, args))
    if "diagnostics" in protocols:
        out.update(embedding_diagnostics(run.xte, seed=0))
        out["alignment"] = _alignment(run, args)
    if "separability" in protocols:
        out["fisher_ratio"] = fisher_ratio(run.xte, run.yte)
        out["silhouette_cosine"] = silhouette(run.xte, run.yte)
        out["knn_purity k=20"] = knn_purity(run.xte, run.yte, k=min(20, len(run.yte) - 1),
                                            backend=args.knn_backend)
    return out


def _train_on_subset(
    run: _Run, frac: float, seed: int, args: argparse.Namespace, *, finetuning: bool
) -> float:
    labelled = run.train_idx[run.labelled(frac, seed)]
    all_train_labels = np.zeros(len(run._dataset(True, None)), dtype=np.int64)
    all_train_labels[run.train_idx] = run.ytr
    fit_idx, val_idx = validation_split(all_train_labels, labelled, seed=seed)
    train_set = run.subset(True, run.aug_tf, fit_idx)
    val_set = run.subset(True, run.eval_tf, val_idx)
    test_set = run.subset(False, run.eval_tf, run.test_idx)
    common = dict(num_classes=run.num_classes, batch_size=args.batch_size,
                  device=args.device, seed=seed, progress=not args.no_progress)
    if finetuning:
        return finetune(copy.deepcopy(run.model), train_set, val_set, test_set,
                        epochs=args.finetune_epochs, trunk_lr=args.trunk_lr,
                        head_lr=args.head_lr, **common).top1
    return sgd_linear_probe(run.model, train_set, val_set, test_set, epochs=args.probe_epochs,
                            lr=args.probe_lr, **common).top1


def _transfer(run: _Run, args: argparse.Namespace) -> dict[str, Any]:
    from adapters.data import dataset_info, eval_transform

    target = _model_view(dataset_info(args.transfer_dataset), run.meta, run.path)
    tf = eval_transform(target)
    n_tr = len(run._dataset(True, None, target.name))
    n_te = len(run._dataset(False, None, target.name))
    xtr, ytr = run.features(target.name, True, tf, _limit(n_tr, args.max_train, 0))
    xte, yte = run.features(target.name, False, tf, _limit(n_te, args.max_test, 1))
    summary = _seeded(
        lambda s: linear_probe(xtr, ytr, xte, yte, Cs=args.cs, seed=s).top1, args.seeds
    )
    return {f"transfer {target.name} linear 100% top1": summary}


def _alignment(run: _Run, args: argparse.Namespace) -> float:
    import torch

    from adapters.augment import METHODS
    from adapters.data import ssl_views

    # Positive pairs are two augmentations in the model's own training recipe when known.
    method = run.meta.get("method") if run.meta.get("method") in METHODS else "simsiam"
    views = ssl_views(method, run.info)
    data = run.subset(False, views, run.test_idx[:N_PAIRS])
    pairs: list[list[Any]] = [[], []]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for i in range(len(data)):
            items = data[i][0]
            pairs[0].append(items[0])
            pairs[1].append(items[1])
    was_training = run.model.training
    run.model.eval()
    with torch.inference_mode():
        f1 = run.model(torch.stack(pairs[0])).float().cpu().numpy()
        f2 = run.model(torch.stack(pairs[1])).float().cpu().numpy()
    run.model.train(was_training)
    return alignment(f1, f2)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m evaluation``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        protocols = parse_protocols(args.protocols)
        fractions = parse_fractions(args.fractions)
        names = _names(args)
        args.cs = [float(c) for c in args.cs.split(",")]
        args.subset_lists = _subset_lists(args.subset_list)
    except ValueError as err:
        parser.error(str(err))
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.cache_dir = args.cache_dir or os.fspath(out / "feature_cache")
    results, metas, test_feats, profiles = {}, {}, {}, {}
    for name, path in zip(names, args.checkpoint, strict=True):
        try:
            run = _Run(args, path)
        except (FileNotFoundError, ValueError) as err:  # CheckpointError is a ValueError
            print(f"python -m evaluation: error: {path}: {err}", file=sys.stderr)
            return 2
        results[name] = evaluate_checkpoint(run, protocols, fractions, args)
        metas[name] = {"path": path, "fingerprint": run.fingerprint, **run.meta}
        test_feats[name] = (run.xte, run.yte)
        if "diagnostics" in protocols:
            profiles[name] = marginal_entropy_profile(run.xte[:5000])
    if "diagnostics" in protocols:
        plot_spectra({n: x for n, (x, _) in test_feats.items()}, out / "spectrum.png")
        plot_entropy_profiles(profiles, out / "entropy_profile.png")
    if "separability" in protocols:
        plot_embeddings_2d(test_feats, out / "embedding_2d.png", method=args.map)
    table = write_report(results, out, config=vars(args), models=metas)
    print(table)
    print(f"\nwrote {out / 'results.json'}, {out / 'results.md'} and plots to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
