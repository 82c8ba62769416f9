"""The method registry: one record per estimator, through which `estimate` dispatches.

An estimator registers a :class:`Method` whose ``backends`` map a backend name ("numpy",
"numba", "torch") to a function ``f(x, **options) -> per-column entropies`` for marginal
estimation, and optionally ``joint_backends`` for the joint entropy of a (n, d) sample.
Estimators of information measures that are not entropy differences (KSG neighbour counts)
register ``information``: measure name -> backend -> function, and no entropy backends.

Implementation contract (validation has already happened when these are called):

- ``x`` is a 2-D float array of shape (n, d) (numpy for "numpy"/"numba", torch for "torch"),
  finite, with n at least ``min_samples(options)``;
- marginal functions return shape (d,), joint functions a 0-d value, in nats;
- ``options`` are the method's keyword options after defaults were filled in, plus ``ties``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Impl = Callable[..., Any]

BACKENDS = ("numpy", "numba", "torch")
MEASURES = ("mutual_information", "conditional_mutual_information", "total_correlation")
#: how to get torch, which the core install (numpy / numba estimators) leaves out
TORCH_EXTRA = 'pip install "entropylib[torch]"'


def require_torch(feature: str) -> None:
    """Raise an ImportError naming the extra to install if torch cannot be imported.

    ``feature`` says what needs torch (e.g. ``'backend="torch"'``). A torch that is installed
    but fails to import for another reason raises its own error unchanged.
    """
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as err:
        if err.name != "torch":
            raise
        message = f"{feature} needs PyTorch, which is not installed: {TORCH_EXTRA}"
        raise ImportError(message) from err


@dataclass(frozen=True)
class Method:
    """What `estimate` needs to know about one estimator."""

    name: str
    summary: str
    reference: str
    backends: Mapping[str, Impl]
    joint_backends: Mapping[str, Impl] = field(default_factory=dict)
    #: keyword options and their defaults (``None`` means "computed from the data")
    options: Mapping[str, Any] = field(default_factory=dict)
    #: smallest number of samples per column, given the filled-in options and n
    min_samples: Callable[[Mapping[str, Any], int], int] = lambda options, n: 2
    #: checks options against n; raises ValueError with a message that says what is expected
    check_options: Callable[[Mapping[str, Any], int], Mapping[str, Any]] = (
        lambda options, n: options
    )
    #: tie policies the estimator supports (zero spacings or zero neighbour distances)
    ties: tuple[str, ...] = ("raise", "jitter", "floor")
    #: backends whose implementation applies ``ties="jitter"`` itself (so that direct calls
    #: honour it); `estimate` dequantizes the data only for the others
    jitters_itself: frozenset[str] = frozenset()
    #: the estimator never meets a zero gap (a kernel sum), so the tie policy cannot stop it on
    #: a discrete variable: `estimate` and the information measures warn about a column that
    #: looks discrete (:func:`entropylib.validation.discrete_columns`) instead
    smooths_ties: bool = False
    #: how `estimate` may move data at an extreme scale into a safe floating-point frame (a
    #: multiplication by powers of 2, exact) and add the log of the scale back: given the
    #: filled-in options and ``joint``, ``"column"`` (the estimate is equivariant under
    #: per-column scaling, H(x D) = H(x) + log|det D|), ``"common"`` (only under one factor
    #: for every column, as with neighbour distances) or None (not equivariant: not rescaled)
    scaling: Callable[[Mapping[str, Any], bool], str | None] = (
        lambda options, joint: "common" if joint else "column"
    )
    #: direct estimators of information measures (see :data:`MEASURES`): measure -> backend ->
    #: ``f(data, groups, **options)``, data a finite float64 numpy (n, D) array and groups the
    #: column indices of each variable, returning nats
    information: Mapping[str, Mapping[str, Impl]] = field(default_factory=dict)

    @property
    def supports_joint(self) -> bool:
        return bool(self.joint_backends)

    def describe(self) -> dict[str, Any]:
        """A plain summary, as printed by ``entropylib.methods()``."""
        return {
            "summary": self.summary,
            "reference": self.reference,
            "backends": tuple(self.backends) or tuple(
                b for b in BACKENDS if any(b in impls for impls in self.information.values())
            ),
            "joint": self.supports_joint,
            "joint_backends": tuple(self.joint_backends),
            "options": dict(self.options),
            "ties": self.ties,
            "measures": self.measures,
        }

    @property
    def measures(self) -> tuple[str, ...]:
        """What the method estimates: entropy, and the information measures, which methods
        with a joint entropy estimate as entropy differences."""
        if self.information:
            return tuple(m for m in MEASURES if m in self.information)
        return ("entropy", *MEASURES) if self.supports_joint else ("entropy",)


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered")
    unknown = set(method.backends) | set(method.joint_backends)
    unknown -= set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backends {sorted(unknown)}; expected a subset of {BACKENDS}")
    _REGISTRY[method.name] = method
    return method


def get(name: str, measure: str = "entropy") -> Method:
    """The method called ``name``; a ValueError if it does not estimate ``measure``."""
    if not isinstance(name, str):
        raise TypeError(f"method must be a method name (str), got {name!r}; available methods: "
                        f"{', '.join(sorted(_REGISTRY))}")
    try:
        method = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}{_did_you_mean(name)}; available methods: "
            f"{', '.join(sorted(_REGISTRY))}"
        ) from None
    if measure not in method.measures:
        able = [n for n, m in sorted(_REGISTRY.items()) if measure in m.measures]
        what = ("is univariate (no joint entropy)" if method.measures == ("entropy",)
                else f"estimates {', '.join(method.measures)}, not {measure}")
        raise ValueError(f"method {name!r} {what}; methods for {measure}: {able}")
    return method


def methods() -> dict[str, dict[str, Any]]:
    """All registered estimators with their backends, joint support and options.

    Examples
    --------
    >>> import entropylib
    >>> info = entropylib.methods()
    >>> info["m_spacing"]["backends"]
    ('numpy', 'numba', 'torch')
    """
    return {name: m.describe() for name, m in sorted(_REGISTRY.items())}


def _did_you_mean(name: str) -> str:
    """``" (did you mean 'x'?)"`` with the registered names closest to a misspelt or
    miscased one (all that are equally close), or ``""`` when none is close."""
    score = {n: difflib.SequenceMatcher(None, name.lower(), n).ratio() for n in sorted(_REGISTRY)}
    best = max(score.values(), default=0.0)
    if best < 0.6:
        return ""
    return f" (did you mean {' or '.join(repr(n) for n, r in score.items() if r == best)}?)"
