"""The slim install: without torch, ``import entropylib`` and every numpy / numba estimator
work, and the torch parts say which extra to install."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import entropylib

EXTRA = 'pip install "entropylib[torch]"'

# every estimator on every non-torch backend, marginal and joint, on one fixed sample
_RUN_ESTIMATORS = """
import json
import numpy as np
import entropylib

x = np.random.default_rng(0).normal(size=(600, 2))
out = {}
for name, spec in entropylib.methods().items():
    if "entropy" not in spec["measures"]:
        continue
    for backend in spec["backends"]:
        if backend != "torch":
            out[f"{name} {backend}"] = entropylib.estimate(x, name, backend=backend).tolist()
    for backend in spec["joint_backends"]:
        if backend != "torch":
            value = entropylib.estimate(x, name, joint=True, backend=backend)
            out[f"{name} joint {backend}"] = float(value)
"""


def _without_torch(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in which torch (and what needs it) cannot import."""
    blocker = textwrap.dedent("""
        import sys
        for name in ("torch", "torchvision", "faiss"):
            sys.modules[name] = None  # "import torch" now raises ModuleNotFoundError
    """)
    return subprocess.run([sys.executable, "-c", blocker + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=600)


def test_estimators_run_without_torch_and_match():
    result = _without_torch(_RUN_ESTIMATORS + """
import sys
assert sys.modules["torch"] is None
print(json.dumps(out))
""")
    assert result.returncode == 0, result.stderr[-3000:]
    without = json.loads(result.stdout)
    scope = {}
    exec(_RUN_ESTIMATORS, scope)  # the same calls here, where torch is installed
    assert without.keys() == scope["out"].keys()
    assert any(" numba" in key for key in without) and any(" joint " in key for key in without)
    for key, value in scope["out"].items():
        np.testing.assert_array_equal(without[key], value, err_msg=key)


@pytest.mark.parametrize(
    ("code", "feature"),
    [
        ("import numpy as np, entropylib\n"
         "entropylib.estimate(np.arange(50.0), 'vasicek', backend='torch')",
         'backend="torch"'),
        ("import entropylib.criteria", "entropylib.criteria"),
        ("from entropylib.criteria.e2mc import E2MC", "entropylib.criteria"),
    ],
)
def test_torch_parts_name_the_extra(code, feature):
    result = _without_torch(code)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ") and feature in last and EXTRA in last, last


def test_core_dependencies_are_the_estimators_own():
    """pyproject's core list is exactly what the numpy / numba estimators import."""
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    core = {dep.split(">")[0].split("=")[0] for dep in project["dependencies"]}
    assert core == {"numpy", "scipy", "numba", "array-api-compat"}
    assert project["optional-dependencies"]["torch"][0].startswith("torch")
    assert entropylib.estimate(np.arange(10.0) ** 1.5, "vasicek", m=2) < 10
