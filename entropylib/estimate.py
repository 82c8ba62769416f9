"""`estimate`: the one entry point to every differential entropy estimator."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from entropylib import registry, validation

#: backend="auto" for numpy input: the numba backend from this many values (n * d) on, per
#: (method, joint); the crossovers measured by benchmarks/bench_backend_auto.py
#: (benchmarks/results/backend_auto.md; measured on one column, d = 1, or d = 2 / 3 joint).
#: inf: numba measured no faster (numpy's vectorised sort on one column; knn marginal runs the
#: same code on both). Methods not listed go to numba from NUMBA_AUTO_SIZE values.
NUMBA_FROM: dict[tuple[str, bool], float] = {
    ("m_spacing", False): math.inf,
    ("vasicek", False): math.inf,
    ("van_es", False): math.inf,
    ("ebrahimi", False): 54_772,
    ("correa", False): 300,
    ("knn", False): math.inf,
    ("knn", True): math.inf,
    ("kde", False): 547,
    ("kde", True): 600,
}
NUMBA_AUTO_SIZE = 20_000

#: ``method="auto"`` for marginal (1-D) entropies: (largest n, method, options), the
#: estimator with the lowest RMSE averaged over the 12 distributions of
#: benchmarks/bench_auto_method.py at n = 30, 100, 1,000 and 10,000 (boundaries at the
#: geometric midpoints); benchmarks/results/auto_method.md has the tables, scipy's "auto"
#: beside them. kNN with a k growing with n is robust to heavy tails where spacings are not.
AUTO_MARGINAL: tuple[tuple[float, str, dict[str, Any]], ...] = (
    (54, "vasicek", {"bias_correction": True}),
    (316, "knn", {"k": 8}),
    (3162, "knn", {"k": 10}),
    (math.inf, "knn", {"k": 20}),
)
#: ``method="auto"`` for joint entropies: (largest n, largest d, method, options), the first
#: row that fits, measured the same way on 5 laws in d = 2, 3 and 5 at n = 100 to 10,000
AUTO_JOINT: tuple[tuple[float, float, str, dict[str, Any]], ...] = (
    (math.inf, math.inf, "knn", {"k": 3}),
)


def auto_method(n: int, d: int, joint: bool) -> tuple[str, dict[str, Any]]:
    """The method and options ``method="auto"`` uses for n samples of d columns.

    Examples
    --------
    >>> auto_method(1000, 1, joint=False)
    ('knn', {'k': 10})
    """
    if joint:
        return next((m, o) for n_max, d_max, m, o in AUTO_JOINT if n <= n_max and d <= d_max)
    return next((m, o) for n_max, m, o in AUTO_MARGINAL if n <= n_max)


def estimate(
    x: Any,
    method: str = "auto",
    *,
    joint: bool = False,
    base: float | None = None,
    backend: str = "auto",
    nan_policy: str = "raise",
    ties: str = "raise",
    seed: int = 0,
    **options: Any,
) -> Any:
    """Estimate differential entropy from samples.

    Parameters
    ----------
    x : array_like or torch.Tensor, shape (n,) or (n, d)
        n samples along axis 0. For 2-D input the d per-column (marginal) entropies are
        returned, unless ``joint=True``.
    method : str
        An estimator name; ``entropylib.methods()`` lists them with their options.
        ``"auto"`` (default) uses the estimator that measured most accurate for this sample
        size (and dimension, for a joint estimate) over 12 distributions, at least as
        accurate as scipy's ``differential_entropy(method="auto")`` there: see
        :func:`auto_method` and ``benchmarks/results/auto_method.md``. It takes no method
        options; name a method to pass them (``"m_spacing"`` is E2MC's estimator).
    joint : bool
        Return the joint entropy of the d-dimensional sample (methods that support it).
    base : float, optional
        Logarithm base of the result; nats by default (``base=2`` gives bits).
    backend : {"auto", "numpy", "numba", "torch"}
        ``"auto"`` uses torch for tensors (if the method has a torch backend); otherwise
        numba from the size at which it measured faster for this method (``NUMBA_FROM``),
        numpy below.
        The torch backend is differentiable. A tensor given to a numpy backend (or an array
        to the torch backend) is converted and the result converted back, without gradient.
    nan_policy : {"raise", "omit", "propagate"}
    ties : {"raise", "jitter", "floor"}
        What to do when tied values make a spacing or neighbour distance zero; see
        :mod:`entropylib.validation` for the exact rules. ``"floor"`` (a tie counts as a
        one-ulp gap, with no gradient) is for training losses that need a finite value; it
        warns when more than 0.1 % of a column's gaps were floored, since the estimate is
        then dominated by the floor. Use ``"jitter"`` to estimate the entropy of rounded data.
        ``"kde"`` meets no zero gap: it warns (UserWarning) about a column with at most
        sqrt(n) distinct values, which looks discrete, unless ``"jitter"`` dequantizes it.
    seed : int
        Seed of the ``ties="jitter"`` noise (a non-negative integer, Python or numpy).
    **options
        Method options such as ``m`` (spacing window) or ``k`` (neighbours).

    Returns
    -------
    entropy : float, numpy.ndarray or torch.Tensor
        A scalar for 1-D input or ``joint=True``, else shape (d,). Numpy in, numpy out;
        a tensor in, a tensor out (same device; float32 or float64 as the input).

    Examples
    --------
    >>> import numpy as np, entropylib
    >>> x = np.random.default_rng(0).normal(size=10_000)
    >>> h = entropylib.estimate(x, "vasicek")
    >>> print(f"{h:.3f}, true {0.5 * np.log(2 * np.pi * np.e):.3f}")
    1.418, true 1.419
    >>> entropylib.estimate(np.column_stack([x, 2 * x]), "vasicek", base=2).round(3)
    array([2.045, 3.045])
    """
    joint = validation.check_flag("joint", joint)
    chosen = method == "auto"
    if chosen:
        if options:
            raise TypeError(
                f"method='auto' takes no estimator options, got {sorted(options)}; name the "
                "method to pass options (entropylib.methods() lists them)"
            )
        try:
            shape = _shape(x)
        except ValueError:  # ragged nested lists: as_samples says what is wrong
            shape = ()
        method, options = auto_method(
            shape[0] if shape else 0, shape[1] if len(shape) == 2 else 1, joint
        )
    spec = registry.get(method)
    validation.check_policies(nan_policy, ties, spec.ties, seed)
    if joint and not spec.supports_joint:
        joint_methods = [n for n, info in registry.methods().items() if info["joint"]]
        raise ValueError(
            f"method {method!r} is univariate and has no joint estimate; "
            f"use joint=False for per-column entropies or one of {joint_methods}"
        )
    if _is_empty(x):
        raise ValueError(
            f"x is empty (shape {_shape(x)}); {_label(method, chosen)} needs "
            f"{_smallest_n(spec, options)} samples per column"
        )
    samples = validation.as_samples(x)
    impls = spec.joint_backends if joint else spec.backends
    backend = _resolve_backend(backend, impls, samples, method, joint)
    log_base = _log_base(base)

    data = samples.data
    lo, hi = validation.column_range(data)
    if np.isfinite(lo).all() and np.isfinite(hi).all():  # no NaN, no inf: one pass told
        nan_cols, const = np.zeros(lo.shape, dtype=bool), lo == hi
    else:
        validation.check_no_inf(data)
        nan_cols, const = validation.nan_columns(data), None
    if nan_cols.any() and nan_policy == "raise":
        raise ValueError(
            f"x has NaN values in column(s) {np.flatnonzero(nan_cols).tolist()[:10]}; "
            "pass nan_policy='omit' to drop them or 'propagate' to return NaN"
        )

    run = _Runner(spec, impls[backend], backend, ties, seed, options, _label(method, chosen))
    run.may_need_frame = validation.frame_exponents(lo, hi, "column") is not None
    if joint:
        if nan_cols.any():
            if nan_policy == "propagate":
                return _finish(np.array(np.nan), samples, data, log_base, scalar=True)
            data = validation.drop_nan_rows(data)
        result = run.joint(data, const if not nan_cols.any() else None)
    elif not nan_cols.any():
        result = run.marginal(data, const)
    else:
        result = _marginal_with_nans(run, data, nan_cols, nan_policy)
    validation.warn_floored(run.floored)
    validation.warn_discrete(run.discrete, method, _DISCRETE_ADVICE)
    return _finish(result, samples, data, log_base, scalar=joint or samples.was_1d)


#: what `estimate` advises for a discrete-looking column of a method that ties do not stop
_DISCRETE_ADVICE = (
    "If the values are rounded continuous data, pass ties='jitter' to dequantize them; for "
    "the information a discrete variable shares with another, use mutual_information's "
    "default method='ksg1'"
)


class _Runner:
    """Fills in options, applies the tie policy and calls one implementation."""

    def __init__(self, spec, impl, backend, ties, seed, options, label):
        unknown = set(options) - set(spec.options)
        if unknown:
            raise TypeError(
                f"method {spec.name!r} got unknown option(s) {sorted(unknown)}; "
                f"its options are {sorted(spec.options)}"
            )
        self.spec, self.impl, self.backend = spec, impl, backend
        self.ties, self.seed, self.options = ties, seed, options
        self.label = label
        #: (floored count per column, gaps per column, what, column numbers) under "floor"
        self.floored: list = []
        #: (name, distinct values, rows) of the discrete-looking columns, for a method that
        #: ties do not stop (kde): every other method meets their ties and, under the default
        #: ties="raise", refuses them, so kde warns rather than give a number silently
        self.discrete: list = []
        #: False when the whole sample is known to be at a safe scale (no frame needed)
        self.may_need_frame = True

    def _prepare(self, data):
        n = data.shape[0]
        opts = {**self.spec.options, **self.options}
        opts = dict(self.spec.check_options(opts, n))
        need = self.spec.min_samples(opts, n)
        if n < need:
            raise validation.too_few_samples(self.label, need, data.shape, " per column")
        return opts

    def _call(self, data, opts, columns=None):
        """Run the implementation; ``columns``: the caller's numbers of data's columns (None
        for a joint estimate), named by the ``ties="floor"`` warning.

        Data at an extreme scale are estimated in a frame scaled by powers of 2 (see
        :func:`entropylib.validation.frame_exponents`) and the log of the scale is added back.
        """
        if self.spec.smooths_ties and self.ties != "jitter":
            self.discrete += [
                (f"column {j if columns is None else columns[j]}", distinct, data.shape[0])
                for j, distinct in validation.discrete_columns(data)
            ]
        exponents = self._frame_exponents(data, opts, joint=columns is None)
        if exponents is None:
            return self._run_noting_floors(data, opts, columns)
        out = self._run_noting_floors(validation.to_frame(data, exponents), opts, columns)
        shift = exponents * -math.log(2.0)  # H(x) = H(x 2^e) - e log 2, per column
        shift = shift.sum() if columns is None else shift
        if validation.is_tensor(out):
            import torch

            return out + torch.as_tensor(shift, dtype=out.dtype, device=out.device)
        return out + shift.astype(out.dtype if hasattr(out, "dtype") else np.float64)

    def _frame_exponents(self, data, opts, joint):
        if not self.may_need_frame:
            return None
        mode = self.spec.scaling(opts, joint)
        if mode is None:
            return None
        return validation.frame_exponents(*validation.column_range(data), mode)

    def _run_noting_floors(self, data, opts, columns):
        if self.ties != "floor":
            return self._convert_and_run(data, opts)
        with validation.count_floored() as floored:
            out = self._convert_and_run(data, opts)
        self.floored += [(*record, columns) for record in floored]
        return out

    def _convert_and_run(self, data, opts):
        to_numpy = self.backend != "torch" and validation.is_tensor(data)
        to_torch = self.backend == "torch" and not validation.is_tensor(data)
        if to_numpy:
            arg = data.detach().cpu().numpy()
        elif to_torch:
            import torch

            arg = np.ascontiguousarray(data)
            # torch warns on read-only memory (a memory map, a broadcast view), though the
            # estimators only read it: they get a copy
            arg = torch.from_numpy(arg if arg.flags.writeable else arg.copy())
        else:
            arg = data
        if self.ties == "jitter":
            if self.backend in self.spec.jitters_itself:
                opts = {**opts, "seed": self.seed}
            else:
                arg = validation.dequantize(arg, self.seed)
        out = self.impl(arg, ties=self.ties, **opts)
        if to_numpy:
            import torch

            return torch.as_tensor(np.asarray(out), dtype=data.dtype, device=data.device)
        if to_torch:
            return out.detach().numpy()
        return out

    def marginal(self, data, const=None, columns=None):
        """Per-column entropies; ``const``: the constant-column mask, if already known;
        ``columns``: the caller's numbers of the columns (default 0..d-1)."""
        opts = self._prepare(data)
        columns = np.arange(data.shape[1]) if columns is None else np.asarray(columns)
        if const is None:
            const = validation.constant_columns(data)
        if not const.any():
            return self._call(data, opts, columns)
        if self.ties == "raise":
            raise ValueError(
                f"column(s) {np.flatnonzero(const).tolist()[:10]} are constant (no spread), "
                "so their entropy is -inf; pass ties='jitter' or 'floor' to get -inf with a "
                "warning instead"
            )
        validation.warn_constant(const)
        keep = np.flatnonzero(~const)
        out = _full_like(data, -math.inf, data.shape[1])
        if keep.size:
            out[keep] = self._call(data[:, keep], opts, columns[keep])
        return out

    def joint(self, data, const=None):
        opts = self._prepare(data)
        if const is None:
            const = validation.constant_columns(data)
        if const.any():
            if self.ties == "raise":
                raise ValueError(
                    f"column(s) {np.flatnonzero(const).tolist()[:10]} are constant: the joint "
                    "distribution is degenerate (entropy -inf)"
                )
            validation.warn_constant(const)
            return _full_like(data, -math.inf, None)
        return self._call(data, opts)


def _marginal_with_nans(run: _Runner, data: Any, nan_cols: np.ndarray, nan_policy: str):
    out = _full_like(data, math.nan, data.shape[1])
    clean = np.flatnonzero(~nan_cols)
    if clean.size:
        out[clean] = run.marginal(data[:, clean], columns=clean)
    if nan_policy == "omit":
        for j in np.flatnonzero(nan_cols):
            col = data[:, j : j + 1]
            col = col[~(col.isnan() if validation.is_tensor(col) else np.isnan(col))[:, 0]]
            if col.shape[0] == 0:
                raise ValueError(f"column {j} is all NaN: nothing is left after omitting NaN")
            out[j : j + 1] = run.marginal(col.reshape(-1, 1), columns=[j])
    return out


def _label(method: str, chosen: bool) -> str:
    """The method as messages name it; ``chosen``: picked by ``method="auto"``, which the
    caller wrote instead of this name."""
    return f"method='auto' (here {method!r})" if chosen else f"method {method!r}"


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def _is_empty(x: Any) -> bool:
    try:
        shape = _shape(x)
    except ValueError:  # ragged nested lists: as_samples says what is wrong
        return False
    return len(shape) in (1, 2) and 0 in shape


def _smallest_n(spec: registry.Method, options: dict[str, Any], limit: int = 1000) -> str:
    """How many samples the method needs with these options, for the empty-input message:
    ``"at least n"`` with the smallest accepted n, or ``"more than limit"``."""
    opts = {**spec.options, **options}
    for n in range(1, limit + 1):
        try:
            if n >= spec.min_samples(spec.check_options(opts, n), n):
                return f"at least {n}"
        except (TypeError, ValueError):
            continue
    return f"more than {limit}"


def _full_like(data: Any, value: float, size: int | None) -> Any:
    shape = () if size is None else (size,)
    if validation.is_tensor(data):
        import torch

        return torch.full(shape, value, dtype=data.dtype, device=data.device)
    return np.full(shape, value, dtype=data.dtype)


def _resolve_backend(backend: str, impls: dict, samples, method: str, joint: bool) -> str:
    if backend == "auto":
        numba_from = NUMBA_FROM.get((method, joint), NUMBA_AUTO_SIZE)
        if samples.is_torch and "torch" in impls:
            backend = "torch"
        elif "numba" in impls and math.prod(samples.data.shape) >= numba_from:
            backend = "numba"
        else:  # a tensor for a method without a torch backend is converted (no gradient)
            backend = "numpy"
    if backend not in registry.BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {registry.BACKENDS}, got {backend!r}")
    if backend not in impls:
        raise ValueError(
            f"method {method!r} has no {backend!r} backend here; available: {sorted(impls)}"
        )
    if backend == "torch":
        registry.require_torch('backend="torch"')
    return backend


def _log_base(base: float | None) -> float:
    if base is None:
        return 1.0
    if not (validation.is_real(base) and math.isfinite(base) and base > 0 and base != 1):
        raise ValueError(f"base must be a positive number other than 1, got {base!r}")
    return math.log(float(base))


def _finish(result: Any, samples, data: Any, log_base: float, scalar: bool) -> Any:
    if log_base != 1.0:
        result = result / log_base
    if samples.is_torch:
        import torch

        result = torch.as_tensor(result, dtype=data.dtype, device=data.device)
        return result.reshape(()) if scalar else result
    result = np.asarray(result, dtype=data.dtype)
    return result.reshape(())[()] if scalar else result
