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
