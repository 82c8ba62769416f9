"""Label subsets and validation splits: balance, determinism, disjointness, list files, errors."""

import numpy as np
import pytest

from evaluation.subsets import (
    label_subset,
    mean_std,
    read_subset_file,
    subset_from_names,
    validation_split,
    write_subset_file,
)


@pytest.mark.parametrize(("fraction", "per_class"), [(0.01, 6), (0.1, 60), (1.0, 600)])
def test_balanced_labels_give_balanced_subsets(fraction, per_class):
    y = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 600))
    idx = label_subset(y, fraction, seed=3)
    assert np.bincount(y[idx], minlength=10).tolist() == [per_class] * 10
    assert np.unique(idx).size == idx.size


def test_imbalanced_labels_keep_their_proportions():
    y = np.repeat([0, 1, 2], [1000, 300, 40])
    idx = label_subset(y, 0.1, seed=0)
    assert np.bincount(y[idx]).tolist() == [100, 30, 4]
    # a class too small for the fraction still keeps one example
    assert np.bincount(y[label_subset(y, 0.01, seed=0)]).tolist() == [10, 3, 1]


def test_subset_is_deterministic_per_seed_and_differs_across_seeds():
    y = np.repeat(np.arange(5), 200)
    a, b, c = (label_subset(y, 0.1, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_validation_split_is_disjoint_stratified_and_covers_the_subset():
    y = np.random.default_rng(1).integers(0, 4, 2000)
    sub = label_subset(y, 0.1, seed=0)
    tr, va = validation_split(y, sub, fraction=0.25, seed=0)
    assert np.intersect1d(tr, va).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), sub)
    for c in range(4):
        n_c = np.sum(y[sub] == c)
        assert np.sum(y[va] == c) == int(np.floor(0.25 * n_c + 0.5))
    tr2, va2 = validation_split(y, sub, fraction=0.25, seed=0)
    np.testing.assert_array_equal(va, va2)


def test_subset_file_round_trip_in_simclr_format(tmp_path):
    names = [f"train/n0{i % 3}/n0{i % 3}_{i}.JPEG" for i in range(30)]
    chosen = [names[i].split("/")[-1] for i in (4, 2, 17)]
    path = tmp_path / "1percent.txt"
    write_subset_file(path, chosen)
    assert path.read_text().splitlines() == chosen
    assert read_subset_file(path) == chosen
    assert subset_from_names(names, read_subset_file(path)).tolist() == [2, 4, 17]


def test_errors():
    y = np.array([0, 0, 1, 1, 3, 3])
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have no labelled example"):
        label_subset(y, 0.5, num_classes=4)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        label_subset(y, 0.0)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        label_subset(y, 10)
    with pytest.raises(ValueError, match="class 1 has 1 labelled example"):
        validation_split(np.array([0, 0, 0, 1]), fraction=0.5)
    with pytest.raises(ValueError, match="duplicates"):
        validation_split(y, [0, 0, 1])
    with pytest.raises(ValueError, match="not in the data set"):
        subset_from_names(["a.png"], ["b.png"])
    with pytest.raises(ValueError, match="1-D"):
        label_subset(np.zeros((3, 2), int), 0.5)


def test_mean_std_uses_the_sample_standard_deviation():
    mean, std = mean_std([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    squares = (1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2
    assert std == pytest.approx(np.sqrt(squares / 2))
    assert mean_std([0.5]) == (0.5, 0.0)
