"""Speed on a loaded machine: entropylib's estimators at n >= 10^4 against single-threaded peers.

Issue 14, section 5: on a loaded machine (every core busy with another job) no entropy or
mutual information estimator at n >= 10^4 may be slower than a single-threaded peer. The script
makes the load itself so that anyone can rerun it: ``--load N`` starts N processes that spin
(at the priority the script runs at, normally nice 0) for the duration of the loaded timings and
stops them after. Each case is timed idle and then loaded, in one run.

Cases (ours with every default, ``backend="auto"``, against the fastest single-threaded
peer computing the same quantity): joint kNN (d = 3; d = 8 at n = 10^4) and one-column kNN
against infomeasure's Kozachenko-Leonenko (``approach="metric"``, max-norm); KDE (1-D and
d = 2) against ``scipy.stats.gaussian_kde`` resubstitution; the spacing estimators on one column
against ``scipy.stats.differential_entropy``; ``method="auto"`` against scipy's ``"auto"``; the
joint Gaussian entropy against ``scipy.stats.multivariate_normal(cov=np.cov(x.T)).entropy()``;
KSG1 mutual information against ennemi (1 + 1 dimensions) and infomeasure (``approach="ksg"``,
2 + 2). KDE, kNN d = 8 and KSG 2 + 2 are timed at n = 10^4 only: their peers take 20 s to
20 min per call at 10^5. Peers run under ``threadpoolctl.threadpool_limits(1)`` (their KD-tree
queries are single-threaded already; ennemi gets ``max_threads=1``).

Timing: ours and the peer alternate within each repeat, the median is reported; calls faster
than ``MIN_SAMPLE_S`` are looped within a sample (time per call reported); numba is
compiled (or loaded from its cache) before timing; ``uptime`` before and after goes into the
results file. Ratio = peer time / our time (> 1: ours faster).

    .venv/bin/python benchmarks/bench_loaded.py --load 2           # benchmarks/results/loaded.md
    .venv/bin/python benchmarks/bench_loaded.py --load 2 --repeats 3 --no-write
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import scipy
from scipy import stats
from threadpoolctl import threadpool_limits

import entropylib
from entropylib import threads

RESULTS = Path(__file__).parent / "results" / "loaded.md"


def _spin() -> None:
    while True:
        pass


@contextmanager
def load(processes: int) -> Iterator[None]:
    """``processes`` busy loops for the duration of the block (none if 0)."""
    ctx = multiprocessing.get_context("spawn")  # no copy of this process's threads or arrays
    workers = [ctx.Process(target=_spin, daemon=True) for _ in range(processes)]
    for w in workers:
        w.start()
    time.sleep(0.5 if processes else 0.0)  # let the scheduler spread them over the cores
    try:
        yield
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.join()


def peer_knn(x: np.ndarray) -> float:
    import infomeasure

    return float(infomeasure.entropy(x, approach="metric", k=3, minkowski_p=np.inf,
                                     noise_level=0))


def peer_kde(x: np.ndarray) -> float:
    return float(-stats.gaussian_kde(x.T).logpdf(x.T).mean())


def peer_mi_infomeasure(x: np.ndarray, y: np.ndarray) -> float:
    import infomeasure

    return float(infomeasure.mutual_information(x, y, approach="ksg", k=3, noise_level=0))


def peer_mi_ennemi(x: np.ndarray, y: np.ndarray) -> float:
    import ennemi

    return float(np.ravel(ennemi.estimate_mi(y[:, 0], x[:, 0], k=3, preprocess=False,
                                             max_threads=1))[0])


Case = tuple[str, Callable[[], float], str, Callable[[], float]]


def cases_at(n: int, rng: np.random.Generator) -> list[Case]:
    """(case, ours, peer name, peer) for every estimator family at sample size n."""
    one = rng.normal(size=n)
    x3, x8 = rng.normal(size=(n, 3)), rng.normal(size=(n, 8))
    xy = rng.multivariate_normal(np.zeros(4), 0.5 * np.eye(4) + 0.5, size=n)
    out: list[Case] = [
        ("knn joint d=3", lambda: entropylib.estimate(x3, "knn", joint=True), "infomeasure",
         lambda: peer_knn(x3)),
        ("knn 1-D", lambda: entropylib.estimate(one, "knn"), "infomeasure",
         lambda: peer_knn(one)),
        *[(method, partial(entropylib.estimate, one, method), "scipy",
           partial(stats.differential_entropy, one, method=method.replace("_", " ")))
          for method in ("vasicek", "van_es", "ebrahimi", "correa")],
        ("auto (default)", lambda: entropylib.estimate(one), "scipy auto",
         lambda: stats.differential_entropy(one)),
        ("gaussian joint d=8", lambda: entropylib.estimate(x8, "gaussian", joint=True), "scipy",
         lambda: stats.multivariate_normal(cov=np.cov(x8.T)).entropy()),
        ("ksg1 MI 1+1", lambda: entropylib.mutual_information(xy[:, :1], xy[:, 1:2]), "ennemi",
         lambda: peer_mi_ennemi(xy[:, :1], xy[:, 1:2])),
    ]
    if n <= 10_000:  # the peers take 20 s (kNN d = 8), 2 min (KSG 2+2), 20 min (KDE) at 10^5
        x1, x2 = rng.normal(size=(n, 1)), rng.normal(size=(n, 2))
        out += [("knn joint d=8", lambda: entropylib.estimate(x8, "knn", joint=True),
                 "infomeasure", lambda: peer_knn(x8)),
                ("ksg1 MI 2+2", lambda: entropylib.mutual_information(xy[:, :2], xy[:, 2:]),
                 "infomeasure", lambda: peer_mi_infomeasure(xy[:, :2], xy[:, 2:])),
                ("kde 1-D", lambda: entropylib.estimate(x1, "kde", joint=True),
                 "scipy gaussian_kde", lambda: peer_kde(x1)),
                ("kde joint d=2", lambda: entropylib.estimate(x2, "kde", joint=True),
                 "scipy gaussian_kde", lambda: peer_kde(x2))]
    return [(f"{case}, n={n:,}", ours, peer_name, peer) for case, ours, peer_name, peer in out]


def cases() -> list[Case]:
    rng = np.random.default_rng(0)
    return cases_at(10_000, rng) + cases_at(100_000, rng)


#: a timed sample lasts at least this long (fast calls are looped): a millisecond call timed
#: alone on busy cores measures mostly where the scheduler preempted it
MIN_SAMPLE_S = 0.05


def per_call(f: Callable[[], float], loops: int) -> tuple[float, float]:
    """Seconds per call of ``loops`` back-to-back calls, and the last value."""
    start = time.perf_counter()
    for _ in range(loops):
        value = float(f())
    return (time.perf_counter() - start) / loops, value


def median_times(ours: Callable[[], float], peer: Callable[[], float],
                 repeats: int) -> tuple[float, float, float]:
    """Median seconds per call of ours and of the peer (alternating samples of at least
    ``MIN_SAMPLE_S``) and |difference| of the values."""
    with threadpool_limits(1):
        peer_first = per_call(peer, 1)[0]
    loops_ours = max(1, math.ceil(MIN_SAMPLE_S / per_call(ours, 1)[0]))
    loops_peer = max(1, math.ceil(MIN_SAMPLE_S / peer_first))
    t_ours, t_peer = [], []
    for _ in range(repeats):
        t, v_ours = per_call(ours, loops_ours)
        t_ours.append(t)
        with threadpool_limits(1):
            t, v_peer = per_call(peer, loops_peer)
        t_peer.append(t)
    return statistics.median(t_ours), statistics.median(t_peer), abs(v_ours - v_peer)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=int, default=os.cpu_count() or 1,
                        help="busy-loop processes during the loaded timings (default: one per "
                        "CPU)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    before, start = uptime(), time.perf_counter()
    chosen = [c for c in cases() if args.only in c[0]]
    for _, ours, _, _ in chosen:  # compile or load every numba kernel before timing
        ours()
    rows, slower = [], []
    for case, ours, peer_name, peer in chosen:
        idle = median_times(ours, peer, args.repeats)
        with load(args.load):
            busy = median_times(ours, peer, args.repeats)
        row = [case, peer_name, f"{idle[0]:.4f}", f"{idle[1]:.4f}", f"{idle[1] / idle[0]:.2f}",
               f"{busy[0]:.4f}", f"{busy[1]:.4f}", f"{busy[1] / busy[0]:.2f}",
               f"{max(idle[2], busy[2]):.1e}"]
        rows.append(row)
        if busy[1] < busy[0]:
            slower.append(case)
        print(" | ".join(row), flush=True)
    header = ["case", "peer", "ours idle (s)", "peer idle (s)", "ratio idle", "ours loaded (s)",
              "peer loaded (s)", "ratio loaded", "abs diff"]
    lines = [
        "# Speed on a loaded machine: entropylib against single-threaded peers",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (other jobs may run: see the "
        f"uptime below); Python {platform.python_version()}, numpy {np.__version__}, scipy "
        f"{scipy.__version__}, numba threads available to entropylib: "
        f"{threads.available()}. Script: `benchmarks/bench_loaded.py` (its docstring "
        f"says what is timed). Loaded: {args.load} busy-loop processes at the script's "
        f"priority. Median of {args.repeats} alternating repeats, each at least "
        f"{MIN_SAMPLE_S} s (fast calls looped, seconds per call shown); ratio = peer time / our "
        "time (> 1: ours faster); abs diff: |ours - peer| (different formulas where the peer "
        "is another estimator: auto, kde bandwidth constants).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
        "Target (loaded, n >= 10^4): ours no slower than the peer in every case: "
        + ("met." if not slower else f"NOT met for {', '.join(slower)}."),
        "",
        f"Command: `.venv/bin/python benchmarks/bench_loaded.py --load {args.load} --repeats "
        f"{args.repeats}`; {time.perf_counter() - start:.0f} s.",
        f"uptime before: `{before}`; after: `{uptime()}`.",
    ]
    print("\n".join(lines))
    if not args.no_write and not args.only:
        RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
