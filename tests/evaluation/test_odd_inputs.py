"""Odd but legitimate inputs to the evaluation functions: the right number or a clear error.

Reference values are closed forms or sums written out here, never the functions' own output
on other data.
"""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.diagnostics import alignment, offdiag_covariance_energy, uniformity
from evaluation.separability import embed_2d, fisher_ratio, knn_purity, silhouette

#: feature scales a model can legitimately produce in float64 (tiny, huge) and a realistic
#: small one (an embedding whose rows have norm below 1e-12)
SCALES = (1e-14, 1e-200, 1e200)


@pytest.mark.parametrize("scale", SCALES)
def test_cosine_measures_do_not_depend_on_the_scale(scale):
    # one pair of antipodal points: squared distance 4 on the sphere, log exp(-2 * 4) = -8
    assert uniformity(np.array([[1.0, 0.0], [-1.0, 0.0]]) * scale) == pytest.approx(-8.0)
    # orthogonal unit views: ‖a - b‖^2 = 2
    assert alignment([[scale, 0.0]], [[0.0, scale]]) == pytest.approx(2.0)
    # two classes on orthogonal directions: a_i = 0, b_i = 1 (cosine distance), s_i = 1
    x = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]]) * scale
    assert silhouette(x, [0, 0, 1, 1]) == pytest.approx(1.0)
    # each point's nearest other point (cosine) is in its class
    x = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]) * scale
    assert knn_purity(x, [0, 0, 1, 1], k=1, backend="brute") == 1.0


@pytest.mark.parametrize("scale", SCALES)
def test_pca_map_does_not_depend_on_the_scale(scale):
    x = np.random.default_rng(0).normal(size=(30, 4))
    np.testing.assert_allclose(embed_2d(x * scale), embed_2d(x), atol=1e-9)


@pytest.mark.parametrize("scale", (1e-200, 1e200))
def test_fisher_ratio_at_extreme_scales(scale):
    # means 1 and 11, overall mean 6: tr(S_B) = 2 * 25 + 2 * 25 = 100, tr(S_W) = 4 * 1 = 4
    assert fisher_ratio(np.array([[0.0], [2.0], [10.0], [12.0]]) * scale, [0, 0, 1, 1]) == (
        pytest.approx(25.0)
    )


def _offdiag_energy_by_hand(x: np.ndarray) -> float:
    n, d = x.shape
    centred = x - x.mean(axis=0)
    total = 0.0
    for i in range(d):
        for j in range(d):
            if i != j:
                total += (float(centred[:, i] @ centred[:, j]) / (n - 1)) ** 2
    return total / d


def test_offdiag_covariance_energy_keeps_small_terms_next_to_a_dominant_unit():
    # one unit at scale 1e9: its variance squared (1e36) used to swamp the off-diagonal
    # terms (about 1e15) when they were taken as (sum of all squares) - (diagonal squares)
    x = np.random.default_rng(0).normal(size=(100, 3)) * np.array([1e9, 1.0, 1.0])
    expected = _offdiag_energy_by_hand(x)
    assert expected > 1e13
    assert offdiag_covariance_energy(x) == pytest.approx(expected, rel=1e-9)


def test_offdiag_covariance_energy_beyond_float64_is_an_error():
    x = np.random.default_rng(0).normal(size=(50, 3)) * 1e200
    with pytest.raises(ValueError, match="exceeds float64's range"):
        offdiag_covariance_energy(x)
