"""Which faiss index serves a search: the GPU copy only when a GPU exists and k <= 2048.

faiss's GPU search is limited to k <= 2048, so the searcher copies the index to the CPU for a
larger k (only when such a search comes).
This machine has CPU faiss, so the GPU side is stood in for by a recording fake (its "GPU
index" is a CPU IndexFlatIP), to check the switch itself.
"""

import numpy as np
import pytest

from evaluation import knn

faiss = pytest.importorskip("faiss")


class FakeGpu:
    """index_cpu_to_gpu stand-in: wraps a CPU index and records the k of every search."""

    def __init__(self) -> None:
        self.searches: list[int] = []

    def to_gpu(self, res, device, index):
        assert device == 0  # the first GPU: the only one a one-GPU machine has
        outer = self

        class Recording:
            def add(self, block):
                index.add(block)

            def search(self, q, k):
                outer.searches.append(k)
                return index.search(q, k)

        return Recording()


@pytest.fixture
def bank():
    rng = np.random.default_rng(0)
    return rng.normal(size=(2100, 8)).astype(np.float32), rng.normal(size=(5, 8)).astype(np.float32)


def test_no_gpu_no_gpu_index(monkeypatch, bank):
    def refuse(*args):
        raise AssertionError("a GPU index was built on a machine without GPUs")

    monkeypatch.setattr(faiss, "StandardGpuResources", refuse, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", refuse, raising=False)
    search = knn._make_searcher(bank[0], "faiss", normalize=True)
    assert search(bank[1], 3)[1].shape == (5, 3)


def test_gpu_serves_k_up_to_2048_and_the_cpu_index_the_rest(monkeypatch, bank):
    cpu = knn._make_searcher(bank[0], "faiss", normalize=True)  # this machine: no GPU
    searches: list[int] = []

    class RecordingGpuIndex:
        """GpuIndexFlatIP stand-in: a CPU IndexFlatIP that records the k of every search."""

        def __init__(self, resources, dim, config):
            assert config.device == 0  # the first GPU: the only one a one-GPU machine has
            self.index = faiss.IndexFlatIP(dim)

        @property
        def ntotal(self):
            return self.index.ntotal

        def add(self, block):
            self.index.add(block)

        def search(self, q, k):
            searches.append(k)
            return self.index.search(q, k)

    class Config:
        device = -1

    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "GpuIndexFlatConfig", Config, raising=False)
    monkeypatch.setattr(faiss, "GpuIndexFlatIP", RecordingGpuIndex, raising=False)
    monkeypatch.setattr(faiss, "index_gpu_to_cpu", lambda gpu: gpu.index, raising=False)
    monkeypatch.setattr(knn, "_gpu_free_bytes", lambda gpus: [2**40] * gpus)
    search = knn._make_searcher(bank[0], "faiss", normalize=True)
    for k in (1, 2048, 2049):
        np.testing.assert_array_equal(search(bank[1], k)[1], cpu(bank[1], k)[1])
    assert searches == [1, 2048]  # k = 2049 went to the CPU copy
