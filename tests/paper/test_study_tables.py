"""The study's tables (paper.study_tables): which stored values reach them, and the curve figure.

The paired t interval itself is checked against scipy in ``test_study.py``; the report as a
whole against the committed ``STUDY.md`` in ``test_reproduce.py``.
"""

import json

from paper import study
from paper.plan import Cell
from paper.study_tables import curves_figure, seed_values, write_study_results
from paper.units import RunStore, Unit


def test_seed_values_keep_finite_numbers_only_under_the_studys_names(tmp_path):
    store = RunStore(tmp_path)
    run = Unit("evaluate", {"protocol": "measure", "seed": 1})
    store.save(run, {"metrics": {
        "knn_20": 80.5, "linear_1": 71, "dead_units": 2,  # renamed to dead_constant
        "tc_gaussian": None, "note": "text",  # a store holds no inf or NaN: None stands for them
    }}, 1.0)
    missing = Unit("evaluate", {"protocol": "measure", "seed": 2})  # never run
    cells = [Cell("table1", "vicreg", "+E2MC", "measure", 1, run),  # row renamed
             Cell("table1", "vicreg", "+E2MC", "measure", 2, missing),
             Cell("table1", "vicreg", "base", "measure", None, run)]  # no seed: not paired
    values = seed_values(cells, store)
    assert values == {("vicreg", "+E2MC reference"): {
        "knn_20": {1: 80.5}, "linear_1": {1: 71.0}, "dead_constant": {1: 2.0}}}


def _plan_with_curve(tmp_path, points):
    plan = study.build_study(study.quick())
    store = RunStore(tmp_path / "runs")
    (base,) = [c.unit for c in plan.cells if c.table == "curve"]
    (store.folder(base) / study.CURVE_FILE).write_text(json.dumps(points))
    return plan, store


def test_the_curve_figure_is_drawn_once_a_curve_point_exists(tmp_path):
    plan, store = _plan_with_curve(tmp_path, [{"epoch": 1, "step": 2, "knn_val": 61.5}])
    assert curves_figure(plan, store, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = write_study_results(plan, store, tmp_path / "out")
    assert [p.name for p in written] == ["STUDY.md", "curves.png"]
    assert "| simsiam | 1: 61.50 | running | - |" in written[0].read_text()


def test_no_curve_point_no_figure(tmp_path):
    plan, store = _plan_with_curve(tmp_path, [])
    assert not curves_figure(plan, store, tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()
    written = write_study_results(plan, store, tmp_path / "out")
    assert [p.name for p in written] == ["STUDY.md"]
    assert not (tmp_path / "out" / "curves.png").exists()
