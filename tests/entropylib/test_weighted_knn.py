"""weighted_knn's documented default K and its bound k > L (the bias terms cancelled).

References: the rule of the docstring, K = min(64, n // 16) and at least L + 1 with
L = max(2, d // 4), evaluated by hand for each case below.
"""

import numpy as np
import pytest

import entropylib
from entropylib import weighted_knn


@pytest.mark.parametrize(
    ("n", "d", "expected_k"),
    [
        (48, 3, 3),  # n // 16 = 3 = L + 1
        (200, 3, 12),  # n // 16
        (2000, 2, 64),  # capped at 64 (n // 16 = 125)
        (50, 12, 4),  # L = 3: at least 4 although n // 16 = 3
    ],
)
def test_default_k_follows_the_documented_rule(n, d, expected_k):
    x = np.random.default_rng(n + d).normal(size=(n, d))
    default = entropylib.estimate(x, "weighted_knn", joint=True)
    explicit = entropylib.estimate(x, "weighted_knn", joint=True, k=expected_k)
    assert default == explicit
    others = [entropylib.estimate(x, "weighted_knn", joint=True, k=k)
              for k in (expected_k - 1, expected_k + 1) if k > max(2, d // 4)]
    assert all(default != other for other in others)


def test_k_must_exceed_the_cancelled_terms():
    """At d = 12 the weights cancel L = 3 bias terms: k = 3 weights cannot (sum 1 and L
    cancellations are 4 equations in 3 unknowns, solved only in least squares): refused."""
    x = np.random.default_rng(0).normal(size=(200, 12))
    with pytest.raises(ValueError, match=r"needs k > 3 neighbours, got k = 3"):
        entropylib.estimate(x, "weighted_knn", joint=True, k=3)
    assert np.isfinite(entropylib.estimate(x, "weighted_knn", joint=True, k=4))


def test_the_direct_call_returns_a_python_float():
    """``weighted_kozachenko_leonenko`` returns a float, as annotated (not a numpy scalar,
    which prints as ``np.float64(...)``), with the value `estimate` gives."""
    x = np.random.default_rng(1).normal(size=(300, 4))
    h = weighted_knn.weighted_kozachenko_leonenko(x)
    assert type(h) is float
    assert h == entropylib.estimate(x, "weighted_knn", joint=True)


def test_a_tie_error_names_the_column_that_has_the_ties():
    """Per-column estimates run one column at a time; the error named column 0 for any."""
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=500), rng.integers(0, 5, 500)])
    with pytest.raises(ValueError, match="^column 1 has"):
        entropylib.estimate(x, "weighted_knn")
    with pytest.raises(ValueError, match="^the joint sample has"):
        entropylib.estimate(np.repeat(x, 2, axis=0), "weighted_knn", joint=True)
