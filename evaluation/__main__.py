"""Command line: compare checkpoints on one data set with several evaluation protocols.

Example::

    python -m evaluation --checkpoint runs/a/last.pt --checkpoint runs/b/last.pt \\
        --dataset fashion-mnist --protocols knn,linear,semisup,transfer,diagnostics \\
        --fractions 1,10,100 --seeds 3 --out reports/ab

prints one comparison table and writes ``results.json``, ``results.md`` and PNG plots to
``--out``. Every input (checkpoints, data sets, the transfer set's channels, subset lists, an
existing report in ``--out``) is checked before any work; the report is rewritten after each
protocol, so a late failure keeps what was finished. The protocols themselves are
:data:`evaluation.protocols.PROTOCOLS`, the layer the paper's executor uses too.

On several GPUs, ``torchrun --nproc_per_node=8 -m evaluation ...`` shares out the feature
extraction (each process its shard; see :func:`main`); ``--workers`` and ``--amp`` speed up
each process's share.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from evaluation.features import AMP_MODES
from evaluation.linear import DEFAULT_CS
from evaluation.model_data import DataSpec, ModelData
from evaluation.protocols import (
    PROTOCOLS,
    ProtocolResult,
    convergence_note,
    make_options,
    run_protocol,
)
from evaluation.report import write_report

#: the plots a run may write, and every file of a report (replaced together by --overwrite)
PLOTS = ("spectrum.png", "entropy_profile.png", "embedding_2d.png")
REPORT_FILES = ("results.json", "results.md", *PLOTS)


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


def _numbers(text: str, flag: str, kind: type) -> tuple:
    try:
        values = tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag} must be a comma list of numbers, got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise ValueError(f"{flag} must be a comma list of positive numbers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m evaluation``."""
    from adapters.data import dataset_names

    p = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", action="append", required=True, help="repeat per model")
    p.add_argument("--name", action="append", help="display name per checkpoint (same order)")
    p.add_argument("--dataset", required=True, help=f"one of {', '.join(dataset_names())}")
    p.add_argument("--features", default="backbone", choices=("backbone", "projector"),
                   help="evaluate backbone features, or the projector output the criteria see "
                   "(needs checkpoint.pt files)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--protocols", default="knn,linear,diagnostics,separability",
                   help=f"comma list of {','.join(PROTOCOLS)}")
    p.add_argument("--fractions", default="1,10,100",
                   help="label percentages (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=3,
                   help="number of seeds (0..n-1; default: %(default)s)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing report in --out (its results and plots)")
    p.add_argument("--subset-list", action="append", default=[], metavar="PCT=FILE",
                   help="fixed subset list (SimCLR format: one file name per line) for label "
                        "percentage PCT instead of seeded random subsets (seeds then vary only "
                        "the validation split), e.g. 1=1percent.txt")
    p.add_argument("--max-train", type=int, default=None, help="random subset of the train split")
    p.add_argument("--max-test", type=int, default=None, help="random subset of the test split")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the labelled training images held out for selection")
    p.add_argument("--k", default="20,200", help="kNN neighbour counts")
    p.add_argument("--temperature", type=float, default=0.07, help="kNN vote temperature")
    p.add_argument("--cs", default=",".join(f"{c:g}" for c in DEFAULT_CS),
                   help="inverse regularisation strengths tried by the cached-feature probe")
    p.add_argument("--knn-backend", default="auto", choices=("auto", "faiss", "brute"))
    p.add_argument("--transfer-dataset", default="digits",
                   help="data set of the transfer protocol (default: %(default)s)")
    p.add_argument("--transfer-root", default=None)
    p.add_argument("--probe-epochs", type=int, default=100, help="sgd-linear epochs")
    p.add_argument("--probe-lr", type=float, default=0.3)
    p.add_argument("--finetune-epochs", type=int, default=20)
    p.add_argument("--trunk-lr", type=float, default=0.03)
    p.add_argument("--head-lr", type=float, default=0.08)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None)
    p.add_argument("--workers", type=int, default=0,
                   help="DataLoader worker processes for feature extraction and the trained "
                        "probes (per process under torchrun; 0 loads in the main process)")
    p.add_argument("--threads", type=int, default=None,
                   help="limit the BLAS and OpenMP threads of the protocols (scikit-learn "
                        "probes, numpy, faiss) to N per process; default: the libraries' own "
                        "(all cores), as in scikit-learn")
    p.add_argument("--amp", default="off", choices=AMP_MODES,
                   help="autocast the feature extraction (features are kept in float32) and the "
                        "forward passes of sgd-linear and semisup")
    p.add_argument("--cache-dir", default=None, help="feature cache (default OUT/feature_cache)")
    p.add_argument("--fast-hash", action="store_true",
                   help="identify checkpoints by path+size+mtime instead of a content hash")
    p.add_argument("--map", default="pca", choices=("pca", "tsne"), help="2-D map method")
    p.add_argument("--no-progress", action="store_true")
    return p


def subset_lists(items: Sequence[str]) -> dict[float, str]:
    """``--subset-list PCT=FILE`` values as {fraction: path}; a missing file is an error."""
    lists = {}
    for item in items:
        pct, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--subset-list must look like 1=path/1percent.txt, got {item!r}")
        if not Path(path).is_file():
            raise ValueError(f"--subset-list {item}: file {path!r} does not exist")
        lists[parse_fractions(pct)[0]] = path
    return lists


def shared_options(args: argparse.Namespace) -> dict[str, Any]:
    """The command line settings every protocol picks its options from (by field name)."""
    for flag in ("seeds", "batch_size", "probe_epochs", "finetune_epochs"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    if args.device and ":" in args.device and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(f"--device {args.device} would put every torchrun process on one "
                         "device; give the type only (e.g. cuda: each process then uses the "
                         "GPU of its LOCAL_RANK)")
    for flag in ("max_train", "max_test"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    # checked here, not when a protocol reaches them after the features are extracted
    for flag in ("temperature", "probe_lr", "trunk_lr", "head_lr"):
        if not (math.isfinite(getattr(args, flag)) and getattr(args, flag) > 0):
            raise ValueError(
                f"--{flag.replace('_', '-')} must be a finite number > 0, got {getattr(args, flag)}"
            )
    if not 0 < args.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    _check_out(Path(args.out))
    return {
        "fractions": tuple(parse_fractions(args.fractions)),
        "seeds": tuple(range(args.seeds)),
        "k": _numbers(args.k, "--k", int),
        "cs": _numbers(args.cs, "--cs", float),
        **{name: getattr(args, name) for name in (
            "temperature", "knn_backend", "val_fraction", "probe_epochs", "probe_lr",
            "finetune_epochs", "trunk_lr", "head_lr", "batch_size", "transfer_dataset",
            "transfer_root", "max_train", "max_test")},
    }


def _check_out(out: Path) -> None:
    """``--out`` must be a directory or creatable as one (no file on its path)."""
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {out}: {existing} is a file, not a directory")


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


def prepare(
    args: argparse.Namespace, protocols: Sequence[str], options: dict[str, Any]
) -> list[ModelData]:
    """Every checkpoint with its data, all checked before any feature is extracted."""
    models = []
    spec = DataSpec(args.dataset, args.data_root, args.max_train, args.max_test)
    for path in args.checkpoint:
        try:
            data = ModelData(path, spec, features=args.features, cache_dir=args.cache_dir,
                             subset_lists=subset_lists(args.subset_list),
                             batch_size=args.batch_size, device=args.device,
                             progress=not args.no_progress, content_hash=not args.fast_hash,
                             num_workers=args.workers, amp=args.amp)
            if "transfer" in protocols:
                data.check(make_options("transfer", options).spec)
            if not models:  # every checkpoint has the same data set and labels
                _check_label_fractions(data, protocols, options,
                                       set(subset_lists(args.subset_list)))
        except (FileNotFoundError, ValueError) as err:  # CheckpointError is a ValueError
            raise ValueError(str(err) if path in str(err) else f"{path}: {err}") from None
        models.append(data)
    return models


def _check_label_fractions(data: ModelData, protocols: Sequence[str], options: dict[str, Any],
                           listed: set[float]) -> None:
    """Every labelled subset a protocol draws can be split for validation (2 images of each
    class), checked on the data set's labels when it lists them (``targets``) before any
    feature is extracted, not after the protocols before it have run. The class counts of a
    subset do not depend on its seed; a fraction fixed by a subset list is not drawn."""
    from evaluation.subsets import label_subset, validation_split

    targets = getattr(data.dataset(data.data, True), "targets", None)
    if targets is None:
        return
    labels = np.asarray(targets)[data.train_idx]
    for name in protocols:
        opts = make_options(name, options)
        if not hasattr(opts, "val_fraction"):  # a protocol that makes no validation split
            continue
        for fraction in sorted(set(getattr(opts, "fractions", ())) - listed):
            subset = label_subset(labels, fraction, seed=0, num_classes=data.num_classes)
            try:
                validation_split(labels, subset, fraction=opts.val_fraction, seed=0)
            except ValueError as err:
                raise ValueError(f"{name} at --fractions {fraction * 100:g} on "
                                 f"{data.data.name}: {err}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m evaluation``; returns the exit status.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the process group is started
    here (NCCL when the device is CUDA, else gloo) and destroyed at the end: every process
    extracts its shard of each feature matrix and runs the protocols on the gathered
    features, only the first process writes and prints the report, and every process
    returns the same status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        protocols = parse_protocols(args.protocols)
        names = _names(args)
        options = shared_options(args)
        subset_lists(args.subset_list)
    except ValueError as err:
        parser.error(str(err))
    started = _start_process_group(args.device)
    try:
        status = _run(parser, args, protocols, names, options)
        if started:
            # leave together: a process that tears its connections down while the other is
            # still writing the report can abort it (gloo: "terminate called ...")
            import torch.distributed as dist

            dist.barrier()
        return status
    finally:
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()


def _run(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    protocols: Sequence[str],
    names: Sequence[str],
    options: dict[str, Any],
) -> int:
    out = Path(args.out)
    first = _rank() == 0
    existing = [f for f in REPORT_FILES if (out / f).exists()]
    clash = _agreed(
        f"{out} already holds a report ({', '.join(existing)}); pass --overwrite to replace "
        "it, or choose another --out" if existing and not args.overwrite else None
    )
    if clash:
        if first:
            parser.error(clash)
        raise SystemExit(2)
    args.cache_dir = args.cache_dir or os.fspath(out / "feature_cache")
    try:
        models, error = prepare(args, protocols, options), None
    except ValueError as err:
        models, error = [], str(err)
    if _failed(error):
        return 2
    created = not out.exists()
    if first:
        for name in existing:  # --overwrite: no stale plot survives beside the new results
            (out / name).unlink()
    try:
        with threadpool_limits(limits=args.threads):
            return _evaluate(args, dict(zip(names, models, strict=True)), protocols, options,
                             out)
    finally:
        if created and first:
            _remove_empty_dirs(out)


def _start_process_group(device: str | None) -> bool:
    """Join the process group ``torchrun`` describes in the environment, if there is one of
    more than one process and it is not joined yet; returns whether it was started here."""
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if cuda:  # "cuda" and pinned memory then mean this process's own GPU, not GPU 0
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _agreed(error: str | None) -> str | None:
    """The first process's error (in rank order), or None when none failed: the same answer
    on every process, so all of them take the same branch and exit with the same status."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return error
    errors: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(errors, error)
    return next((f"process {r}: {e}" if r else e for r, e in enumerate(errors) if e), None)


def _failed(error: str | None) -> bool:
    """Agree on ``error`` across processes; the first process prints it. True if any failed."""
    error = _agreed(error)
    if error and _rank() == 0:
        print(f"python -m evaluation: error: {error}", file=sys.stderr)
    return error is not None


def _evaluate(
    args: argparse.Namespace,
    models: dict[str, ModelData],
    protocols: Sequence[str],
    options: dict[str, Any],
    out: Path,
) -> int:
    """Run every protocol on every model, saving the report as each finishes; the status.

    Every process runs the protocols (their feature extraction is shared out among them);
    the first alone writes. A ValueError (bad input) or FloatingPointError (a classifier's
    training diverged) on any process stops all of them with status 1.
    """
    first = _rank() == 0
    results: dict[str, dict[str, Any]] = {name: {} for name in models}
    details: dict[str, dict[str, Any]] = {name: {} for name in models}
    done: dict[str, ProtocolResult] = {}
    percent: set[str] = set()
    todo = [(name, p) for name in models for p in protocols]
    metas = {}

    def save(pending: Sequence[str] = ()) -> str:
        return write_report(results, out, config=vars(args), models=metas, percent=percent,
                            details=details, pending=pending)

    for i, (name, proto) in enumerate(todo):
        data = models[name]
        error = None
        try:
            res = run_protocol(proto, data, make_options(proto, options))
            results[name].update(res.metrics)
            details[name][proto] = res.details
            percent |= res.accuracies
            done[f"{name} {proto}"] = res
            metas[name] = {"path": data.checkpoint, "fingerprint": data.fingerprint,
                           **data.meta}
            if first:
                save([f"{n} {p}" for n, p in todo[i + 1 :]])
        except (ValueError, FloatingPointError) as err:
            error = str(err)
        if _failed(error):
            return 1
    error = None
    if first:
        try:
            plots = _plots(models, details, protocols, out, args.map)
            print(save())
            note = convergence_note(done)
            if note:
                print(note)
            written = f", plots {', '.join(plots)}" if plots else ""
            print(f"\nwrote results.json, results.md{written} to {out}")
        except ValueError as err:
            error = str(err)
    return 1 if _failed(error) else 0


def _plots(
    models: dict[str, ModelData],
    details: dict[str, dict[str, Any]],
    protocols: Sequence[str],
    out: Path,
    map_method: str,
) -> list[str]:
    """The comparison plots the protocols allow; returns the file names written."""
    from evaluation.diagnostics import plot_entropy_profiles, plot_spectra
    from evaluation.separability import plot_embeddings_2d

    written = []
    if "diagnostics" in protocols:
        plot_spectra({n: d.test[0] for n, d in models.items()}, out / "spectrum.png")
        profiles = {n: details[n]["diagnostics"]["entropy_profile"] for n in models}
        plot_entropy_profiles(profiles, out / "entropy_profile.png")
        written += ["spectrum.png", "entropy_profile.png"]
    if "separability" in protocols:
        plot_embeddings_2d({n: d.test for n, d in models.items()}, out / "embedding_2d.png",
                           method=map_method)
        written.append("embedding_2d.png")
    return written


def _remove_empty_dirs(folder: Path) -> None:
    """Remove ``folder`` and its subfolders if they hold no file (a run that wrote nothing)."""
    if not folder.is_dir():
        return
    for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if sub.is_dir() and not any(sub.iterdir()):
            sub.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()


if __name__ == "__main__":
    sys.exit(main())
