"""``python -m evaluation.demo`` (what ``make demo`` runs): what E2MC does to a model, in minutes.

It continue-trains the shipped base model (``adapters/default``: a small CNN with a VICReg
expander, pretrained on Fashion-MNIST) with E2MC added to the VICReg loss, and measures the
model before and after on the same fixed images:

* weighted-kNN top-1 (k = 20, T = 0.07, cosine) of the backbone features, a fixed bank of
  training images against fixed test queries, with its binomial standard error;
* on the tensor E2MC acts on, sigmoid of the VICReg expander output for the query images:
  the mean marginal entropy (m-spacing, nats), the off-diagonal covariance energy and RankMe.

The sorted marginal-entropy profiles before and after are saved as a PNG in the run folder.
Fashion-MNIST is used when installed (``adapters.data.fashion_mnist_root``, which honours
``ENTROPYLIB_FASHION_MNIST``); otherwise scikit-learn's digits, which ship with scikit-learn.
Every number printed is the one actually used: steps trained, bank and query sizes.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: optimizer steps of the demo run: about two minutes in all on two idle CPU cores
STEPS = 120
BATCH = 256
#: requested kNN bank (training images) and queries (test images); fewer when the set is smaller
BANK = 10_000
QUERIES = 2_000
K, TEMPERATURE = 20, 0.07
#: the map E2MC applies to the VICReg expander output before its entropy and covariance terms
TRANSFORM = "sigmoid"
PROFILE_PNG = "entropy_profile.png"


@dataclass(frozen=True)
class FixedImages:
    """The images every measurement uses: a kNN bank and the test queries."""

    dataset: str
    num_classes: int
    bank: Any
    queries: Any


@dataclass(frozen=True)
class Snapshot:
    """One model's measurements on :class:`FixedImages`."""

    knn_top1: float
    entropy: np.ndarray  # m-spacing entropy of each coordinate of sigmoid(expander)
    cov_energy: float
    rankme: float


def choose_dataset() -> str:
    """``fashion-mnist`` if installed, else ``digits``; says which and why."""
    from adapters.data import FASHION_MNIST_ENV, fashion_mnist_available, fashion_mnist_root

    root = fashion_mnist_root()
    if fashion_mnist_available(root):
        print(f"data: Fashion-MNIST from {root}")
        return "fashion-mnist"
    print(f"data: Fashion-MNIST is not installed in {root} (set {FASHION_MNIST_ENV} to its "
          "folder to use it); using scikit-learn's digits instead")
    return "digits"


def fixed_images(dataset: str, *, bank: int, queries: int) -> FixedImages:
    """Evenly spaced training images (at most ``bank``) and test images (at most ``queries``)."""
    from torch.utils.data import Subset

    from adapters import data

    info = data.dataset_info(dataset)
    transform = data.eval_transform(info)
    parts = []
    for train, wanted in ((True, bank), (False, queries)):
        full = data.load_dataset(dataset, train=train, transform=transform)
        index = np.linspace(0, len(full) - 1, min(wanted, len(full))).round().astype(int)
        parts.append(Subset(full, index.tolist()))
    return FixedImages(dataset, info.num_classes, *parts)


def measure(checkpoint: Path, images: FixedImages) -> Snapshot:
    """kNN top-1 of the backbone and the E2MC quantities of ``checkpoint`` on ``images``."""
    import torch

    from adapters import load_encoder
    from evaluation import extract_features, knn_accuracy, offdiag_covariance_energy, rankme
    from evaluation.diagnostics import marginal_entropy_profile

    model, _ = load_encoder(checkpoint, features="projector")  # Sequential(backbone, expander)
    backbone, expander = model[0], model[1]
    bank_x, bank_y = extract_features(backbone, images.bank, progress=False)
    query_x, query_y = extract_features(backbone, images.queries, progress=False)
    knn = knn_accuracy(bank_x, bank_y, query_x, query_y, k=K, temperature=TEMPERATURE,
                       num_classes=images.num_classes)
    with torch.inference_mode():
        embedding = expander(torch.from_numpy(query_x)).double()
    transformed = torch.sigmoid(embedding).numpy()
    return Snapshot(
        knn_top1=next(iter(knn.values())).top1,  # the one k (clamped to a smaller bank)
        entropy=marginal_entropy_profile(transformed, method="m_spacing"),
        cov_energy=offdiag_covariance_energy(transformed),
        rankme=rankme(transformed),
    )


def continue_training(
    out: str, dataset: str, *, n_train: int, steps: int, progress: bool
) -> Any:
    """E2MC continued training of the shipped base model for exactly ``steps`` steps.

    ``n_train`` is the size of the training set: a small set (digits) needs several passes
    (epochs) to reach the requested steps.
    """
    from adapters.continue_train import DEFAULT_CHECKPOINT
    from adapters.train import TrainConfig, train

    config = TrainConfig(
        out=out, mode="continue", method="vicreg", checkpoint=str(DEFAULT_CHECKPOINT),
        dataset=dataset, epochs=math.ceil(steps / (n_train // BATCH)), max_steps=steps,
        batch_size=BATCH, criterion="e2mc", transform=TRANSFORM, overwrite=True,
        progress=progress,
    )
    return train(config)


def report(before: Snapshot, after: Snapshot, queries: int) -> None:
    """The before/after table; the kNN line carries its binomial standard errors."""
    def se(p: float) -> float:
        return 100 * math.sqrt(p * (1 - p) / queries)

    print(f"{'':32s}{'before':>12s}{'after':>12s}")
    print(f"{'kNN top-1 (%)':32s}{100 * before.knn_top1:12.2f}{100 * after.knn_top1:12.2f}"
          f"   (standard error {se(before.knn_top1):.2f} / {se(after.knn_top1):.2f})")
    rows = (
        ("mean marginal entropy (nats)", float(np.mean(before.entropy)),
         float(np.mean(after.entropy))),
        ("off-diagonal covariance energy", before.cov_energy, after.cov_energy),
        ("RankMe", before.rankme, after.rankme),
    )
    for name, b, a in rows:
        print(f"{name:32s}{b:12.4g}{a:12.4g}")


def run(
    out: str = "runs/demo",
    *,
    steps: int = STEPS,
    bank: int = BANK,
    queries: int = QUERIES,
    progress: bool = True,
) -> int:
    """The whole demo; prints what it does and returns the exit code."""
    from adapters.continue_train import DEFAULT_CHECKPOINT
    from adapters.data import load_dataset
    from evaluation.diagnostics import plot_entropy_profiles

    tic = time.perf_counter()
    dataset = choose_dataset()
    images = fixed_images(dataset, bank=bank, queries=queries)
    n_bank, n_queries = len(images.bank), len(images.queries)
    print(f"base model: {DEFAULT_CHECKPOINT.name} (VICReg, small_cnn)")
    print(f"measured on: a kNN bank of {n_bank:,} training images and {n_queries:,} test "
          f"queries (fixed, evenly spaced); E2MC quantities on {TRANSFORM}(expander output) "
          f"of the {n_queries:,} queries")
    before = measure(DEFAULT_CHECKPOINT, images)
    n_train = len(load_dataset(dataset, train=True))
    result = continue_training(out, dataset, n_train=n_train, steps=steps, progress=progress)
    print(f"trained {result.step} steps of {BATCH} images with E2MC added to the VICReg loss "
          f"({result.step * BATCH / n_train:.2f} passes over the {n_train:,} training images); "
          f"run folder {out}")
    after = measure(result.checkpoint, images)
    report(before, after, n_queries)
    png = Path(out) / PROFILE_PNG
    plot_entropy_profiles(
        {f"before ({DEFAULT_CHECKPOINT.name})": before.entropy,
         f"after {result.step} E2MC steps": after.entropy},
        png,
    )
    print(f"sorted marginal-entropy profiles before and after: {png}")
    print(f"total time {(time.perf_counter() - tic) / 60:.1f} min")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m evaluation.demo", description=__doc__.split(
        "\n")[0].split(": ", 1)[-1])
    p.add_argument("--out", default="runs/demo", help="run folder (replaced if it exists)")
    p.add_argument("--steps", type=int, default=STEPS, help="E2MC training steps")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps must be at least 1, got {args.steps}")
    return run(args.out, steps=args.steps, progress=not args.no_progress)


if __name__ == "__main__":
    sys.exit(main())
