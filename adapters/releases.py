"""Official SSL releases: recognise their layout and import their weights exactly.

Layouts (docs/checkpoints.md; ResNet-50, torchvision parameter names):

- ``vicreg_backbone``: a bare state dict of the backbone keys, no ``fc``;
- ``vicreg_full``: ``{epoch, model, optimizer}``; ``model`` holds ``module.backbone.*`` and
  ``module.projector.{0,1,3,4,6}.*``;
- ``swav``: a bare state dict of ``module.<backbone key>``, ``module.projection_head.{0,1,3}.*``
  and ``module.prototypes.weight``;
- ``simsiam``: ``{epoch, arch, state_dict, optimizer}``; ``state_dict`` holds
  ``module.encoder.<backbone key>``, ``module.encoder.fc.{0,1,3,4,6,7}.*`` (the projector) and
  ``module.predictor.{0,1,3}.*``;
- ``torchvision``: a bare state dict of the backbone keys plus ``fc.weight`` and ``fc.bias``.

:func:`load_official` checks the key set EXACTLY (the reference code's ``strict=False`` once left a
silently random SwAV model because of the ``module.`` prefix) and every backbone tensor's shape,
and returns the backbone state dict under torchvision names plus the heads' state dicts under
their ``nn.Sequential`` indices. Each method class declares its layouts
(:class:`adapters.methods.OfficialLayout`); this module reads any of them. Files are read by
:func:`adapters.checkpoints.load_checkpoint` (``weights_only``, with inert stand-ins for the
functions some releases pickle).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from adapters.backbones import build_backbone
from adapters.checkpoints import CheckpointError, load_checkpoint
from adapters.methods import METHODS, OfficialLayout
from adapters.methods.base import LAYER_KEYS

#: torchvision's ImageNet classifier: the backbone plus its ``fc`` layer
TORCHVISION = OfficialLayout("", {"fc": ("fc.", ((None, "linear"),))})


def official_layouts() -> dict[str, OfficialLayout]:
    """Every official layout by name: each method's (``official_layouts``) and torchvision's.

    Examples
    --------
    >>> from adapters.releases import official_layouts
    >>> list(official_layouts())
    ['vicreg_full', 'vicreg_backbone', 'swav', 'simsiam', 'torchvision']
    """
    layouts = {name: layout for cls in METHODS.values()
               for name, layout in cls.official_layouts.items()}
    return {**layouts, "torchvision": TORCHVISION}

_SHOWN_KEYS = 8
#: top-level module names of a torchvision ResNet state dict
_RESNET_MODULES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.", "fc.")


@dataclass
class OfficialWeights:
    """Weights imported from an official release, under the names this project uses.

    ``backbone`` loads into ``build_backbone(arch)`` with ``strict=True`` (and into a torchvision
    ResNet with ``strict=False``, missing exactly ``fc.weight`` and ``fc.bias``); ``heads`` maps
    a head name to its ``nn.Sequential`` state dict: vicreg ``projector``; swav
    ``projection_head`` and ``prototypes`` (``{"weight": (K, 128)}``, an ``nn.Linear`` without
    bias); simsiam ``projector`` and ``predictor``; torchvision ``fc``.
    """

    backbone: dict[str, Tensor]
    heads: dict[str, dict[str, Tensor]]
    layout: str
    #: the release's epoch counter, when it stores one
    epoch: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=8)
def _backbone_spec(arch: str) -> tuple[dict[str, tuple[int, ...]], int]:
    """State-dict shapes and feature dimension of a backbone."""
    # the meta device gives names and shapes without allocating or initialising weights
    with torch.device("meta"):
        net = build_backbone(arch)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}, net.feature_dim


def load_official(
    path_or_obj: str | os.PathLike[str] | Mapping[str, Any],
    layout: str,
    *,
    arch: str = "resnet50",
) -> OfficialWeights:
    """Import an official VICReg, SwAV, SimSiam or torchvision checkpoint, checking its keys.

    Parameters
    ----------
    path_or_obj : path or mapping
        A file (read with ``torch.load(weights_only=True)`` on CPU) or the loaded object.
    layout : {"vicreg_backbone", "vicreg_full", "swav", "simsiam", "torchvision", "auto"}
        The release format (see the module docstring); ``"auto"`` uses :func:`detect_layout`.
    arch : str
        The backbone the weights are for (a :data:`adapters.backbones.BACKBONES` name with
        torchvision names: ``resnet50`` for every official release).

    Returns
    -------
    OfficialWeights

    Raises
    ------
    CheckpointError
        If the key set differs from the layout's in any way (the message lists missing and
        unexpected keys and, when recognisable, the prefix difference or the layout the
        checkpoint really has), a backbone tensor has the wrong shape, or the heads' shapes
        do not chain.

    Examples
    --------
    >>> from adapters.backbones import build_backbone
    >>> from adapters.releases import load_official
    >>> state = {f"module.{k}": v for k, v in build_backbone("resnet18").state_dict().items()}
    >>> load_official(state, "vicreg_backbone", arch="resnet18")
    Traceback (most recent call last):
    ...
    adapters.checkpoints.CheckpointError: checkpoint does not have the 'vicreg_backbone' ...
    """
    obj = _load_object(path_or_obj)
    if layout == "auto":
        layout = detect_layout(obj)
    layouts = official_layouts()
    if layout not in layouts:
        raise ValueError(
            f"unknown checkpoint layout {layout!r}; expected one of {tuple(layouts)}"
        )
    shapes, feature_dim = _backbone_spec(arch)
    epoch = None
    extras: dict[str, Any] = {}
    spec = layouts[layout]
    if spec.wrapper:
        state, epoch, extras = _unwrap(obj, layout)
    else:
        state = _as_state_dict(obj, layout)
    parts = {"backbone": (spec.backbone, list(shapes)),
             **{head: (prefix, spec.head_keys(head)) for head, (prefix, _) in spec.heads.items()}}
    _check_key_set(state, parts, layout, obj)
    split = {
        name: {key: state[prefix + key] for key in keys} for name, (prefix, keys) in parts.items()
    }
    backbone = split.pop("backbone")
    _check_backbone_shapes(backbone, shapes, arch, layout)
    _check_head_shapes(split, layout, feature_dim)
    if "arch" in extras and extras["arch"] != arch:
        raise CheckpointError(
            f"{layout!r} checkpoint is for arch {extras['arch']!r} but arch={arch!r} was asked "
            "for"
        )
    return OfficialWeights(backbone, split, layout, epoch, extras)


def detect_layout(obj: str | os.PathLike[str] | Mapping[str, Any]) -> str:
    """Recognise which official layout a checkpoint (file or loaded object) has.

    Only the structure is inspected (wrapper keys, prefixes, marker keys); :func:`load_official`
    then checks the exact key set.

    Examples
    --------
    >>> from adapters.backbones import build_backbone
    >>> from adapters.releases import detect_layout
    >>> detect_layout(build_backbone("resnet18").state_dict())
    'vicreg_backbone'
    """
    obj = _load_object(obj)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"a checkpoint must be a dict, got {type(obj).__name__}")
    inner = obj.get("state_dict")
    if isinstance(inner, Mapping) and any(str(k).startswith("module.encoder.") for k in inner):
        return "simsiam"
    inner = obj.get("model")
    if isinstance(inner, Mapping) and any(str(k).startswith("module.backbone.") for k in inner):
        return "vicreg_full"
    if obj and all(isinstance(v, Tensor) for v in obj.values()):
        if "module.prototypes.weight" in obj or "module.projection_head.0.weight" in obj:
            return "swav"
        if "conv1.weight" in obj and all(str(k).startswith(_RESNET_MODULES) for k in obj):
            return "torchvision" if "fc.weight" in obj else "vicreg_backbone"
    raise CheckpointError(
        "cannot recognise the checkpoint layout; top-level keys "
        f"{_show(sorted(map(str, obj)))}; expected one of {tuple(official_layouts())} "
        "(docs/checkpoints.md)"
    )


def _load_object(path_or_obj: str | os.PathLike[str] | Mapping[str, Any]) -> Any:
    if isinstance(path_or_obj, (str, os.PathLike)):
        return load_checkpoint(path_or_obj, stand_ins=True)
    return path_or_obj


def _unwrap(obj: Any, layout: str) -> tuple[Mapping[str, Any], int | None, dict[str, Any]]:
    wrapper = official_layouts()[layout].wrapper
    required, *optional = wrapper
    if not isinstance(obj, Mapping) or required not in obj:
        found = _show(sorted(map(str, obj))) if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"a {layout!r} checkpoint is a dict with keys {wrapper} holding the "
            f"weights under {required!r}; found {found}{_hint(obj, layout)}"
        )
    unknown = sorted(set(map(str, obj)) - set(wrapper))
    if unknown:
        raise CheckpointError(
            f"a {layout!r} checkpoint has top-level keys {wrapper}; unexpected "
            f"{_show(unknown)}"
        )
    epoch = obj.get("epoch")
    extras = {k: obj[k] for k in optional if k in obj and k not in ("epoch", "optimizer")}
    return _as_state_dict(obj[required], layout), epoch, extras


def _as_state_dict(obj: Any, layout: str) -> Mapping[str, Tensor]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"expected a state dict (name -> tensor) for layout {layout!r}, got "
            f"{type(obj).__name__}"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"layout {layout!r} expects a bare state dict of tensors; these entries are not "
            f"tensors: {_show(bad)}{_hint(obj, layout)}"
        )
    return obj


def _check_key_set(
    state: Mapping[str, Tensor],
    parts: Mapping[str, tuple[str, list[str]]],
    layout: str,
    obj: Any,
) -> None:
    expected = {prefix + key for prefix, keys in parts.values() for key in keys}
    found = set(state)
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if not missing and not unexpected:
        return
    raise CheckpointError(
        f"checkpoint does not have the {layout!r} layout"
        + _hint(obj, layout)
        + _prefix_hint(missing, unexpected)
        + f": {len(missing)} missing key(s) {_show(missing)}, {len(unexpected)} unexpected "
        f"key(s) {_show(unexpected)}"
    )


def _check_backbone_shapes(
    backbone: Mapping[str, Tensor], shapes: Mapping[str, tuple[int, ...]], arch: str, layout: str
) -> None:
    wrong = [
        f"{k}: {tuple(v.shape)} (expected {shapes[k]})"
        for k, v in backbone.items()
        if tuple(v.shape) != shapes[k]
    ]
    if wrong:
        raise CheckpointError(
            f"{layout!r} backbone tensors do not fit a {arch}: {_show(wrong)}; pass the right "
            "arch= or check the file"
        )


def _check_head_shapes(heads: Mapping[str, dict[str, Tensor]], layout: str, in_dim: int) -> None:
    """Each Linear's input is the previous layer's (or head's) output; BatchNorms match."""
    spec = official_layouts()[layout]
    dim, widths = in_dim, {}
    for head, (_, layers) in spec.heads.items():
        state = heads[head]
        for index, kind in layers:
            where = f"{layout!r} head {head!r}" + ("" if index is None else f" layer {index}")
            key = "" if index is None else f"{index}."
            is_linear = kind.startswith("linear")
            if is_linear:
                weight = state[f"{key}weight"]
                if weight.ndim != 2 or weight.shape[1] != dim:
                    raise CheckpointError(f"{where}: weight of shape {tuple(weight.shape)}; "
                                          f"expected (out, {dim})")
                dim = weight.shape[0]
            for name in LAYER_KEYS[kind]:
                if is_linear and name == "weight":
                    continue
                tensor = state[f"{key}{name}"]
                want = () if name == "num_batches_tracked" else (dim,)
                if tuple(tensor.shape) != want:
                    raise CheckpointError(f"{layout!r} head {head!r} key {key}{name}: shape "
                                          f"{tuple(tensor.shape)}, expected {want}")
        widths[head] = dim
    if len({widths[h] for h in spec.same_width}) > 1:
        raise CheckpointError(
            f"{layout!r} heads {list(spec.same_width)} must output one width; they output "
            + ", ".join(f"{h} {widths[h]}" for h in spec.same_width)
        )


def _show(keys: list[str]) -> str:
    if len(keys) <= _SHOWN_KEYS:
        return repr(keys)
    return f"{keys[:_SHOWN_KEYS]!r} ... ({len(keys) - _SHOWN_KEYS} more)"


def _prefix_hint(missing: list[str], unexpected: list[str]) -> str:
    """Say so when every unexpected key is a missing key with a prefix added or removed."""
    if not missing or len(missing) != len(unexpected):
        return ""
    m, u = missing[-1], unexpected[-1]
    for longer, shorter, verb in ((u, m, "has an extra"), (m, u, "lacks the")):
        if longer.endswith(shorter):
            prefix = longer[: len(longer) - len(shorter)]
            if verb == "has an extra":
                moved = {k[len(prefix):] for k in unexpected if k.startswith(prefix)}
                ok = moved == set(missing)
            else:
                ok = {prefix + k for k in unexpected} == set(missing)
            if ok and prefix:
                return f" (every key {verb} prefix {prefix!r})"
    return ""


def _hint(obj: Any, layout: str) -> str:
    try:
        actual = detect_layout(obj)
    except CheckpointError:
        return ""
    if actual == layout:
        return ""
    return f" (it looks like the {actual!r} layout instead)"
