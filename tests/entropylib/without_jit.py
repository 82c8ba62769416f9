"""Run a test script with numba's JIT off, so the kernels run as Python and any index past an
array raises (compiled numba has no bounds checks)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_without_jit(script: str) -> None:
    """Run ``script`` in a fresh interpreter with ``NUMBA_DISABLE_JIT=1``; it must print "ok"."""
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"
