"""Top-1 / top-5 accuracy against a brute-force ranking, with ties and many classes."""

import numpy as np
import pytest

from evaluation.accuracy import topk_accuracy


def _brute_topk(scores, labels, classes):
    """Rank each row's classes by (score descending, column ascending) with Python's sort."""
    top1 = top5 = 0
    for row, label in zip(scores, labels, strict=True):
        ranked = sorted(range(len(row)), key=lambda c: (-row[c], c))
        names = [classes[c] for c in ranked]
        top1 += names[0] == label
        top5 += label in names[:5]
    return top1 / len(labels), top5 / len(labels)


@pytest.mark.parametrize("n_classes", [5, 6, 9])
def test_topk_equals_a_brute_force_ranking_with_ties(n_classes):
    rng = np.random.default_rng(n_classes)
    scores = rng.integers(0, 4, size=(400, n_classes)).astype(float)  # many exact ties
    labels = rng.integers(0, n_classes, size=400)
    classes = np.arange(n_classes)
    assert topk_accuracy(scores, labels) == _brute_topk(scores, labels, classes)
    # columns named by other class values (a probe trained on a subset of the classes)
    named = np.sort(rng.choice(100, n_classes, replace=False))
    named_labels = named[labels]
    assert topk_accuracy(scores, named_labels, named) == _brute_topk(scores, named_labels, named)


def test_the_fifth_class_counts_for_top5_and_the_sixth_does_not():
    scores = np.array([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]] * 3)
    assert topk_accuracy(scores, np.array([4, 5, 0])) == (pytest.approx(1 / 3),
                                                           pytest.approx(2 / 3))
    # the top-1 class only: the second best never counts for top-1
    assert topk_accuracy(scores, np.array([1, 1, 1]))[0] == 0.0


def test_nan_scores_are_an_error_and_infinite_ones_rank():
    scores = np.array([[0.0, 1.0, 2.0], [np.nan, 1.0, 0.0]])
    with pytest.raises(ValueError, match="1 of 2 score rows hold NaN .first: row 1"):
        topk_accuracy(scores, np.array([2, 0]))
    # log-probabilities of impossible classes are -inf: they rank last, +inf ranks first
    ranked = np.array([[-np.inf, 0.0, np.inf, -1.0, -2.0, -3.0]] * 2)
    assert topk_accuracy(ranked, np.array([2, 0])) == (0.5, 0.5)


@pytest.mark.parametrize(
    "scores, labels, classes, message",
    [
        (np.zeros((4, 3)), np.zeros(5, dtype=int), None, "need .m, C. scores and m labels"),
        (np.zeros(4), np.zeros(4, dtype=int), None, "need .m, C. scores and m labels"),
        (np.zeros((4, 3)), np.zeros((4, 1), dtype=int), None, "need .m, C. scores and m labels"),
        (np.zeros((4, 3)), np.zeros(4, dtype=int), np.arange(2), "names 2 columns, .* have 3"),
    ],
)
def test_shapes_that_do_not_match_are_named(scores, labels, classes, message):
    with pytest.raises(ValueError, match=message):
        topk_accuracy(scores, labels, classes)
