"""``python -m adapters.pretrain``: train an SSL base model from scratch with the same loop.

For small data sets without an official checkpoint. Same options as
``adapters.continue_train`` (minus ``--checkpoint``; ``--backbone`` is required and
``--criterion`` defaults to none)::

    python -m adapters.pretrain --method vicreg --backbone small_cnn --dataset fashion-mnist \\
        --epochs 5 --out runs/pretrain_vicreg
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from adapters.continue_train import main as _main


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    return _main(sys.argv[1:] if argv is None else argv, mode="pretrain")


if __name__ == "__main__":
    sys.exit(main())
