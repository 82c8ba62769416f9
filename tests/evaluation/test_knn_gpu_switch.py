"""Which faiss index serves a search: the GPU copy only when a GPU exists and k <= 2048.

faiss's GPU search is limited to k <= 2048, so the searcher keeps a CPU index for larger k.
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
    fake = FakeGpu()
    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", fake.to_gpu, raising=False)
    search = knn._make_searcher(bank[0], "faiss", normalize=True)
    for k in (1, 2048, 2049):
        np.testing.assert_array_equal(search(bank[1], k)[1], cpu(bank[1], k)[1])
    assert fake.searches == [1, 2048]
