"""The weighted Kozachenko-Leonenko estimator (Berrett, Samworth & Yuan 2019).

References: the constraints written with scipy's Pochhammer symbol, the weighted average of
plain KL estimates from ``estimate(..., "knn", k=j)``, and normal closed forms.
"""

import math

import numpy as np
import pytest
from scipy.special import poch
from scipy.stats import gamma

import entropylib
from entropylib import weighted_knn


@pytest.mark.parametrize("d", [1, 3, 5, 10, 17])
@pytest.mark.parametrize("k", [3, 16, 64])
def test_weights_sum_to_one_and_cancel_the_bias_terms(d, k):
    if k <= max(2, d // 4):
        with pytest.raises(ValueError, match="needs k > 4"):
            entropylib.estimate(np.zeros((100, d)) + np.arange(100.0)[:, None] ** 1.5,
                                "weighted_knn", joint=True, k=k)
        return
    w = weighted_knn.weights(k, d)
    j = np.arange(1, k + 1)
    scale = np.abs(w).sum()  # few neighbours in high d: large weights of both signs
    assert w.sum() == pytest.approx(1.0, abs=1e-12 * scale)
    for l in range(1, max(2, d // 4) + 1):
        term = poch(j, 2 * l / d)  # Gamma(j + 2l/d) / Gamma(j)
        assert w @ term == pytest.approx(0.0, abs=1e-12 * scale * np.abs(term).max())
    # the minimum-norm solution: orthogonal to the null space of the constraints
    a = np.vstack([np.ones(k)] + [poch(j, 2 * l / d) for l in range(1, max(2, d // 4) + 1)])
    if k > a.shape[0]:
        null = np.linalg.svd(a)[2][a.shape[0]:]
        assert np.abs(null @ w).max() < 1e-12 * scale


@pytest.mark.parametrize("norm", ["max", "euclidean"])
def test_is_the_weighted_average_of_plain_kl_estimates(norm):
    x = np.random.default_rng(0).normal(size=(600, 4))
    k = 12
    plain = np.array([entropylib.estimate(x, "knn", joint=True, k=j, norm=norm)
                      for j in range(1, k + 1)])
    got = entropylib.estimate(x, "weighted_knn", joint=True, k=k, norm=norm)
    assert got == pytest.approx(weighted_knn.weights(k, 4) @ plain, abs=1e-10)
    marginal = entropylib.estimate(x, "weighted_knn", k=k, norm=norm)
    for c in range(4):
        one = [entropylib.estimate(x[:, c], "knn", k=j, norm=norm) for j in range(1, k + 1)]
        assert marginal[c] == pytest.approx(weighted_knn.weights(k, 1) @ one, abs=1e-10)


def test_lower_bias_than_plain_kl_in_eight_dimensions():
    true = 8 * gamma(2.0).entropy()  # independent Gamma(2) coordinates
    plain, weighted = [], []
    for seed in range(3):
        x = np.random.default_rng(seed).gamma(2.0, size=(4000, 8))
        plain.append(entropylib.estimate(x, "knn", joint=True) - true)
        weighted.append(entropylib.estimate(x, "weighted_knn", joint=True) - true)
    assert np.mean(plain) > 0.3  # the bias the estimator exists to remove
    assert abs(np.mean(weighted)) < 0.25 * np.mean(plain)


def test_listed_and_used_by_the_information_measures():
    info = entropylib.methods()["weighted_knn"]
    assert info["joint"] and "mutual_information" in info["measures"]
    x = np.random.default_rng(1).multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], 5000)
    mi = entropylib.mutual_information(x[:, 0], x[:, 1], "weighted_knn")
    assert mi == pytest.approx(-0.5 * math.log(1 - 0.36), abs=0.03)


def test_ties_and_bad_options():
    x = np.round(np.random.default_rng(2).normal(size=(500, 2)), 1)
    with pytest.raises(ValueError, match="zero neighbour distances"):
        entropylib.estimate(x, "weighted_knn", joint=True)
    assert np.isfinite(entropylib.estimate(x, "weighted_knn", joint=True, ties="jitter"))
    assert np.isfinite(entropylib.estimate(x, "weighted_knn", joint=True, ties="floor"))
    y = np.random.default_rng(3).normal(size=(100, 2))
    with pytest.raises(ValueError, match=">= 3"):
        entropylib.estimate(y, "weighted_knn", joint=True, k=2)
    with pytest.raises(TypeError, match="integer"):
        entropylib.estimate(y, "weighted_knn", joint=True, k=2.5)
    with pytest.raises(ValueError, match="at least 101 samples"):
        entropylib.estimate(y, "weighted_knn", joint=True, k=100)
    with pytest.raises(ValueError, match="norm"):
        entropylib.estimate(y, "weighted_knn", joint=True, norm="l1")
