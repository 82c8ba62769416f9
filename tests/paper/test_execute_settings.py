"""A unit's protocol options in the registry's terms, and what a training unit's result
summarises from its metrics log."""

import json
import math

import pytest

from evaluation.protocols import make_options
from paper.execute import _metrics_summary, protocol_settings
from paper.units import RunStore, Unit

DATA = {"name": "digits", "root": None, "eval_train_limit": None, "eval_test_limit": None,
        "val_fraction": 0.25, "transfer": "digits", "transfer_limit": 300}


def _settings(protocol, options, seed):
    return protocol_settings(Unit("evaluate", {"data": DATA, "protocol": protocol,
                                               "options": options, "seed": seed}))


def test_label_percentages_become_fractions_and_the_units_seed_is_the_only_seed():
    # the experiment writes label fractions in percent (1% and 10% of the labels) and one
    # seed per unit; the registry takes fractions of 1 and a tuple of seeds
    linear = make_options("linear", _settings("linear", (("fractions", (1, 10)),
                                                         ("Cs", [0.5, 2.0])), 3))
    assert linear.fractions == (0.01, 0.1) and linear.seeds == (3,)
    assert linear.cs == (0.5, 2.0) and linear.val_fraction == 0.25
    semisup = make_options("semisup", _settings("semisup", (("fractions", (50,)),
                                                           ("epochs", 2.0)), 4))
    assert semisup.fractions == (0.5,) and semisup.seeds == (4,)
    assert semisup.finetune_epochs == 2 and isinstance(semisup.finetune_epochs, int)
    transfer = make_options("transfer", _settings("transfer", (("fraction", 10),), 5))
    assert transfer.transfer_fraction == 0.1 and transfer.seeds == (5,)
    assert transfer.transfer_dataset == "digits" and transfer.max_train == 300


def test_seedless_protocols_keep_their_options_and_get_no_seed():
    knn = _settings("knn", (("k", 20), ("temperature", 0.05)), None)
    assert "seeds" not in knn
    assert make_options("knn", knn).k == (20,) and make_options("knn", knn).temperature == 0.05
    diagnostics = _settings("diagnostics", (("map_points", 50),), None)
    assert "seeds" not in diagnostics
    assert make_options("separability", diagnostics).map_points == 50
    # the paper's diagnostics read features only: no augmented pairs
    assert make_options("diagnostics", diagnostics).alignment_pairs == 0


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_summary_means_the_last_tenth_of_the_logged_steps(tmp_path):
    # 30 steps: the last tenth is steps 28 to 30; the loss is the step number, the throughput
    # 100 samples/s except 3 slow steps (median of 30 values: 100)
    rows = [{"step": s, "loss": float(s), "samples_per_s": 10.0 if s in (3, 9, 27) else 100.0,
             "lr": 0.5, "phase": "train"} for s in range(1, 31)]
    path = tmp_path / "metrics.jsonl"
    _write(path, rows)
    summary = _metrics_summary(path)
    assert summary["logged_steps"] == 30
    assert summary["median_samples_per_s"] == 100.0
    means = summary["tail_means"]
    assert means["loss"] == (28 + 29 + 30) / 3 and means["step"] == 29.0
    assert means["lr"] == 0.5 and "phase" not in means


def test_a_short_log_keeps_its_last_step_and_drops_non_finite_means(tmp_path):
    path = tmp_path / "metrics.jsonl"
    # 5 steps: a tenth rounds down to none, so the last step alone; its "tc" is NaN
    _write(path, [{"step": s, "loss": 2.0 * s, "tc": 1.0 if s < 5 else math.nan}
                  for s in range(1, 6)])
    summary = _metrics_summary(path)
    assert summary["tail_means"] == {"step": 5.0, "loss": 10.0}
    assert summary["median_samples_per_s"] is None


def test_no_log_or_an_empty_log_summarises_nothing(tmp_path):
    assert _metrics_summary(tmp_path / "metrics.jsonl") == {}
    (tmp_path / "metrics.jsonl").write_text("\n")
    assert _metrics_summary(tmp_path / "metrics.jsonl") == {}


def test_e2mc_options_reach_the_training_configs_own_fields(tmp_path, monkeypatch):
    # train() checks m (an integer >= 1) and the global batch E2MC needs (2m + 1) from the
    # config's own fields before it trains; an option left in criterion_options skips both
    pytest.importorskip("adapters.train")
    from adapters.train import TrainConfig, min_batch
    from paper import execute

    seen = {}
    monkeypatch.setattr(execute, "_train", lambda unit, folder, fields, progress: seen.update(
        config=TrainConfig(out=str(folder / "train"), **fields)))
    base = Unit("pretrain", {"method": "simsiam"})
    options = {"transform": "gaussian_cdf", "ent_coeff": 1.0, "cov_coeff": 25.0, "m": 3,
               "eps": 1e-7, "bias_correction": False}
    unit = Unit("continue", {"method": "simsiam", "data": DATA, "epochs": 1, "max_steps": 2,
                             "batch_size": 8, "seed": 0, "criterion": "e2mc",
                             "options": options}, deps=(base,))
    store = RunStore(tmp_path)
    execute.continue_training(unit, store.folder(unit), store, progress=False)
    config = seen["config"]
    assert (config.transform, config.ent_coeff, config.cov_coeff, config.m, config.eps) == (
        "gaussian_cdf", 1.0, 25.0, 3, 1e-7)
    assert config.criterion_options == {"bias_correction": False}
    assert min_batch(config.criterion, config.m) == 2 * 3 + 1
