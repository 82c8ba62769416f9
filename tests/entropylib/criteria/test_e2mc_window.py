"""E2MC's default window and reference settings, on the cases other tests leave out.

The default window is round(sqrt(N)); at N = 43 (sqrt 6.56) and N = 512 (sqrt 22.63) it
differs from int(sqrt(N)), which the batch sizes of the other tests do not tell apart.
REFERENCE_SETTINGS must hold the paper's transform and coefficients for every base method
(Chakraborty et al. 2025; docs/method.md, 'Reference settings').
"""

import numpy as np
import pytest
import torch
from scipy.stats import norm

from entropylib.criteria import E2MC, REFERENCE_SETTINGS

#: round(sqrt(N)) worked out by hand: 6.557 -> 7, 22.627 -> 23 (int() would give 6 and 22)
WINDOWS = {43: 7, 512: 23}


def m_spacing_entropy(u: np.ndarray, m: int, eps: float = 1e-7) -> np.ndarray:
    """Per-column (1/(N-m)) sum_i log((N+1)/m (u_(i+m) - u_(i)) + eps), with numpy."""
    n = u.shape[0]
    s = np.sort(u, axis=0)
    return np.mean(np.log((n + 1) / m * (s[m:] - s[:-m]) + eps), axis=0)


@pytest.mark.parametrize(("n", "m"), WINDOWS.items())
def test_default_window_is_sqrt_n_rounded_not_truncated(n, m):
    z = np.random.default_rng(n).normal(size=(n, 4))
    u = norm.cdf(z)
    want = m_spacing_entropy(u, m).mean()
    # the case under test: the truncated window gives a clearly different entropy
    assert abs(m_spacing_entropy(u, m - 1).mean() - want) > 1e-3
    crit = E2MC(transform="gaussian_cdf", ent_coeff=1.0, cov_coeff=0.0)
    _, parts = crit(torch.from_numpy(z))
    assert parts["entropy"].item() == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_reference_settings_of_every_base_method():
    assert REFERENCE_SETTINGS == {
        "vicreg": {"transform": "sigmoid", "ent_coeff": 10.0, "cov_coeff": 1.0},
        "swav": {"transform": "gaussian_cdf", "ent_coeff": 10.0, "cov_coeff": 1.0},
        "simsiam": {"transform": "gaussian_cdf", "ent_coeff": 1.0, "cov_coeff": 25.0},
    }


def test_window_of_one_is_accepted():
    """m = 1, the smallest window, is valid (simple spacings), not rejected."""
    z = np.random.default_rng(1).normal(size=(30, 3))
    _, parts = E2MC(transform="gaussian_cdf", ent_coeff=1.0, cov_coeff=0.0, m=1)(
        torch.from_numpy(z)
    )
    want = m_spacing_entropy(norm.cdf(z), 1).mean()
    assert parts["entropy"].item() == pytest.approx(want, rel=1e-12, abs=1e-12)
