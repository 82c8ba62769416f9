"""The converged-base study (paper.study): plateau rule, selection rule, the test split kept out
of every choice, the dry-run budget, and the --quick study end to end."""

import json

import numpy as np
import pytest

from paper import study
from paper.reproduce import FEATURE_SECONDS, STEP_SECONDS, estimate_seconds
from paper.study import (
    Candidate,
    PlateauRule,
    ValidationScores,
    plateau_decision,
    select_setting,
    stopping_epoch,
)
from paper.units import RunStore, Unit

RULE = PlateauRule(period=2, min_epochs=8, cap=16, tail=5, min_gain=0.3)


def _curve(accs):
    return [(2 * (i + 1), a) for i, a in enumerate(accs)]


# ---------------------------------------------------------------- plateau rule


def test_stops_where_the_gain_over_the_last_fifth_first_falls_below_the_threshold():
    # epochs 2..14; at 12 the reference point is epoch 8 (4/5 of 12 = 9.6, floored to a
    # curve epoch), where the gain is 0.6: go on. At 14 it is epoch 10 (11.2): gain 0.2, stop.
    # A rule that compared with the previous point (10) would have stopped at 12 (gain 0.1).
    curve = _curve([70.0, 75.0, 78.0, 80.0, 80.5, 80.6, 80.7])
    assert stopping_epoch(curve, RULE) == (14, "plateau")
    assert [plateau_decision(curve[:i], RULE) for i in range(1, 7)] == [None] * 6


def test_never_stops_before_min_epochs_even_on_a_flat_curve():
    flat = _curve([80.0] * 8)
    assert [plateau_decision(flat[:i], RULE) for i in range(1, 4)] == [None] * 3
    assert stopping_epoch(flat, RULE) == (8, "plateau")


def test_a_gain_of_exactly_the_threshold_goes_on_and_a_drop_stops():
    # 78.3 - 78.0 is 0.29999999999999716 in floating point; the rule reads it as 0.3
    assert plateau_decision(_curve([70.0, 75.0, 78.0, 78.3]), RULE) is None
    assert plateau_decision(_curve([70.0, 75.0, 78.0, 78.2999]), RULE) == "plateau"
    assert plateau_decision(_curve([70.0, 75.0, 78.0, 77.0]), RULE) == "plateau"


def test_a_curve_that_keeps_rising_stops_at_the_cap():
    rising = _curve([60.0 + 2 * i for i in range(8)])  # epochs 2..16, +2 points per period
    assert stopping_epoch(rising, RULE) == (16, "cap")
    assert plateau_decision(rising[:7], RULE) is None


def test_reference_epoch_is_the_latest_curve_point_in_the_first_four_fifths():
    # independent form: the largest multiple of the period that is <= 0.8 t
    for t in range(8, 34, 2):
        expected = max(e for e in range(2, t, 2) if e <= 0.8 * t + 1e-9)
        assert RULE.reference_epoch(t) == expected, t


@pytest.mark.parametrize("curve, match", [
    ([(2, 70.0), (6, 71.0)], "curve epochs"),
    ([(1, 70.0)], "curve epochs"),
    ([(2, 70.0), (4, float("nan"))], "finite"),
])
def test_malformed_curves_are_refused(curve, match):
    with pytest.raises(ValueError, match=match):
        plateau_decision(curve, RULE)


def test_rule_settings_are_checked():
    with pytest.raises(ValueError, match="multiples"):
        PlateauRule(period=3, min_epochs=8, cap=16)
    with pytest.raises(ValueError, match="curve point"):
        PlateauRule(period=2, min_epochs=2, cap=16)  # 4/5 of 2 epochs holds no curve point


def test_stopping_epoch_needs_a_curve_that_stops():
    with pytest.raises(ValueError, match="does not stop"):
        stopping_epoch(_curve([70.0, 75.0, 80.0]), RULE)


# ---------------------------------------------------------------- selection rule


def _v(a, b, c):
    return ValidationScores("validation", a, b, c)


def test_selection_takes_the_best_mean_of_the_three_validation_accuracies():
    cands = [
        Candidate("ref", {"ent_coeff": 10.0}, True, _v(70.0, 80.0, 82.0)),  # mean 77.33
        Candidate("ent x0.1", {"ent_coeff": 1.0}, False, _v(72.0, 80.0, 81.0)),  # 77.67
        Candidate("cov x10", {"cov_coeff": 10.0}, False, _v(75.0, 79.0, 78.0)),  # 77.33
    ]
    best = select_setting(cands)
    assert best.label == "ent x0.1" and best.options == {"ent_coeff": 1.0}


def test_ties_go_to_the_reference_then_to_grid_order():
    tie = [Candidate("a", {}, False, _v(71.0, 80.0, 82.0)),
           Candidate("ref", {}, True, _v(70.0, 81.0, 82.0)),
           Candidate("b", {}, False, _v(72.0, 80.0, 81.0))]
    assert select_setting(tie).label == "ref"
    # 77.66 and 77.6633.. are equal at 0.01 points: the earlier one wins
    close = [Candidate("ref", {}, True, _v(70.0, 80.0, 82.0)),
             Candidate("a", {}, False, _v(72.0, 80.0, 80.98)),
             Candidate("b", {}, False, _v(72.0, 80.0, 80.99))]
    assert select_setting(close).label == "a"


def test_the_reference_wins_when_it_is_best_and_diverged_settings_are_not_eligible():
    cands = [Candidate("ref", {}, True, _v(70.0, 80.0, 82.0)),
             Candidate("wild", {}, False, None)]
    assert select_setting(cands).label == "ref"
    cands = [Candidate("ref", {}, True, None), Candidate("a", {}, False, _v(1.0, 2.0, 3.0))]
    assert select_setting(cands).label == "a"
    with pytest.raises(ValueError, match="diverged"):
        select_setting([Candidate("ref", {}, True, None)])


def test_the_grid_needs_exactly_one_reference():
    with pytest.raises(ValueError, match="one reference"):
        select_setting([Candidate("a", {}, False, _v(1.0, 2.0, 3.0))])


def test_selection_refuses_test_scores():
    with pytest.raises(ValueError, match="validation scores only"):
        ValidationScores("test", 70.0, 80.0, 82.0)
    with pytest.raises(TypeError, match="ValidationScores"):
        select_setting([Candidate("ref", {}, True, {"linear_1": 70.0})])


# ---------------------------------------------------------------- the test split stays out


def _plan():
    return study.build_study(study.full())


def test_every_choice_depends_on_training_images_only():
    plan = _plan()
    for unit in plan.units():
        if unit.kind == "select":
            assert unit.deps and all(d.kind == "validate" for d in unit.deps)
        if unit.kind in ("validate", "plateau"):
            # nothing upstream of a choice is a test-split evaluation
            stack = [unit]
            while stack:
                u = stack.pop()
                assert u.kind not in ("evaluate", "measure"), (unit.label, u.label)
                stack.extend(u.deps)


def test_select_unit_refuses_a_record_that_is_not_a_validation_score(tmp_path):
    store = RunStore(tmp_path)
    run = Unit("continue", {"seed": 0})
    test_eval = Unit("evaluate", {"protocol": "linear"}, deps=(run,))
    store.save(test_eval, {"metrics": {"linear_1": 99.0, "linear_10": 99.0, "knn": 99.0}}, 1.0)
    select = Unit("select", {"settings": [{"label": "ref", "options": {}, "reference": True}],
                             "metrics": list(study.SELECTION_METRICS)}, deps=(test_eval,))
    with pytest.raises(ValueError, match="validation scores only"):
        study.select(select, tmp_path, store)
    # the same scores stored as a validate unit's record are taken
    val = Unit("validate", {"x": 1}, deps=(run,))
    store.save(val, {"split": "validation",
                     "metrics": {"linear_1": 70.0, "linear_10": 80.0, "knn": 82.0}}, 1.0)
    select = Unit("select", {**select.config}, deps=(val,))
    assert study.select(select, tmp_path, store)["selected"] == "ref"


@pytest.mark.slow
def test_validate_never_loads_the_test_split(tmp_path, monkeypatch):
    import adapters.data
    from adapters.train import TrainConfig, train
    from paper.execute import CHECKPOINT

    store = RunStore(tmp_path / "runs")
    run = Unit("continue", {"seed": 0})
    out = store.folder(run) / CHECKPOINT
    train(TrainConfig(out=str(out.parent), mode="pretrain", method="simsiam",
                      backbone="small_cnn", dataset="digits", max_steps=1, batch_size=16,
                      progress=False))
    store.save(run, {"artifacts": [CHECKPOINT]}, 1.0)
    load = adapters.data.load_dataset

    def train_only(name, root=None, *, train, **kw):
        assert train, "the test split was loaded"
        return load(name, root, train=train, **kw)

    monkeypatch.setattr(adapters.data, "load_dataset", train_only)
    data = {"name": "digits", "root": "unused", "eval_train_limit": None,
            "eval_test_limit": None, "val_fraction": 0.1}
    validation = {"fraction": 0.1, "seed": 0, "k": 20, "temperature": 0.07,
                  "label_fractions": [10, 50], "Cs": [1.0]}
    unit = Unit("validate", {"data": data, "validation": validation}, deps=(run,))
    result = study.validate(unit, store.folder(unit), store, progress=False)
    assert result["split"] == "validation" and result["n_images"] == 1433
    assert set(result["metrics"]) == {"linear_10", "linear_50", "knn"}
    assert all(0 <= v <= 100 for v in result["metrics"].values())


# ---------------------------------------------------------------- resumable plateau unit


def test_plateau_unit_resumes_from_stored_curve_points(tmp_path, monkeypatch):
    """Stored points are not recomputed; training resumes at the next period and the
    decision is taken from the stored curve."""
    from paper import execute

    trained, scored = [], []
    monkeypatch.setattr(execute, "pretrain", lambda u, f, s, progress: (
        trained.append(u.config["model"]["epochs"]) or {"steps": 234 * trained[-1]}))
    monkeypatch.setattr(study, "split_features", lambda *a, **k: (np.zeros((1, 1)), np.zeros(1)))
    accs = iter([80.0, 80.1])
    monkeypatch.setattr(study, "validation_knn", lambda *a: scored.append(1) or next(accs))
    store = RunStore(tmp_path)
    unit = Unit("plateau", {"data": {}, "eval_data": {}, "architecture": "x",
                            "model": {"method": "vicreg", "epochs": 16},
                            "rule": {"period": 2, "min_epochs": 8, "cap": 16, "tail": 5,
                                     "min_gain": 0.3},
                            "period_steps": None, "validation": {}})
    folder = store.folder(unit)
    stored = [{"epoch": e, "step": 234 * e, "knn_val": a}
              for e, a in ((2, 70.0), (4, 75.0), (6, 79.9))]
    (folder / study.CURVE_FILE).write_text(json.dumps(stored))
    result = study.plateau(unit, folder, store, progress=False)
    # epoch 8: 80.0 - 79.9 < 0.3 at the reference epoch 6: stop at 8; one new point only
    assert trained == [8, 8] and len(scored) == 1
    assert result["stopped_epoch"] == 8 and result["stop_reason"] == "plateau"
    assert [p["epoch"] for p in json.loads((folder / study.CURVE_FILE).read_text())] == [
        2, 4, 6, 8]
    # run again (killed before its result was saved): no training step, no new score
    trained.clear()
    again = study.plateau(unit, folder, store, progress=False)
    assert trained == [8] and len(scored) == 1 and again["curve"] == result["curve"]


# ---------------------------------------------------------------- plan and budget


def test_plan_shares_the_reference_seed0_run_and_fits_the_budget():
    plan = _plan()
    units = plan.units()
    kinds = [u.kind for u in units]
    assert kinds.count("plateau") == 3 and kinds.count("select") == 3
    assert kinds.count("validate") == 3 * len(study.GRID_FACTORS)
    # the grid's reference run is the comparison's +E2MC reference seed 0 (one unit)
    grid_ref = [c.unit for c in plan.cells if c.table == "grid" and c.base == "vicreg"][0].deps[0]
    comparison_ref = [c.unit.deps[0] for c in plan.cells if c.table == "comparison"
                      and c.base == "vicreg" and c.row == "+E2MC reference" and c.seed == 0]
    assert {u.key for u in comparison_ref} == {grid_ref.key}
    assert estimate_seconds(units) <= 6 * 3600


def test_estimate_of_a_plateau_unit_counts_its_cap_and_curve_points():
    plan = _plan()
    base = next(u for u in plan.units() if u.kind == "plateau" and "vicreg" in u.label)
    # 16 epochs x 234 steps at 0.57 s, and 8 training-split feature passes (60,000 of 70,000)
    expected = 16 * 234 * STEP_SECONDS["vicreg"] + 8 * FEATURE_SECONDS * 60 / 70
    assert estimate_seconds([base]) == pytest.approx(expected)


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.requires_fashion_mnist
def test_quick_study_end_to_end_and_resume(tmp_path, capsys):
    from paper.reproduce import main

    args = ["--only", "study", "--quick", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    plan = study.build_study(study.quick())
    n = len(plan.units())
    assert f"ran {n} units, reused 0, failed 0" in capsys.readouterr().out
    store = RunStore(tmp_path / "runs")
    base = next(u for u in plan.units() if u.kind == "plateau")
    curve = json.loads((store.folder(base) / study.CURVE_FILE).read_text())
    assert [p["epoch"] for p in curve] == [1, 2] and [p["step"] for p in curve] == [2, 4]
    chosen = store.load(next(u for u in plan.units() if u.kind == "select"))["result"]
    assert chosen["selected"] in chosen["scores"]
    selected = [u for u in plan.units() if u.kind == "select-continue"]
    records = [store.load(u)["result"] for u in selected]
    # seed 0 is the grid's run; seed 1 is the reference row's own run if the reference won
    assert [r.get("copied", False) for r in records] == [True, chosen["is_reference"]]
    measures = [store.load(u)["result"]["metrics"] for u in plan.units() if u.kind == "measure"]
    assert measures and all(m["rankme"] >= 1 and m["tc_ksg"] is not None for m in measures)
    report = (tmp_path / "results" / "study" / "STUDY.md").read_text()
    assert f"| {chosen['selected']} |" in report and "| simsiam | 1: " in report
    assert (tmp_path / "results" / "study" / "curves.png").is_file()
    assert main(args) == 0
    assert f"ran 0 units, reused {n}" in capsys.readouterr().out


# ---------------------------------------------------------------- tables


def test_paired_difference_matches_scipys_paired_t_interval():
    from scipy import stats

    from paper.study_tables import paired_difference

    row = {0: 77.1, 1: 76.4, 2: 78.9, 3: 75.0}
    control = {0: 76.3, 1: 76.9, 2: 77.2, 3: 74.1, 4: 99.0}  # seed 4 has no pair: ignored
    mean, low, high, n = paired_difference(row, control)
    seeds = [0, 1, 2, 3]
    ci = stats.ttest_rel([row[s] for s in seeds], [control[s] for s in seeds]).confidence_interval()
    assert n == 4
    assert mean == pytest.approx(np.mean([row[s] - control[s] for s in seeds]), abs=1e-12)
    assert (low, high) == pytest.approx((ci.low, ci.high), abs=1e-10)
    assert paired_difference({0: 1.0}, {0: 0.0}) is None


def test_mechanism_measures_ksg_total_correlation_on_the_raw_features():
    # the stored units measured TC before entropylib standardised columns by default; the
    # study must keep measuring the same quantity, which depends on the columns' scales
    import entropylib

    rng = np.random.default_rng(1)
    z = rng.normal(size=(300, 3))
    x = np.column_stack([z[:, 0] * 1000.0, z[:, 0] + z[:, 1], z[:, 2], np.full(300, 2.0)])
    metrics, used = study.mechanism_metrics(x, tc_samples=200, dead_entropy=-3.0)
    assert used == 200
    rows = np.sort(np.random.default_rng(0).choice(300, 200, replace=False))
    live = x[rows][:, :3]
    raw = entropylib.total_correlation(live, "ksg1", k=3, ties="jitter", standardize=False)
    unit = entropylib.total_correlation(live, "ksg1", k=3, ties="jitter")
    assert abs(raw - unit) > 0.05  # the two quantities differ on these scales
    assert metrics["tc_ksg"] == raw
    assert metrics["dead_constant"] == 1
    # the Gaussian form: -1/2 log det of the correlation matrix of the live columns
    r = np.corrcoef(x[:, :3], rowvar=False)
    assert metrics["tc_gaussian"] == pytest.approx(-0.5 * np.linalg.slogdet(r)[1], rel=1e-6)
