"""Full-scale recipes: the paper's ImageNet runs with our adapters and evaluation, on GPUs.

Each :class:`Recipe` is one official checkpoint of docs/checkpoints.md continued for 10
epochs at global batch 512 (2 GPUs x 256, the reference setting) with ``--criterion none``
("continued") or with E2MC at the reference coefficients, then evaluated. :func:`commands`
gives the exact shell commands (``torchrun`` + ``python -m evaluation``); ``README.md`` lists
them. :func:`dry_run` builds the recipe's model (ResNet-50 and the method's full-size heads),
optimizer, criterion and SSL data pipeline on torchvision FakeData and runs one training step
on the CPU: no download, no official weights (those are not reachable from these machines,
so the model starts from random weights), nothing written.

BatchNorm is synchronised across the GPUs (``--sync-bn``), as in the official VICReg, SwAV
and SimSiam trainings: each GPU normalises with the statistics of the global batch of 512,
not of its own 256.

Usage::

    python -m paper.imagenet.recipes                    # print every recipe's commands
    python -m paper.imagenet.recipes --dry-run swav800  # one CPU step of a recipe on FakeData
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from entropylib.criteria import REFERENCE_SETTINGS

#: where the commands expect things; change them on your cluster
IMAGENET = "/data/imagenet"  # ImageFolder layout with train/ and val/
CHECKPOINTS = "/data/checkpoints"
#: SimCLR's fixed ImageNet label subsets (one image file name per line)
SUBSET_LISTS = {
    1: "/data/imagenet/subsets/1percent.txt",
    10: "/data/imagenet/subsets/10percent.txt",
}
RUNS = "runs/imagenet"


@dataclass(frozen=True)
class Recipe:
    """One of the paper's continued-training runs (docs/method.md, docs/checkpoints.md)."""

    name: str
    method: str
    checkpoint: str
    base_epochs: int
    extra_epochs: int = 10
    gpus: int = 2
    batch_per_gpu: int = 256
    head_options: tuple[tuple[str, Any], ...] = ()
    view_options: tuple[tuple[str, Any], ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def e2mc(self) -> dict[str, Any]:
        """E2MC's reference transform and coefficients for the recipe's method."""
        return dict(REFERENCE_SETTINGS[self.method])


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("vicreg", "vicreg", "resnet50_fullckpt.pth", 1000,
               notes=("full checkpoint: backbone + 2048-8192-8192-8192 expander",)),
        Recipe("swav400", "swav", "swav_400ep_pretrain.pth.tar", 400,
               head_options=(("queue_length", 3840),),
               notes=("2x224 + 6x96 multi-crop; E2MC on the two global crops",)),
        Recipe("swav800", "swav", "swav_800ep_pretrain.pth.tar", 800,
               head_options=(("queue_length", 3840),),
               notes=("2x224 + 6x96 multi-crop; E2MC on the two global crops",)),
        Recipe("simsiam", "simsiam", "checkpoint_0099.pth.tar", 100,
               notes=("projector output (not detached); fixed predictor lr",)),
    )
}


def train_command(recipe: Recipe, criterion: str) -> list[str]:
    """``torchrun`` command continuing ``recipe``'s checkpoint with ``criterion`` (e2mc|none)."""
    if criterion not in ("e2mc", "none"):
        raise ValueError(f"criterion must be 'e2mc' or 'none', got {criterion!r}")
    cmd = [
        "torchrun", f"--nproc_per_node={recipe.gpus}", "-m", "adapters.continue_train",
        "--method", recipe.method,
        "--checkpoint", f"{CHECKPOINTS}/{recipe.checkpoint}",
        "--dataset", "imagefolder", "--data-root", IMAGENET,
        "--epochs", str(recipe.extra_epochs), "--batch-size", str(recipe.batch_per_gpu),
        "--criterion", criterion,
    ]
    if criterion == "e2mc":
        e2mc = recipe.e2mc
        cmd += ["--transform", e2mc["transform"], "--ent-coeff", f"{e2mc['ent_coeff']:g}",
                "--cov-coeff", f"{e2mc['cov_coeff']:g}"]
    for key, value in recipe.head_options:
        cmd += ["--head-option", f"{key}={value}"]
    for key, value in recipe.view_options:
        cmd += ["--view-option", f"{key}={value}"]
    cmd += ["--sync-bn", "--amp", "bf16", "--workers", "10", "--save-every", "1000",
            "--out", f"{RUNS}/{recipe.name}_{criterion}"]
    return cmd


def import_command(recipe: Recipe) -> list[str]:
    """Zero-epoch run that imports the official release into a project checkpoint.

    ``adapters.load_encoder`` (and so ``python -m evaluation``) reads project checkpoints; a
    run with ``--epochs 0`` loads the release with its exact-key check and writes
    ``checkpoint.pt`` and ``backbone.pt`` without a training step: the "base" row.
    """
    return [
        "python", "-m", "adapters.continue_train",
        "--method", recipe.method,
        "--checkpoint", f"{CHECKPOINTS}/{recipe.checkpoint}",
        "--dataset", "imagefolder", "--data-root", IMAGENET,
        "--epochs", "0", "--criterion", "none",
        "--out", f"{RUNS}/{recipe.name}_base",
    ]


def eval_command(recipe: Recipe) -> list[str]:
    """``python -m evaluation`` comparing base, continued and +E2MC of ``recipe``."""
    runs = [f"{RUNS}/{recipe.name}_{c}/checkpoint.pt" for c in ("base", "none", "e2mc")]
    return [
        "python", "-m", "evaluation",
        "--checkpoint", runs[0], "--name", "base",
        "--checkpoint", runs[1], "--name", "continued",
        "--checkpoint", runs[2], "--name", "+E2MC",
        "--dataset", "imagefolder", "--data-root", IMAGENET,
        "--protocols", "sgd-linear,semisup,knn,diagnostics",
        "--fractions", "1,10,100", "--seeds", "1",
        *(arg for pct, path in SUBSET_LISTS.items() for arg in ("--subset-list", f"{pct}={path}")),
        "--out", f"{RUNS}/{recipe.name}_eval",
    ]


def commands(recipe: Recipe) -> list[str]:
    """Shell lines of ``recipe``: import the release, continued, +E2MC, evaluation."""
    return (
        [shlex.join(import_command(recipe))]
        + [shlex.join(train_command(recipe, c)) for c in ("none", "e2mc")]
        + [shlex.join(eval_command(recipe))]
    )


def dry_run(name: str, *, batch_size: int = 8) -> dict[str, Any]:
    """One CPU training step of recipe ``name`` on FakeData with the recipe's full-size model.

    Builds ResNet-50 and the method's heads at their ImageNet sizes, the method's optimizer
    (LARS / LARC / SGD with its reference settings and the recipe's learning rate), E2MC with
    the recipe's transform and coefficients, and the method's augmentations (SwAV: 2 global +
    6 local crops) on torchvision FakeData (3x32x32, so the step is cheap), all through the
    adapters' public building blocks, then takes one optimizer step. Nothing is written to
    disk. Returns the loss parts, the parameter count and whether the weights moved.
    """
    import torch
    from torch.utils.data import DataLoader

    from adapters import data
    from adapters.backbones import build_backbone
    from adapters.methods import METHODS
    from adapters.train import SSLModel, TrainConfig, build_criterion, build_optimizer, validate

    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {sorted(RECIPES)}")
    recipe = RECIPES[name]
    start = time.perf_counter()
    config = TrainConfig(
        out="unused-by-dry-run", mode="pretrain", method=recipe.method, backbone="resnet50",
        dataset="fake", batch_size=batch_size, criterion="e2mc", **recipe.e2mc,
        head_options=dict(recipe.head_options), view_options=dict(recipe.view_options),
        device="cpu", progress=False,
    )
    validate(config)
    method = METHODS[recipe.method]
    info = data.dataset_info("fake")
    views = data.ssl_views(
        recipe.method, info, **{**method.defaults.view_options, **config.view_options}
    )
    dataset = data.load_dataset("fake", train=True, transform=views)
    torch.manual_seed(0)
    batch, _ = next(iter(DataLoader(dataset, batch_size=batch_size, shuffle=True)))
    backbone = build_backbone("resnet50", in_channels=info.channels)
    model = SSLModel(backbone, method(backbone.feature_dim, **config.head_options))
    # the --sync-bn layers; without a process group they normalise like plain BatchNorm
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    criterion = build_criterion(config)
    lr = method.defaults.base_lr * recipe.gpus * recipe.batch_per_gpu / 256
    optimizer = build_optimizer(config, model, lr)
    probe = backbone.conv1.weight.detach().clone()
    model.train()
    model.heads.before_step()
    base_loss, base_parts, embeddings = model(batch)
    crit_loss, crit_parts = criterion(*[e.float() for e in embeddings])
    loss = base_loss + crit_loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {
        "recipe": name,
        "views": [tuple(v.shape) for v in batch],
        "parameters": sum(p.numel() for p in model.parameters()),
        "optimizer": type(optimizer).__name__,
        "lr": lr,
        "loss": float(loss.detach()),
        "parts": {k: float(v) for k, v in {**base_parts, **crit_parts}.items() if v.numel() == 1},
        "weights_moved": not torch.equal(probe, backbone.conv1.weight.detach()),
        "seconds": time.perf_counter() - start,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print the recipes' commands, or dry-run some of them."""
    parser = argparse.ArgumentParser(prog="python -m paper.imagenet.recipes",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", nargs="*", metavar="RECIPE", default=None,
                        choices=list(RECIPES),
                        help=f"run one CPU step of these recipes (default all: {list(RECIPES)})")
    args = parser.parse_args(argv)
    if args.dry_run is None:
        for recipe in RECIPES.values():
            print(f"# {recipe.name}: {recipe.method} {recipe.base_epochs} ep + "
                  f"{recipe.extra_epochs}; " + "; ".join(recipe.notes))
            print("\n".join(commands(recipe)))
            print()
        return 0
    for name in args.dry_run or list(RECIPES):
        res = dry_run(name)
        print(f"{name}: {res['parameters'] / 1e6:.1f} M parameters, {res['optimizer']} lr "
              f"{res['lr']:g}, views {res['views']}, loss {res['loss']:.4g}, weights moved: "
              f"{res['weights_moved']}, {res['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
