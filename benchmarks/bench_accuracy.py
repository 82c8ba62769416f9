"""Bias and RMSE of every estimator against closed-form entropies (docs/estimators.md's tables).

Marginal table: each estimator on R independent samples of size n (one call on an (n, R) array,
one column per replication) from N(0,1), U(0,1), Exp(1), Laplace(0,1), Cauchy(0,1) and a
bimodal mixture 0.5 N(-3,1) + 0.5 N(3,1), whose entropy is integrated numerically. Joint
table: the multivariate estimators on R samples from a correlated normal (d = 2, correlation
0.6; d = 5, covariance 0.5^|i-j|), the unit cube (d = 3) and independent exponentials
(d = 3). Bias is mean(H_hat) - H, RMSE is sqrt(mean((H_hat - H)^2)), in nats; the standard
error of a bias is about RMSE / sqrt(R).

At n = 10^4 the 1-D KDE rows use ``evaluation="fft"`` (within 1e-3 nats of the exact sum, see
:mod:`entropylib.kde`), since the exact O(n^2) sum over 200 replications takes minutes here.

    .venv/bin/python benchmarks/bench_accuracy.py          # writes benchmarks/results/accuracy.md
    .venv/bin/python benchmarks/bench_accuracy.py --reps 50 --no-write
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import integrate, stats

import entropylib

RESULTS = Path(__file__).parent / "results" / "accuracy.md"


def mixture_entropy() -> float:
    """Entropy of 0.5 N(-3, 1) + 0.5 N(3, 1) by numerical integration of -f log f."""
    def integrand(x: float) -> float:
        f = 0.5 * (stats.norm.pdf(x, -3) + stats.norm.pdf(x, 3))
        return -f * math.log(f) if f > 0 else 0.0
    return integrate.quad(integrand, -15, 15, limit=200)[0]


#: name -> (sampler of an (n, r) array, true entropy)
MARGINALS: dict[str, tuple[Callable[[np.random.Generator, int, int], np.ndarray], float]] = {
    "N(0,1)": (lambda g, n, r: g.normal(size=(n, r)), float(stats.norm.entropy())),
    "U(0,1)": (lambda g, n, r: g.uniform(size=(n, r)), 0.0),
    "Exp(1)": (lambda g, n, r: g.exponential(size=(n, r)), 1.0),
    "Laplace": (lambda g, n, r: g.laplace(size=(n, r)), float(stats.laplace.entropy())),
    "Cauchy": (lambda g, n, r: g.standard_cauchy(size=(n, r)), float(stats.cauchy.entropy())),
    "bimodal": (lambda g, n, r: g.normal(size=(n, r)) + 3 * g.choice([-1, 1], size=(n, r)),
                mixture_entropy()),
}

#: row label -> (method, options) of the marginal table
MARGINAL_ESTIMATORS: dict[str, tuple[str, dict]] = {
    "m_spacing": ("m_spacing", {}),
    "vasicek": ("vasicek", {}),
    "vasicek, bias-corrected": ("vasicek", {"bias_correction": True}),
    "van_es": ("van_es", {}),
    "ebrahimi": ("ebrahimi", {}),
    "correa": ("correa", {}),
    "knn, k=3": ("knn", {"k": 3}),
    "kde, Scott": ("kde", {}),
    "kde, Scott, leave-one-out": ("kde", {"loo": True}),
    "gaussian": ("gaussian", {}),
}

TOEPLITZ5 = 0.5 ** np.abs(np.subtract.outer(np.arange(5), np.arange(5)))
COV2 = np.array([[1.0, 0.6], [0.6, 1.0]])


def normal_entropy(cov: np.ndarray) -> float:
    return 0.5 * float(np.linalg.slogdet(2 * math.pi * math.e * cov)[1])


#: name -> (sampler of one (n, d) sample, true joint entropy)
JOINTS: dict[str, tuple[Callable[[np.random.Generator, int], np.ndarray], float]] = {
    "normal d=2, rho 0.6": (lambda g, n: g.multivariate_normal([0, 0], COV2, size=n),
                            normal_entropy(COV2)),
    "normal d=5, Toeplitz 0.5": (lambda g, n: g.multivariate_normal(np.zeros(5), TOEPLITZ5, size=n),
                              normal_entropy(TOEPLITZ5)),
    "cube d=3": (lambda g, n: g.uniform(size=(n, 3)), 0.0),
    "Exp(1)^3": (lambda g, n: g.exponential(size=(n, 3)), 3.0),
}

JOINT_ESTIMATORS: dict[str, tuple[str, dict]] = {
    "knn, k=3, max-norm": ("knn", {"k": 3, "norm": "max"}),
    "knn, k=3, euclidean": ("knn", {"k": 3, "norm": "euclidean"}),
    "kde, Scott": ("kde", {}),
    "gaussian": ("gaussian", {}),
}


def bias_rmse(estimates: np.ndarray, truth: float) -> str:
    err = np.asarray(estimates, dtype=np.float64) - truth
    return f"{err.mean():+.3f} / {math.sqrt(np.mean(err ** 2)):.3f}"


def marginal_table(n: int, reps: int, seed: int) -> list[str]:
    lines = [f"### Marginal, n = {n:,}, {reps} replications (bias / RMSE, nats)", "",
             "| estimator | " + " | ".join(MARGINALS) + " |",
             "|---|" + "---|" * len(MARGINALS)]
    samples = {name: draw(np.random.default_rng([seed, n, i]), n, reps)
               for i, (name, (draw, _)) in enumerate(MARGINALS.items())}
    for label, (method, options) in MARGINAL_ESTIMATORS.items():
        opts = dict(options)
        if method == "kde" and n > 1000:
            opts["evaluation"] = "fft"
        cells = [bias_rmse(entropylib.estimate(samples[name], method, **opts), truth)
                 for name, (_, truth) in MARGINALS.items()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def joint_table(n: int, reps: int, seed: int) -> list[str]:
    lines = [f"### Joint, n = {n:,}, {reps} replications (bias / RMSE, nats)", "",
             "| estimator | " + " | ".join(JOINTS) + " |", "|---|" + "---|" * len(JOINTS)]
    samples = {name: [draw(np.random.default_rng([seed, n, i, r]), n) for r in range(reps)]
               for i, (name, (draw, _)) in enumerate(JOINTS.items())}
    for label, (method, options) in JOINT_ESTIMATORS.items():
        cells = [bias_rmse([entropylib.estimate(x, method, joint=True, **options)
                            for x in samples[name]], truth)
                 for name, (_, truth) in JOINTS.items()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200, help="marginal replications")
    parser.add_argument("--joint-reps", type=int, default=30, help="joint replications")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args()
    start = time.perf_counter()
    lines = ["# Estimator accuracy: bias and RMSE against closed forms", "",
             "Command: `python benchmarks/bench_accuracy.py"
             + (f" --reps {args.reps}" if args.reps != 200 else "")
             + (f" --joint-reps {args.joint_reps}" if args.joint_reps != 30 else "")
             + (f" --seed {args.seed}" if args.seed else "") + "`. "
             f"True entropies: {', '.join(f'{k} {v:.4f}' for k, (_, v) in MARGINALS.items())}; "
             f"joint: {', '.join(f'{k} {v:.4f}' for k, (_, v) in JOINTS.items())}. "
             "Defaults everywhere: spacing window m = round(sqrt(n)), kNN k = 3, Scott "
             "bandwidth; kde at n = 10,000 uses the 1-D FFT evaluation.", ""]
    for n in (100, 1000, 10_000):
        lines += marginal_table(n, args.reps, args.seed)
    for n in (1000, 10_000):
        lines += joint_table(n, args.joint_reps, args.seed)
    lines += [f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f} at the end; {time.perf_counter() - start:.0f} s.", ""]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
