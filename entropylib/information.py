"""Information measures built from entropy estimates: total correlation."""

from __future__ import annotations

from typing import Any

import numpy as np

from entropylib import registry, validation
from entropylib.estimate import estimate


def total_correlation(
    x: Any,
    method: str = "gaussian",
    *,
    base: float | None = None,
    backend: str = "auto",
    nan_policy: str = "raise",
    ties: str = "raise",
    seed: int = 0,
    **options: Any,
) -> Any:
    """Total correlation (multi-information) of the d columns of a sample, in nats.

    .. math::
        TC(X) = \\sum_{j=1}^{d} H(X_j) - H(X_1, \\dots, X_d) \\;\\ge\\; 0,

    zero exactly when the columns are independent (Watanabe 1960). For a normal law it is
    :math:`-\\tfrac12 \\log\\det R`, R the correlation matrix; E2MC's covariance penalty is a
    second-order proxy for it. Both terms come from :func:`entropylib.estimate` with the same
    ``method`` and options, so ``method`` must support ``joint=True`` ("gaussian", "knn",
    "kde"). With ``nan_policy="omit"`` rows holding any NaN are dropped once, so that the
    marginal and joint terms see the same rows. The other arguments are those of ``estimate``.

    Examples
    --------
    >>> import numpy as np, entropylib
    >>> cov = [[1.0, 0.6], [0.6, 1.0]]
    >>> x = np.random.default_rng(0).multivariate_normal([0, 0], cov, size=50_000)
    >>> tc = entropylib.total_correlation(x, "gaussian")
    >>> bool(abs(float(tc) - (-0.5 * np.log(1 - 0.6**2))) < 0.01)
    True
    """
    if not registry.get(method).supports_joint:
        joint_methods = [n for n, info in registry.methods().items() if info["joint"]]
        raise ValueError(
            f"total correlation needs a joint entropy; method {method!r} is univariate. "
            f"Use one of {joint_methods}"
        )
    samples = validation.as_samples(x)
    if samples.was_1d or samples.data.shape[1] < 2:
        raise ValueError(
            f"total correlation needs a 2-D sample with at least 2 columns, got shape "
            f"{tuple(x.shape) if hasattr(x, 'shape') else np.shape(x)}"
        )
    data = samples.data
    if nan_policy == "omit":
        rows = validation.nan_columns(data.T)
        data = data[~(rows if not samples.is_torch else _as_tensor_mask(rows, data))]
        nan_policy = "raise"
    kwargs = dict(base=base, backend=backend, nan_policy=nan_policy, ties=ties, seed=seed)
    marginal = estimate(data, method, **kwargs, **options)
    joint = estimate(data, method, joint=True, **kwargs, **options)
    return marginal.sum() - joint


def _as_tensor_mask(mask: np.ndarray, like: Any) -> Any:
    import torch

    return torch.as_tensor(mask, device=like.device)
