"""Run ``python -m adapters.pretrain`` with a fault injected at a chosen point (for tests).

    python -m tests.adapters.faults KIND N -- <adapters.pretrain arguments>

KIND ``kill-in-save``: SIGKILL halfway through writing the N-th checkpoint (a partial temp file
is on disk); ``kill-after-log``: SIGKILL right after the metrics row of step N is written.
"""

from __future__ import annotations

import os
import signal
import sys

import torch

from adapters import checkpoints, train
from adapters.pretrain import main


def _kill_in_save(n: int) -> None:
    calls = [0]
    save = torch.save

    def partial_save(obj, f):
        calls[0] += 1
        if calls[0] == n:
            f.write(b"PK\x03\x04 half of a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        save(obj, f)

    checkpoints.torch.save = partial_save  # one call per checkpoint written


def _kill_after_log(n: int) -> None:
    write = train.MetricsLog.write

    def write_then_kill(self, row):
        write(self, row)
        if row["step"] == n:
            os.kill(os.getpid(), signal.SIGKILL)

    train.MetricsLog.write = write_then_kill


if __name__ == "__main__":
    kind, n, separator, *args = sys.argv[1:]
    assert separator == "--", "usage: KIND N -- <adapters.pretrain arguments>"
    {"kill-in-save": _kill_in_save, "kill-after-log": _kill_after_log}[kind](int(n))
    sys.exit(main(args))
