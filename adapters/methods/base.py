"""What every method adapter declares: heads, base loss, the tensor the criteria see, defaults.

A method adapter is an ``nn.Module`` holding the method's heads (projector, predictor,
prototypes, ...). Its :meth:`MethodAdapter.forward` takes the backbone and the list of
augmented views and returns a :class:`MethodOutput`: the method's own (base) loss with its
parts, and the per-view tensors an added criterion such as E2MC is computed on
(docs/method.md). One training loop (:mod:`adapters.train`) drives every method through this API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from adapters.augment import DatasetInfo, MultiView
from entropylib.criteria import REFERENCE_SETTINGS
from entropylib.validation import is_integer


@dataclass(frozen=True)
class MethodDefaults:
    """A method's reference defaults, declared once per method.

    ``base_lr`` is per 256 images: the learning rate is ``base_lr * global_batch / 256``
    (Goyal et al. 2017 linear scaling, as VICReg, SwAV and SimSiam do).
    """

    #: "lars" or "sgd"
    optimizer: str
    base_lr: float
    weight_decay: float
    momentum: float = 0.9
    #: LARS trust coefficient and whether LARC clipping is used
    eta: float = 0.001
    clip: bool = False
    #: head options (sizes, temperatures, ...) with their defaults
    head_options: Mapping[str, Any] = field(default_factory=dict)
    #: keyword options of the method's ``views``
    view_options: Mapping[str, Any] = field(default_factory=dict)


#: parameter/buffer names of each layer kind inside an ``nn.Sequential`` head
LAYER_KEYS = {
    "linear": ("weight", "bias"),
    "linear_nobias": ("weight",),
    "bn": ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"),
    "bn_noaffine": ("running_mean", "running_var", "num_batches_tracked"),
}


@dataclass(frozen=True)
class OfficialLayout:
    """Where an official release stores a method's weights (docs/checkpoints.md).

    ``backbone`` is the prefix of the backbone's torchvision keys. ``heads`` maps each head, in
    the order the data flows through them (each head's input is the previous one's output, the
    first's the backbone's features), to its key prefix and its layers as
    ``(nn.Sequential index, kind of LAYER_KEYS)``; index None is a lone layer (keys without an
    index). ``wrapper`` lists the top-level keys of a wrapped release, the first holding the
    weights (empty: a bare state dict). ``same_width`` names heads whose outputs must have one
    width.
    """

    backbone: str
    heads: Mapping[str, tuple[str, tuple[tuple[int | None, str], ...]]] = field(
        default_factory=dict)
    wrapper: tuple[str, ...] = ()
    same_width: tuple[str, ...] = ()

    def head_keys(self, head: str) -> list[str]:
        """The exact state-dict keys of one head, without its prefix.

        Examples
        --------
        >>> from adapters.methods import SwAV
        >>> SwAV.official_layouts["swav"].head_keys("projection_head")[:3]
        ['0.weight', '0.bias', '1.weight']
        """
        return [name if i is None else f"{i}.{name}"
                for i, kind in self.heads[head][1] for name in LAYER_KEYS[kind]]


@dataclass
class MethodOutput:
    """One forward pass of a method on a batch of views.

    ``embeddings`` holds one (N, D) tensor per view that the added criterion sees, in the
    order the criterion receives them.
    """

    loss: torch.Tensor
    parts: dict[str, torch.Tensor]
    embeddings: list[torch.Tensor]


class MethodAdapter(nn.Module):
    """Base class of the method adapters; subclasses fill in the class attributes.

    Subclasses define ``name``, ``defaults``, ``official_layouts`` (name -> the
    :class:`OfficialLayout` of each official release format), build their
    heads in ``__init__(feature_dim, **head_options)`` and implement :meth:`forward` and
    :meth:`load_official_heads`.
    """

    name: ClassVar[str]
    defaults: ClassVar[MethodDefaults]
    official_layouts: ClassVar[Mapping[str, OfficialLayout]]
    #: attribute name of the head whose output the criteria see (docs/method.md); it is
    #: what ``adapters.load_encoder(path, features="projector")`` appends to the backbone
    embedding_head: ClassVar[str]

    @classmethod
    def views(cls, info: DatasetInfo, *, size: int | None = None) -> MultiView:
        """The augmented views the method trains on, for images described by ``info``
        (``size``: side of the crops, ``info.image_size`` by default)."""
        raise NotImplementedError

    @classmethod
    def reference_settings(cls) -> dict[str, Any]:
        """E2MC's transform and coefficients for this method (docs/method.md, "Reference
        settings"), from their one source, :data:`entropylib.criteria.REFERENCE_SETTINGS`."""
        return dict(REFERENCE_SETTINGS[cls.name])

    @classmethod
    def head_options(cls, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """The method's head options with ``options`` applied; unknown names are an error.

        An option whose default is an integer or None (a size derived from the backbone) is
        a size or count: it must be an integer >= 1 (>= 0 when the default is 0), or None
        where the default is. Real-valued options are checked by the method's loss.
        """
        merged = dict(cls.defaults.head_options)
        for key, value in (options or {}).items():
            if key not in merged:
                raise ValueError(
                    f"unknown option {key!r} for method {cls.name!r}; "
                    f"expected one of {sorted(merged)}"
                )
            _check_count(cls.name, key, merged[key], value)
            merged[key] = value
        return merged

    def forward(self, backbone: nn.Module, views: list[torch.Tensor]) -> MethodOutput:
        raise NotImplementedError

    def before_step(self) -> None:
        """Called before each optimisation step's forward pass (e.g. to renormalise weights)."""

    def after_backward(self, step: int) -> None:
        """Called between the backward pass and the optimizer step of step ``step`` (0-based),
        e.g. to drop the gradients of parameters frozen for the first steps."""

    def set_world_size(self, world: int) -> None:
        """Size the per-process state for a run of ``world`` processes (called before
        training and before :meth:`load_process_state`; a fresh module is sized for 1)."""

    def process_state(self) -> dict[str, torch.Tensor]:
        """State that differs between the processes of a run (e.g. SwAV's queue): kept out of
        the state dict and saved for every rank."""
        return {}

    def load_process_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore what :meth:`process_state` returned in this rank of the saved run."""

    def param_groups(self, backbone: nn.Module) -> list[dict[str, Any]]:
        """Parameter groups for the optimizer; ``fixed_lr=True`` groups skip the schedule."""
        return [{"params": [*backbone.parameters(), *self.parameters()], "fixed_lr": False}]

    def load_official_heads(self, heads: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """Load the heads of an official checkpoint (as returned by ``load_official``)."""
        raise NotImplementedError

    @classmethod
    def options_from_official(
        cls, heads: Mapping[str, Mapping[str, torch.Tensor]]
    ) -> dict[str, Any]:
        """Head sizes read off an official checkpoint's heads, so that they load as they are."""
        return {}


def load_exact(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """``load_state_dict`` that fails with the full key lists instead of loading a partial model."""
    expected = set(module.state_dict())
    given = set(state)
    if expected != given:
        raise ValueError(
            f"{what}: key mismatch; missing {sorted(expected - given)}, "
            f"unexpected {sorted(given - expected)}"
        )
    module.load_state_dict(state, strict=True)


def _check_count(method: str, key: str, default: Any, value: Any) -> None:
    """Refuse a non-integer or too small value for a size / count head option."""
    if not (default is None or is_integer(default)) or (value is None and default is None):
        return
    low = 0 if default == 0 else 1
    if not is_integer(value) or value < low:
        raise ValueError(
            f"head option {key!r} of method {method!r} is a size or count: expected an integer "
            f">= {low}{' (or None: derived from the backbone)' if default is None else ''}, "
            f"got {value!r}"
        )
