"""Where the numba backend overtakes numpy, and where threads start to pay: the data behind
``backend="auto"`` (``entropylib.estimate.NUMBA_FROM``) and :mod:`entropylib.threads`.

Part 1: for every method with a numba backend, wall-clock median time of ``estimate`` with
backend="numpy" and backend="numba" on the same standard-normal sample, n from 300 to 10^5
(KDE, O(n^2), up to 10^4). The crossover is the smallest measured n from which numba is faster
at that n and every larger one; the table holds n * d at the geometric midpoint between it and
the measured n below (inf: numba never faster).

Part 2: the numba KDE and the kNN searches (numba grid, scipy KD-tree) on one thread against
all available threads: the smallest size from which the threads are at most 10 % slower (under
load they are at best even; on idle cores they gain up to 2x).

numba is compiled before timing; repeats alternate the contenders so load hits both alike. The
machine's load changes the thread crossovers most (run it on idle cores: the run records
``uptime``). It ends by printing the ``NUMBA_FROM`` table of entropylib/estimate.py and the
thread sizes of entropylib/threads.py as code to paste over the old values. Duration: 23 s with
``--repeats 1`` at a load average of 8 on 2 cores; each repeat adds about a twelfth of the
full run, so ``--repeats 11`` takes about 2 to 3 minutes.

    .venv/bin/python benchmarks/bench_backend_auto.py --repeats 11  # results/backend_auto.md
    .venv/bin/python benchmarks/bench_backend_auto.py --repeats 3 --no-write
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

import entropylib
from entropylib import kde_kernels, knn_kernels, threads

RESULTS = Path(__file__).parent / "results" / "backend_auto.md"

#: (method, joint, d, sizes n)
CASES = [
    ("m_spacing", False, 1, (1000, 3000, 10_000, 30_000, 100_000)),
    ("vasicek", False, 1, (1000, 3000, 10_000, 30_000, 100_000)),
    ("van_es", False, 1, (1000, 3000, 10_000, 30_000, 100_000)),
    ("ebrahimi", False, 1, (1000, 3000, 10_000, 30_000, 100_000)),
    ("correa", False, 1, (300, 1000, 3000, 10_000, 30_000)),
    ("knn", True, 3, (1000, 3000, 10_000, 30_000, 100_000, 300_000)),
    ("kde", False, 1, (300, 1000, 3000, 10_000)),
    ("kde", True, 2, (300, 1000, 3000, 10_000)),
]


def median_times(funcs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(repeats):
        for name, f in funcs.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def crossover(sizes, faster) -> float:
    """n * d table value: geometric midpoint below the first n from which numba stays faster."""
    for i, n in enumerate(sizes):
        if all(faster[i:]):
            return n if i == 0 else math.floor(math.sqrt(n * sizes[i - 1]))
    return math.inf


def backends(repeats: int, lines: list[str]) -> dict[tuple[str, bool], float]:
    table = {}
    lines += ["## numpy vs numba backend (median ms)", "",
              "| method | joint | d | n | numpy | numba | numpy / numba |",
              "|---|---|---|---|---|---|---|"]
    for method, joint, d, sizes in CASES:
        faster = []
        for n in sizes:
            x = np.random.default_rng(n).normal(size=(n, d))
            funcs = {b: (lambda b=b, x=x, method=method, joint=joint:
                         entropylib.estimate(x, method, joint=joint, backend=b))
                     for b in ("numpy", "numba")}
            for f in funcs.values():
                f()  # compile / warm up
            reps = repeats if n * n * d < 10**8 or method != "kde" else max(1, repeats // 2)
            t = median_times(funcs, reps)
            faster.append(t["numba"] < t["numpy"])
            lines.append(f"| {method} | {joint} | {d} | {n} | {1e3 * t['numpy']:.2f} | "
                         f"{1e3 * t['numba']:.2f} | {t['numpy'] / t['numba']:.2f} |")
            print(lines[-1], flush=True)
        n0 = crossover(sizes, faster)
        table[(method, joint)] = n0 * d if math.isfinite(n0) else math.inf
    return table


def thread_crossovers(repeats: int, lines: list[str]) -> dict[str, float]:
    many = threads.available()
    lines += ["", f"## one thread vs {many} threads (median ms)", "",
              "| kernel | n | 1 thread | all | 1 / all |", "|---|---|---|---|---|"]
    out = {}

    def kde(n):
        z = np.random.default_rng(n).normal(size=(n, 1)) * 5

        def run(count):
            with threads.numba_threads(count):
                kde_kernels.log_kernel_sums(z, False, 4 * count)
        return run

    def grid(n):
        x = np.random.default_rng(n).normal(size=(n, 3))

        def run(count):
            with threads.numba_threads(count):
                knn_kernels.kth_distance(x, 3, euclidean=False)
        return run

    def tree(n):
        x = np.random.default_rng(n).normal(size=(n, 3))

        def run(count):
            t = cKDTree(x, balanced_tree=False, compact_nodes=False)
            t.query(x[t.indices], k=[4], p=np.inf, workers=count)
        return run

    kernels = {"kde (pairs n^2 d / 2)": (kde, (300, 1000, 2000, 4000, 10_000)),
               "knn grid d=3": (grid, (3000, 10_000, 30_000, 100_000)),
               "knn KD-tree d=3": (tree, (3000, 10_000, 30_000, 100_000))}
    for name, (make, sizes) in kernels.items():
        faster = []
        for n in sizes:
            run = make(n)
            run(1)
            t = median_times({"one": lambda run=run: run(1),
                              "all": lambda run=run: run(many)}, repeats)
            # threads gain up to 2x on idle cores and lose a little under load: within 10 % counts
            faster.append(t["all"] < 1.1 * t["one"])
            lines.append(f"| {name} | {n} | {1e3 * t['one']:.2f} | {1e3 * t['all']:.2f} | "
                         f"{t['one'] / t['all']:.2f} |")
            print(lines[-1], flush=True)
        out[name] = crossover(sizes, faster)
    return out


def python_number(value: float, inf: str = "math") -> str:
    """A table value as Python source: an int with digit separators, or infinity as
    ``math.inf`` (estimate.py imports math) or ``float("inf")`` (threads.py does not)."""
    if math.isfinite(value):
        return f"{round(value):_}"
    return "math.inf" if inf == "math" else 'float("inf")'



def numba_from_code(table: dict[tuple[str, bool], float]) -> list[str]:
    """The NUMBA_FROM assignment of entropylib/estimate.py for the measured table (methods
    measured only joint or only marginal keep the code's other entry, shown as in the code)."""
    from entropylib.estimate import NUMBA_FROM

    merged = {**NUMBA_FROM, **table}
    return ["NUMBA_FROM: dict[tuple[str, bool], float] = {",
            *(f"    ({method!r}, {joint}): {python_number(v)},".replace("'", '"')
              for (method, joint), v in merged.items()), "}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    lines = ["# backend=\"auto\": numpy/numba crossovers and thread use", "",
             f"Command: `.venv/bin/python benchmarks/bench_backend_auto.py --repeats "
             f"{args.repeats}`; {threads.available()} threads available.", ""]
    table = backends(args.repeats, lines)
    thread_table = thread_crossovers(args.repeats, lines)
    uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    kde_n = thread_table["kde (pairs n^2 d / 2)"]
    lines += ["", "## What the code holds (paste over the old values)", "",
              "entropylib/estimate.py:", "", *("    " + line for line in numba_from_code(table)),
              "", "entropylib/threads.py:", "",
              f"    KDE_PARALLEL_WORK = {python_number(kde_n * (kde_n - 1) / 2, 'float')}",
              f"    GRID_PARALLEL_N = {python_number(thread_table['knn grid d=3'], 'float')}",
              f"    KDTREE_PARALLEL_N = "
              f"{python_number(thread_table['knn KD-tree d=3'], 'float')}", "",
              "(inf: the numba backend, or the threads, never measured faster.)", "",
              f"{time.perf_counter() - start:.0f} s. `uptime` before and after:", "",
              *("    " + u for u in uptime), ""]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
