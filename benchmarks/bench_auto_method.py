"""Which estimator is most accurate at which sample size: the data behind ``method="auto"``.

Marginal (1-D): every spacing estimator with its default window, Vasicek with the uniform
bias correction, 1-D Kozachenko-Leonenko (k = 3, 5, 8, 10, 20) and the FFT KDE, against
``scipy.stats.differential_entropy(method="auto")`` (van Es for n <= 10, Ebrahimi for
n <= 1000, Vasicek above), on 12 distributions whose entropy has a closed form (scipy's
``.entropy()``), at n = 30, 100, 1,000 and 10,000. RMSE over ``reps`` independent samples per
cell; the samples are the columns of one (n, reps) array, so every method sees the same data.

Joint: kNN (k = 3, 5, 10; max-norm) and the KDE on 5 d-dimensional laws with a closed-form
entropy (independent products of the marginals above, a correlated Gaussian), d = 2, 3, 5.

The rule a method is chosen by: the lowest RMSE averaged over the distributions, per n (and d),
on samples drawn with ``--seed``. ``entropylib.estimate``'s ``AUTO_MARGINAL`` / ``AUTO_JOINT``
tables hold what this script chose. The verdict is measured on fresh samples (seed + 1): the
shipped ``method="auto"`` must be at least as accurate as scipy's auto at every n.

    .venv/bin/python benchmarks/bench_auto_method.py            # writes results/auto_method.md
    .venv/bin/python benchmarks/bench_auto_method.py --quick --no-write
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from scipy import stats

import entropylib

RESULTS = Path(__file__).parent / "results" / "auto_method.md"

DISTRIBUTIONS = {
    "normal": stats.norm(),
    "uniform": stats.uniform(),
    "exponential": stats.expon(),
    "laplace": stats.laplace(),
    "logistic": stats.logistic(),
    "gamma(2)": stats.gamma(2.0),
    "beta(2,5)": stats.beta(2.0, 5.0),
    "student-t(5)": stats.t(5.0),
    "cauchy": stats.cauchy(),
    "lognormal(1)": stats.lognorm(1.0),
    "gumbel": stats.gumbel_r(),
    "weibull(1.5)": stats.weibull_min(1.5),
}

#: candidate name -> (method, options)
MARGINAL = {
    "m_spacing": ("m_spacing", {}),
    "vasicek": ("vasicek", {}),
    "vasicek_bc": ("vasicek", {"bias_correction": True}),
    "van_es": ("van_es", {}),
    "ebrahimi": ("ebrahimi", {}),
    "correa": ("correa", {}),
    "knn3": ("knn", {"k": 3}),
    "knn5": ("knn", {"k": 5}),
    "knn8": ("knn", {"k": 8}),
    "knn10": ("knn", {"k": 10}),
    "knn20": ("knn", {"k": 20}),
    "kde_fft": ("kde", {"evaluation": "fft"}),
}

JOINT = {
    "knn3": ("knn", {"k": 3}),
    "knn5": ("knn", {"k": 5}),
    "knn10": ("knn", {"k": 10}),
    "kde": ("kde", {}),
}
JOINT_LAWS = ("gaussian_rho0.6", "uniform", "exponential", "laplace", "student-t(5)")


def scipy_auto(x: np.ndarray) -> np.ndarray:
    return stats.differential_entropy(x, axis=0, method="auto")


def marginal_rmse(n: int, reps: int, seed: int) -> dict[str, dict[str, float]]:
    """RMSE[candidate][distribution] at sample size n."""
    out: dict[str, dict[str, float]] = {c: {} for c in [*MARGINAL, "scipy_auto", "auto"]}
    for k, (name, dist) in enumerate(DISTRIBUTIONS.items()):
        x = dist.rvs(size=(n, reps), random_state=np.random.default_rng([seed, n, k]))
        truth = float(dist.entropy())
        estimates = {c: entropylib.estimate(x, m, **opts) for c, (m, opts) in MARGINAL.items()}
        estimates["scipy_auto"] = scipy_auto(x)
        estimates["auto"] = entropylib.estimate(x)  # method="auto" as shipped
        for c, h in estimates.items():
            out[c][name] = float(np.sqrt(np.mean((np.asarray(h) - truth) ** 2)))
    return out


def joint_sample(law: str, n: int, d: int, rng: np.random.Generator):
    """(n, d) sample and its true entropy."""
    if law.startswith("gaussian"):
        cov = 0.6 ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
        x = rng.multivariate_normal(np.zeros(d), cov, size=n)
        return x, 0.5 * np.linalg.slogdet(2 * np.pi * np.e * cov)[1]
    dist = DISTRIBUTIONS[law]
    return dist.rvs(size=(n, d), random_state=rng), d * float(dist.entropy())


def joint_rmse(n: int, d: int, reps: int, seed: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {c: {} for c in [*JOINT, "auto"]}
    for k, law in enumerate(JOINT_LAWS):
        rng = np.random.default_rng([seed, n, d, k])
        errors: dict[str, list[float]] = {c: [] for c in out}
        for _ in range(reps):
            x, truth = joint_sample(law, n, d, rng)
            for c, (m, opts) in JOINT.items():
                errors[c].append(float(entropylib.estimate(x, m, joint=True, **opts)) - truth)
            errors["auto"].append(float(entropylib.estimate(x, joint=True)) - truth)
        for c, e in errors.items():
            out[c][law] = float(np.sqrt(np.mean(np.square(e))))
    return out


def best(table: dict[str, dict[str, float]], candidates) -> str:
    return min(candidates, key=lambda c: np.mean(list(table[c].values())))


def markdown(title: str, table: dict[str, dict[str, float]], laws) -> list[str]:
    cols = list(table)
    lines = [f"#### {title}", "", "| law | " + " | ".join(cols) + " |",
             "|---|" + "---|" * len(cols)]
    for law in laws:
        lines.append(f"| {law} | " + " | ".join(f"{table[c][law]:.4f}" for c in cols) + " |")
    lines.append("| **mean RMSE** | " + " | ".join(
        f"**{np.mean(list(table[c].values())):.4f}**" for c in cols) + " |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    reps = {30: 4000, 100: 2000, 1000: 400, 10_000: 60}
    joint_reps = {100: 40, 1000: 20, 10_000: 4}
    if args.quick:
        reps = {n: 10 for n in reps}
        joint_reps = {n: 2 for n in joint_reps}
    start = time.time()
    load = os.getloadavg()
    lines = ["# method=\"auto\": accuracy of every estimator against closed forms", "",
             f"Command: `.venv/bin/python benchmarks/bench_auto_method.py"
             f"{' --quick' if args.quick else ''}`; load average at start "
             f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. RMSE in nats over independent "
             "samples (repetitions per n: " + ", ".join(f"{n}: {r}" for n, r in reps.items())
             + "). `auto` is `entropylib.estimate(x)` as shipped; `scipy_auto` is "
             "`scipy.stats.differential_entropy(x, method='auto')`.", "",
             "## Marginal (1-D), 12 distributions", ""]
    chosen_marginal = {}
    verdict = []
    for n, r in reps.items():
        table = marginal_rmse(n, r, args.seed)
        chosen_marginal[n] = best(table, MARGINAL)
        lines += markdown(f"n = {n}", table, DISTRIBUTIONS)
        fresh = marginal_rmse(n, r, args.seed + 1)
        ours, theirs = (np.mean(list(fresh[c].values())) for c in ("auto", "scipy_auto"))
        verdict.append(f"| {n} | {chosen_marginal[n]} | {ours:.4f} | {theirs:.4f} | "
                       f"{ours / theirs:.2f} | {'yes' if ours <= theirs else 'NO'} |")
        print(f"marginal n={n}: best {chosen_marginal[n]}, auto {ours:.4f}, scipy {theirs:.4f}",
              flush=True)
    lines += ["## Joint, kNN vs KDE", ""]
    chosen_joint = {}
    for d in (2, 3, 5):
        for n, r in joint_reps.items():
            table = joint_rmse(n, d, r, args.seed)
            chosen_joint[(n, d)] = best(table, JOINT)
            lines += markdown(f"d = {d}, n = {n} ({r} samples)", table, JOINT_LAWS)
            print(f"joint d={d} n={n}: best {chosen_joint[(n, d)]}", flush=True)
    lines += ["## Verdict", "",
              "On fresh samples (seed + 1):", "",
              "| n | most accurate (mean RMSE) | auto mean RMSE | scipy auto mean RMSE | ratio "
              "| auto at least as accurate |", "|---|---|---|---|---|---|", *verdict, "",
              "Chosen (what `AUTO_MARGINAL` / `AUTO_JOINT` in entropylib/estimate.py hold):", "",
              "    marginal: " + ", ".join(f"n={n}: {c}" for n, c in chosen_marginal.items()),
              "    joint: " + ", ".join(f"(n={n}, d={d}): {c}"
                                        for (n, d), c in chosen_joint.items()), "",
              f"Run time {time.time() - start:.0f} s; load average at end "
              f"{os.getloadavg()[0]:.1f}.", ""]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
