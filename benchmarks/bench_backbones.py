"""CPU cost of one training step's backbone work and of its data augmentation, 28x28 data.

Backbone step: forward + backward + SGD update on a (256, 1, 28, 28) batch, for ``small_cnn``,
its earlier pool-first layout (same convolutions, 28x28 first block then 2x2 max-pool; the
peer that motivated the stride-2 stem) and ``resnet18_small``. Augmentation: turning 256
Fashion-MNIST PIL images into SSL views (VICReg's two views, SwAV's 2 + 6 crops) against the
plain evaluation transform. Implementations alternate in each round so that load from other
processes hits all alike; the median over rounds is reported, with ratios to ``small_cnn``
(backbones) and to the evaluation transform (augmentations).

    .venv/bin/python benchmarks/bench_backbones.py          # writes results/adapters-core.md
    .venv/bin/python benchmarks/bench_backbones.py --rounds 3 --no-write
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from adapters.backbones import _conv_bn_relu, build_backbone
from adapters.data import dataset_info, eval_transform, load_dataset, ssl_views

RESULTS = Path(__file__).parent / "results" / "adapters-core.md"
HEADER = (
    "# adapters-core: backbone step and augmentation cost on CPU (28x28, batch 256)\n\n"
    "Timings on a 2-core machine shared with other jobs vary a lot between runs; compare the\n"
    "ratios within one run.\n"
)
BATCH = 256


def pool_first_cnn() -> nn.Module:
    """The layout SmallCNN replaced: a 28x28 first block, then a 2x2 max-pool."""
    return nn.Sequential(
        _conv_bn_relu(1, 32), nn.MaxPool2d(2), _conv_bn_relu(32, 64), nn.MaxPool2d(2),
        _conv_bn_relu(64, 128), _conv_bn_relu(128, 256, stride=2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )


def step_fn(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        loss = model(x).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def views_fn(transform: Callable, images: list) -> Callable[[], None]:
    def run() -> None:
        for image in images:
            transform(image)

    return run


def measure(fns: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(BATCH, 1, 28, 28)
    backbones = {
        "small_cnn": step_fn(build_backbone("small_cnn", in_channels=1), x),
        "pool-first CNN (peer)": step_fn(pool_first_cnn(), x),
        "resnet18_small (peer)": step_fn(build_backbone("resnet18_small", in_channels=1), x),
    }
    bb = measure(backbones, args.rounds)

    info = dataset_info("fashion-mnist")
    dataset = load_dataset("fashion-mnist", train=True)
    images = [dataset[i][0] for i in range(BATCH)]
    augmentations = {
        "eval_transform (peer)": views_fn(eval_transform(info), images),
        "vicreg 2 views": views_fn(ssl_views("vicreg", info), images),
        "simsiam 2 views": views_fn(ssl_views("simsiam", info), images),
        "swav 2+6 crops": views_fn(ssl_views("swav", info), images),
    }
    aug = measure(augmentations, args.rounds)

    command = f"--rounds {args.rounds}" + (f" --threads {args.threads}" if args.threads else "")
    lines = [
        f"## Command: `.venv/bin/python benchmarks/bench_backbones.py {command}`",
        "",
        f"Machine: {os.cpu_count()} CPU cores (shared with other jobs), "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"Python {sys.version.split()[0]}, {platform.machine()}. Median of {args.rounds} "
        "interleaved rounds.",
        "",
        "| backbone step (fwd + bwd + SGD, 256 x 1 x 28 x 28) | ms | ratio to small_cnn |",
        "|---|---|---|",
    ]
    for name, t in bb.items():
        lines.append(f"| {name} | {t * 1e3:.1f} | {t / bb['small_cnn']:.2f} |")
    lines += [
        "",
        "| augmentation of 256 PIL images (one process) | ms | ratio to eval_transform |",
        "|---|---|---|",
    ]
    for name, t in aug.items():
        lines.append(f"| {name} | {t * 1e3:.1f} | {t / aug['eval_transform (peer)']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        # one section per command, so runs with different thread counts sit side by side
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        previous = RESULTS.read_text() if RESULTS.exists() else HEADER
        sections = [part for part in previous.split("\n## ")[1:]
                    if not part.startswith(f"Command: `.venv/bin/python benchmarks/"
                                           f"bench_backbones.py {command}`")]
        body = "".join("\n## " + part.rstrip("\n") + "\n" for part in sections)
        RESULTS.write_text(HEADER + body + "\n" + text)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
