"""E2MC forward + backward against the plain reference formula, float32 on CPU.

The reference is the formula of docs/method.md written as a few torch lines (sigmoid,
sort, m-spacings, D x D covariance), with none of E2MC's safety features (float32 under
autocast, tie floor, finiteness check, actual-N window checks). Both run on two views of the
same shape, as in one training step.

Timing: ours and the reference alternate in one process (so load from other processes hits
both alike); the median of the repeats is reported. Peak memory: a fresh subprocess per
(implementation, shape) creates the inputs, resets the kernel's peak-RSS mark, runs one
forward + backward and reports the peak RSS (VmHWM) and its increase over the RSS just
before the step (Linux only).

    .venv/bin/python benchmarks/bench_criteria.py            # writes benchmarks/results/criteria.md
    .venv/bin/python benchmarks/bench_criteria.py --repeats 3 --no-write
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from entropylib.criteria import E2MC

SHAPES = [(512, 8192), (2048, 2048)]
RESULTS = Path(__file__).parent / "results" / "criteria.md"


def reference_e2mc(z1: torch.Tensor, z2: torch.Tensor, ent_coeff=10.0, cov_coeff=1.0, eps=1e-7):
    def entropy(u):
        n = u.shape[0]
        m = round(math.sqrt(n))
        s = torch.sort(u, dim=0).values
        return torch.log((n + 1) / m * (s[m:] - s[:-m]) + eps).mean()

    def cov(u):
        n, d = u.shape
        c = u - u.mean(dim=0)
        cm = c.T @ c / (n - 1)
        return (cm.pow(2).sum() - cm.diagonal().pow(2).sum()) / d

    u1, u2 = torch.sigmoid(z1), torch.sigmoid(z2)
    return cov_coeff * (cov(u1) + cov(u2)) - ent_coeff * (entropy(u1) + entropy(u2)) / 2


def ours(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    return E2MC(transform="sigmoid", ent_coeff=10.0, cov_coeff=1.0)(z1, z2)[0]


IMPLS = {"ours": ours, "reference": reference_e2mc}


def inputs(shape):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(*shape, generator=g).requires_grad_() for _ in range(2)]


def step(impl, views) -> float:
    for v in views:
        v.grad = None
    loss = IMPLS[impl](*views)
    loss.backward()
    return loss.item()


def time_case(shape, repeats):
    views = inputs(shape)
    values = {impl: step(impl, views) for impl in IMPLS}  # warm-up
    times = {impl: [] for impl in IMPLS}
    for _ in range(repeats):
        for impl in IMPLS:
            t0 = time.perf_counter()
            step(impl, views)
            times[impl].append(time.perf_counter() - t0)
    return {impl: statistics.median(t) for impl, t in times.items()}, values


def rss_mib() -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of this process, from /proc."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def child(impl, n, d):
    views = inputs((n, d))
    # Reset the peak-RSS mark (Linux clear_refs "5") so the peak is that of the step alone.
    Path("/proc/self/clear_refs").write_text("5")
    before = rss_mib()["VmRSS"]
    step(impl, views)
    peak = rss_mib()["VmHWM"]
    print(json.dumps({"peak_mib": peak, "step_mib": peak - before}))


def memory_case(impl, shape):
    out = subprocess.run(
        [sys.executable, __file__, "--child", impl, str(shape[0]), str(shape[1])],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("IMPL", "N", "D"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return

    load_before = os.getloadavg()[0]
    rows = []
    for shape in SHAPES:
        times, values = time_case(shape, args.repeats)
        mem = {impl: memory_case(impl, shape) for impl in IMPLS}
        rel = abs(values["ours"] - values["reference"]) / abs(values["reference"])
        row = (
            f"| {shape[0]} x {shape[1]} | {times['ours'] * 1e3:.0f} | "
            f"{times['reference'] * 1e3:.0f} | {times['ours'] / times['reference']:.2f} | "
            f"{mem['ours']['step_mib']:.0f} / {mem['ours']['peak_mib']:.0f} | "
            f"{mem['reference']['step_mib']:.0f} / {mem['reference']['peak_mib']:.0f} | "
            f"{rel:.1e} |"
        )
        print(row, flush=True)
        rows.append(row)

    header = [
        "| views (2 x) N x D | ours ms | reference ms | ours / ref | ours MiB step / peak "
        "| ref MiB step / peak | rel. diff of loss |",
        "|---|---|---|---|---|---|---|",
    ]
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other "
        f"jobs (1-min load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at "
        f"the end), torch {torch.__version__}, {torch.get_num_threads()} threads, Python "
        f"{platform.python_version()}"
    )
    text = "\n".join(
        [
            "# E2MC criterion: speed and memory",
            "",
            "E2MC (`entropylib.criteria.E2MC`, sigmoid, ent 10, cov 1) forward + backward on two",
            "float32 views against the plain reference formula written in the benchmark (same",
            f"maths, no safety features). Median of {args.repeats} interleaved repeats; memory is",
            "the peak RSS of a fresh process per case, and its increase during one forward +",
            "backward (the inputs themselves excluded).",
            "",
            "Command: `.venv/bin/python benchmarks/bench_criteria.py`",
            f"Machine: {machine}.",
            "",
            *header,
            *rows,
            "",
        ]
    )
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
