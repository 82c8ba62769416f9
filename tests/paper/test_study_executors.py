"""The converged-base study's rule checks, plan labels and the executors that the --quick study
end to end (``test_study.py``, minutes) is the only other test of: ``select``,
``select_continue``, ``measure`` and ``_continue`` on hand-made stored units, and the plateau
unit's uncached features."""

import json

import numpy as np
import pytest

from paper import study
from paper.plan import SEEDLESS_PROTOCOLS
from paper.units import RunStore, Unit


def test_min_epochs_and_cap_must_each_be_multiples_of_the_period():
    with pytest.raises(ValueError, match="multiples"):
        study.PlateauRule(period=2, min_epochs=8, cap=15)  # min_epochs is one, the cap is not
    with pytest.raises(ValueError, match="multiples"):
        study.PlateauRule(period=4, min_epochs=10, cap=16)  # the cap is one, min_epochs is not


def test_quick_grid_is_the_reference_and_one_other_setting():
    # the smoke test must run a real selection: two settings, the reference first
    settings = study.grid_settings(study.quick(), "simsiam")
    assert [is_ref for _, _, is_ref in settings] == [True, False]


def test_evaluation_labels_name_the_eval_seed_of_seeded_protocols_only():
    for cell in study.build_study(study.full()).cells:
        if cell.unit.kind == "evaluate":
            seed = cell.unit.config["seed"]
            assert (seed is None) == (cell.protocol in SEEDLESS_PROTOCOLS)
            assert cell.unit.label.endswith(f"(eval seed {seed})") == (seed is not None)


def _selection(tmp_path, run_result):
    """A select-continue unit whose selection is stored, and the continue run it names."""
    store = RunStore(tmp_path / "runs")
    base = Unit("plateau", {"model": "m"})
    chosen = Unit("select", {"settings": []})
    unit = Unit("select-continue", {"method": "vicreg", "criterion": "e2mc", "seed": 1},
                deps=(base, chosen), label="selected seed 1")
    options = {"ent_coeff": 10.0, "cov_coeff": 1.0}
    # the run the selection names: the same configuration with the chosen options
    run = Unit("continue", {"method": "vicreg", "criterion": "e2mc", "seed": 1,
                            "options": options}, deps=(base,))
    if run_result is not None:
        store.save(run, run_result, 1.0)
    return store, unit, chosen, run, options


def test_select_continue_copies_the_identical_stored_run(tmp_path):
    store, unit, chosen, run, options = _selection(
        tmp_path, {"steps": 5, "artifacts": ["train/checkpoint.pt"]})
    (store.folder(run) / "train").mkdir()
    (store.folder(run) / "train" / "checkpoint.pt").write_bytes(b"weights")
    with pytest.raises(RuntimeError, match="has no result"):
        study.select_continue(unit, store.folder(unit), store, progress=False)
    store.save(chosen, {"selected": "ent 10, cov 1", "options": options}, 1.0)
    result = study.select_continue(unit, store.folder(unit), store, progress=False)
    assert result == {"steps": 5, "artifacts": ["train/checkpoint.pt"], "copied": True,
                      "selected": "ent 10, cov 1", "run": run.key}
    assert (store.folder(unit) / "train" / "checkpoint.pt").read_bytes() == b"weights"


def test_select_continue_of_a_diverged_run_copies_its_result_only(tmp_path):
    store, unit, chosen, run, options = _selection(tmp_path, {"diverged": True,
                                                              "artifacts": []})
    store.save(chosen, {"selected": "ent 10, cov 1", "options": options}, 1.0)
    result = study.select_continue(unit, store.folder(unit), store, progress=False)
    assert result["diverged"] and result["copied"]
    assert not (store.folder(unit) / "train").exists()


def test_measure_reads_the_test_split_of_its_source_unless_it_diverged(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=(50, 3)), np.zeros(50)])
    calls = []
    monkeypatch.setattr(study, "split_features", lambda ckpt, data, *, train, progress: (
        calls.append(train) or (x, np.zeros(50))))
    store = RunStore(tmp_path)
    source = Unit("continue", {"seed": 0})
    unit = Unit("measure", {"data": {}, "tc_samples": 40, "dead_entropy": -3.0},
                deps=(source,))
    store.save(source, {"artifacts": []}, 1.0)
    result = study.measure(unit, store.folder(unit), store, progress=False)
    assert calls == [False]  # the test split
    assert result["features"] == 4 and result["tc_ksg_rows"] == 40
    assert result["metrics"]["dead_constant"] == 1
    store.save(source, {"diverged": True, "artifacts": []}, 1.0)
    assert study.measure(unit, store.folder(unit), store, progress=False) == {
        "diverged": True, "metrics": {}}
    assert calls == [False]  # nothing read for a diverged source


def test_gaussian_tc_needs_more_rows_than_live_columns():
    # 6 rows, 6 live columns: the sample covariance is singular, so no Gaussian TC
    x = np.random.default_rng(2).normal(size=(6, 6))
    metrics, _ = study.mechanism_metrics(np.column_stack([x, np.ones(6)]), tc_samples=6,
                                         dead_entropy=-3.0)
    assert metrics["tc_gaussian"] is None
    metrics, _ = study.mechanism_metrics(x[:, :5], tc_samples=6, dead_entropy=-3.0)
    assert metrics["tc_gaussian"] is not None


def test_select_records_every_settings_score_and_none_for_a_diverged_one(tmp_path):
    store = RunStore(tmp_path)
    vals = []
    for i, result in enumerate([
        {"split": "validation", "metrics": {"linear_1": 70.0, "linear_10": 80.0, "knn": 82.0}},
        {"split": "validation", "diverged": True, "metrics": {}},
    ]):
        vals.append(Unit("validate", {"setting": i}))
        store.save(vals[-1], result, 1.0)
    settings = [{"label": "ref", "options": {"ent_coeff": 1.0}, "reference": True},
                {"label": "wild", "options": {"ent_coeff": 100.0}, "reference": False}]
    unit = Unit("select", {"settings": settings, "metrics": list(study.SELECTION_METRICS)},
                deps=tuple(vals))
    assert study.select(unit, tmp_path, store) == {
        "selected": "ref", "options": {"ent_coeff": 1.0}, "is_reference": True,
        "scores": {"ref": 77.33, "wild": None},  # (70 + 80 + 82) / 3 to 0.01 points
    }


def test_a_gain_just_below_the_threshold_stops():
    # the rounding absorbs floating-point error only (1e-14), not a real shortfall of 4e-6
    rule = study.PlateauRule(period=2, min_epochs=8, cap=16)
    curve = [(2, 70.0), (4, 75.0), (6, 78.0), (8, 78.299996)]
    assert study.plateau_decision(curve, rule) == "plateau"


def test_validation_knn_is_a_percentage_to_four_decimals(monkeypatch):
    import types

    from evaluation import knn

    monkeypatch.setattr(knn, "knn_accuracy", lambda *a, **k: {20: types.SimpleNamespace(
        top1=2 / 3)})
    y = np.repeat(np.arange(2), 10)
    validation = {"fraction": 0.1, "seed": 0, "k": 20, "temperature": 0.07}
    assert study.validation_knn(np.zeros((20, 1)), y, validation) == 66.6667


def test_continue_returns_the_training_result_and_a_divergence_as_a_result(monkeypatch):
    from adapters.train import NonFiniteLoss
    from paper import execute

    unit = Unit("continue", {"seed": 0})
    monkeypatch.setattr(execute, "continue_training", lambda *a, **k: {"steps": 3})
    assert study._continue(unit, None, None, progress=False) == {"steps": 3}

    def diverge(*a, **k):
        raise NonFiniteLoss("loss is nan at step 2")

    monkeypatch.setattr(execute, "continue_training", diverge)
    assert study._continue(unit, None, None, progress=False) == {
        "diverged": True, "error": "loss is nan at step 2", "artifacts": []}


@pytest.mark.slow
def test_split_features_without_the_cache_are_the_cached_ones(tmp_path):
    # the plateau unit extracts its checkpoints' features uncached (each period's checkpoint
    # is overwritten by the next)
    from adapters.train import TrainConfig, train

    out = tmp_path / "train"
    train(TrainConfig(out=str(out), mode="pretrain", method="simsiam", backbone="small_cnn",
                      dataset="digits", max_steps=1, batch_size=16, progress=False))
    data = {"name": "digits", "root": "unused", "eval_train_limit": 100, "eval_test_limit": None}
    x, y = study.split_features(out / "checkpoint.pt", data, train=True, cache=False)
    cached_x, cached_y = study.split_features(out / "checkpoint.pt", data, train=True)
    assert x.shape[0] == y.shape[0] == 100 and x.ndim == 2
    np.testing.assert_array_equal(x, cached_x)
    np.testing.assert_array_equal(y, cached_y)


def test_a_plateau_unit_resumed_after_its_stop_trains_no_further(tmp_path, monkeypatch):
    """A curve that already meets the rule: the unit only reads its final state, at the last
    curve point, and its log label says so rather than 'to epoch N'."""
    from paper import execute

    plan = study.build_study(study.full())
    (base,) = [c.unit for c in plan.cells if c.table == "curve" and c.base == "swav"]
    store = RunStore(tmp_path)
    folder = store.folder(base)
    points = [(2, 80.0), (4, 82.0), (6, 83.0), (8, 83.1)]  # 83.1 - 83.0 < 0.3 at epoch 8
    (folder / study.CURVE_FILE).write_text(json.dumps(
        [{"epoch": e, "step": 234 * e, "knn_val": a} for e, a in points]))
    stages = []

    def pretrain(stage, folder, store, *, progress):
        stages.append(stage)
        return {"steps": 234 * stage.config["model"]["epochs"]}

    monkeypatch.setattr(execute, "pretrain", pretrain)
    result = study.plateau(base, folder, store, progress=False)
    assert [s.config["model"]["epochs"] for s in stages] == [8]
    assert "to epoch" not in stages[0].label and "stopped at epoch 8 (plateau)" in stages[0].label
    assert (result["stopped_epoch"], result["stop_reason"], result["steps"]) == (8, "plateau", 1872)
