"""Odd command lines of ``python -m adapters.continue_train``: an error naming the culprit,
exit status 2 and nothing written, never a traceback."""

from __future__ import annotations

import pytest

from adapters.continue_train import EXIT_BAD_INPUT, main
from adapters.train import train
from tests.adapters.train_helpers import one_thread, tiny_config  # noqa: F401

TINY = ["--backbone", "small_cnn", "--dataset", "fake", "--batch-size", "8", "--max-steps", "1",
        "--no-progress"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--head-option", "expander_dim=-1"], "'expander_dim' of method 'vicreg' is a size"),
        (["--head-option", "expander_dim=abc"], "expected an integer >= 1"),
        (["--head-option", "expander_dim=2.5"], "got 2.5"),
        (["--method", "swav", "--head-option", "queue_length=-3"], "integer >= 0, got -3"),
        (["--view-option", "nope=1"], "unknown view option(s) ['nope'] for method 'vicreg'"),
        (["--device", "tpu"], "--device 'tpu' is not a device"),
        # criterion settings that used to be silently ignored or overwritten
        (["--criterion", "e2mc", "--batch-size", "16", "--ent-coeff", "3",
          "--criterion-option", "ent_coeff=5"], "['ent_coeff'] given both by their own flag"),
        (["--cov-coeff", "1"], "['cov_coeff'] need a --criterion"),
        (["--criterion-option", "gamma=2"], "['gamma'] need a --criterion"),
    ],
)
def test_bad_pretrain_options_are_named(args, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY, *args], mode="pretrain") == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def run_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "run"
    return train(tiny_config(out, max_steps=1)).checkpoint


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layout", "nope"], "unknown checkpoint layout 'nope'"),
        # a layout names an official release; a run's own checkpoint used to ignore it
        (["--layout", "vicreg_full"], "layout 'vicreg_full' does not apply"),
        (["--checkpoint", "DIR"], "is a directory, not a file"),
    ],
)
def test_bad_continue_options_are_named(args, message, run_checkpoint, tmp_path, capsys):
    args = [str(tmp_path) if a == "DIR" else a for a in args]
    if "--checkpoint" not in args:
        args = ["--checkpoint", str(run_checkpoint), *args]
    out = tmp_path / "run"
    rc = main(["--out", str(out), "--dataset", "fake", "--batch-size", "8", "--max-steps", "1",
               "--no-progress", *args], mode="continue")
    assert rc == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "options, expected",
    [
        # --criterion-option values used to be overwritten by the method's reference settings
        ({"ent_coeff": 5.0, "transform": "gaussian_cdf"},
         {"ent_coeff": 5.0, "transform": "gaussian_cdf", "cov_coeff": 1.0, "m": None}),
        ({"m": 3}, {"ent_coeff": 10.0, "transform": "sigmoid", "m": 3}),
    ],
)
def test_criterion_options_are_used(options, expected, tmp_path):
    from adapters.train import build_criterion

    # VICReg's reference: sigmoid, ent_coeff 10, cov_coeff 1 (docs/method.md)
    criterion = build_criterion(tiny_config(tmp_path, criterion="e2mc",
                                            criterion_options=options))
    assert {k: getattr(criterion, k) for k in expected} == expected


def test_numpy_integers_are_integers_and_bools_are_not():
    # one integer check (entropylib.validation.is_integer): np.int64 sizes, e.g. read from an
    # array of settings, were refused here while the estimators took them
    import numpy as np
    import torch

    from adapters.augment import check_size
    from adapters.backbones import build_backbone

    assert check_size("crop", np.int64(24)) == 24 and type(check_size("crop", np.int64(24))) is int
    net = build_backbone("small_cnn", in_channels=np.int64(1))
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, net.feature_dim)
    for bad in (True, 2.0, np.float64(3)):
        with pytest.raises(ValueError, match="in_channels must be a positive int"):
            build_backbone("small_cnn", in_channels=bad)
