"""Exact expectations of the spacing estimators on U(0, 1) samples (true entropy 0).

A leaf module (numpy and scipy only): both :mod:`entropylib.spacings` and the numba kernels of
:mod:`entropylib.numba_kernels` subtract these for ``bias_correction=True``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import digamma


def m_spacing_uniform_bias(n: int, m: int) -> float:
    """E[m_spacing] on U(0,1) samples (true entropy 0): ``log((n+1)/m) + psi(m) - psi(n+1)``."""
    return math.log((n + 1) / m) + float(digamma(m) - digamma(n + 1))


def vasicek_uniform_bias(n: int, m: int) -> float:
    r"""E[vasicek] on U(0,1) samples:
    :math:`\log\frac{n}{2m} + (1 - \frac{2m}{n})\psi(2m) - \psi(n+1)
    + \frac{2}{n}\sum_{i=1}^{m}\psi(i+m-1)`."""
    i = np.arange(1, m + 1)
    return float(
        math.log(n / (2 * m))
        + (1 - 2 * m / n) * digamma(2 * m)
        - digamma(n + 1)
        + 2 / n * np.sum(digamma(i + m - 1))
    )
