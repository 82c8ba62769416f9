"""The study's summary of which paired accuracy intervals exclude 0 (paper.study_tables)."""

from paper.study_tables import ACCURACIES, excluding_zero


def test_intervals_are_sorted_by_the_side_of_0_they_lie_on():
    # per-seed differences to continued, by column; half-width t(0.975, 2) sd / sqrt(3)
    diffs = {
        "linear_1": (1.0, 1.1, 0.9),     # mean 1, half-width 0.25: above
        "linear_10": (-1.0, 1.0, 0.0),   # half-width 2.5: contains 0
        "knn_20": (-2.0, -2.1, -1.9),    # below
        "semisup_1": (0.5, 0.5, 0.5),    # sd 0: the interval is the point 0.5, above
        "linear_100": (0.0, 0.0, 0.0),   # the point 0: contains 0
    }
    control = {m: {s: 80.0 for s in range(3)} for m, _ in ACCURACIES}
    row = {m: {s: 80.0 + d for s, d in enumerate(ds)} for m, ds in diffs.items()}
    row["transfer_digits"] = {0: 99.0}  # one paired seed: no interval
    values = {("b", "continued"): control, ("b", "+E2MC selected"): row}
    above, below, paired = excluding_zero(values, "b", "+E2MC selected", ACCURACIES)
    assert above == ["lin 1%", "semi 1%"]
    assert below == ["kNN"]
    assert paired == 5


def test_a_row_that_has_not_run_has_no_interval():
    values = {("b", "continued"): {"linear_1": {0: 1.0, 1: 2.0}}}
    assert excluding_zero(values, "b", "+E2MC reference", ACCURACIES) == ([], [], 0)
