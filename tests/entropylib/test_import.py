"""`import entropylib` stays light: no torch, torchvision, faiss or numba, nothing compiled."""

import json
import subprocess
import sys

HEAVY = ("torch", "torchvision", "faiss", "numba")


def loaded_after(code: str) -> dict:
    script = (
        f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_entropylib_imports_no_heavy_module():
    assert loaded_after("import entropylib") == dict.fromkeys(HEAVY, False)


def test_numpy_estimate_imports_numba_only_when_asked():
    small = "import numpy as np, entropylib\nx = np.random.default_rng(0).normal(size=(100, 2))\n"
    assert loaded_after(small + "entropylib.estimate(x, 'vasicek')") == dict.fromkeys(HEAVY, False)
    used = loaded_after(small + "entropylib.estimate(x, 'vasicek', backend='numba')")
    assert used == {"torch": False, "torchvision": False, "faiss": False, "numba": True}


def _module_imports(path, package_dir):
    """Names of the entropylib modules that a file imports, at any level (lazy ones too)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "entropylib":  # from entropylib import spacings, validation
                names |= {f"entropylib.{a.name}" for a in node.names}
            elif node.module.startswith("entropylib."):
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("entropylib.")}
    modules = set()
    for name in names:
        rel = name.split(".")[1:]
        for cut in range(len(rel), 0, -1):  # the longest prefix that is a file
            if (package_dir.joinpath(*rel[:cut]).with_suffix(".py")).exists():
                modules.add(".".join(rel[:cut]))
                break
    return modules


def test_no_import_cycle_between_files():
    """No file of entropylib imports (even lazily) a file that imports it back, directly or
    through others: spacings <-> numba_kernels was one (issue 12)."""
    from pathlib import Path

    import entropylib

    package_dir = Path(entropylib.__file__).parent
    graph = {}
    for path in package_dir.rglob("*.py"):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        name = ".".join(path.relative_to(package_dir).with_suffix("").parts)
        graph[name] = _module_imports(path, package_dir) - {name}

    def reaches(start, goal, seen):
        for nxt in graph.get(start, ()):
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if reaches(nxt, goal, seen):
                    return True
        return False

    cycles = sorted(name for name in graph if reaches(name, name, set()))
    assert cycles == [], f"files on an import cycle: {cycles}"
