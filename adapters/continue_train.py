"""``python -m adapters.continue_train``: continue training a pretrained SSL model (+ E2MC).

Example (one process; the same command runs under ``torchrun --nproc_per_node=8``)::

    python -m adapters.continue_train --method vicreg --checkpoint resnet50_fullckpt.pth \\
        --dataset imagefolder --data-root /data/imagenet/train --epochs 10 \\
        --criterion e2mc --ent-coeff 10 --cov-coeff 1 --out runs/vicreg_e2mc

``--criterion none`` is the "continued" control. Method defaults (heads, optimizer, lr,
E2MC transform and coefficients) are declared in :mod:`adapters.methods`.

Without arguments it runs the default: continue-train the shipped small base model
(``adapters/default``, a SmallCNN + VICReg pretrained on Fashion-MNIST by
``python -m adapters.pretrain``) with E2MC on Fashion-MNIST (scikit-learn digits if
Fashion-MNIST is not installed) for 120 steps into ``runs/default`` and print the training
summary (see :func:`default_config`). Evaluating the result is not this command's job.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters import data
from adapters.backbones import BACKBONES
from adapters.methods import METHODS
from adapters.optim import SCHEDULES
from adapters.train import (
    AMP_MODES,
    CRITERION_NAMES,
    NonFiniteLoss,
    TrainConfig,
    TrainingInterrupted,
    TrainResult,
    resumed_config,
    train,
)

#: the shipped base model (made by the command in adapters/default/README.md)
DEFAULT_CHECKPOINT = Path(__file__).parent / "default" / "small_cnn_vicreg_fmnist.pt"
#: steps of the default run: about two minutes on two shared CPU cores
DEFAULT_STEPS = 120
DEFAULT_BATCH = 256
#: run directory of the default run
DEFAULT_OUT = "runs/default"


# Exit codes (README, "Exit codes"); 1 stays Python's own code for an unexpected crash, and
# a run stopped by SIGTERM/SIGINT exits with 128 + the signal's number after its checkpoint.
#: bad usage or input (argparse's code too): nothing was trained or written
EXIT_BAD_INPUT = 2
#: the loss or the state became non-finite; the last good checkpoint is kept
EXIT_DIVERGED = 3
#: the file system failed (unwritable --out, full disk, ...); the last checkpoint is intact
EXIT_IO_FAILURE = 74


def _key_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser(mode: str) -> argparse.ArgumentParser:
    """The command line of ``continue_train`` (mode "continue") and ``pretrain``."""
    continuing = mode == "continue"
    p = argparse.ArgumentParser(
        prog=f"python -m adapters.{'continue_train' if continuing else 'pretrain'}",
        description=(
            "Continue training a pretrained SSL model with an added criterion (E2MC). Without "
            "any arguments: continue the shipped base model (adapters/default, SmallCNN + "
            f"VICReg) with E2MC for {DEFAULT_STEPS} steps into {DEFAULT_OUT} and print the "
            "training summary."
            if continuing else "Train an SSL model from scratch (a base model for small data)."
        ),
    )
    p.add_argument("--out", help="run directory (checkpoints, metrics, config); required"
                   + (" except without any arguments (the default run)" if continuing else ""))
    p.add_argument("--method", choices=sorted(METHODS), default="vicreg")
    if continuing:
        p.add_argument("--checkpoint", help="official release (docs/checkpoints.md) or a run's .pt")
        p.add_argument("--layout", help="official layout, if detection should be overridden")
    p.add_argument("--backbone", choices=sorted(BACKBONES),
                   help="architecture (continue: taken from the checkpoint; official: resnet50)")
    p.add_argument("--dataset", default="fashion-mnist",
                   help=f"one of {', '.join(data.dataset_names())} (default: %(default)s)")
    p.add_argument("--data-root", help="its folder (default for fashion-mnist: "
                   f"${data.FASHION_MNIST_ENV}, else Debian's); unused by digits and fake")
    p.add_argument("--epochs", type=int, default=1, help="ADDITIONAL epochs to train")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in total")
    p.add_argument("--batch-size", type=int, default=256, help="per process")
    p.add_argument("--criterion", help=f"one of {list(CRITERION_NAMES)} (default: "
                   + ("e2mc)" if continuing else "none)"))
    p.add_argument("--transform", choices=("sigmoid", "gaussian_cdf"), help="E2MC map")
    p.add_argument("--ent-coeff", type=float, help="E2MC entropy weight")
    p.add_argument("--cov-coeff", type=float, help="E2MC (or VCReg) covariance weight")
    p.add_argument("--m", type=int, help="E2MC spacing window (default round(sqrt(N)))")
    p.add_argument("--eps", type=float, help="E2MC constant inside the log")
    p.add_argument("--criterion-option", type=_key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="other criterion options, e.g. gamma=1")
    p.add_argument("--head-option", type=_key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="method head options, e.g. expander_dim=512")
    p.add_argument("--view-option", type=_key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="augmentation options, e.g. n_local_crops=2")
    p.add_argument("--optimizer", choices=("lars", "sgd"))
    p.add_argument("--lr", type=float, help="absolute lr (default base_lr * batch / 256)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--schedule", choices=SCHEDULES, default="constant")
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--final-lr", type=float, default=0.0)
    p.add_argument("--amp", choices=AMP_MODES, default="off")
    p.add_argument("--device", help="default: cuda if available, else cpu; under torchrun give "
                   "the type only: each process uses the GPU of its LOCAL_RANK")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=0, help="also checkpoint every N steps")
    p.add_argument("--log-every", type=int, default=20,
                   help="write the metrics of the last N steps every N steps: the only place "
                   "(with checkpoints) where the host waits for the GPU; under torchrun also "
                   "how soon a signal stops the run")
    p.add_argument("--sync-bn", action="store_true")
    p.add_argument("--tensorboard", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--resume", nargs="?", const="", metavar="CHECKPOINT",
                   help="continue the run in --out (or from CHECKPOINT) exactly, to its own "
                   "stopping point unless --epochs or --max-steps is given; the options that "
                   "define the run cannot change")
    return p


def _given_fields(mode: str, argv: Sequence[str]) -> set[str]:
    """The TrainConfig fields set by options actually written on the command line."""
    bare = build_parser(mode)
    for action in bare._actions:
        action.default = argparse.SUPPRESS
    given = set(vars(bare.parse_args(argv))) - {"resume"}
    renamed = {"criterion_option": "criterion_options", "head_option": "head_options",
               "view_option": "view_options", "no_progress": "progress"}
    return {renamed.get(name, name) for name in given}


def config_from_args(args: argparse.Namespace, mode: str) -> TrainConfig:
    """Turn parsed arguments into a :class:`TrainConfig`."""
    return TrainConfig(
        out=args.out, mode=mode, method=args.method,
        checkpoint=getattr(args, "checkpoint", None), layout=getattr(args, "layout", None),
        backbone=args.backbone, dataset=args.dataset, data_root=args.data_root,
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size,
        criterion=args.criterion, transform=args.transform, ent_coeff=args.ent_coeff,
        cov_coeff=args.cov_coeff, m=args.m, eps=args.eps,
        criterion_options=dict(args.criterion_option), head_options=dict(args.head_option),
        view_options=dict(args.view_option), optimizer=args.optimizer, lr=args.lr,
        weight_decay=args.weight_decay, momentum=args.momentum, schedule=args.schedule,
        warmup_epochs=args.warmup_epochs, final_lr=args.final_lr, amp=args.amp,
        device=args.device, workers=args.workers, seed=args.seed, save_every=args.save_every,
        log_every=args.log_every, sync_bn=args.sync_bn, tensorboard=args.tensorboard,
        progress=not args.no_progress, overwrite=args.overwrite,
    )


def main(argv: Sequence[str] | None = None, *, mode: str = "continue") -> int:
    """Command-line entry point; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        config, resume = _command(argv, mode)
        tic = time.perf_counter()
        result = train(config, resume=resume)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except NonFiniteLoss as err:
        print(f"error: training diverged: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    except TrainingInterrupted as err:
        print(str(err), file=sys.stderr)
        return 128 + err.signum
    except OSError as err:
        print(f"error: I/O failure: {err}", file=sys.stderr)
        return EXIT_IO_FAILURE
    _summary(result, config, resumed=resume is not None, seconds=time.perf_counter() - tic)
    _leave_process_group()
    return 0


def _leave_process_group() -> None:
    """Under torchrun: wait for every process, then close the group. A process that exits
    while another still writes its last checkpoint tears down the connections under it
    (gloo aborts the writer with "terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _command(argv: Sequence[str], mode: str) -> tuple[TrainConfig, str | None]:
    """The run a command line asks for, and the checkpoint it resumes (or None)."""
    if mode == "continue" and not argv:
        config = default_config(DEFAULT_OUT, steps=DEFAULT_STEPS)
        print(f"default run: continue {DEFAULT_CHECKPOINT.name} (VICReg, SmallCNN) with E2MC on "
              f"{config.dataset} for {config.max_steps} steps of {config.batch_size} images "
              f"({config.epochs} epoch(s)); run directory {config.out}")
        return config, None
    parser = build_parser(mode)
    args = parser.parse_args(argv)
    if args.out is None:
        parser.error("--out is required")
    config = config_from_args(args, mode)
    if args.resume is None:
        return config, None
    resume = args.resume or str(Path(args.out) / "checkpoint.pt")
    given = _given_fields(mode, argv)
    return resumed_config(resume, **{k: getattr(config, k) for k in given}), resume


def _summary(result: TrainResult, config: TrainConfig, *, resumed: bool, seconds: float) -> None:
    if resumed and result.steps_run == 0:
        print(f"the run in {config.out} is already finished at step {result.step} (epochs "
              f"{config.epochs}, max_steps {config.max_steps}); nothing was trained. Give a "
              "larger --epochs or --max-steps with --resume to train on.")
        return
    print(f"done: trained {result.steps_run} steps in {seconds / 60:.1f} min, now at step "
          f"{result.step} (epoch {result.epoch}); checkpoint {result.checkpoint}, backbone "
          f"{result.backbone}")
    shown = ("loss", "base_loss", "criterion_loss", f"{config.criterion}.entropy",
             f"{config.criterion}.cov")
    parts = [f"{k} {result.metrics[k]:.4g}" for k in shown if k in result.metrics]
    if parts:
        print("last step: " + ", ".join(parts))


# ----------------------------------------------------------------------------------------
# the default run


def default_config(out: str = DEFAULT_OUT, *, steps: int = DEFAULT_STEPS) -> TrainConfig:
    """The run of ``python -m adapters.continue_train`` without arguments.

    The shipped base model (:data:`DEFAULT_CHECKPOINT`) continued with E2MC on Fashion-MNIST
    (scikit-learn's digits when Fashion-MNIST is not installed) for ``steps`` steps of
    :data:`DEFAULT_BATCH` images, as many epochs as that takes, replacing any earlier default
    run in ``out``.
    """
    fashion_root = data.fashion_mnist_root()
    if data.fashion_mnist_available(fashion_root):
        dataset, root = "fashion-mnist", str(fashion_root)
    else:
        dataset, root = "digits", None
    steps_per_epoch = len(data.load_dataset(dataset, root, train=True)) // DEFAULT_BATCH
    return TrainConfig(
        out=out, mode="continue", method="vicreg", checkpoint=str(DEFAULT_CHECKPOINT),
        dataset=dataset, data_root=root, epochs=math.ceil(steps / steps_per_epoch),
        max_steps=steps, batch_size=DEFAULT_BATCH, criterion="e2mc", overwrite=True,
    )


if __name__ == "__main__":
    sys.exit(main())
