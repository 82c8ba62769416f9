"""Information measures of continuous variables: mutual information, conditional mutual
information and total correlation, in nats.

Each function takes its variables as samples with rows along axis 0 (a variable may have
several columns) and a method:

- ``"ksg1"`` / ``"ksg2"``: the Kraskov-Stoegbauer-Grassberger neighbour-count estimators
  (:mod:`entropylib.ksg`; Frenzel-Pompe for the conditional mutual information, ksg1 only);
- any method with a joint entropy (``"gaussian"``, ``"knn"``, ``"kde"``, ...): the entropy
  difference, each entropy from :func:`entropylib.estimate` with the same options,

  .. math::
      I(X; Y) = H(X) + H(Y) - H(X, Y), \\quad
      I(X; Y \\mid Z) = H(X, Z) + H(Y, Z) - H(X, Y, Z) - H(Z), \\quad
      TC(X_1, \\dots, X_m) = \\sum_v H(X_v) - H(X_1, \\dots, X_m).

  With ``"gaussian"`` this is the closed form for normal variables, e.g.
  :math:`I(X; Y) = \\tfrac12 \\log(\\det\\Sigma_X \\det\\Sigma_Y / \\det\\Sigma)`.

Inputs are checked as :func:`entropylib.estimate` checks them (:mod:`entropylib.validation`),
with the same ``nan_policy`` (``"omit"`` drops the rows where any variable is NaN, so every
term sees the same rows), ``ties`` (for KSG a zero joint k-th neighbour distance is a tie,
and for KSG2 a zero neighbour extent in one variable; ``"jitter"`` dequantizes each column;
``"kde"``, which meets no tie, warns about a column of a variable with at most sqrt(n)
distinct values, such as class labels, whose values it would smooth into a density) and
``base``. Variables must all be numpy arrays or all torch tensors; a tensor result keeps
the input's dtype and device, and is differentiable with the entropy-difference forms on the
torch backend (KSG counts have no gradient).

Units: the three measures are invariant under an invertible map of each variable, so they
must not depend on the units of a column, but the kNN estimators (KSG, ``"knn"``,
``"weighted_knn"``) do: a joint max-norm neighbourhood is set by the widest column, and a
variable in units 1000 times smaller is seen at a scale too coarse for it (a normal pair
with I = 0.22 nats, n = 2000, x multiplied by 1000: 0.05 nats by KSG1, -0.41 by ``"knn"``;
by 10^6: 0.0 and -7.1). With ``standardize=True`` (the
default) each column is first divided by its standard deviation, as Kraskov et al. did in
their experiments, so rescaling any column changes the estimate only by rounding (not at all
for a power-of-2 factor), at any finite scale. The entropy differences need no correction
for it: every column enters them as often with + as with -, so the log-scale terms cancel.
``standardize=False`` estimates on the columns as given. A float ``bandwidth`` of ``"kde"``
is in standardized units when ``standardize=True``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from entropylib import registry, validation
from entropylib.estimate import _log_base, estimate

#: KSG backend="auto" uses numba from this many samples: at n = 10^4 the cell grid and the
#: sorted counts were already faster than the KD-tree on all cores (1.1x at d = 2 to 2.5x at
#: d = 6 on a loaded machine; benchmarks/results/information.md), below it thread start-up
#: and the first call's loading of the compiled kernels weigh more
KSG_NUMBA_MIN_N = 10_000


def mutual_information(
    x: Any,
    y: Any,
    method: str = "ksg1",
    *,
    base: float | None = None,
    backend: str = "auto",
    nan_policy: str = "raise",
    ties: str = "raise",
    seed: int = 0,
    standardize: bool = True,
    **options: Any,
) -> Any:
    """Mutual information I(X; Y) between two variables sampled together.

    Parameters
    ----------
    x, y : array_like or torch.Tensor, shape (n,) or (n, d_x), (n,) or (n, d_y)
        Paired samples (row i of x goes with row i of y).
    method : str
        ``"ksg1"`` (default), ``"ksg2"``, or an entropy method with a joint estimate
        (``"gaussian"`` gives the normal closed form); see the module docstring.
    base, backend, nan_policy, ties, seed, **options
        As for :func:`entropylib.estimate`; KSG takes ``k`` (default 3) and the backends
        "numpy" (KD-tree) and "numba" (cell grid), "auto" choosing numba from
        ``KSG_NUMBA_MIN_N`` samples.
    standardize : bool
        Divide each column by its standard deviation (ddof 0) before estimating (default),
        so that the estimate does not depend on the units of each column; see the module
        docstring. False estimates on the columns as given.

    Returns
    -------
    float, numpy scalar or 0-d torch.Tensor, in nats unless ``base`` is given.

    Examples
    --------
    >>> import numpy as np, entropylib
    >>> rng = np.random.default_rng(0)
    >>> xy = rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], size=20_000)
    >>> true = -0.5 * np.log(1 - 0.8**2)
    >>> mi = entropylib.mutual_information(xy[:, 0], xy[:, 1])           # KSG1, k = 3
    >>> bool(abs(mi - true) < 0.02)
    True
    >>> mi = entropylib.mutual_information(xy[:, 0], xy[:, 1], "gaussian")
    >>> bool(abs(mi - true) < 0.02)
    True
    """
    return _information("mutual_information", {"x": x, "y": y}, method, base=base,
                        backend=backend, nan_policy=nan_policy, ties=ties, seed=seed,
                        standardize=standardize, options=options)


def conditional_mutual_information(
    x: Any,
    y: Any,
    z: Any,
    method: str = "ksg1",
    *,
    base: float | None = None,
    backend: str = "auto",
    nan_policy: str = "raise",
    ties: str = "raise",
    seed: int = 0,
    standardize: bool = True,
    **options: Any,
) -> Any:
    """Conditional mutual information I(X; Y | Z) of three variables sampled together.

    ``"ksg1"`` (default) is the estimator of Frenzel and Pompe (2007); ``"ksg2"`` has no
    conditional form here. The other arguments (``standardize`` too) are those of
    :func:`mutual_information`.

    Examples
    --------
    >>> import numpy as np, entropylib
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=10_000)
    >>> y = x + rng.normal(size=10_000)        # a chain x -> y -> z
    >>> z = y + rng.normal(size=10_000)
    >>> cmi = entropylib.conditional_mutual_information(x, z, y)   # 0: z depends on x via y
    >>> bool(abs(cmi) < 0.02)
    True
    """
    return _information("conditional_mutual_information", {"x": x, "y": y, "z": z}, method,
                        base=base, backend=backend, nan_policy=nan_policy, ties=ties,
                        seed=seed, standardize=standardize, options=options)


def total_correlation(
    x: Any,
    method: str = "gaussian",
    *,
    groups: Sequence[Sequence[int]] | None = None,
    base: float | None = None,
    backend: str = "auto",
    nan_policy: str = "raise",
    ties: str = "raise",
    seed: int = 0,
    standardize: bool = True,
    **options: Any,
) -> Any:
    """Total correlation (multi-information) of the variables in the columns of a sample.

    .. math::
        TC(X) = \\sum_{v=1}^{m} H(X_v) - H(X_1, \\dots, X_m) \\;\\ge\\; 0,

    zero exactly when the variables are independent (Watanabe 1960). For a normal law whose
    variables are single columns it is :math:`-\\tfrac12 \\log\\det R`, R the correlation
    matrix; E2MC's covariance penalty is a second-order proxy for it.

    Parameters
    ----------
    x : array_like or torch.Tensor, shape (n, d)
    method : str
        ``"gaussian"`` (default), another entropy method with a joint estimate (``"knn"``,
        ``"kde"``, ...), or ``"ksg1"`` / ``"ksg2"``: the chain rule
        :math:`\\sum_{v \\ge 2} I(X_1, \\dots, X_{v-1}; X_v)` of KSG terms, which measured
        more accurate than KSG's one-step multivariate form (:mod:`entropylib.ksg`); its
        value depends slightly on the order of the variables.
    groups : sequence of sequences of int, optional
        The columns of each variable (disjoint; a group may be a 1-D integer array); by
        default each column is a variable.
    base, backend, nan_policy, ties, seed, standardize, **options
        As for :func:`mutual_information`.

    Examples
    --------
    >>> import numpy as np, entropylib
    >>> cov = [[1.0, 0.6], [0.6, 1.0]]
    >>> x = np.random.default_rng(0).multivariate_normal([0, 0], cov, size=50_000)
    >>> tc = entropylib.total_correlation(x, "gaussian")
    >>> bool(abs(float(tc) - (-0.5 * np.log(1 - 0.6**2))) < 0.01)
    True
    >>> tc = entropylib.total_correlation(x, "ksg1")
    >>> bool(abs(float(tc) - (-0.5 * np.log(1 - 0.6**2))) < 0.01)
    True
    """
    samples = validation.as_samples(x)
    d = samples.data.shape[1]
    if groups is None:
        if samples.was_1d or d < 2:
            raise ValueError(
                f"total correlation needs a 2-D sample with at least 2 columns, got shape "
                f"{_shape(x)}"
            )
        groups = [[j] for j in range(d)]
    groups = _check_groups(groups, d)
    variables = {f"variable {v}": samples.data[:, g] for v, g in enumerate(groups)}
    return _information("total_correlation", variables, method, base=base, backend=backend,
                        nan_policy=nan_policy, ties=ties, seed=seed, standardize=standardize,
                        options=options, columns_of_x=[c for g in groups for c in g])


def _information(measure: str, variables: dict[str, Any], method: str, *, base, backend,
                 nan_policy, ties, seed, standardize, options,
                 columns_of_x: list[int] | None = None) -> Any:
    """Validate the variables once, then estimate by KSG or by entropy differences;
    ``columns_of_x``: for total correlation, x's column of each stacked column (named by
    the warnings)."""
    spec = registry.get(method, measure)
    validation.check_policies(nan_policy, ties, spec.ties, seed)
    standardize = validation.check_flag("standardize", standardize)
    log_base = _log_base(base)
    data, groups, like = _stack(variables, nan_policy)
    if data is None:  # NaN under nan_policy="propagate"
        return _finish(math.nan, like)
    _check_sample_size(spec, options, data.shape)
    if standardize:
        data = _unit_std(data)
    if spec.information:
        value = _ksg(spec, measure, data, groups, backend, ties, seed, options)
    else:
        if spec.smooths_ties and ties != "jitter":
            _warn_discrete(method, data, list(variables), groups, columns_of_x)
        kwargs = dict(backend=backend, ties=ties, seed=seed, **options)
        with validation.discrete_checked():  # named above, by variable
            value = _entropy_difference(measure, method, data, groups, kwargs)
    return _finish(value / log_base, like)


def _check_sample_size(spec: registry.Method, options: dict[str, Any],
                       shape: tuple[int, ...]) -> None:
    """Too few rows for the method raise before anything else: one row would make every
    column constant, which the entropy differences count as carrying no information (0)."""
    n = shape[0]
    known = {key: value for key, value in options.items() if key in spec.options}
    need = spec.min_samples(spec.check_options({**spec.options, **known}, n), n)
    if n < need:
        raise validation.too_few_samples(f"method {spec.name!r}", need, shape)


def _warn_discrete(method: str, data: Any, names: list[str], groups: list[list[int]],
                   columns_of_x: list[int] | None) -> None:
    """Warn about each discrete-looking column (class labels, counts) of a method that ties
    do not stop (kde): it smooths the values into a density they do not have, and the
    entropy differences come out far off without an error (0.10 nats for the 0.34 of
    x | y ~ N(2y, 1) with two labels y at n = 2000)."""
    found = dict(validation.discrete_columns(data))
    named = []
    for name, group in zip(names, groups, strict=True):
        for i, c in enumerate(group):
            if c not in found:
                continue
            if columns_of_x is not None:
                label = f"{name} (column {columns_of_x[c]} of x)"
            else:
                label = name if len(group) == 1 else f"column {i} of {name}"
            named.append((label, found[c], data.shape[0]))
    # stacklevel 5: the caller of the public measure (through _information and the helper)
    validation.warn_discrete(
        named, method, "Use method='ksg1', which handles a discrete variable (docs/"
        "estimators.md, 'A continuous variable and a discrete one')", stacklevel=5)


def _unit_std(data: Any) -> Any:
    """Each non-constant column divided by its standard deviation (ddof 0).

    The information measures are invariant under a rescaling of each variable, but the
    estimators are not: joint max-norm neighbourhoods are set by the widest column, so a
    variable in smaller units is counted at too coarse a scale. The deviation is taken after
    the exact power-of-2 move of ``validation.frame_exponents`` (columns near the float range's
    ends get a range in [1, 2)), so that neither it nor the quotient overflows or underflows.
    A constant column is left alone: its standard deviation may be a rounding residue, and
    the estimators handle constant columns themselves.
    """
    lo, hi = validation.column_range(data)
    exponents = validation.frame_exponents(lo, hi, "column")
    if exponents is not None:
        data = validation.to_frame(data, exponents)
    live = np.flatnonzero(lo != hi).tolist()
    if validation.is_tensor(data):
        import torch

        index = torch.as_tensor(live, dtype=torch.long, device=data.device)
        scale = torch.ones(data.shape[1], dtype=data.dtype, device=data.device)
        scale = scale.index_put((index,), data[:, index].std(dim=0, correction=0))
        return data / scale
    scale = np.ones(data.shape[1], dtype=data.dtype)
    scale[live] = [data[:, j].std() for j in live]  # per column: axis-0 reductions are slow
    return data / scale


def _ksg(spec: registry.Method, measure: str, data: Any, groups: list[list[int]],
         backend: str, ties: str, seed: int, options: dict[str, Any]) -> float:
    unknown = set(options) - set(spec.options)
    if unknown:
        raise TypeError(
            f"method {spec.name!r} got unknown option(s) {sorted(unknown)}; "
            f"its options are {sorted(spec.options)}"
        )
    arr = data.detach().cpu().numpy() if validation.is_tensor(data) else data
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    # KSG counts are invariant under one power-of-2 scale of every coordinate: data near the
    # float range's ends (differences overflow, subnormals) are counted in a safe frame
    exponents = validation.frame_exponents(*validation.column_range(arr), "common")
    if exponents is not None:
        arr = validation.to_frame(arr, exponents)
    n = arr.shape[0]
    opts = dict(spec.check_options({**spec.options, **options}, n))
    impls = spec.information[measure]
    if backend == "auto":
        backend = "numba" if n >= KSG_NUMBA_MIN_N else "numpy"
    if backend not in impls:
        raise ValueError(f"backend must be 'auto' or one of {sorted(impls)} for method "
                         f"{spec.name!r}, got {backend!r}")
    if ties == "jitter":
        arr = validation.dequantize(arr, seed)
    # warned like estimate's floored gaps: floored radii read -3.8 nats of "information"
    # between two rounded normals whose true value is 0.22
    with validation.count_floored() as floored:
        value = impls[backend](arr, groups, ties=ties, **opts)
    validation.warn_floored([(*record, None) for record in floored])
    return value


def _entropy_difference(measure: str, method: str, data: Any, groups: list[list[int]],
                        kwargs: dict[str, Any]) -> Any:
    # A constant column makes every entropy holding it -inf (-inf - -inf = NaN) but changes no
    # information measure: (X, c) is a one-to-one function of X. It is left out, and a
    # variable with no column left is constant, with H = 0 in every term (I(c; Y) = 0).
    lo, hi = validation.column_range(data)
    groups = [[c for c in g if lo[c] != hi[c]] for g in groups]

    def h(cols: list[int]) -> Any:
        return estimate(data[:, cols], method, joint=True, **kwargs) if cols else 0.0

    # a degenerate joint sample (n <= d, collinear columns) has H = -inf with a warning under
    # ties "jitter" / "floor": one such term gives +-inf, two give -inf - (-inf), raised below
    with np.errstate(invalid="ignore"):
        value = _combine(measure, h, data, groups, method, kwargs)
    if bool(value.isnan()) if validation.is_tensor(value) else math.isnan(value):
        raise ValueError(
            f"{measure} is undefined: two or more of its entropy terms are -inf (degenerate "
            "joint samples, e.g. n <= d or collinear columns; see the warnings). Use more "
            "samples or fewer columns"
        )
    return value


def _combine(measure: str, h: Any, data: Any, groups: list[list[int]], method: str,
             kwargs: dict[str, Any]) -> Any:
    """The entropy-difference formula of ``measure``, ``h`` giving joint entropies."""
    everything = [c for g in groups for c in g]
    if measure == "conditional_mutual_information":
        x, y, z = groups
        return h(x + z) + h(y + z) - h(everything) - h(z)
    # one column per variable: one call; with a single live column the general form below
    # gives h - h = 0 exactly, which the marginal and joint paths need not
    if len(everything) > 1 and all(len(g) <= 1 for g in groups):
        live = data if len(everything) == data.shape[1] else data[:, everything]
        return estimate(live, method, **kwargs).sum() - h(everything)
    return sum(h(g) for g in groups) - h(everything)


def _stack(variables: dict[str, Any], nan_policy: str) -> tuple[Any, list[list[int]], Any]:
    """The variables side by side as one (n, D) sample, the columns of each, and the sample
    whose kind (numpy or torch, dtype, device) the result takes; data is None when NaN
    propagates."""
    checked = {name: validation.as_samples(v, name) for name, v in variables.items()}
    kinds = {s.is_torch for s in checked.values()}
    if len(kinds) > 1:
        raise TypeError("the variables must be all numpy arrays or all torch tensors")
    sizes = {name: s.data.shape[0] for name, s in checked.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"the variables must have the same number of samples (rows), got "
                         f"{sizes}")
    parts = [s.data for s in checked.values()]
    if kinds == {True}:
        import torch

        dtype = functools.reduce(torch.promote_types, [p.dtype for p in parts])
        data = torch.cat([p.to(dtype) for p in parts], dim=1)
    else:
        data = np.concatenate(parts, axis=1)
    bounds = np.cumsum([0] + [p.shape[1] for p in parts])
    groups = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    lo, hi = validation.column_range(data)
    if np.isfinite(lo).all() and np.isfinite(hi).all():
        return data, groups, data
    for name, s in checked.items():
        validation.check_no_inf(s.data, name)
    if nan_policy == "raise":
        named = [name for name, s in checked.items() if validation.nan_columns(s.data).any()]
        raise ValueError(f"{', '.join(named)} ha{'ve' if len(named) > 1 else 's'} NaN values; "
                         "pass nan_policy='omit' to drop those rows or 'propagate' to return "
                         "NaN")
    if nan_policy == "propagate":
        return None, groups, data
    return validation.drop_nan_rows(data), groups, data


def _check_groups(groups: Sequence[Sequence[int]], d: int) -> list[list[int]]:
    groups = [_check_group(g, d) for g in groups]
    flat = [c for g in groups for c in g]
    if len(groups) < 2:
        raise ValueError(f"total correlation needs at least 2 variables, got groups={groups}")
    if len(set(flat)) != len(flat):
        raise ValueError(f"groups must not share columns, got {groups}")
    return groups


def _check_group(group: Sequence[int], d: int) -> list[int]:
    if isinstance(group, np.ndarray):  # e.g. from np.flatnonzero; 1-D, else no index list
        group = list(group) if group.ndim == 1 else None
    cols = list(group) if isinstance(group, Sequence) and not isinstance(group, str) else None
    if not cols or not all(validation.is_integer(c) and 0 <= c < d for c in cols):
        raise ValueError(f"each group must be a non-empty list of column indices in "
                         f"[0, {d}), got {group!r}")
    return [int(c) for c in cols]


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def _finish(value: Any, like: Any) -> Any:
    if validation.is_tensor(like):
        import torch

        return torch.as_tensor(value, dtype=like.dtype, device=like.device).reshape(())
    if validation.is_tensor(value):
        return value
    return np.asarray(value, dtype=like.dtype).reshape(())[()]
