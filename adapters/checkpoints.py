"""Checkpoints: import the official SSL releases exactly; save and load the project's own safely.

Official layouts (docs/checkpoints.md; ResNet-50, torchvision parameter names):

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
their ``nn.Sequential`` indices (:data:`HEAD_LAYOUTS`). The project's own checkpoints are
written atomically (:func:`save_checkpoint`) and read with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor, nn

from adapters.backbones import build_backbone

LAYOUTS = ("vicreg_backbone", "vicreg_full", "swav", "simsiam", "torchvision")

#: parameter/buffer names of each layer kind inside an ``nn.Sequential`` head
_LAYER_KEYS = {
    "linear": ("weight", "bias"),
    "linear_nobias": ("weight",),
    "bn": ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"),
    "bn_noaffine": ("running_mean", "running_var", "num_batches_tracked"),
}

#: the official heads as (``nn.Sequential`` index, layer kind); ReLUs hold no keys
HEAD_LAYOUTS: dict[str, tuple[tuple[int, str], ...]] = {
    # VICReg expander: Linear-BN-ReLU, Linear-BN-ReLU, Linear without bias (2048-8192-8192-8192)
    "vicreg_projector": ((0, "linear"), (1, "bn"), (3, "linear"), (4, "bn"), (6, "linear_nobias")),
    # SwAV projection head: Linear-BN-ReLU-Linear (2048-2048-128)
    "swav_projection_head": ((0, "linear"), (1, "bn"), (3, "linear")),
    # SimSiam projector (= encoder.fc): Linear(no bias)-BN-ReLU x2, then torchvision's fc Linear
    # and a BatchNorm without affine parameters (2048-2048-2048-2048)
    "simsiam_projector": (
        (0, "linear_nobias"), (1, "bn"), (3, "linear_nobias"), (4, "bn"), (6, "linear"),
        (7, "bn_noaffine"),
    ),
    # SimSiam predictor: Linear(no bias)-BN-ReLU-Linear (2048-512-2048)
    "simsiam_predictor": ((0, "linear_nobias"), (1, "bn"), (3, "linear")),
}

#: the documented top-level keys of the wrapped layouts (the first one is required)
_TOP_LEVEL = {
    "vicreg_full": ("model", "epoch", "optimizer"),
    "simsiam": ("state_dict", "epoch", "arch", "optimizer"),
}

_SHOWN_KEYS = 8
#: top-level module names of a torchvision ResNet state dict
_RESNET_MODULES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.", "fc.")


class CheckpointError(ValueError):
    """A checkpoint file or object does not have the content or layout that was asked for."""


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


def head_keys(head: str) -> list[str]:
    """The exact state-dict keys of an official head (see :data:`HEAD_LAYOUTS`).

    Examples
    --------
    >>> from adapters.checkpoints import head_keys
    >>> head_keys("swav_projection_head")[:3]
    ['0.weight', '0.bias', '1.weight']
    """
    return [f"{i}.{name}" for i, kind in HEAD_LAYOUTS[head] for name in _LAYER_KEYS[kind]]


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
    >>> from adapters.checkpoints import load_official
    >>> state = {f"module.{k}": v for k, v in build_backbone("resnet18").state_dict().items()}
    >>> load_official(state, "vicreg_backbone", arch="resnet18")
    Traceback (most recent call last):
    ...
    adapters.checkpoints.CheckpointError: checkpoint does not have the 'vicreg_backbone' ...
    """
    obj = _load_object(path_or_obj)
    if layout == "auto":
        layout = detect_layout(obj)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown checkpoint layout {layout!r}; expected one of {LAYOUTS}")
    shapes, feature_dim = _backbone_spec(arch)
    epoch = None
    extras: dict[str, Any] = {}
    if layout in _TOP_LEVEL:
        state, epoch, extras = _unwrap(obj, layout)
    else:
        state = _as_state_dict(obj, layout)

    if layout in ("vicreg_backbone", "torchvision"):
        parts = {"backbone": ("", list(shapes))}
        if layout == "torchvision":
            parts["fc"] = ("fc.", ["weight", "bias"])
    elif layout == "vicreg_full":
        parts = {
            "backbone": ("module.backbone.", list(shapes)),
            "projector": ("module.projector.", head_keys("vicreg_projector")),
        }
    elif layout == "swav":
        parts = {
            "backbone": ("module.", list(shapes)),
            "projection_head": ("module.projection_head.", head_keys("swav_projection_head")),
            "prototypes": ("module.prototypes.", ["weight"]),
        }
    else:
        parts = {
            "backbone": ("module.encoder.", list(shapes)),
            "projector": ("module.encoder.fc.", head_keys("simsiam_projector")),
            "predictor": ("module.predictor.", head_keys("simsiam_predictor")),
        }
    _check_key_set(state, parts, layout, obj)
    split = {
        name: {key: state[prefix + key] for key in keys} for name, (prefix, keys) in parts.items()
    }
    backbone = split.pop("backbone")
    _check_backbone_shapes(backbone, shapes, arch, layout)
    _check_head_shapes(split, layout, feature_dim)
    if layout == "simsiam" and "arch" in extras and extras["arch"] != arch:
        raise CheckpointError(
            f"SimSiam checkpoint is for arch {extras['arch']!r} but arch={arch!r} was asked for"
        )
    return OfficialWeights(backbone, split, layout, epoch, extras)


def detect_layout(obj: str | os.PathLike[str] | Mapping[str, Any]) -> str:
    """Recognise which official layout a checkpoint (file or loaded object) has.

    Only the structure is inspected (wrapper keys, prefixes, marker keys); :func:`load_official`
    then checks the exact key set.

    Examples
    --------
    >>> from adapters.backbones import build_backbone
    >>> from adapters.checkpoints import detect_layout
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
        f"{_show(sorted(map(str, obj)))}; expected one of {LAYOUTS} (docs/checkpoints.md)"
    )


class UnloadedGlobal:
    """Stands in for a function or class a release file refers to but this code does not trust.

    VICReg's full checkpoint stores its LARS optimizer's parameter groups, which hold the
    function ``exclude_bias_and_norm`` of the training script (pickled as
    ``__main__.exclude_bias_and_norm``): neither ``weights_only=True`` nor a plain
    ``torch.load`` can read such a file. :func:`load_official` maps every such reference to an
    inert ``UnloadedGlobal`` (nothing from the file is imported or run); the weights must still
    be plain tensors, so a file that needs the object to build its weights is still rejected.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"UnloadedGlobal({self.name!r})"


def _load_object(path_or_obj: str | os.PathLike[str] | Mapping[str, Any]) -> Any:
    if isinstance(path_or_obj, (str, os.PathLike)):
        return _torch_load(Path(path_or_obj), "cpu", weights_only=True, stand_ins=True)
    return path_or_obj


def _unwrap(obj: Any, layout: str) -> tuple[Mapping[str, Any], int | None, dict[str, Any]]:
    required, *optional = _TOP_LEVEL[layout]
    if not isinstance(obj, Mapping) or required not in obj:
        found = _show(sorted(map(str, obj))) if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"a {layout!r} checkpoint is a dict with keys {_TOP_LEVEL[layout]} holding the "
            f"weights under {required!r}; found {found}{_hint(obj, layout)}"
        )
    unknown = sorted(set(map(str, obj)) - set(_TOP_LEVEL[layout]))
    if unknown:
        raise CheckpointError(
            f"a {layout!r} checkpoint has top-level keys {_TOP_LEVEL[layout]}; unexpected "
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
    """Each Linear's input is the previous layer's output; BNs match; prototypes fit."""
    names = {
        "vicreg_full": {"projector": "vicreg_projector"},
        "swav": {"projection_head": "swav_projection_head"},
        "simsiam": {"projector": "simsiam_projector", "predictor": "simsiam_predictor"},
    }.get(layout, {})
    out_dims: dict[str, int] = {}
    for head, spec_name in names.items():
        dim = in_dim if head != "predictor" else out_dims["projector"]
        state = heads[head]
        for index, kind in HEAD_LAYOUTS[spec_name]:
            is_linear = kind.startswith("linear")
            if is_linear:
                weight = state[f"{index}.weight"]
                if weight.ndim != 2 or weight.shape[1] != dim:
                    raise CheckpointError(
                        f"{layout!r} head {head!r} layer {index}: weight of shape "
                        f"{tuple(weight.shape)}; expected (out, {dim})"
                    )
                dim = weight.shape[0]
            for name in _LAYER_KEYS[kind]:
                if is_linear and name == "weight":
                    continue
                tensor = state[f"{index}.{name}"]
                want = () if name == "num_batches_tracked" else (dim,)
                if tuple(tensor.shape) != want:
                    raise CheckpointError(
                        f"{layout!r} head {head!r} key {index}.{name}: shape "
                        f"{tuple(tensor.shape)}, expected {want}"
                    )
        out_dims[head] = dim
    if layout == "simsiam" and out_dims["predictor"] != out_dims["projector"]:
        raise CheckpointError(
            f"SimSiam predictor outputs {out_dims['predictor']} dims but the projector "
            f"{out_dims['projector']}"
        )
    if layout == "swav":
        prototypes = heads["prototypes"]["weight"]
        if prototypes.ndim != 2 or prototypes.shape[1] != out_dims["projection_head"]:
            raise CheckpointError(
                f"SwAV prototypes of shape {tuple(prototypes.shape)}; expected "
                f"(n_prototypes, {out_dims['projection_head']})"
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


# --- the project's own checkpoints -------------------------------------------------------------

#: payload key of the checksum :func:`save_checkpoint` stores and :func:`load_checkpoint` checks
INTEGRITY_KEY = "integrity"


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the previous file is intact."""


#: value types ``torch.load(weights_only=True)`` reads back (containers are checked recursively)
_PLAIN_TYPES = (str, bytes, int, float, complex, bool, type(None), torch.Size, torch.dtype,
                torch.device)


def save_checkpoint(
    path: str | os.PathLike[str], payload: Mapping[str, Any], *, keep_previous: bool = False
) -> Path:
    """Write a checkpoint atomically: temp file in the same directory, fsync, ``os.replace``.

    A crash or exception at any point leaves either the previous file or the complete new one,
    never a partial file (``os.replace`` is atomic on POSIX and Windows within one file
    system); the temp file is removed on failure. The payload may hold tensors, dicts, lists,
    tuples, sets and plain Python scalars/strings only, so that :func:`load_checkpoint` can
    read it with ``weights_only=True``; anything else (numpy arrays, arbitrary objects) is
    rejected before writing, naming where it is.

    The file also holds a SHA-256 of the payload (:func:`payload_digest`), which
    :func:`load_checkpoint` checks: damaged bytes anywhere, tensor data included, are an
    error instead of a silently different model. With ``keep_previous`` the file being
    replaced stays as :func:`previous_path` (one older generation), so a damaged latest file
    leaves a good one to go back to.

    Returns
    -------
    Path
        The written path. Missing parent directories are created.

    Raises
    ------
    CheckpointWriteError
        The file system refused the write (no space left, quota, I/O error); the message says
        which, and the previous file (if any) is unchanged.

    Examples
    --------
    >>> import tempfile, torch
    >>> from adapters.checkpoints import load_checkpoint, save_checkpoint
    >>> path = save_checkpoint(tempfile.mkdtemp() + "/last.pt", {"epoch": 3, "w": torch.ones(2)})
    >>> load_checkpoint(path)["epoch"]
    3
    """
    if not isinstance(payload, Mapping):
        raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
    _check_plain(payload, "payload")
    if INTEGRITY_KEY in payload:
        raise ValueError(f"payload key {INTEGRITY_KEY!r} is reserved for the checksum")
    path = Path(path)
    stored = {**payload, INTEGRITY_KEY: {"sha256": payload_digest(payload)}}
    _atomic_write(path, lambda f: torch.save(stored, f), keep_previous=keep_previous)
    return path


def previous_path(path: str | os.PathLike[str]) -> Path:
    """Where ``save_checkpoint(path, ..., keep_previous=True)`` keeps the generation before."""
    path = Path(path)
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files of saves that were killed midway (``.<name>.*.tmp``).

    Only a process killed with SIGKILL (or a power loss) during a save leaves one; call this
    when a run (re)starts in ``directory``. Returns the removed paths.
    """
    removed = []
    for tmp in Path(directory).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def payload_digest(payload: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint payload: every tensor's dtype, shape and bytes, and every
    other value's type and ``repr``, in container order (sets sorted).

    Equal for a payload and what :func:`load_checkpoint` reads back from its file.

    Examples
    --------
    >>> import torch
    >>> a = payload_digest({"w": torch.zeros(3), "step": 1})
    >>> a == payload_digest({"w": torch.zeros(3), "step": 1})
    True
    >>> a == payload_digest({"w": torch.ones(3), "step": 1})
    False
    """
    h = hashlib.sha256()
    _digest(payload, h)
    return h.hexdigest()


def _digest(value: Any, h: Any) -> None:
    if isinstance(value, Tensor):
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(value.shape)};".encode())
        h.update(t.view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        h.update(f"D{len(value)};".encode())
        for key, item in value.items():
            _digest(key, h)
            _digest(item, h)
    elif isinstance(value, (set, frozenset)):
        h.update(f"S{sorted(map(repr, value))!r};".encode())
    elif isinstance(value, (list, tuple)):
        h.update(f"L{type(value).__name__}{len(value)};".encode())
        for item in value:
            _digest(item, h)
    else:
        h.update(f"V{type(value).__name__}{value!r};".encode())


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device | None = "cpu",
    *,
    weights_only: bool = True,
    stand_ins: bool = False,
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (or any dict saved with torch.save).

    ``weights_only=True`` (default) unpickles only tensors and plain containers, so a file from
    elsewhere cannot run code; pass ``False`` only for files you trust. ``stand_ins=True``
    (with ``weights_only``) reads files that merely refer to functions or classes, such as
    VICReg's full release with the LARS filter functions in its optimizer state, putting an
    inert :class:`UnloadedGlobal` where each reference was: use it for files that then go to
    :func:`load_official` or :func:`detect_layout`, which check that the weights are tensors.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    CheckpointError
        The file is empty, truncated, not a torch checkpoint, holds objects ``weights_only``
        refuses, or is not a dict.

    Examples
    --------
    >>> from adapters.checkpoints import load_checkpoint
    >>> load_checkpoint("/nonexistent/last.pt")
    Traceback (most recent call last):
    ...
    FileNotFoundError: checkpoint file '/nonexistent/last.pt' does not exist
    """
    obj = _torch_load(
        Path(path), map_location, weights_only=weights_only, stand_ins=stand_ins and weights_only
    )
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds a {type(obj).__name__}, expected a dict"
        )
    # files from elsewhere (official releases, older runs) carry no checksum
    stored = obj.pop(INTEGRITY_KEY, None)
    if stored is not None and payload_digest(obj) != stored.get("sha256"):
        raise CheckpointError(
            f"checkpoint file {str(path)!r} is corrupt: its contents do not match the SHA-256 "
            "checksum stored in it"
        )
    return obj


def export_backbone(
    path: str | os.PathLike[str],
    module: nn.Module,
    *,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a backbone's state dict alone, loadable by torchvision code, atomically.

    For the ResNets the keys are torchvision's, so ``torchvision.models.resnet50()`` loads the
    file with ``strict=False`` and missing exactly ``fc.weight`` and ``fc.bias`` (and
    :func:`load_official` reads it as ``"vicreg_backbone"``). A ``DistributedDataParallel``
    wrapper is unwrapped; tensors are copied to CPU. ``metadata`` (JSON-serialisable: method,
    backbone name, dataset, image size, mean, std, epoch, ...) goes to the side file
    :func:`export_metadata_path` so the weights file stays a bare state dict.

    Examples
    --------
    >>> import tempfile, torch, torchvision
    >>> from adapters.backbones import build_backbone
    >>> from adapters.checkpoints import export_backbone
    >>> path = export_backbone(tempfile.mkdtemp() + "/r18.pth", build_backbone("resnet18"))
    >>> torchvision.models.resnet18().load_state_dict(torch.load(path), strict=False)
    _IncompatibleKeys(missing_keys=['fc.weight', 'fc.bias'], unexpected_keys=[])
    """
    if isinstance(module, nn.parallel.DistributedDataParallel):
        module = module.module
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    state = OrderedDict((k, v.detach().cpu().clone()) for k, v in module.state_dict().items())
    path = Path(path)
    if metadata is not None:
        text = json.dumps(dict(metadata), indent=2, sort_keys=True)
        _atomic_write(export_metadata_path(path), lambda f: f.write(text.encode()))
    _atomic_write(path, lambda f: torch.save(state, f))
    return path


def export_metadata_path(path: str | os.PathLike[str]) -> Path:
    """The JSON side file of a backbone export: ``<path>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def load_export_metadata(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The metadata written by :func:`export_backbone`, or None if the export has none."""
    meta = export_metadata_path(path)
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read export metadata {str(meta)!r}: {err}") from err


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, Tensor) or type(value) in _PLAIN_TYPES:
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in _PLAIN_TYPES:
                raise TypeError(f"{where} has a key of type {type(key).__name__}: {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if type(value) in (list, tuple, set, frozenset):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}; a checkpoint may "
        "hold only tensors, dicts, lists, tuples, sets, str, bytes, numbers, bools and None "
        "(so it loads with weights_only=True): convert it, e.g. numpy arrays with "
        "torch.from_numpy or .tolist()"
    )


def _atomic_write(
    path: Path, write: Callable[[IO[bytes]], Any], *, keep_previous: bool = False
) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"cannot write checkpoint to {str(path)!r}: it is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; give the result the permissions of the file it replaces
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        if hasattr(os, "fchmod"):  # not on Windows before Python 3.13
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            # a hard link, then a rename: at every instant both names hold a complete file
            link = f"{tmp}.previous"
            os.link(path, link)
            os.replace(link, previous_path(path))
        os.replace(tmp, path)
    except BaseException as err:
        for leftover in (tmp, f"{tmp}.previous"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        cause = _os_error(err)
        if cause is None or cause.errno is None:
            raise
        raise CheckpointWriteError(cause.errno, _write_failure(path, cause)) from err
    _fsync_directory(path.parent)


def _os_error(err: BaseException) -> OSError | None:
    """The OSError behind ``err``: torch's zip writer reports a failed write as a RuntimeError
    ("unexpected pos") with the OSError only as its context."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _write_failure(path: Path, err: OSError) -> str:
    kept = f"; the previous {path.name} is intact" if path.exists() else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(path.parent).free
        return (f"no space left on the device (or quota) of {str(path.parent)!r} while "
                f"writing {path.name} ({free} bytes free){kept}")
    return f"cannot write {str(path)!r}: {err.strerror or err}{kept}"


def _fsync_directory(directory: Path) -> None:
    # makes the rename itself durable; not every platform lets a directory be opened
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _torch_load(
    path: Path, map_location: Any, *, weights_only: bool, stand_ins: bool = False
) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path {str(path)!r} is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file {str(path)!r} is empty")
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as err:
        if weights_only and "Weights only load failed" in str(err):
            if stand_ins:
                return _load_with_stand_ins(path, map_location, err)
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds objects other than tensors and plain "
                "containers, which weights_only=True refuses; if you trust the file, load it "
                f"with weights_only=False ({str(err).splitlines()[-1][:200]})"
            ) from err
        raise CheckpointError(
            f"checkpoint file {str(path)!r} is corrupt or not a torch checkpoint: {err}"
        ) from err
    except Exception as err:
        # a damaged file can fail anywhere inside the unpickler, with any exception type
        raise CheckpointError(
            f"checkpoint file {str(path)!r} is truncated, corrupt or not a torch checkpoint: "
            f"{err}"
        ) from err


def _load_with_stand_ins(path: Path, map_location: Any, first_error: Exception) -> Any:
    find = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    try:
        names = find(path) if find is not None else []
        if not names:
            raise first_error
        stand_ins = [(UnloadedGlobal(name), name) for name in names]
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} needs objects other than tensors and plain containers "
            f"to be rebuilt ({str(err).splitlines()[-1][:300]}); official releases hold plain "
            "tensors, so this file is not one of the supported layouts"
        ) from err
