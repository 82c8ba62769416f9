"""``python -m evaluation.demo`` in miniature: what it prints is what it used."""

import re

import numpy as np
import pytest
from sklearn.datasets import load_digits

from adapters.checkpoints import load_checkpoint
from evaluation import demo


def _digits_split_sizes():
    # every 5th image of each class (its 0th, 5th, ...) is a test image
    counts = np.bincount(load_digits().target)
    n_test = int(sum(-(-c // 5) for c in counts))
    return int(counts.sum()) - n_test, n_test


def _check_run(out, printed, *, steps, n_bank, n_queries, n_train):
    assert (f"a kNN bank of {n_bank:,} training images and {n_queries:,} test queries"
            in printed), printed
    assert f"of the {n_queries:,} queries" in printed
    assert load_checkpoint(out / "checkpoint.pt")["step"] == steps
    assert f"trained {steps} steps of {demo.BATCH} images" in printed
    assert f"passes over the {n_train:,} training images" in printed
    png = out / demo.PROFILE_PNG
    assert png.read_bytes()[:4] == b"\x89PNG" and f"before and after: {png}" in printed
    rows = {name: re.search(rf"{re.escape(name)}\s+(\S+)\s+(\S+)", printed)
            for name in ("kNN top-1 (%)", "mean marginal entropy (nats)",
                         "off-diagonal covariance energy", "RankMe")}
    assert all(rows.values()), printed
    assert 10 < float(rows["kNN top-1 (%)"].group(1)) <= 100  # far above chance (10 classes)


def test_demo_on_digits_prints_the_sizes_and_steps_used(tmp_path, monkeypatch, capsys):
    # an empty Fashion-MNIST folder: the demo falls back to digits and says so
    monkeypatch.setenv("ENTROPYLIB_FASHION_MNIST", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    n_train, n_test = _digits_split_sizes()
    steps = n_train // demo.BATCH + 1  # more steps than one pass over digits holds
    out = tmp_path / "demo"
    assert demo.run(str(out), steps=steps, bank=10_000, queries=10_000, progress=False) == 0
    printed = capsys.readouterr().out
    assert "not installed in" in printed and "using scikit-learn's digits" in printed
    _check_run(out, printed, steps=steps, n_bank=n_train, n_queries=n_test, n_train=n_train)


@pytest.mark.requires_fashion_mnist
def test_demo_on_fashion_mnist_prints_the_sizes_and_steps_used(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo.run(str(out), steps=1, bank=300, queries=100, progress=False) == 0
    printed = capsys.readouterr().out
    assert "data: Fashion-MNIST from" in printed
    _check_run(out, printed, steps=1, n_bank=300, n_queries=100, n_train=60_000)


def test_demo_refuses_a_step_count_below_one(capsys):
    with pytest.raises(SystemExit) as exc:
        demo.main(["--steps", "0"])
    assert exc.value.code == 2 and "--steps must be at least 1" in capsys.readouterr().err
