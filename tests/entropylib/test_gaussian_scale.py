"""The Gaussian joint entropy at extreme scales, and collinearity of large-variance columns.

The singularity test looks at the share of each column's variance left unexplained by the
previous ones (scale-free); a tiny or huge scale must not look singular, and collinear columns
of large variance must. Reference: 0.5 log det(2 pi e Sigma) with numpy's slogdet of the
n - 1 sample covariance.
"""

import numpy as np
import pytest
import torch

import entropylib


def closed_form(x: np.ndarray) -> float:
    sign, logdet = np.linalg.slogdet(2 * np.pi * np.e * np.cov(x, rowvar=False))
    assert sign > 0
    return 0.5 * logdet


@pytest.mark.parametrize("scale", [1e-14, 1e12])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_joint_entropy_at_extreme_scales(scale, as_tensor):
    x = np.random.default_rng(0).normal(size=(300, 3)) @ np.array(
        [[1.0, 0.3, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]]
    )
    want = closed_form(x) + 3 * np.log(scale)
    data = torch.from_numpy(x * scale) if as_tensor else x * scale
    got = float(entropylib.estimate(data, "gaussian", joint=True))
    assert got == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_collinear_columns_of_large_variance_are_singular(as_tensor):
    u = np.random.default_rng(1).normal(size=(300, 2))
    x = np.c_[u * 1e3, u[:, 0] * 3e3 - u[:, 1] * 7e2]  # third column = 3 c0 - 0.7 c1
    data = torch.from_numpy(x) if as_tensor else x
    with pytest.warns(RuntimeWarning, match="singular"):
        h = entropylib.estimate(data, "gaussian", joint=True, ties="floor")
    assert float(h) == -np.inf


@pytest.mark.parametrize("as_tensor", [False, True])
@pytest.mark.parametrize(("share", "singular"), [(0.95, True), (1.005, False)])
def test_singularity_threshold_is_100_d_eps(as_tensor, share, singular):
    """covariance_cholesky's documented test: a column whose unexplained variance share
    L_jj^2 / cov_jj is below 100 d eps is collinear. Here column 3 = column 1 + a residual
    of variance u, so its share is u / (1 + u)."""
    from entropylib.gaussian import covariance_cholesky

    u = share * 100 * 3 * np.finfo(np.float64).eps
    cov = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0 + u]])
    chol = covariance_cholesky(torch.from_numpy(cov) if as_tensor else cov)
    assert (chol is None) == singular
