"""Spacing estimators of univariate differential entropy, written once for numpy and torch.

Every function here takes a finite 2-D array ``x`` of shape (n, d) (numpy or torch; the
formulas use the array-API namespace of the input, so the torch path is differentiable on
any device) and returns the d per-column entropies in nats. ``x_(i)`` are the order
statistics of a column; where an index leaves 1..n it is padded: ``x_(j) = x_(1)`` for
j < 1 and ``x_(n)`` for j > n. The window ``m`` defaults to ``round(sqrt(n))``
(``floor(sqrt(n) + 0.5)``, as scipy) and must satisfy ``1 <= m`` and ``2 m < n``.

Call them through :func:`entropylib.estimate`, which validates input and applies the NaN and
tie policies; they are public so that training criteria can use the very same code. Called
directly, they honour ``ties`` themselves (``"jitter"`` dequantizes with ``seed``).

The per-column means are summed in an order that does not depend on the number of columns,
so a column-wise call is bit-identical to a loop over the columns. The "numba" backend of
each estimator lives in :mod:`entropylib.numba_kernels`, imported on first use; the exact
U(0,1) biases that both use live in the leaf module :mod:`entropylib.spacing_bias`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as device_of

from entropylib import registry, validation
from entropylib.spacing_bias import m_spacing_uniform_bias, vasicek_uniform_bias


def default_window(n: int) -> int:
    """``round(sqrt(n))`` with halves rounded up, as ``scipy.stats.differential_entropy``."""
    return math.floor(math.sqrt(n) + 0.5)


def m_spacing(
    x: Any,
    *,
    m: int,
    eps: float = 0.0,
    bias_correction: bool = False,
    ties: str = "raise",
    seed: int = 0,
) -> Any:
    r"""m-spacing estimator in the RADICAL form (Learned-Miller & Fisher 2003), used by E2MC.

    .. math::
        H = \frac{1}{n-m} \sum_{i=1}^{n-m}
            \log\Big(\frac{n+1}{m}(x_{(i+m)} - x_{(i)}) + \epsilon\Big)

    ``eps`` (default 0) reproduces the constant that the E2MC reference adds inside the log.
    For U(0,1) data the expectation is exactly ``log((n+1)/m) + psi(m) - psi(n+1)``;
    ``bias_correction=True`` subtracts it, which gives van Es's estimator.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor, shape (n, d)
        Finite samples; the torch path is differentiable.
    m : int
        Spacing window, ``1 <= m`` and ``2 m < n`` (:func:`default_window` gives round(sqrt(n))).
    ties : {"raise", "floor", "jitter"}
        Tie policy of :mod:`entropylib.validation`; ``seed`` seeds the "jitter" noise.

    Examples
    --------
    >>> import numpy as np
    >>> from entropylib.spacings import m_spacing, default_window
    >>> x = np.random.default_rng(0).uniform(size=(10_000, 2))
    >>> h = m_spacing(x, m=default_window(10_000), bias_correction=True)
    >>> bool(np.all(np.abs(h) < 0.01))  # U(0,1) has entropy 0
    True
    """
    xp = array_namespace(x)
    x = _jitter(x, ties, seed)
    n = x.shape[0]
    s = sort_columns(x)
    gaps = validation.apply_tie_policy(s[m:, ...] - s[:-m, ...], ties, _span_floor(s, ties))
    h = _column_mean(xp.log((n + 1) / m * gaps + eps), xp)
    if bias_correction:
        h = h - m_spacing_uniform_bias(n, m)
    return h


def van_es(x: Any, *, m: int, ties: str = "raise", seed: int = 0) -> Any:
    r"""van Es (1992): the m-spacing estimator plus ``sum_{k=m}^{n} 1/k + log m - log(n+1)``.

    The added constant equals minus :func:`m_spacing_uniform_bias`, so the estimator is
    exactly unbiased on U(0,1) samples.

    Examples
    --------
    >>> import numpy as np
    >>> from entropylib.spacings import van_es
    >>> u = np.random.default_rng(0).uniform(size=(1000, 200))  # 200 samples of n = 1000
    >>> bool(abs(van_es(u, m=32).mean()) < 0.002)  # true entropy 0, no bias
    True
    """
    return m_spacing(x, m=m, bias_correction=True, ties=ties, seed=seed)


def vasicek(
    x: Any, *, m: int, bias_correction: bool = False, ties: str = "raise", seed: int = 0
) -> Any:
    r"""Vasicek (1976), with padding at both ends:

    .. math::
        H = \frac1n \sum_{i=1}^{n} \log\Big(\frac{n}{2m}(x_{(i+m)} - x_{(i-m)})\Big)

    ``bias_correction=True`` subtracts the exact expectation on
    U(0,1) samples, :func:`vasicek_uniform_bias`. When it helps (RMSE against closed forms
    on 12 distributions, ``benchmarks/results/auto_method.md``): at small n (n = 30: 0.67x
    the uncorrected RMSE on average, better on 11 of 12 laws; n = 100: 0.82x) and on bounded
    supports at any n (uniform: 0.1x at n = 1000, 0.06x at n = 10^4). From n ~ 1000 on
    unbounded laws it hurts (normal 1.26x at n = 1000 and 1.8x at 10^4; mean 1.1x and 1.23x),
    since Vasicek's bias there has the opposite sign to its bias on U(0,1). Heavy tails
    (Cauchy) are worse with it at every n.

    Examples
    --------
    >>> import numpy as np
    >>> from entropylib.spacings import vasicek
    >>> x = np.random.default_rng(0).normal(size=(10_000, 1))
    >>> h = vasicek(x, m=100)
    >>> bool(abs(h[0] - 0.5 * np.log(2 * np.pi * np.e)) < 0.02)
    True
    """
    xp = array_namespace(x)
    n = x.shape[0]
    gaps = _two_sided_gaps(x, m, ties, seed, xp)
    h = _column_mean(xp.log(n / (2 * m) * gaps), xp)
    if bias_correction:
        h = h - vasicek_uniform_bias(n, m)
    return h


def ebrahimi(x: Any, *, m: int, ties: str = "raise", seed: int = 0) -> Any:
    r"""Ebrahimi, Pflughoeft & Soofi (1994):
    :math:`H = \frac1n \sum_i \log\frac{n (x_{(i+m)} - x_{(i-m)})}{c_i m}` with
    :math:`c_i = 1 + \frac{i-1}{m}` for i <= m, :math:`1 + \frac{n-i}{m}` for i >= n-m+1,
    and 2 in between.

    Examples
    --------
    >>> import numpy as np
    >>> from entropylib.spacings import ebrahimi
    >>> x = np.random.default_rng(0).exponential(size=(10_000, 1))
    >>> bool(abs(ebrahimi(x, m=100)[0] - 1.0) < 0.02)  # Exp(1) has entropy 1
    True
    """
    xp = array_namespace(x)
    n = x.shape[0]
    gaps = _two_sided_gaps(x, m, ties, seed, xp)
    i = np.arange(1, n + 1, dtype=np.float64)
    c = np.full(n, 2.0)
    c[i <= m] = 1 + (i[i <= m] - 1) / m
    c[i >= n - m + 1] = 1 + (n - i[i >= n - m + 1]) / m
    c = xp.asarray(c[:, None], dtype=x.dtype, device=device_of(x))
    return _column_mean(xp.log(n * gaps / (c * m)), xp)


def correa(x: Any, *, m: int, ties: str = "raise", seed: int = 0) -> Any:
    r"""Correa (1995), local linear regression of the order statistics on their ranks:

    .. math::
        H = -\frac1n \sum_i \log \frac{\sum_{j=i-m}^{i+m} (x_{(j)} - \bar x_i)(j - i)}
        {n \sum_{j=i-m}^{i+m} (x_{(j)} - \bar x_i)^2}

    with :math:`\bar x_i` the mean of the window. The numerator is evaluated as
    :math:`\sum_{k=1}^{m} k (x_{(i+k)} - x_{(i-k)})` (equal, since the offsets sum to zero),
    which is positive term by term on sorted data unless the whole window is one tied value;
    such windows are ties (policies "raise" and "jitter" only). O(n m d) time, O(n d) memory
    in numpy (scipy builds a (2m+1, n, d) array; torch keeps O(n m d) for the backward pass);
    the numba backend does O(n d) work on smooth data.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> from entropylib.spacings import correa
    >>> x = np.random.default_rng(0).normal(size=(500, 2))
    >>> ref = stats.differential_entropy(x, axis=0, method="correa", window_length=22)
    >>> bool(np.allclose(correa(x, m=22), ref, rtol=0, atol=1e-12))
    True
    """
    xp = array_namespace(x)
    x = _jitter(x, ties, seed)
    n = x.shape[0]
    s = sort_columns(x)
    spread = _padded(s, m, xp) - _padded(s, -m, xp)
    validation.apply_tie_policy(spread, ties, None, "windows of tied values")
    # windows are formed again in each sum rather than stored: O(n d) memory in numpy
    mean = sum(_padded(s, k, xp) for k in range(-m, m + 1)) / (2 * m + 1)
    num = sum(k * (_padded(s, k, xp) - _padded(s, -k, xp)) for k in range(1, m + 1))
    den = n * sum((_padded(s, k, xp) - mean) ** 2 for k in range(-m, m + 1))
    return -_column_mean(xp.log(num / den), xp)


def _jitter(x: Any, ties: str, seed: int) -> Any:
    """``ties="jitter"`` for direct calls; a no-op on data `estimate` already dequantized."""
    return validation.dequantize(x, seed) if ties == "jitter" else x


def _column_mean(v: Any, xp: Any) -> Any:
    """Mean over axis 0 of v (k, d), summed in the same order for every d.

    numpy and torch reduce a lone column in another order than the columns of a wider array;
    summing the rows of the transposed copy makes column-wise calls equal looped ones bit for bit.
    """
    k, d = v.shape
    if validation.is_tensor(v):
        rows = v.T.contiguous()
        if d == 1:
            # torch splits the reduction of a single long row across threads; with two rows
            # each row is reduced serially, as when there are several columns
            rows = rows.expand(2, k)
        return xp.sum(rows, axis=1)[:d] / k
    return np.ascontiguousarray(v.T).sum(axis=1) / k


def _two_sided_gaps(x: Any, m: int, ties: str, seed: int, xp: Any) -> Any:
    """Padded spacings ``x_(i+m) - x_(i-m)``, i = 1..n, after the tie policy (Vasicek, Ebrahimi)."""
    s = sort_columns(_jitter(x, ties, seed))
    gaps = _padded(s, m, xp) - _padded(s, -m, xp)
    return validation.apply_tie_policy(gaps, ties, _span_floor(s, ties))


def _padded(s: Any, shift: int, xp: Any) -> Any:
    """Rows ``s[i + shift]`` for i = 0..n-1, indices clipped to the sample (padding)."""
    n = s.shape[0]
    idx = np.clip(np.arange(n) + shift, 0, n - 1)
    return xp.take(s, xp.asarray(idx, device=device_of(s)), axis=0)


def sort_columns(x: Any) -> Any:
    """Each column of ``x`` (n, d) sorted ascending, for numpy arrays and torch tensors.

    Sorted values do not depend on how equal values are ordered, so both use an unstable sort
    (the array-API ``sort`` is stable, and measured 1.4x (numpy) to 3x (torch) slower here).
    torch sorts a column-major copy: along contiguous memory its CPU sort of a (2048, 2048)
    tensor took a quarter of the time of a sort along dim 0 of the row-major tensor.
    """
    if validation.is_tensor(x):
        import torch

        return torch.sort(x.T.contiguous(), dim=1).values.T
    return np.sort(x, axis=0)


def _span_floor(s: Any, ties: str) -> Any:
    """Per-column floor of a zero gap under ``ties="floor"``; ``s`` is sorted."""
    if ties != "floor":
        return None
    return validation.tie_floor(s[[0, -1], ...])


def _window_options(options: Mapping[str, Any], n: int) -> Mapping[str, Any]:
    m = options["m"]
    if m is None:
        m = default_window(n)
    elif not validation.is_integer(m):
        raise TypeError(f"window m must be a positive integer, got {m!r}")
    if m < 1:
        raise ValueError(f"window m must be >= 1, got {m}")
    out = {**options, "m": int(m)}
    if "eps" in out:
        eps = out["eps"]
        if not (validation.is_real(eps) and math.isfinite(eps) and eps >= 0):
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
        out["eps"] = float(eps)
    if "bias_correction" in out:
        out["bias_correction"] = validation.check_flag("bias_correction", out["bias_correction"])
    return out


def _min_samples(options: Mapping[str, Any], n: int) -> int:
    return 2 * options["m"] + 1


_COMMON = dict(check_options=_window_options, min_samples=_min_samples)
_CITE = {
    "m_spacing": "Learned-Miller & Fisher, ICA using spacings estimates of entropy, JMLR 2003",
    "vasicek": "Vasicek, A test for normality based on sample entropy, JRSS B 1976",
    "van_es": "van Es, Estimating functionals related to a density by a class of statistics "
    "based on spacings, Scand. J. Stat. 1992",
    "ebrahimi": "Ebrahimi, Pflughoeft & Soofi, Two measures of sample entropy, "
    "Stat. Probab. Lett. 1994",
    "correa": "Correa, A new estimator of entropy, Commun. Stat. Theory Methods 1995",
}


def _numba_backend(name: str) -> Any:
    """The numba kernel of ``name``, importing (and so compiling) numba only when first called."""

    def run(x: np.ndarray, **options: Any) -> np.ndarray:
        from entropylib import numba_kernels

        return getattr(numba_kernels, name)(x, **options)

    run.__name__ = run.__qualname__ = f"{name}_numba"
    return run


def _register(name: str, func: Any, summary: str, options: dict[str, Any], ties=None) -> None:
    backends = {"numpy": func, "numba": _numba_backend(name), "torch": func}
    registry.register(
        registry.Method(
            name=name,
            summary=summary,
            reference=_CITE[name],
            backends=backends,
            options=options,
            ties=ties or validation.TIE_POLICIES,
            # the numpy/torch functions dequantize under ties="jitter"; the numba kernels not
            jitters_itself=frozenset({"numpy", "torch"}),
            **_COMMON,
        )
    )


_register(
    "m_spacing",
    m_spacing,
    "m-spacing estimator, RADICAL form (the one E2MC maximizes)",
    {"m": None, "eps": 0.0, "bias_correction": False},
)
_register("vasicek", vasicek, "Vasicek's spacing estimator", {"m": None, "bias_correction": False})
_register("van_es", van_es, "van Es's spacing estimator (unbiased on U(0,1))", {"m": None})
_register("ebrahimi", ebrahimi, "Ebrahimi's boundary-corrected spacing estimator", {"m": None})
_register(
    "correa",
    correa,
    "Correa's local-linear-regression spacing estimator",
    {"m": None},
    ties=("raise", "jitter"),
)
