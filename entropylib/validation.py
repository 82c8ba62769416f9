"""Input checks and the NaN / tie policies, written once for every estimator.

`estimate` calls these before any estimator runs, so an estimator only ever sees a finite
2-D float array of shape (n, d). The policies are documented here:

NaN (``nan_policy``)
    ``"raise"`` (default) ValueError naming the columns; ``"omit"`` drops NaN entries per
    column (rows with any NaN for a joint estimate); ``"propagate"`` returns NaN for the
    affected columns.

+-inf
    Always a ValueError: an infinite sample has no finite differential entropy to estimate.

Ties (``ties``): equal values make spacings or neighbour distances zero and log(0) = -inf.
    ``"raise"`` (default) ValueError when an estimator meets a zero gap.
    ``"jitter"`` dequantizes repeated values: each value shared by several samples gets
    U(-delta/2, delta/2) noise, delta its distance to the nearest other distinct value of the
    column (the local resolution), drawn from ``seed`` and assigned by rank, so the result
    does not depend on the order of the samples. Values that occur once are left untouched.
    If rounding leaves a tie anyway (noise below the dtype's resolution), it is an error.
    ``"floor"`` replaces each zero gap by ``finfo(dtype).eps * (max - min)`` of its column
    (a one-ulp gap at the column's scale); in torch no gradient flows through a floored gap.
    It is meant for training losses (E2MC's entropy term), where a finite value with no
    gradient through ties is wanted, not for measuring entropy: each floored gap enters as
    log(one ulp of the range), about log(2.2e-16) = -36 nats in float64, so floored gaps pull
    the estimate down by roughly 36 nats times their fraction (N(0, 1) rounded to 0.1 gives
    -7.5 nats at n = 10^4 under "floor"). `estimate` therefore warns (RuntimeWarning) when
    more than ``FLOOR_WARN_FRACTION`` (0.1 %, about -0.04 nats) of a column's gaps, windows
    or k-th neighbour distances were floored; use "jitter" to estimate the entropy of
    rounded data.
    A constant column has no positive gap at any scale: under "raise" it is an error, under
    the other policies its entropy is -inf with a RuntimeWarning.
    ``kde`` meets no zero gap (a kernel sum has positive terms), so no policy stops it on a
    discrete variable: `estimate` and the information measures warn (UserWarning) about a
    column with at most sqrt(n) distinct values instead (:func:`discrete_columns`), except
    under "jitter", which gives the values a density first.
"""

from __future__ import annotations

import math
import numbers
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np

NAN_POLICIES = ("raise", "omit", "propagate")
TIE_POLICIES = ("raise", "jitter", "floor")
#: under ties="floor", `estimate` warns when more than this fraction of a column's gaps were
#: floored (each adds about log(eps) / n to the estimate, so 0.1 % moves it by ~ -0.04 nats)
FLOOR_WARN_FRACTION = 1e-3

# (floored count per column, gaps per column, what) of each tie-floored gap set, collected
# only inside `count_floored` (estimate), so direct calls (training losses) pay nothing
_FLOORED: ContextVar[list | None] = ContextVar("entropylib_floored", default=None)


def is_real(value: Any) -> bool:
    """True for a real number of any type (Python or numpy int or float); bools are not."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_integer(value: Any) -> bool:
    """True for an integer of any type (Python or numpy); bools are not."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_flag(name: str, value: Any) -> bool:
    """``value`` as a bool if it is one (Python or numpy); a TypeError for anything else, whose
    truth value (a non-empty string, None, 1.0) would be a silent guess."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def is_tensor(x: Any) -> bool:
    """True for a torch.Tensor, without importing torch when the caller never did."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


@dataclass
class Samples:
    """A validated sample: ``data`` is 2-D (n, d) float; ``was_1d`` if the input was (n,)."""

    data: Any
    was_1d: bool
    is_torch: bool


def as_samples(x: Any, name: str = "x") -> Samples:
    """Check shape and dtype and return the sample as a 2-D float array of shape (n, d);
    errors call it ``name``.

    numpy input: integer and float16 become float64 / float32 ... as numpy promotes for
    ``float``: integers -> float64, float16 -> float32, float32 and float64 kept (in the
    machine's byte order).
    torch input: float32 / float64 kept (device kept), integers -> float64, half, bfloat16
    and float8 -> float32. Long double and sparse tensors are refused.
    """
    if is_tensor(x):
        return _tensor_samples(x, name)
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be an array of real numbers, got {type(x).__name__}")
    if isinstance(x, np.ma.MaskedArray):
        x = _masked_as_nan(x)
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:  # ragged lists
        raise ValueError(f"{name} must be a rectangular array of real numbers: {err}") from None
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} is complex; differential entropy is defined here for real samples")
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must hold real numbers (integer or float), got dtype {arr.dtype}"
        )
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.float64)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype.itemsize > 8:
        raise TypeError(
            f"{name} has dtype float{8 * arr.dtype.itemsize} (long double); the estimators "
            f"compute in float32 or float64: pass {name}.astype(np.float64)"
        )
    elif not arr.dtype.isnative:  # '>f8' from a file: numba and torch take native order only
        arr = arr.astype(arr.dtype.newbyteorder("="))
    _check_shape(arr.shape, name)
    was_1d = arr.ndim == 1
    return Samples(arr.reshape(-1, 1) if was_1d else arr, was_1d, False)


def _masked_as_nan(x: np.ma.MaskedArray) -> np.ndarray:
    """Masked entries become NaN, missing values for ``nan_policy`` (np.asarray would drop
    the mask and estimate the values hidden under it); a copy, the caller's array is kept."""
    if not np.ma.is_masked(x) or x.dtype.kind not in "iuf":  # other dtypes: refused later
        return x.data
    return x.astype(x.dtype if x.dtype.kind == "f" else np.float64).filled(np.nan)


def _tensor_samples(x: Any, name: str) -> Samples:
    import torch

    if x.is_complex():
        raise TypeError(f"{name} is complex; differential entropy is defined here for real samples")
    if x.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers (integer or float), got dtype torch.bool")
    if x.layout != torch.strided:
        raise TypeError(f"{name} is a {x.layout} tensor; pass a dense one ({name}.to_dense())")
    if not x.is_floating_point():
        x = x.to(torch.float64)
    elif x.dtype.itemsize < 4:  # float16, bfloat16, float8 formats
        x = x.to(torch.float32)
    _check_shape(tuple(x.shape), name)
    was_1d = x.ndim == 1
    return Samples(x.reshape(-1, 1) if was_1d else x, was_1d, True)


def too_few_samples(method: str, need: int, shape: tuple[int, ...], per: str = "") -> ValueError:
    """The error for a sample of ``shape`` with fewer rows than ``need`` (``method``: how the
    message names the method; ``per``: e.g. " per column"). It adds a hint when the sample
    looks transposed: too few rows, but enough columns to be the samples."""
    rows, columns = shape[0], shape[1]
    hint = "" if columns < need else (
        f"; the sample has {rows} row(s) and {columns} columns, and samples go along axis 0 "
        "(one row per sample): pass the transpose if each row holds one variable")
    return ValueError(f"{method} needs at least {need} samples{per} with these options, got "
                      f"n = {rows}{hint}")


def _check_shape(shape: tuple[int, ...], name: str) -> None:
    if len(shape) not in (1, 2):
        raise ValueError(
            f"{name} must be 1-D (n,) or 2-D (n, d) with samples along axis 0, got shape {shape}"
        )
    if shape[0] == 0 or (len(shape) == 2 and shape[1] == 0):
        raise ValueError(f"{name} is empty (shape {shape}); at least a few samples are needed")


def column_range(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (min, max) as numpy arrays, in one pass over a tensor (``aminmax``).

    NaN propagates into both, so finite results prove the data free of NaN and +-inf, and
    min == max marks the constant columns: the common case is checked with one reduction.
    """
    if is_tensor(data):
        import torch

        lo, hi = torch.aminmax(data.detach(), dim=0)
        return lo.cpu().numpy(), hi.cpu().numpy()
    return column_reduce(data, np.minimum), column_reduce(data, np.maximum)


#: values per block of rows in :func:`column_reduce`
REDUCE_BLOCK = 8192


def column_reduce(x: np.ndarray, op: np.ufunc) -> np.ndarray:
    """``op.reduce(x, axis=0)`` for a C-ordered (n, d) array, in contiguous vector loops.

    numpy reduces axis 0 of a C-ordered array row by row with a d-long inner loop, which for
    few columns is slow: 1 ms for (10^4, 8) and 34 ms for (10^5, 2), more than some estimators
    take. Viewing the rows as blocks of ``REDUCE_BLOCK // d`` rows and reducing the blocks
    elementwise (then halving the one block left) does the same comparisons in long loops, 20
    to 600x faster there; NaN propagates as with ``op.reduce``.
    """
    n, d = x.shape
    rows = REDUCE_BLOCK // d
    if d == 1 or rows < 2 or n < 2 * rows or not x.flags.c_contiguous:
        return op.reduce(x, axis=0)
    full = n // rows * rows
    acc = op.reduce(x[:full].reshape(-1, rows * d), axis=0).reshape(rows, d)
    op(acc[: n - full], x[full:], out=acc[: n - full])
    while acc.shape[0] > 1:
        half = acc.shape[0] // 2
        folded = op(acc[:half], acc[half : 2 * half])
        if acc.shape[0] % 2:
            op(folded[0], acc[-1], out=folded[0])
        acc = folded
    return acc[0]


def frame_exponents(lo: np.ndarray, hi: np.ndarray, mode: str) -> np.ndarray | None:
    """Powers of 2 that move columns at an extreme scale into a safe floating-point frame.

    Differential entropy is scale-equivariant, H(a X) = H(X) + log|a|, but the estimators'
    intermediates (spacings times n, squares, covariances) overflow or lose every digit when
    the data sit far from 1: float32 values near 3e37, float64 values near 1e300 or
    subnormal ones. A column is safe when its range is at least ``2^-L`` and its largest
    magnitude at most ``2^L``, L = maxexp / 4 (32 for float32, 256 for float64). If every
    column is safe this returns None (the data are used as they are); otherwise exponents
    e_j such that ``x_j 2^e_j`` has a range in [1, 2): ``"column"`` moves only the unsafe
    columns, each by its own exponent; ``"common"`` moves all columns by the exponent of the
    widest one (for estimators that need one factor, such as neighbour distances). Constant
    columns keep e = 0 under "column".
    """
    lo64, hi64 = lo.astype(np.float64), hi.astype(np.float64)
    half_range = 0.5 * hi64 - 0.5 * lo64  # no overflow at +-max
    biggest = np.maximum(np.abs(lo64), np.abs(hi64))
    limit = 2.0 ** (np.finfo(lo.dtype).maxexp // 4)
    live = half_range > 0
    safe = ~live | ((biggest <= limit) & (half_range >= 0.5 / limit))  # range >= 1 / limit
    if safe.all():
        return None
    exponent = -np.frexp(half_range)[1].astype(np.int64)  # half range * 2^e in [0.5, 1)
    if mode == "common":
        return np.full(lo.shape, exponent[live].max(), dtype=np.int64)
    return np.where(safe, 0, exponent)


def to_frame(data: Any, exponents: np.ndarray) -> Any:
    """``data * 2^exponents`` per column, exactly, as two factors that each fit the dtype
    (2^e itself need not: float32 subnormals need 2^149); differentiable for tensors."""
    first = exponents // 2
    factors = [np.ldexp(1.0, first), np.ldexp(1.0, exponents - first)]
    if is_tensor(data):
        import torch

        factors = [torch.as_tensor(f, dtype=data.dtype, device=data.device) for f in factors]
        return data * factors[0] * factors[1]
    return data * factors[0].astype(data.dtype) * factors[1].astype(data.dtype)


def nan_columns(data: Any) -> np.ndarray:
    """Boolean mask (d,) of the columns holding at least one NaN."""
    if is_tensor(data):
        return data.isnan().any(dim=0).cpu().numpy()
    return np.isnan(data).any(axis=0)


def drop_nan_rows(data: Any) -> Any:
    """The rows of ``data`` (n, d) without NaN (``nan_policy="omit"`` for a joint sample); a
    ValueError if no row is left."""
    if is_tensor(data):
        kept = data[~data.isnan().any(dim=1)]
    else:
        kept = data[~np.isnan(data).any(axis=1)]
    if kept.shape[0] == 0:
        raise ValueError("every row holds a NaN: nothing is left after omitting NaN rows")
    return kept


def check_no_inf(data: Any, name: str = "x") -> None:
    bad = data.isinf().any(dim=0).cpu().numpy() if is_tensor(data) else np.isinf(data).any(axis=0)
    if bad.any():
        cols = np.flatnonzero(bad).tolist()
        raise ValueError(
            f"{name} has infinite values in column(s) {cols[:10]}; finite samples are expected"
        )


def check_policies(
    nan_policy: str, ties: str, supported_ties: tuple[str, ...], seed: int = 0
) -> None:
    """Check the NaN and tie policies and the seed of the "jitter" noise (checked whatever
    the policy, so that a bad seed is found before a tie first makes it matter)."""
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    if ties not in supported_ties:
        raise ValueError(f"ties must be one of {supported_ties}, got {ties!r}")
    check_seed(seed)


def check_seed(seed: Any) -> int:
    """``seed`` as an int if it is a non-negative integer (Python or numpy): numpy's own error
    does not name the argument, True would seed as 1 and None draw fresh, irreproducible
    entropy."""
    if not is_integer(seed):
        raise TypeError(f"seed must be a non-negative integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def constant_columns(data: Any) -> np.ndarray:
    """Boolean mask (d,) of the columns whose values are all equal."""
    if is_tensor(data):
        return (data.amax(dim=0) == data.amin(dim=0)).cpu().numpy()
    return np.ptp(data, axis=0) == 0


def tie_floor(data: Any) -> Any:
    """Per-column floor for zero gaps under ``ties="floor"``: eps(dtype) * (max - min)."""
    if is_tensor(data):
        import torch

        span = (data.amax(dim=0) - data.amin(dim=0)).detach()
        return span * torch.finfo(data.dtype).eps
    return np.ptp(data, axis=0) * np.finfo(data.dtype).eps


def apply_tie_policy(
    gaps: Any, ties: str, floor: Any, what: str = "spacings", subject: str | None = None
) -> Any:
    """Apply the tie policy to nonnegative gaps of shape (k, d) (spacings or distances).

    ``"raise"``: ValueError if any gap is zero. ``"floor"``: zero (or sub-floor) gaps become
    ``floor`` (per column); in torch the floored entries carry no gradient. ``"jitter"``:
    the data were already dequantized, so gaps are returned unchanged, unless a zero gap is
    left (the noise vanished in rounding), which raises too. ``subject`` names what the
    gaps belong to in that error when it is not column j of the caller's data (a joint
    sample, one variable of an information measure).
    """
    if ties in ("raise", "jitter"):
        zero = (gaps <= 0).sum(dim=0).cpu().numpy() if is_tensor(gaps) else (gaps <= 0).sum(axis=0)
        check_zero_counts(zero, ties, what, subject=subject)
        return gaps
    if ties == "floor":
        if _FLOORED.get() is not None:
            floored = gaps <= floor
            count = floored.sum(dim=0).cpu().numpy() if is_tensor(gaps) else floored.sum(axis=0)
            note_floored(count, gaps.shape[0], what)
        if is_tensor(gaps):
            import torch

            return torch.where(gaps > floor, gaps, floor.expand_as(gaps))
        return np.maximum(gaps, floor)
    return gaps


def check_zero_counts(
    zero: np.ndarray,
    ties: str,
    what: str = "spacings",
    total: int | None = None,
    subject: str | None = None,
) -> None:
    """Raise the tie error if any column has a zero gap; ``zero`` counts them per column
    (``subject``: as in :func:`apply_tie_policy`).

    Under "floor" ``zero`` counts the floored gaps (of ``total`` per column), which
    `estimate` may warn about (:func:`count_floored`); nothing is raised.
    """
    if ties == "floor":
        if total is not None:
            note_floored(zero, total, what)
        return
    if not np.any(zero):
        return
    col = int(np.flatnonzero(zero)[0])
    subject = subject or f"column {col}"
    if ties == "jitter":
        raise ValueError(
            f"{subject} still has {int(zero[col])} zero {what} after ties='jitter': the "
            "dequantizing noise is below the resolution of the dtype at this scale. Convert "
            "to float64, or pass ties='floor'"
        )
    raise ValueError(
        f"{subject} has {int(zero[col])} zero {what}: tied values, which a continuous law "
        "gives with probability 0. Pass ties='jitter' to dequantize repeated values (integer "
        "or rounded data) or ties='floor' to treat a tie as a one-ulp gap"
    )


def note_floored(count: Any, total: int, what: str) -> None:
    """Record ``count`` (per column) of ``total`` gaps floored, if :func:`count_floored` asks."""
    records = _FLOORED.get()
    if records is not None:
        records.append((np.asarray(count).reshape(-1), total, what))


@contextmanager
def count_floored() -> Iterator[list]:
    """Collect the floored-gap counts of every ``ties="floor"`` estimator run inside."""
    records: list = []
    token = _FLOORED.set(records)
    try:
        yield records
    finally:
        _FLOORED.reset(token)


def warn_floored(records: list) -> None:
    """Warn (for the caller of `estimate`) when more than ``FLOOR_WARN_FRACTION`` of a
    column's gaps were floored.

    ``records``: the :func:`count_floored` records, each with the caller's numbers of its
    columns appended (None: a joint estimate, one set of distances).
    """
    for count, total, what, columns in records:
        share = count / max(total, 1)
        bad = np.flatnonzero(share > FLOOR_WARN_FRACTION)
        if not bad.size:
            continue
        where = "the joint sample" if columns is None else (
            f"column(s) {np.asarray(columns)[bad].tolist()[:10]}")
        warnings.warn(
            f"ties='floor' floored {share[bad].max():.1%} of the {what} of {where} (tied "
            f"values): each floored gap counts as one ulp of the range (about -36 nats in "
            f"float64), so the estimate is dominated by the floor and far too low. 'floor' is "
            "meant for training losses; pass ties='jitter' to estimate the entropy of "
            "rounded data",
            RuntimeWarning,
            stacklevel=3,
        )


def dequantize(data: Any, seed: int = 0) -> Any:
    """The ``ties="jitter"`` policy: spread each group of tied values within its resolution.

    A value shared by several samples gets ``U(-delta/2, delta/2)`` noise, delta its distance
    to the nearest other distinct value of the column (the local resolution, so that data
    spanning many magnitudes, such as saturated sigmoids, are spread at the right scale and
    the order of distinct values is kept); values that occur once are left untouched.
    Noise is drawn from ``numpy.random.default_rng(seed)`` for every backend (so backends
    agree) and assigned by rank, so permuting the samples permutes the output the same way.
    """
    torch_in = is_tensor(data)
    values = data.detach().cpu().numpy() if torch_in else data
    order = np.argsort(values, axis=0, kind="stable")
    sorted_vals = np.take_along_axis(values, order, axis=0)
    has_ties = (np.diff(sorted_vals, axis=0) == 0).any(axis=0)
    if not has_ties.any():
        return data
    by_rank = np.random.default_rng(seed).uniform(-0.5, 0.5, size=values.shape)
    scale = np.zeros(values.shape, dtype=np.float64)
    for j in np.flatnonzero(has_ties):
        levels, group, counts = np.unique(
            sorted_vals[:, j], return_inverse=True, return_counts=True
        )
        step = np.diff(levels.astype(np.float64))
        local = np.minimum(np.append(np.inf, step), np.append(step, np.inf))
        local = np.where(np.isfinite(local) & (counts > 1), local, 0.0)
        scale[:, j] = local[group]
    noise = np.empty_like(by_rank)
    np.put_along_axis(noise, order, by_rank * scale, axis=0)
    if torch_in:
        import torch

        return data + torch.as_tensor(noise, dtype=data.dtype, device=data.device)
    return data + noise.astype(values.dtype, copy=False)


def warn_constant(cols: np.ndarray) -> None:
    warnings.warn(
        f"column(s) {np.flatnonzero(cols).tolist()[:10]} are constant: "
        "their differential entropy is -inf",
        RuntimeWarning,
        stacklevel=3,
    )


# True inside `discrete_checked`: an information measure has checked (and named) its variables
# before its entropy terms call `estimate`, which then does not check them again
_DISCRETE_CHECKED: ContextVar[bool] = ContextVar("entropylib_discrete_checked", default=False)


def discrete_columns(data: Any) -> list[tuple[int, int]]:
    """(column, number of distinct values) of each column of ``data`` (n, d) that looks
    discrete: at least 2 and at most sqrt(n) distinct values among its n rows.

    A share of tied rows cannot tell labels from rounded continuous data: N(0, 1) rounded to
    2 decimals at n = 2000 has 95.5 % of its rows tied (446 distinct values), two class labels
    100 % (2 values). The number of distinct values can: a variable with k values keeps k as
    n grows, while continuous data rounded to a resolution delta have about range / delta
    values, so the rule fires for k labels from n = k^2 on, and for N(0, 1) rounded to 2
    decimals only from n of about 7 * 10^5 (823 values), beyond the n an O(n^2) kernel sum
    is run at. Every column it fires on has at least n - sqrt(n) tied rows.
    Constant columns (one value) are left to the constant-column rule.
    Inside :func:`discrete_checked` nothing is reported.
    """
    if _DISCRETE_CHECKED.get():
        return []
    values = data.detach().cpu().numpy() if is_tensor(data) else np.asarray(data)
    n = values.shape[0]
    ordered = np.sort(values, axis=0)
    distinct = 1 + (np.diff(ordered, axis=0) != 0).sum(axis=0)
    found = np.flatnonzero((distinct >= 2) & (distinct <= math.sqrt(n)))
    return [(int(j), int(distinct[j])) for j in found]


@contextmanager
def discrete_checked() -> Iterator[None]:
    """Inside, :func:`discrete_columns` reports nothing (the caller has checked already)."""
    token = _DISCRETE_CHECKED.set(True)
    try:
        yield
    finally:
        _DISCRETE_CHECKED.reset(token)


def warn_discrete(found: list[tuple[str, int, int]], method: str, instead: str,
                  stacklevel: int = 3) -> None:
    """Warn that ``method`` smooths discrete-looking variables into a density they do not
    have; ``found``: (name, distinct values, rows) of each, ``instead``: what to use."""
    for name, distinct, n in found:
        warnings.warn(
            f"{name} has {distinct} distinct values among {n} rows (at most sqrt(n)): it "
            f"looks discrete, and method {method!r} smooths its values into a density they "
            f"do not have, so the estimate is far off. {instead}",
            UserWarning,
            stacklevel=stacklevel,
        )
