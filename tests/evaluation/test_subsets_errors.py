"""Bad input to the subset helpers: each is an error naming what was expected.

Each case here was accepted silently by a mutant of evaluation.subsets that the other tests
did not catch (an index off the data, a fraction of 0 or 1, an empty or multi-line file name,
no values to summarise).
"""

import numpy as np
import pytest

from evaluation.subsets import label_subset, mean_std, validation_split, write_subset_file

Y = np.repeat([0, 1], 5)


@pytest.mark.parametrize("indices", [[-1, 0, 1, 5, 6], [0, 1, 5, 6, 10], [-1, 0, 1, 5, 10]])
def test_validation_split_rejects_indices_off_the_data(indices):
    with pytest.raises(ValueError, match=r"positions in \[0, 10\)"):
        validation_split(Y, indices)


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.2])
def test_validation_split_rejects_a_fraction_outside_0_1(fraction):
    with pytest.raises(ValueError, match=r"validation fraction must be in \(0, 1\)"):
        validation_split(Y, fraction=fraction)


@pytest.mark.parametrize("name", ["", "a.png\nb.png", "a.png\n"])
def test_subset_file_names_must_be_single_nonempty_lines(tmp_path, name):
    with pytest.raises(ValueError, match="non-empty single lines"):
        write_subset_file(tmp_path / "list.txt", ["x.png", name])


def test_mean_std_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no values"):
        mean_std([])


@pytest.mark.parametrize("split", [label_subset, validation_split])
def test_a_scalar_is_not_a_label_vector(split):
    # len() of a 0-d array used to fail first: 'len() of unsized object'
    with pytest.raises(ValueError, match=r"labels must be 1-D .* got shape \(\)"):
        split(3, 0.5) if split is label_subset else split(3)


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (1.5, TypeError), (None, TypeError),
                                         (True, TypeError)])
def test_a_seed_must_be_a_non_negative_integer(seed, error):
    # -1 failed inside numpy ('expected non-negative integer') without naming the seed, and
    # None drew fresh entropy: a subset nobody could draw again
    for draw in (lambda: label_subset(Y, 0.5, seed=seed), lambda: validation_split(Y, seed=seed)):
        with pytest.raises(error, match=f"seed must be a non-negative integer, got {seed!r}"):
            draw()
