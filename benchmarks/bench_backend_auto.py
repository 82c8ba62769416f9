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

Part 3 (``--only tails``): the kNN grid on heavy-tailed samples (cubed Cauchy, Student t(1),
lognormal; a normal one for contrast), where quantile cells are far wider along one axis than
another: the joint kNN entropy and the KSG mutual information with backend="auto", "numpy"
and "numba" against the grid forced on the sample (``knn_kernels.MAX_WASTE`` off) and, on
10^4 points, the grid as it was before the ring cap (``MAX_RING`` off too; one run, it takes
seconds). Written to its own section of the results file.

numba is compiled before timing; repeats alternate the contenders so load hits both alike. The
machine's load changes the thread crossovers most (run it on idle cores: the run records
``uptime``). It ends by printing the ``NUMBA_FROM`` table of entropylib/estimate.py and the
thread sizes of entropylib/threads.py as code to paste over the old values. Duration: 23 s with
``--repeats 1`` at a load average of 8 on 2 cores; each repeat adds about a twelfth of the
full run, so ``--repeats 11`` takes about 2 to 3 minutes.

    .venv/bin/python benchmarks/bench_backend_auto.py --repeats 11  # results/backend_auto.md
    .venv/bin/python benchmarks/bench_backend_auto.py --repeats 3 --no-write
    .venv/bin/python benchmarks/bench_backend_auto.py --only tails  # about 2 minutes
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


#: (name, sampler) of the heavy-tailed samples of part 3
TAILS = [
    ("normal", lambda rng, n, d: rng.normal(size=(n, d))),
    ("cubed Cauchy", lambda rng, n, d: rng.standard_cauchy(size=(n, d)) ** 3),
    ("Student t(1)", lambda rng, n, d: rng.standard_t(1, size=(n, d))),
    ("lognormal", lambda rng, n, d: rng.lognormal(size=(n, d))),
]
#: (estimator, d, n, samples) of part 3; the uncapped grid only where it ends within seconds
ALL_TAILS = tuple(name for name, _ in TAILS)
TAIL_CASES = [("knn", 2, 10_000, ALL_TAILS), ("knn", 3, 10_000, ALL_TAILS),
              ("ksg1", 2, 10_000, ALL_TAILS), ("ksg1", 4, 10_000, ALL_TAILS),
              ("knn", 2, 100_000, ("normal", "cubed Cauchy")),
              ("ksg1", 2, 100_000, ("normal", "cubed Cauchy"))]
UNCAPPED_MAX_N = 10_000


def grid_settings(**values: float) -> Callable[[Callable[[], object]], Callable[[], object]]:
    """Wrap a call so that it runs with the given knn_kernels constants."""
    def wrap(f):
        def run():
            saved = {name: getattr(knn_kernels, name) for name in values}
            for name, value in values.items():
                setattr(knn_kernels, name, value)
            try:
                return f()
            finally:
                for name, value in saved.items():
                    setattr(knn_kernels, name, value)
        return run
    return wrap


def tails(repeats: int, lines: list[str]) -> None:
    lines += ["## Heavy-tailed samples: the kNN grid (median ms)", "",
              "forced grid: the pilot fallback off (`MAX_WASTE` = inf); uncapped: also no ring "
              "cap (`MAX_RING` = inf), the grid before the fix, one run.", "",
              "| estimator | sample | d | n | auto | numpy | numba | forced grid | uncapped | "
              "numpy / auto |", "|---|---|---|---|---|---|---|---|---|---|"]
    for estimator, d, n, names in TAIL_CASES:
        for name, sampler in TAILS:
            if name not in names:
                continue
            x = sampler(np.random.default_rng(n + d), n, d)
            if estimator == "knn":
                def run(backend, x=x):
                    return entropylib.estimate(x, "knn", joint=True, backend=backend)
            else:
                def run(backend, x=x, h=d // 2):
                    return entropylib.mutual_information(x[:, :h], x[:, h:], backend=backend)
            funcs = {b: (lambda b=b, run=run: run(b)) for b in ("auto", "numpy", "numba")}
            funcs["forced"] = grid_settings(MAX_WASTE=math.inf)(funcs["numba"])
            for f in funcs.values():
                f()  # compile / warm up
            t = median_times(funcs, repeats)
            uncapped = "-"
            if n <= UNCAPPED_MAX_N:
                old = grid_settings(MAX_WASTE=math.inf, MAX_RING=2**62)(funcs["numba"])
                uncapped = f"{1e3 * median_times({'old': old}, 1)['old']:.0f}"
            lines.append(f"| {estimator} | {name} | {d} | {n} | {1e3 * t['auto']:.1f} | "
                         f"{1e3 * t['numpy']:.1f} | {1e3 * t['numba']:.1f} | "
                         f"{1e3 * t['forced']:.1f} | {uncapped} | "
                         f"{t['numpy'] / t['auto']:.2f} |")
            print(lines[-1], flush=True)


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
    parser.add_argument("--only", choices=["tails"],
                        help="run only part 3 and replace only its section of the results")
    args = parser.parse_args()
    start = time.perf_counter()
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    if args.only == "tails":
        lines = []
        tails(args.repeats, lines)
        uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        lines += ["", f"Command: `.venv/bin/python benchmarks/bench_backend_auto.py --only tails "
                  f"--repeats {args.repeats}`; {threads.available()} threads available; "
                  f"{time.perf_counter() - start:.0f} s. `uptime` before and after:", "",
                  *("    " + u for u in uptime), ""]
        text = "\n".join(lines)
        print(text)
        if not args.no_write:
            write_section(text)
        return
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
        old = RESULTS.read_text() if RESULTS.exists() else ""
        heading, part3 = old.partition(TAILS_HEADING)[1:]  # keep the section of part 3
        RESULTS.write_text(text + ("\n" + heading + part3 if heading else ""))


TAILS_HEADING = "## Heavy-tailed samples"


def write_section(text: str) -> None:
    """Put part 3 in place of its old section at the end of the results file (or append it)."""
    old = RESULTS.read_text() if RESULTS.exists() else ""
    RESULTS.write_text(old.partition(TAILS_HEADING)[0].rstrip("\n") + "\n\n" + text)


if __name__ == "__main__":
    main()
