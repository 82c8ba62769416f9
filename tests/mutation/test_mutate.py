"""mutation/mutate.py: the numba cache of kernel modules and the choice of tests.

The script is loaded from its file (``mutation`` is a folder of tools, not a package).
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("mutate", ROOT / "mutation" / "mutate.py")
mutate = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("mutate", mutate)  # its dataclasses look their module up there
_spec.loader.exec_module(mutate)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from numba import njit\n@njit(cache=True)\ndef f(x):\n    return x\n", True),
        ("import numba\n@numba.njit\ndef f(x):\n    return x\n", True),
        ("import numba\n@numba.jit(nopython=True)\ndef f(x):\n    return x\n", True),
        ("import numba\ndef f():\n    return numba.get_num_threads()\n", False),
        ("def njit_like(x):\n    return x\n", False),
    ],
)
def test_modules_with_kernels_are_recognised(source, expected):
    assert mutate.uses_numba(source) is expected


def test_the_kernel_modules_of_the_project_get_their_own_cache():
    for name in ("numba_kernels", "knn_kernels", "kde_kernels"):
        assert mutate.uses_numba((ROOT / "entropylib" / f"{name}.py").read_text())
    assert not mutate.uses_numba((ROOT / "entropylib" / "threads.py").read_text())


def test_each_mutant_starts_from_the_warm_cache_without_the_module_own_entries():
    cache = mutate.NumbaCache(Path("entropylib/kde_kernels.py"))
    try:
        folder = cache.warm / "entropylib_abc"  # numba's folder for one source directory
        folder.mkdir()
        for name in ("kde_kernels.log_kernel_sums-17.py310.nbi", "kde_kernels.f-3.py310.1.nbc",
                     "knn_kernels.grid-40.py310.nbi", "numba_kernels._floor-63.py310.nbi"):
            (folder / name).write_text(name)
        first = cache.for_mutant()
        kept = sorted(p.name for p in first.rglob("*") if p.is_file())
        assert kept == ["knn_kernels.grid-40.py310.nbi", "numba_kernels._floor-63.py310.nbi"]
        # what one mutant compiled is gone for the next one
        (first / "entropylib_abc" / "kde_kernels.log_kernel_sums-17.py310.nbi").write_text("x")
        second = cache.for_mutant()
        assert not list(second.rglob("kde_kernels.*"))
        assert len(list(cache.warm.rglob("*"))) == 5  # the warm cache itself is left as it was
    finally:
        cache.close()
    assert not cache.root.exists()


def test_tests_given_from_another_folder_are_run_from_the_root(monkeypatch):
    monkeypatch.chdir(ROOT / "tests")
    assert mutate._from_root("entropylib/test_kde.py") == os.path.join(
        "tests", "entropylib", "test_kde.py"
    )
    assert mutate._from_root("entropylib/test_kde.py::test_a[1-2]") == os.path.join(
        "tests", "entropylib", "test_kde.py"
    ) + "::test_a[1-2]"


def test_a_keyword_selection_reaches_pytest(monkeypatch):
    seen = {}

    def fake_main_run(module, source, chosen, tests, cache, args):
        seen["tests"], seen["cache"] = tests, cache
        return []

    monkeypatch.setattr(mutate, "_run_mutants", fake_main_run)
    mutate.main(["entropylib/threads.py", "--tests", "tests/entropylib/test_backend_auto.py",
                 "-k", "threads", "--max-mutants", "1"])
    assert seen["tests"] == ["tests/entropylib/test_backend_auto.py", "-k", "threads"]
    assert seen["cache"] is None  # no kernels in threads.py: the usual numba cache
