"""Weighted k-nearest-neighbour classification of embeddings (InstDisc / DINO protocol).

Features are L2-normalised, neighbours are the k bank items of largest cosine similarity, and
each neighbour votes for its class with weight exp(s / T) (Wu et al. 2018, "Unsupervised
Feature Learning via Non-Parametric Instance Discrimination"; Caron et al. 2021, DINO).

Two search backends give the same answer:

* ``"faiss"``: an exact inner-product index (``IndexFlatIP``) on the normalised float32
  features; when faiss has GPUs the index is built on them directly (no CPU copy), on one
  GPU when the bank fits, else sharded over several (:func:`gpu_shard_rows`);
* ``"brute"``: a numpy matrix product and ``argpartition``, the dependency-free reference.

Queries go through the index in chunks of ``chunk_size`` rows (default 4096, faiss's own query
block), so the working memory is about ``chunk_size * (k + 1)`` neighbours (plus
``chunk_size * n_bank`` similarities for "brute") plus a 4096 x 4096 float32 similarity
block, whatever the number of queries; the index holds one normalised float32 copy of the bank,
built block by block.

Ties are broken the same way in both backends: neighbours are ordered by decreasing similarity
and then by increasing bank index, and classes by decreasing vote and then by increasing class
index. Each backend searches k + 1 neighbours; when the k-th and (k+1)-th similarities are
equal the search is widened for that query until the whole tie group is seen, so the lowest
indices win regardless of the order in which the backend returned equal values. The two
backends compute similarities with different BLAS calls, which may differ in the last float32
bit; pairs closer than that are not ties for either backend and may rank differently.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from entropylib.validation import is_integer
from evaluation.inputs import (
    as_features,
    as_labels,
    check_same_width,
    positive_int,
    positive_real,
)

BACKENDS = ("auto", "faiss", "brute")
#: bank rows per block: normalised and added to the index one block at a time, and faiss's
#: similarity block during search (memory: 4096 queries x BANK_BLOCK float32 = 64 MB)
BANK_BLOCK = 4096

#: largest k a faiss GPU index searches; a larger k searches a CPU copy made on demand
GPU_MAX_K = 2048
#: GPU memory left free for faiss's search buffers when the bank is placed
GPU_RESERVE_BYTES = 2 * 2**30

Searcher = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class KNNResult:
    """Accuracy of weighted kNN at one k.

    ``predictions`` holds the top-5 classes of every query (best first; fewer columns when
    there are fewer than 5 classes); ``top1`` and ``top5`` are fractions in [0, 1].
    """

    k: int
    temperature: float
    top1: float
    top5: float
    predictions: np.ndarray


def l2_normalize(x: np.ndarray, *, dtype: Any = np.float32) -> np.ndarray:
    """Rows divided by their Euclidean norm (all-zero rows stay zero), as ``dtype``.

    Each row is first divided by its largest absolute value, so the sum of squares neither
    overflows (rows at 1e20 in float32, or beyond float32's range in float64) nor underflows
    (rows at 1e-200). The work is done in float64 for float64 input, whatever ``dtype``.

    Examples
    --------
    >>> l2_normalize(np.array([[3e300, 4e300], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    x = np.asarray(x)
    x = x.astype(np.result_type(x.dtype, np.float32), copy=False)
    peak = np.max(np.abs(x), axis=1, keepdims=True)
    x = x / np.where(peak > 0, peak, 1)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1), dtype=dtype)


def knn_neighbors(
    bank: Any,
    queries: Any,
    k: int,
    *,
    backend: str = "auto",
    chunk_size: int = 4096,
    normalize: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k cosine neighbours of every query in the bank.

    Similarity s_ij = <q_i / ‖q_i‖, b_j / ‖b_j‖> (inner product if ``normalize=False``).

    Parameters
    ----------
    bank, queries : array_like or torch.Tensor, shapes (n, d) and (m, d)
    k : int
        Number of neighbours; a k above n is clamped to n with a RuntimeWarning.
    backend : {"auto", "faiss", "brute"}
        "auto" uses faiss when it can be imported.
    chunk_size : int
        Queries per search call; bounds the working memory.
    normalize : bool
        L2-normalise bank and queries first (cosine similarity).

    Returns
    -------
    similarities : numpy.ndarray, float32, shape (m, k)
    indices : numpy.ndarray, int64, shape (m, k)
        Sorted by decreasing similarity, ties by increasing bank index.

    Examples
    --------
    >>> import numpy as np
    >>> bank = np.eye(3, dtype=np.float32)
    >>> sims, idx = knn_neighbors(bank, np.array([[1.0, 0.5, 0.0]]), 2, backend="brute")
    >>> idx.tolist()
    [[0, 1]]
    """
    # normalised block by block into float32; the inputs keep their own precision until then
    bank_arr = as_features(bank, "bank", dtype=None)
    query_arr = as_features(queries, "queries", dtype=None)
    check_same_width(bank_arr, query_arr, ("bank", "queries"))
    k = _clamp_k(k, bank_arr.shape[0])[0]
    _check_chunk(chunk_size)
    search = _make_searcher(bank_arr, backend, normalize=normalize)
    sims = np.empty((query_arr.shape[0], k), dtype=np.float32)
    idx = np.empty((query_arr.shape[0], k), dtype=np.int64)
    for start in range(0, query_arr.shape[0], chunk_size):
        stop = start + chunk_size
        q = query_arr[start:stop]
        sims[start:stop], idx[start:stop] = _search_chunk(
            search, l2_normalize(q) if normalize else _float32(q, "queries"), k,
            bank_arr.shape[0],
        )
    return sims, idx


def knn_accuracy(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    test_labels: Any,
    *,
    k: int | Sequence[int] = (20, 200),
    temperature: float = 0.07,
    num_classes: int | None = None,
    backend: str = "auto",
    chunk_size: int = 4096,
) -> dict[int, KNNResult]:
    """Weighted kNN top-1 / top-5 accuracy of test features against a labelled bank.

    The vote of class c for query q is  sum over the k nearest bank items j with label c of
    exp(s_qj / T),  s the cosine similarity (Wu et al. 2018; Caron et al. 2021 use k = 20,
    T = 0.07). Every k of the list reuses one search with the largest k. The votes are
    computed as exp((s_qj - max_j s_qj) / T), the same ranking without overflow at small T
    (as T -> 0 the vote becomes the nearest neighbour's class). Labels may be any
    non-negative integers: classes are ranked by vote, then by increasing label; the memory
    used depends on the number of distinct labels, not on their values.

    Parameters
    ----------
    train_features, test_features : array_like or torch.Tensor, shapes (n, d) and (m, d)
    train_labels, test_labels : array_like of int, shapes (n,) and (m,)
    k : int or sequence of int
        Neighbour counts; values above n are clamped to n with a RuntimeWarning.
    temperature : float
        T > 0 of the vote weights.
    num_classes : int, optional
        Declares the classes 0..num_classes-1 (labels must be below it). By default the
        classes are the labels that occur in either set. Classes without a vote fill the
        top-5 by increasing label.
    backend, chunk_size
        See :func:`knn_neighbors`.

    Returns
    -------
    dict mapping each (clamped) k to a :class:`KNNResult`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> centers = 10 * np.eye(4)
    >>> y = rng.integers(0, 4, 400)
    >>> x = centers[y] + rng.normal(size=(400, 4))
    >>> res = knn_accuracy(x[:300], y[:300], x[300:], y[300:], k=20, backend="brute")
    >>> res[20].top1
    1.0
    """
    bank = as_features(train_features, "train_features", dtype=None)
    queries = as_features(test_features, "test_features", dtype=None)
    check_same_width(bank, queries, ("train_features", "test_features"))
    bank_y = as_labels(train_labels, bank.shape[0], "train_labels")
    query_y = as_labels(test_labels, queries.shape[0], "test_labels")
    temperature = positive_real(temperature, "temperature")
    _check_chunk(chunk_size)
    ks = sorted(set(_clamp_k(k, len(bank))))
    classes = _ranked_classes(np.concatenate([bank_y, query_y]), num_classes)
    bank_c = np.searchsorted(classes, bank_y)  # class positions 0..len(classes)-1
    search = _make_searcher(bank, backend, normalize=True)
    n_top = min(5, classes.size)
    preds = {kk: np.empty((len(queries), n_top), dtype=np.int64) for kk in ks}
    for start in range(0, len(queries), chunk_size):
        q = l2_normalize(queries[start : start + chunk_size])
        sims, idx = _search_chunk(search, q, ks[-1], len(bank))
        for kk in ks:
            scores = class_votes(sims[:, :kk], bank_c[idx[:, :kk]], classes.size, temperature)
            preds[kk][start : start + len(sims)] = classes[_top_classes(scores, n_top)]
    out = {}
    for kk in ks:
        p = preds[kk]
        out[kk] = KNNResult(
            k=kk,
            temperature=float(temperature),
            top1=float(np.mean(p[:, 0] == query_y)),
            top5=float(np.mean((p == query_y[:, None]).any(axis=1))),
            predictions=p,
        )
    return out


def class_votes(
    similarities: np.ndarray, neighbor_labels: np.ndarray, num_classes: int, temperature: float
) -> np.ndarray:
    """Per-class vote sum_j [y_j = c] exp((s_j - max_j s_j) / T) for every query.

    float64, shape (m, C); ``neighbor_labels`` are class positions 0..C-1. Subtracting each
    query's largest similarity scales its votes by one positive factor (the ranking of
    exp(s_j / T) is unchanged) and keeps every weight in (0, 1], so no vote overflows.
    """
    m, k = similarities.shape
    s = similarities.astype(np.float64)
    weights = np.exp((s - s.max(axis=1, keepdims=True)) / temperature)
    flat = (np.arange(m)[:, None] * num_classes + neighbor_labels).ravel()
    votes = np.bincount(flat, weights=weights.ravel(), minlength=m * num_classes)
    return votes.reshape(m, num_classes)


def _top_classes(scores: np.ndarray, n_top: int) -> np.ndarray:
    classes = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    order = np.lexsort((classes, -scores), axis=1)
    return order[:, :n_top]


def _ranked_classes(labels: np.ndarray, num_classes: int | None) -> np.ndarray:
    """The sorted labels a query can be predicted: those that occur, plus, when the classes
    are declared as 0..num_classes-1, the (at most 5) smallest absent ones, which are all that
    can fill a top-5 with zero votes."""
    present = np.unique(labels)
    if num_classes is None:
        return present
    num_classes = positive_int(num_classes, "num_classes")
    if present[-1] >= num_classes:
        raise ValueError(f"num_classes={num_classes} but the labels go up to {present[-1]}")
    # among 0..len(present)+4 at least 5 labels are absent
    absent = np.setdiff1d(np.arange(min(present.size + 5, num_classes)), present)[:5]
    return np.union1d(present, absent)


def _clamp_k(k: int | Sequence[int], n_bank: int) -> list[int]:
    ks = [k] if np.ndim(k) == 0 else list(k)  # an int, or a list / tuple / array of them
    out = []
    for kk in ks:
        kk = positive_int(kk, "k")
        if kk > n_bank:
            warnings.warn(
                f"k={kk} is larger than the bank ({n_bank} items); using k={n_bank}",
                RuntimeWarning,
                stacklevel=3,
            )
        out.append(min(kk, n_bank))
    if not out:
        raise ValueError("k must be a positive integer or a non-empty list of them")
    return out


def _check_chunk(chunk_size: int) -> None:
    if not is_integer(chunk_size):
        raise TypeError(f"chunk_size must be an int, got {type(chunk_size).__name__}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


def _make_searcher(bank: np.ndarray, backend: str, *, normalize: bool) -> Searcher:
    if backend not in BACKENDS:
        raise ValueError(f"unknown kNN backend {backend!r}; expected one of {BACKENDS}")
    if backend == "auto":
        try:
            import faiss  # noqa: F401
        except ImportError:
            backend = "brute"
        else:
            backend = "faiss"
    blocks = _bank_blocks(bank, normalize)
    return _faiss_searcher(blocks, *bank.shape) if backend == "faiss" else _brute_searcher(blocks)


def _bank_blocks(bank: np.ndarray, normalize: bool) -> Iterator[np.ndarray]:
    """The (normalised) bank in row blocks: both backends see bit-identical rows, and the
    index is filled without a second full-size copy of the bank."""
    for start in range(0, bank.shape[0], BANK_BLOCK):
        block = bank[start : start + BANK_BLOCK]
        yield l2_normalize(block) if normalize else _float32(block, "bank")


def _float32(x: np.ndarray, name: str) -> np.ndarray:
    """Un-normalised rows for an inner-product search, refused when float32 cannot hold them."""
    return as_features(x, name, dtype=np.float32)


def _faiss_searcher(blocks: Iterator[np.ndarray], n: int, dim: int) -> Searcher:
    import faiss

    gpus = faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0
    rows = gpu_shard_rows(n, dim, _gpu_free_bytes(gpus)) if gpus else []
    if gpus and not rows:
        warnings.warn(f"the kNN bank ({n * dim * 4 / 2**30:.1f} GiB) does not fit the free "
                      f"memory of {gpus} GPU(s); searching on the CPU", RuntimeWarning,
                      stacklevel=4)
    if rows:
        # the index lives on the GPUs only; the resources must live as long as it does
        resources = [faiss.StandardGpuResources() for _ in rows]
        shards = _fill_shards(blocks, rows, lambda i: _gpu_flat_ip(faiss, resources[i], i, dim))
        owned = (resources, shards, _combine_shards(faiss, shards, dim))
    else:
        cpu = faiss.IndexFlatIP(dim)
        for block in blocks:
            cpu.add(block)
        owned = ((), (), cpu)
    cpu_copy: list[Any] = []  # made from the GPU index only if a search needs k > GPU_MAX_K

    def search(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        use = owned[2]
        if rows and k > GPU_MAX_K:
            if not cpu_copy:
                cpu_copy.append(faiss.index_gpu_to_cpu(use))
            use = cpu_copy[0]
        # faiss multiplies 4096-query blocks by bank blocks of `distance_compute_blas_database_bs`
        # rows (default 1024); 4096 was ~10% faster here (benchmarks/results/evaluation.md) for
        # a 64 MB block. The global setting is restored after the call.
        old_bs = getattr(faiss.cvar, "distance_compute_blas_database_bs", None)
        if old_bs is not None:
            faiss.cvar.distance_compute_blas_database_bs = max(old_bs, BANK_BLOCK)
        try:
            sims, idx = use.search(np.ascontiguousarray(q), k)
        finally:
            if old_bs is not None:
                faiss.cvar.distance_compute_blas_database_bs = old_bs
        return sims, idx.astype(np.int64)

    return search


def gpu_shard_rows(
    n: int, dim: int, free_bytes: Sequence[int], *, reserve: int = GPU_RESERVE_BYTES
) -> list[int]:
    """Bank rows to place on each GPU: all on the first if they fit, else an even split.

    A GPU holds ``(free - reserve) // (4 dim)`` float32 rows (``reserve`` is left for faiss's
    search buffers). The bank goes to the fewest GPUs (first ones first) whose even split
    fits each of them; ``[]`` when not even all of them can hold it.

    Examples
    --------
    >>> gib = 2**30
    >>> gpu_shard_rows(1_281_167, 2048, [40 * gib] * 8)  # ImageNet bank, 9.8 GiB: one GPU
    [1281167]
    >>> gpu_shard_rows(1_281_167, 2048, [8 * gib] * 8)
    [640584, 640583]
    >>> gpu_shard_rows(10, 4, [2 * gib + 40])  # room for 2 rows only
    []
    """
    if n < 1 or dim < 1:
        raise ValueError(f"the bank must have rows and columns, got {n} x {dim}")
    capacity = [max(0, (free - reserve) // (4 * dim)) for free in free_bytes]
    for count in range(1, len(capacity) + 1):
        base, extra = divmod(n, count)
        rows = [base + (i < extra) for i in range(count)]
        if all(r <= c for r, c in zip(rows, capacity, strict=False)):
            return rows
    return []


def _fill_shards(
    blocks: Iterator[np.ndarray], rows: Sequence[int], make_index: Callable[[int], Any]
) -> list[Any]:
    """Indexes ``make_index(i)`` holding consecutive runs of ``rows[i]`` bank rows, in order."""
    shards = [make_index(i) for i in range(len(rows))]
    current = 0
    for block in blocks:
        while len(block):
            while shards[current].ntotal == rows[current]:
                current += 1
            take = rows[current] - shards[current].ntotal
            shards[current].add(np.ascontiguousarray(block[:take]))
            block = block[take:]
    return shards


def _combine_shards(faiss: Any, shards: list[Any], dim: int) -> Any:
    """One index over the shards; a neighbour's id is its row in the whole bank."""
    if len(shards) == 1:
        return shards[0]
    combined = faiss.IndexShards(dim, True, True)  # threaded, ids offset by earlier shards
    for shard in shards:
        combined.add_shard(shard)
    return combined


def _gpu_flat_ip(faiss: Any, resources: Any, device: int, dim: int) -> Any:
    config = faiss.GpuIndexFlatConfig()
    config.device = device
    return faiss.GpuIndexFlatIP(resources, dim, config)


def _gpu_free_bytes(gpus: int) -> list[int]:
    import torch

    return [torch.cuda.mem_get_info(i)[0] for i in range(gpus)]


def _brute_searcher(blocks: Iterator[np.ndarray]) -> Searcher:
    bank = np.concatenate(list(blocks))

    def search(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims = q @ bank.T
        if k < sims.shape[1]:
            idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        else:
            idx = np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
        return np.take_along_axis(sims, idx, axis=1), idx.astype(np.int64)

    return search


def _search_chunk(
    search: Searcher, q: np.ndarray, k: int, n_bank: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k with ties broken by bank index, whatever order the backend returns ties in."""
    width = min(k + 1, n_bank)
    sims, idx = search(q, width)
    sims, idx = _sort_rows(sims, idx)
    out_s, out_i = sims[:, :k].copy(), idx[:, :k].copy()
    if width == k:
        return out_s, out_i
    # The tie group at rank k may extend beyond the candidates: widen the search for those rows
    # until a strictly smaller similarity (or the whole bank) closes the group.
    rows = np.flatnonzero(sims[:, k - 1] == sims[:, k])
    while rows.size:
        width = min(2 * width, n_bank)
        s2, i2 = _sort_rows(*search(q[rows], width))
        out_s[rows], out_i[rows] = s2[:, :k], i2[:, :k]
        if width == n_bank:
            break
        rows = rows[s2[:, k - 1] == s2[:, width - 1]]
    return out_s, out_i


def _sort_rows(sims: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # faiss returns rows sorted by similarity; only rows out of order or holding equal
    # similarities need the (similarity, index) sort.
    rows = np.flatnonzero((sims[:, 1:] >= sims[:, :-1]).any(axis=1))
    if rows.size == 0:
        return sims, idx
    sims, idx = sims.copy(), idx.copy()
    order = np.lexsort((idx[rows], -sims[rows]), axis=1)
    sims[rows] = np.take_along_axis(sims[rows], order, axis=1)
    idx[rows] = np.take_along_axis(idx[rows], order, axis=1)
    return sims, idx
