"""entropylib.threads: the real affinity, caps that are not numbers, and numba's thread count
inside :func:`threads.numba_threads` (read back from numba)."""

import os

import numba
import pytest

from entropylib import threads


def test_available_is_the_affinity_of_this_process(monkeypatch):
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    assert threads.available() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("cap", ["0", "", " ", "-2", "two"])
def test_a_cap_that_is_not_a_positive_integer_is_ignored(monkeypatch, cap):
    monkeypatch.setenv("NUMBA_NUM_THREADS", cap)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert threads.available() == 3


@pytest.mark.parametrize("count", [1, 2, 10_000])
def test_numba_threads_runs_on_the_count_at_most_the_pool(count):
    pool = numba.config.NUMBA_NUM_THREADS
    before = numba.get_num_threads()
    with threads.numba_threads(count):
        assert numba.get_num_threads() == min(count, pool)
    assert numba.get_num_threads() == before
