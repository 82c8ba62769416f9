"""docs/evaluation.md documents every option of `python -m evaluation` and the metric keys the
protocols actually return."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from evaluation.__main__ import build_parser
from evaluation.protocols import PROTOCOLS, make_options, run_protocol

DOC = (Path(__file__).resolve().parents[2] / "docs" / "evaluation.md").read_text()


def test_every_command_line_option_is_documented():
    flags = [a.option_strings[0] for a in build_parser()._actions
             if a.option_strings and a.dest != "help"]
    assert [f for f in flags if f"`{f}" not in DOC] == []
    assert "torchrun --nproc_per_node" in DOC


def test_the_key_table_names_every_protocol_and_the_keys_it_returns():
    for name in PROTOCOLS:
        assert f"| `{name}` |" in DOC, name
    # the label-free protocols on random features: every key they return is in the table
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 5)), np.repeat(np.arange(3), 20)
    data = SimpleNamespace(train=(x, y), test=(x, y), num_classes=3)
    returned = set()
    for name, options in (("diagnostics", {"alignment_pairs": 0}),
                          ("separability", {"knn_backend": "brute"}),
                          ("knn", {"k": (20,), "knn_backend": "brute"})):
        returned |= set(run_protocol(name, data, make_options(name, options)).metrics)
    assert returned and [k for k in returned if f"`{k}`" not in DOC] == []
    for key in ("alignment", "linear_1", "transfer_digits", "knn_200_top5", "knn_20"):
        assert f"`{key}`" in DOC, key
