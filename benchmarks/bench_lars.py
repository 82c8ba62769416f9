"""LARS optimizer step: the list (foreach) kernels vs the former per-parameter loop, CPU.

Both optimizers hold the parameters of a ResNet-50 backbone (159 tensors: 53 weights in the
LARS group, 106 biases and BatchNorm scales in the excluded group) with fixed random
gradients, and step in turns, ``--repeats`` times each after a warm-up; the medians of the
wall and process CPU times per step are reported with their ratio, and the number of ATen
operations one step dispatches (on a GPU each is a kernel launch of a few microseconds, which
is what the list kernels save; on a CPU the step is bound by memory traffic over the 23.5 M
weights, the same for both). ``PerParameterLARS`` is
the implementation before the list kernels (one Python iteration and about ten tensor
operations per parameter); ``tests/adapters/test_lars_foreach.py`` checks that both give the
same updates.

    OMP_NUM_THREADS=1 python benchmarks/bench_lars.py --out benchmarks/results/lars.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from adapters.backbones import build_backbone
from adapters.optim import LARS, lars_param_groups


class PerParameterLARS(LARS):
    """The former :meth:`LARS.step`: each tensor updated by its own Python iteration."""

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer API
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if group["lars"]:
                    d = self._per_tensor_adapted(p, d, group)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(group["momentum"]).add_(d)
                p.add_(mu, alpha=-group["lr"])

    @staticmethod
    def _per_tensor_adapted(p: torch.Tensor, g: torch.Tensor, group: dict) -> torch.Tensor:
        wd, eta = group["weight_decay"], group["eta"]
        w_norm = torch.linalg.vector_norm(p)
        if group["clip"]:
            g_norm = torch.linalg.vector_norm(g)
            denom = g_norm + wd * w_norm
            ratio = torch.where(
                (w_norm > 0) & (denom > 0),
                torch.clamp(eta * w_norm / denom.clamp_min(1e-30) / group["lr"], max=1.0),
                torch.ones_like(w_norm),
            )
            return (g + wd * p) * ratio
        d = g + wd * p
        d_norm = torch.linalg.vector_norm(d)
        ratio = torch.where(
            (w_norm > 0) & (d_norm > 0), eta * w_norm / d_norm.clamp_min(1e-30), 1.0
        )
        return d * ratio


def _optimizer(cls: type[LARS], clip: bool) -> LARS:
    torch.manual_seed(0)
    model = build_backbone("resnet50", in_channels=3)
    g = torch.Generator().manual_seed(1)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    return cls(lars_param_groups(model, weight_decay=1e-6), lr=0.3, eta=0.001, clip=clip)


class _OpCounter(TorchDispatchMode):
    """Counts the ATen operations dispatched (on a GPU, each is at least one kernel launch)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def _ops_per_step(opt: LARS) -> int:
    with _OpCounter() as counter:
        opt.step()
    return counter.count


def _timed(opt: LARS) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    opt.step()
    return time.process_time() - cpu, time.perf_counter() - wall


def run(repeats: int, warmup: int) -> list[dict]:
    rows = []
    for clip in (False, True):
        opts = {"per-parameter": _optimizer(PerParameterLARS, clip),
                "foreach": _optimizer(LARS, clip)}
        for _ in range(warmup):
            for opt in opts.values():
                opt.step()
        ops = {k: _ops_per_step(opt) for k, opt in opts.items()}
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in opts}
        for _ in range(repeats):
            for k, opt in opts.items():
                times[k].append(_timed(opt))
        wall = {k: statistics.median(t[1] for t in ts) for k, ts in times.items()}
        cpu = {k: statistics.median(t[0] for t in ts) for k, ts in times.items()}
        rows.append({"clip": clip, "old": wall["per-parameter"], "new": wall["foreach"],
                     "speedup": wall["per-parameter"] / wall["foreach"],
                     "cpu_speedup": cpu["per-parameter"] / cpu["foreach"],
                     "old_ops": ops["per-parameter"], "new_ops": ops["foreach"]})
        print(rows[-1], file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| LARS variant | per-parameter (ms/step) | foreach (ms/step) | speed-up (wall) "
             "| speed-up (CPU time) | ATen ops per step (per-parameter -> foreach) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        name = "LARC clipping (SwAV)" if r["clip"] else "LARS (VICReg)"
        lines.append(f"| {name} | {1e3 * r['old']:.1f} | {1e3 * r['new']:.1f} | "
                     f"{r['speedup']:.2f}x | {r['cpu_speedup']:.2f}x | "
                     f"{r['old_ops']:,} -> {r['new_ops']:,} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args()
    rows = run(args.repeats, args.warmup)
    text = table(rows)
    print(text)
    if args.out:
        load = os.getloadavg()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            "# LARS step: foreach list kernels vs the per-parameter loop (CPU)\n\n"
            f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} "
            f"python benchmarks/bench_lars.py --repeats {args.repeats} --warmup {args.warmup} "
            f"--out {args.out}`\n\n"
            f"Machine: {platform.machine()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, load average {load[0]:.2f} / {load[1]:.2f} / "
            f"{load[2]:.2f} (1 / 5 / 15 min) at the end of the run. ResNet-50 backbone "
            "parameters (23.5 M), median of the interleaved steps after warm-up.\n\n"
            + text + "\n\n"
            "A list operation counts once here. On CUDA, list kernels fuse only tensors "
            "paired with tensors of their own shape, so the scaling of each weight by its own "
            "trust ratio (a 0-d tensor per weight) may run tensor by tensor: at most about "
            "53 + 25 kernel launches per step instead of about 1,200.\n"
        )


if __name__ == "__main__":
    main()
