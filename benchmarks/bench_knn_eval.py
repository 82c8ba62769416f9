"""Benchmark: exact weighted kNN evaluation vs scikit-learn vs the bare matrix product.

Task (issue 6): a 60,000 x 512 float32 bank with labels, 10,000 float32 queries, 10 classes,
cosine similarity, vote weight exp(s / 0.07). Contenders, each in its own subprocess (so peak
memory is measured per contender) on the same seeded data, with 2 threads:

* ``ours k=20`` and ``ours k=20,200``: ``evaluation.knn_accuracy`` (faiss IndexFlatIP,
  default chunk of 4096 queries; the second computes both k from one k=200 search), and the
  latter with 512-query chunks to show how peak memory follows the chunk size;
* ``sklearn k=20`` / ``sklearn k=200``: ``KNeighborsClassifier(metric="cosine",
  algorithm="brute", weights=lambda d: exp((1 - d) / T))`` - the same votes, since the cosine
  distance is d = 1 - s; ties between classes go to the lowest class index in both;
* ``matmul floor``: one ``queries @ bank.T`` in numpy on the normalised arrays (the product
  every exact method must compute; 2.4 GB of output, no top-k at all).

Repeats are interleaved: each (repeat, contender) runs in a fresh process in turn. Reported:
median wall time of ``--repeats`` runs, ratios to the floor and to scikit-learn,
peak resident memory above the data (VmHWM during the timed calls, reset just before them,
minus VmRSS at that point; it includes the faiss index's copy of the bank, 123 MB), and the
number of queries whose predicted class differs from scikit-learn's.

Usage: ``python benchmarks/bench_knn_eval.py [--repeats 3] [--bank 60000] [--queries 10000]``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "2"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

T = 0.07
CONTENDERS = ("matmul floor", "ours k=20", "ours k=20,200", "ours k=20,200 chunk=512",
              "sklearn k=20", "sklearn k=200")


def make_data(n_bank: int, n_query: int, dim: int = 512, n_cls: int = 10, seed: int = 0):
    """Clustered features: class centre (norm ~ 0.35 of the noise) plus isotropic noise."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_cls, dim)).astype(np.float32) * 0.35
    yb = rng.integers(0, n_cls, n_bank)
    yq = rng.integers(0, n_cls, n_query)
    xb = centers[yb] + rng.standard_normal((n_bank, dim), dtype=np.float32)
    xq = centers[yq] + rng.standard_normal((n_query, dim), dtype=np.float32)
    return xb, yb, xq, yq


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def _reset_peak() -> None:
    """Reset the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0), so temporaries
    freed while the data was generated do not count."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def worker(name: str, repeats: int, n_bank: int, n_query: int, out: Path) -> None:
    xb, yb, xq, yq = make_data(n_bank, n_query)
    preds: dict[str, np.ndarray] = {}
    if name == "matmul floor":
        from evaluation.knn import l2_normalize

        nb, nq = l2_normalize(xb), l2_normalize(xq)

        def run():
            return nq @ nb.T
    elif name.startswith("ours"):
        import faiss

        from evaluation import knn_accuracy

        faiss.omp_set_num_threads(2)
        ks = [int(k) for k in name.split()[1].split("=")[1].split(",")]
        chunk = int(name.split("chunk=")[1]) if "chunk=" in name else 4096

        def run():
            res = knn_accuracy(xb, yb, xq, yq, k=ks, temperature=T, backend="faiss",
                               chunk_size=chunk)
            for k, r in res.items():
                preds[f"k={k}"] = r.predictions[:, 0]
    else:
        from sklearn.neighbors import KNeighborsClassifier

        k = int(name.split("=")[1])
        clf = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute",
                                   weights=lambda d: np.exp((1.0 - d) / T), n_jobs=2)
        clf.fit(xb, yb)

        def run():
            preds[f"k={k}"] = clf.predict(xq)
    _reset_peak()
    before = _status_mb("VmRSS")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t0)
        del result
    peak = _status_mb("VmHWM") - before
    np.savez(out.with_suffix(".npz"), **preds)
    out.write_text(json.dumps({"times": times, "peak_mb": peak, "data_mb": before}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bank", type=int, default=60_000)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, args.repeats, args.bank, args.queries, Path(args.out))
        return
    results = {name: {"times": [], "peak_mb": 0.0} for name in CONTENDERS}
    # repeats are interleaved (one fresh process per contender and repeat), so that changes in
    # the load of the shared machine hit every contender alike
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for i, name in enumerate(CONTENDERS):
                out = Path(tmp) / f"c{i}.json"
                subprocess.run(
                    [sys.executable, __file__, "--worker", name, "--out", str(out),
                     "--repeats", "1", "--bank", str(args.bank), "--queries", str(args.queries)],
                    check=True,
                )
                info = json.loads(out.read_text())
                res = results[name]
                res["times"] += info["times"]
                res["peak_mb"] = max(res["peak_mb"], info["peak_mb"])
                with np.load(out.with_suffix(".npz")) as z:
                    res["preds"] = {k: z[k] for k in z.files}
                print(f"repeat {rep}: {name:>24}: {info['times'][0]:.2f} s, "
                      f"peak +{info['peak_mb']:.0f} MB, load {os.getloadavg()[0]:.1f}", flush=True)
    for info in results.values():
        info["median"] = float(np.median(info["times"]))
    floor = results["matmul floor"]["median"]
    sk20 = results["sklearn k=20"]["median"]
    sk_both = sk20 + results["sklearn k=200"]["median"]
    print(f"\nbank {args.bank} x 512, {args.queries} queries, float32, 2 threads, "
          f"median of {args.repeats}")
    print("| contender | median time (s) | / matmul floor | / scikit-learn (same k) "
          "| peak memory above data (MB) |")
    print("|---|---|---|---|---|")
    for name, info in results.items():
        same_k = {"ours k=20": sk20, "ours k=20,200": sk_both,
                  "ours k=20,200 chunk=512": sk_both, "sklearn k=20": sk20,
                  "sklearn k=200": results["sklearn k=200"]["median"]}.get(name)
        vs_sk = f"{info['median'] / same_k:.2f}" if same_k else "-"
        print(f"| {name} | {info['median']:.2f} | {info['median'] / floor:.2f} | {vs_sk} "
              f"| {info['peak_mb']:.0f} |")
    for k in ("k=20", "k=200"):
        ours = results["ours k=20,200"]["preds"][k]
        theirs = results[f"sklearn {k}"]["preds"][k]
        print(f"{k}: predictions differing from scikit-learn: {int(np.sum(ours != theirs))} "
              f"of {ours.size}")
    same = np.array_equal(results["ours k=20"]["preds"]["k=20"],
                          results["ours k=20,200"]["preds"]["k=20"])
    print(f"ours k=20 alone == k=20 from the joint search: {same}")


if __name__ == "__main__":
    main()
