"""Covariances of the correlated multivariate normals the joint-entropy tests use."""

import numpy as np


def ar1_covariance(d: int, rho: float) -> np.ndarray:
    """AR(1) correlation rho^|i-j| with unequal scales from 0.5 to 2 across the d coordinates."""
    i = np.arange(d)
    sd = np.linspace(0.5, 2.0, d)
    return rho ** np.abs(i[:, None] - i[None, :]) * np.outer(sd, sd)
