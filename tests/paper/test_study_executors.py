"""The converged-base study's rule checks, plan labels and the executors that the --quick study
end to end (``test_study.py``, minutes) is the only other test of: ``select_continue`` and
``measure`` on hand-made stored units."""

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
