"""Measure what the full paper reproduction costs on this machine and print the estimate.

CPU seconds (this process, all threads), so the numbers hold for an idle machine even when
measured on a busy one:
- one training step (batch 256) of VICReg, SwAV and SimSiam on Fashion-MNIST with the
  small_cnn backbone, through adapters.train (the same code paper.reproduce runs), with and
  without E2MC;
- feature extraction of 10,000 test images (scaled to the 70,000 of one checkpoint);
- one cached-feature probe fit (scikit-learn L-BFGS, single-threaded BLAS as in paper.execute)
  on 6,000 and 54,000 rows of 256-d features.

It then prints the full run's estimate from paper.config.full() next to the constants
paper/reproduce.py uses. Run: ``.venv/bin/python benchmarks/bench_paper_budget.py``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STEPS = 6  # steps of the long run; a 2-step run is subtracted (start-up, first batches)


def step_seconds(method: str, criterion: str, workers: int = 0) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per step of 256 images: (run of STEPS - run of 2) / (STEPS - 2).

    CPU time of this process (all its threads; augmentation runs in it with workers=0) is what
    a step costs on an otherwise idle machine, whatever else runs; wall time depends on load.
    """
    from adapters.train import TrainConfig, train

    def run(n: int) -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as tmp:
            c0, w0 = time.process_time(), time.perf_counter()
            train(TrainConfig(out=tmp, mode="pretrain", method=method, backbone="small_cnn",
                              dataset="fashion-mnist", epochs=1, max_steps=n, batch_size=256,
                              criterion=criterion, progress=False, workers=workers))
            return time.process_time() - c0, time.perf_counter() - w0

    short, long = run(2), run(STEPS)
    return ((long[0] - short[0]) / (STEPS - 2), (long[1] - short[1]) / (STEPS - 2))


def feature_seconds() -> float:
    import torch

    from adapters.backbones import build_backbone
    from adapters.data import dataset_info, eval_transform, load_dataset
    from evaluation.features import extract_features

    net = build_backbone("small_cnn", in_channels=1)
    ds = load_dataset("fashion-mnist", train=False, transform=eval_transform(
        dataset_info("fashion-mnist")))
    torch.manual_seed(0)
    t = time.process_time()
    extract_features(net, ds, batch_size=512, progress=False)
    return (time.process_time() - t) * 7  # 60,000 + 10,000 images


def probe_fit_seconds(n: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    w = rng.normal(size=(256, 10))
    x = rng.normal(size=(n, 256))
    y = np.argmax(x @ w + 3 * rng.gumbel(size=(n, 10)), axis=1)
    with threadpool_limits(1, user_api="blas"):
        t = time.process_time()
        make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=200)).fit(x, y)
    return time.process_time() - t


def main(argv: list[str] | None = None) -> None:
    import argparse
    import os

    argparse.ArgumentParser(
        prog="bench_paper_budget.py", description=__doc__.split("\n\n")[0],
        epilog="Takes minutes: six short training runs, feature extraction, two probe fits.",
    ).parse_args(argv)
    print(f"machine: {os.cpu_count()} CPUs; load average {os.getloadavg()}")
    steps = {}
    for method in ("vicreg", "swav", "simsiam"):
        for criterion in ("none", "e2mc"):
            cpu, wall = step_seconds(method, criterion)
            steps[(method, criterion)] = cpu
            print(f"step {method:8s} {criterion:5s}: CPU {cpu:.3f} s, wall {wall:.3f} s "
                  "per 256 images")
    feats = feature_seconds()
    print(f"features of 70,000 images: CPU {feats:.1f} s")
    fits = {n: probe_fit_seconds(n) for n in (6_000, 54_000)}
    for n, s in fits.items():
        print(f"probe fit on {n} rows: CPU {s:.2f} s")

    from paper import config as cfg
    from paper.plan import build_plan

    exp = cfg.full()
    units = build_plan(exp).units()
    train_s = 0.0
    for u in units:
        if u.kind == "evaluate":
            continue
        model = u.config.get("model", u.config)
        n_steps = (60_000 // model["batch_size"]) * model["epochs"]
        if model["max_steps"] is not None:
            n_steps = min(n_steps, model["max_steps"])
        crit = u.config.get("criterion", "none")
        train_s += n_steps * steps[(model["method"], "e2mc" if crit != "none" else "none")]
    n_cs = len(exp.protocol("linear").option("Cs")) + 1  # candidates + refit
    linear_s = n_cs * (fits[54_000] * (1 + 0.1 + 0.01))
    n_linear = sum(1 for u in units if u.kind == "evaluate" and u.config["protocol"] == "linear")
    checkpoints = {u.deps[0].key for u in units if u.kind == "evaluate"}
    print(f"full run (CPU time): {len(units)} units; training {train_s / 60:.0f} min; "
          f"{len(checkpoints)} feature extractions {len(checkpoints) * feats / 60:.0f} min; "
          f"{n_linear} linear units x {linear_s:.0f} s = {n_linear * linear_s / 60:.0f} min "
          "(+ semisup, transfer, kNN, diagnostics)")


if __name__ == "__main__":
    main()
