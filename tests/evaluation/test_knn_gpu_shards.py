"""faiss on GPUs: the bank goes to the GPUs directly, sharded when one does not hold it.

No GPU here: the placement rule is a plain function checked against a direct reading of its
contract, the shard filling runs with CPU flat indexes standing in for GPU ones, and the
GPU searcher path runs against a stand-in ``faiss`` module that hands out CPU indexes for
GPU ones and counts what is built.
"""

from __future__ import annotations

import math
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from evaluation import knn
from evaluation.knn import GPU_RESERVE_BYTES, gpu_shard_rows, knn_neighbors

faiss = pytest.importorskip("faiss")
GIB = 2**30


def _fits(rows: list[int], dim: int, free: list[int]) -> bool:
    return all(GPU_RESERVE_BYTES + 4 * dim * r <= f for r, f in zip(rows, free, strict=False))


@pytest.mark.parametrize("n, dim, free", [
    (1_281_167, 2048, [40 * GIB] * 8),       # ImageNet bank on 40 GB GPUs: one holds it
    (1_281_167, 2048, [8 * GIB] * 8),        # 6 GiB usable each: two GPUs
    (1_281_167, 2048, [4 * GIB] * 8),        # 2 GiB usable each: five GPUs
    (1_281_167, 8192, [4 * GIB] * 4),        # 39 GiB bank, 8 GiB usable: does not fit
    (7, 3, [GPU_RESERVE_BYTES + 4 * 3 * 3] * 3),  # 3 rows per GPU: 7 need three, 3 + 2 + 2
    (1, 5, [GIB * 3]),
])
def test_placement_uses_the_fewest_gpus_whose_even_split_fits(n, dim, free):
    rows = gpu_shard_rows(n, dim, free)
    if not rows:
        # nothing fits: no even split over any number of the GPUs holds the bank
        assert not any(_fits([math.ceil(n / c)] * c, dim, free) for c in range(1, len(free) + 1))
        return
    assert sum(rows) == n and max(rows) - min(rows) <= 1 and _fits(rows, dim, free)
    # one GPU fewer would not do
    fewer = len(rows) - 1
    assert fewer == 0 or not _fits([math.ceil(n / fewer)] * fewer, dim, free)


def test_placement_examples_and_bad_input():
    assert gpu_shard_rows(1_281_167, 2048, [4 * GIB] * 8) == [256234, 256234, 256233, 256233,
                                                              256233]
    assert gpu_shard_rows(10, 4, [GIB]) == []  # less free than the reserve
    assert gpu_shard_rows(10, 4, []) == []
    with pytest.raises(ValueError, match="rows and columns"):
        gpu_shard_rows(0, 4, [GIB])


def _bank(n=50, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(9, d)).astype(np.float32)


def test_shards_filled_across_block_boundaries_search_like_one_index(monkeypatch):
    monkeypatch.setattr(knn, "BANK_BLOCK", 7)  # blocks of 7 straddle shards of 17, 17, 16
    bank, queries = _bank()
    shards = knn._fill_shards(knn._bank_blocks(bank, True), [17, 17, 16],
                              lambda _i: faiss.IndexFlatIP(bank.shape[1]))
    assert [s.ntotal for s in shards] == [17, 17, 16]
    combined = knn._combine_shards(faiss, shards, bank.shape[1])
    single = faiss.IndexFlatIP(bank.shape[1])
    single.add(knn.l2_normalize(bank))
    q = knn.l2_normalize(queries)
    got, want = combined.search(q, 12), single.search(q, 12)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])


class _StandInGpuFaiss:
    """The faiss API the GPU path calls, backed by CPU indexes, counting what is made."""

    def __init__(self, gpus: int) -> None:
        self.gpus, self.cpu_indexes, self.gpu_devices, self.copies_to_cpu = gpus, 0, [], 0
        self.cvar, self.IndexShards = faiss.cvar, faiss.IndexShards

    def get_num_gpus(self):
        return self.gpus

    def StandardGpuResources(self):  # noqa: N802 - faiss's name
        return object()

    def GpuIndexFlatConfig(self):  # noqa: N802
        return SimpleNamespace(device=None)

    def GpuIndexFlatIP(self, resources, dim, config):  # noqa: N802
        self.gpu_devices.append(config.device)
        return faiss.IndexFlatIP(dim)

    def IndexFlatIP(self, dim):  # noqa: N802
        self.cpu_indexes += 1
        return faiss.IndexFlatIP(dim)

    def index_gpu_to_cpu(self, index):
        self.copies_to_cpu += 1
        return index


@pytest.mark.parametrize("rows_per_gpu, expected_devices", [(60, [0]), (20, [0, 1, 2])])
def test_gpu_index_built_without_a_cpu_copy(monkeypatch, rows_per_gpu, expected_devices):
    bank, queries = _bank()
    stand_in = _StandInGpuFaiss(gpus=4)
    monkeypatch.setitem(sys.modules, "faiss", stand_in)
    monkeypatch.setattr(knn, "_gpu_free_bytes", lambda gpus: [
        GPU_RESERVE_BYTES + 4 * bank.shape[1] * rows_per_gpu] * gpus)
    monkeypatch.setattr(knn, "GPU_MAX_K", 5)
    got = knn_neighbors(bank, queries, 4, backend="faiss")
    assert stand_in.cpu_indexes == 0 and stand_in.copies_to_cpu == 0
    assert stand_in.gpu_devices == expected_devices
    want = knn_neighbors(bank, queries, 4, backend="brute")
    np.testing.assert_array_equal(got[1], want[1])
    # above the GPU's k limit the search runs on a CPU copy made then (once per searcher)
    got = knn_neighbors(bank, queries, 8, backend="faiss")
    assert stand_in.copies_to_cpu == 1 and stand_in.cpu_indexes == 0
    np.testing.assert_array_equal(got[1], knn_neighbors(bank, queries, 8, backend="brute")[1])


def test_bank_too_large_for_the_gpus_searches_on_the_cpu_with_a_warning(monkeypatch):
    bank, queries = _bank()
    stand_in = _StandInGpuFaiss(gpus=2)
    monkeypatch.setitem(sys.modules, "faiss", stand_in)
    monkeypatch.setattr(knn, "_gpu_free_bytes", lambda gpus: [GPU_RESERVE_BYTES] * gpus)
    with pytest.warns(RuntimeWarning, match="does not fit the free memory of 2 GPU"):
        got = knn_neighbors(bank, queries, 4, backend="faiss")
    assert stand_in.cpu_indexes == 1 and stand_in.gpu_devices == []
    np.testing.assert_array_equal(got[1], knn_neighbors(bank, queries, 4, backend="brute")[1])
