"""The report: numpy values become JSON numbers and lists, not strings; the table's cells for
one seed, several seeds and a metric a model lacks."""

import json
import math

import numpy as np

from evaluation.report import SeedSummary, comparison_table, jsonable, write_report


def test_numpy_values_become_json_numbers_and_lists():
    value = {"profile": np.array([0.5, -1.25]), "k": np.int64(20), "C": np.float32(0.25),
             "grid": np.arange(4).reshape(2, 2), "seeds": (0, 1), "bad": float("nan")}
    assert jsonable(value) == {"profile": [0.5, -1.25], "k": 20, "C": 0.25,
                               "grid": [[0, 1], [2, 3]], "seeds": [0, 1], "bad": "nan"}
    assert json.loads(json.dumps(jsonable(value)))["k"] == 20


def test_written_report_reads_back_as_the_results(tmp_path):
    results = {"m": {"knn_20": 0.5, "rankme": np.float64(12.5),
                     "linear_1": SeedSummary.of([0.25, 0.75])}}
    details = {"m diagnostics": {"entropy_profile": np.array([1.0, -math.inf])}}
    write_report(results, tmp_path, percent={"knn_20", "linear_1"}, details=details)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["results"]["m"]["rankme"] == 12.5
    assert saved["results"]["m"]["linear_1"] == {"mean": 0.5, "std": math.sqrt(0.125),
                                                 "values": [0.25, 0.75]}
    assert saved["details"]["m diagnostics"]["entropy_profile"] == [1.0, "-inf"]
    assert saved["accuracies"] == ["knn_20", "linear_1"]


def test_table_cells_of_one_seed_several_seeds_and_a_missing_metric():
    results = {"a": {"linear_1": SeedSummary.of([0.5]), "knn_20": 0.25},
               "b": {"linear_1": SeedSummary.of([0.5, 0.75])}}
    lines = comparison_table(results, {"linear_1", "knn_20"}).splitlines()
    assert lines[2] == "| linear_1 (%) | 50.00 | 62.50 ± 17.68 |"  # std of 0.5, 0.75: 0.1768
    assert lines[3] == "| knn_20 (%) | 25.00 | - |"  # b has no knn_20
    assert jsonable({"x": None, "y": [None, 1]}) == {"x": None, "y": [None, 1]}
