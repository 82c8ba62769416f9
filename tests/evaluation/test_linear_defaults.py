"""The SGD linear probe's defaults are the paper's linear-evaluation protocol.

docs/evaluation.md: SGD with momentum 0.9, batch 256, a cosine schedule over 100 epochs;
learning rate 0.3 and weight decay 1e-6 as VICReg's linear head. Data are loaded in the main
process by default (num_workers 0), so a seeded run gives the same numbers on any machine.
Short tests run the probe for a few epochs, so nothing else would notice a changed default.
"""

import inspect

from evaluation.linear import sgd_linear_probe


def test_sgd_probe_defaults_are_the_protocol():
    defaults = {
        name: p.default
        for name, p in inspect.signature(sgd_linear_probe).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    assert {k: defaults[k] for k in ("epochs", "batch_size", "lr", "weight_decay")} == {
        "epochs": 100,
        "batch_size": 256,
        "lr": 0.3,
        "weight_decay": 1e-6,
    }
    assert defaults["num_workers"] == 0
    assert defaults["seed"] == 0
