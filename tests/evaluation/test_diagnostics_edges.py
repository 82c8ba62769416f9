"""Embedding diagnostics at the edges the other tests leave out: dead units and zero rows.

The total correlation is reported when at least 2 units are live (non-constant) and there are
more samples than live units, computed on the live units only; for a normal law it is
-1/2 log det R (R the correlation matrix), here -1/2 log(1 - r^2) for two live units with
sample correlation r. A zero embedding row has no direction: normalisation leaves it at zero
instead of dividing by 0, so alignment and uniformity stay finite.
"""

import numpy as np
import pytest

from evaluation.diagnostics import alignment, embedding_diagnostics, uniformity


def units(n: int, live: int, dead: int, rho: float = 0.6) -> np.ndarray:
    rng = np.random.default_rng(0)
    cov = np.full((live, live), rho) + (1 - rho) * np.eye(live)
    x = rng.multivariate_normal(np.zeros(live), cov, size=n)
    return np.hstack([x, np.full((n, dead), 3.0)])  # constant (dead) units


def test_total_correlation_of_two_live_units_ignores_the_dead_ones():
    x = units(400, live=2, dead=2)
    r = np.corrcoef(x[:, 0], x[:, 1])[0, 1]
    d = embedding_diagnostics(x)
    assert d["dead_units"] == 2
    assert d["total_correlation"] == pytest.approx(-0.5 * np.log(1 - r**2), rel=1e-9)


@pytest.mark.parametrize(("n", "live"), [(400, 1), (6, 6), (6, 7)])
def test_no_total_correlation_below_two_live_units_or_without_more_samples(n, live):
    assert "total_correlation" not in embedding_diagnostics(units(n, live=live, dead=1))


def test_sample_cap_default_is_that_of_uniformity():
    x = np.random.default_rng(1).normal(size=(5001, 2))
    capped = embedding_diagnostics(x)
    assert capped == embedding_diagnostics(x, max_samples=5000)
    assert capped["uniformity"] == uniformity(x)  # the same 5000-row sample


def test_zero_rows_stay_zero_under_normalisation():
    a = np.array([[0.0, 0.0], [3.0, 0.0]])
    b = np.array([[1.0, 0.0], [2.0, 0.0]])
    # rows normalised: (0, 0) vs (1, 0) at squared distance 1; (1, 0) vs (1, 0) at 0
    assert alignment(a, b) == pytest.approx(0.5)
    # pairs: (0,0)-(1,0) twice at squared distance 1, (0,0)-(0,0) at 0 -> log mean exp(-2 sq)
    x = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 0.0]])
    want = np.log(np.mean(np.exp(-2.0 * np.array([1.0, 0.0, 1.0]))))
    assert uniformity(x) == pytest.approx(want)
