"""Training-step time with ``--criterion none`` vs ``--criterion e2mc``, same model and batch, CPU.

One step = the loop's own :func:`adapters.train.compute_loss` (method forward + base loss
[+ E2MC]) + backward + optimizer step, on fixed random views (data loading excluded: it is
the same for both). Both variants run interleaved in one process, ``--repeats`` times each
after a warm-up; the median is reported and the ratio e2mc / none. Both the process CPU
time and the wall time of each step are measured: on a shared machine the CPU time (with
``OMP_NUM_THREADS=1``) is the robust number, the wall time moves with the other load.

    python benchmarks/bench_step.py            # prints a markdown table
    python benchmarks/bench_step.py --out benchmarks/results/step.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from adapters.backbones import build_backbone
from adapters.methods import METHODS
from adapters.train import SSLModel, TrainConfig, build_criterion, build_optimizer, compute_loss

#: (label, method, backbone, channels, image side, batch, head options)
SETUPS = [
    ("SmallCNN + VICReg expander 1024-d, 28x28x1", "vicreg", "small_cnn", 1, 28, 256,
     {"expander_dim": 1024}),
    ("SmallCNN + SimSiam projector 256-d, 28x28x1", "simsiam", "small_cnn", 1, 28, 256, {}),
    ("ResNet-18 (small stem) + VICReg expander 2048-d, 32x32x3", "vicreg", "resnet18_small", 3,
     32, 64, {}),
]


def _step_fn(method, backbone_name, channels, side, batch, head_options, criterion):
    torch.manual_seed(0)
    backbone = build_backbone(backbone_name, in_channels=channels)
    model = SSLModel(backbone, METHODS[method](backbone.feature_dim, **head_options))
    config = TrainConfig(out="-", method=method, criterion=criterion, batch_size=batch)
    crit = build_criterion(config)
    optimizer = build_optimizer(config, model, lr=1e-3)
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(batch, channels, side, side, generator=g) for _ in range(2)]
    model.train()

    def step() -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        model.heads.before_step()
        loss = compute_loss(model, crit, views).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.process_time() - cpu, time.perf_counter() - wall

    return step


def run(repeats: int, warmup: int) -> list[dict]:
    rows = []
    for label, method, backbone, channels, side, batch, heads in SETUPS:
        steps = {c: _step_fn(method, backbone, channels, side, batch, heads, c)
                 for c in ("none", "e2mc")}
        for _ in range(warmup):
            for fn in steps.values():
                fn()
        times = {c: [] for c in steps}
        for _ in range(repeats):
            for c, fn in steps.items():
                times[c].append(fn())
        cpu = {c: statistics.median(t[0] for t in ts) for c, ts in times.items()}
        wall = {c: statistics.median(t[1] for t in ts) for c, ts in times.items()}
        rows.append({"setup": label, "batch": batch, "none": cpu["none"], "e2mc": cpu["e2mc"],
                     "ratio": cpu["e2mc"] / cpu["none"],
                     "wall_ratio": wall["e2mc"] / wall["none"]})
        print(f"{label}: CPU none {cpu['none']:.3f} s, e2mc {cpu['e2mc']:.3f} s, ratio "
              f"{rows[-1]['ratio']:.3f}; wall ratio {rows[-1]['wall_ratio']:.3f}", file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| setup | batch | none (CPU s/step) | e2mc (CPU s/step) | e2mc / none (CPU) "
             "| e2mc / none (wall) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setup']} | {r['batch']} | {r['none']:.3f} | {r['e2mc']:.3f} | "
                     f"{r['ratio']:.3f} | {r['wall_ratio']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args()
    rows = run(args.repeats, args.warmup)
    text = table(rows)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            "# Step time: `--criterion none` vs `--criterion e2mc` (CPU)\n\n"
            f"Command: `python benchmarks/bench_step.py --repeats {args.repeats} "
            f"--warmup {args.warmup} --out {args.out}`\n\n"
            f"Machine: {platform.machine()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; median of {args.repeats} interleaved steps "
            "after warm-up; data loading excluded (identical for both).\n\n" + text + "\n"
        )


if __name__ == "__main__":
    main()
