"""The trained model (backbone + method heads) and the one way to rebuild it from a file.

:func:`load_model` reads a checkpoint of :mod:`adapters.train` or an official VICReg, SwAV or
SimSiam release; continuing a run, resuming one and :func:`adapters.load_encoder` all go
through it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from adapters import checkpoints, releases
from adapters.backbones import build_backbone
from adapters.methods import METHODS, MethodAdapter

#: value of ``payload["format"]`` in the checkpoints :mod:`adapters.train` writes
CHECKPOINT_FORMAT = "entropylib-adapters-train/1"


class SSLModel(nn.Module):
    """Backbone + method heads, one module so that DistributedDataParallel wraps both.

    ``forward(views)`` returns ``(base_loss, base_parts, embeddings)`` of the method.
    """

    def __init__(self, backbone: nn.Module, heads: MethodAdapter) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = heads

    def forward(self, views: list[torch.Tensor]):
        out = self.heads(self.backbone, views)
        return out.loss, out.parts, out.embeddings


@dataclass
class LoadedModel:
    """A model rebuilt by :func:`load_model`, with what it was built from."""

    model: SSLModel
    #: the backbone architecture (a :data:`adapters.backbones.BACKBONES` name)
    backbone: str
    #: every head option of the method, as the heads were built
    head_options: dict[str, Any]
    #: the file's epoch counter (0 when it has none)
    epoch: int
    #: where the weights came from, for the run's config.json
    source: str
    #: set when part of the model could not be loaded (e.g. a release without heads)
    warning: str | None = None


def load_model(
    file: str | os.PathLike[str] | Mapping[str, Any],
    *,
    method: str | None = None,
    arch: str | None = None,
    layout: str | None = None,
    head_options: Mapping[str, Any] | None = None,
    in_channels: int = 3,
) -> LoadedModel:
    """Rebuild backbone + heads from a checkpoint of this project or an official release.

    ``file`` is a path or the object already read from it. A checkpoint of
    :mod:`adapters.train` knows its method, architecture and heads (``method`` and ``arch``,
    when given, must agree; ``head_options`` override the saved ones, e.g. a new SwAV queue).
    An official release (:mod:`adapters.releases`) needs ``method``; ``arch`` defaults to
    ``resnet50``, ``layout`` is detected unless given, and the head sizes are read off the
    file's heads.
    """
    if isinstance(file, Mapping):
        obj, name = file, "the checkpoint"
    else:
        # stand_ins: official releases (VICReg's full checkpoint) pickle training-script
        # functions into their optimizer state; they are read as inert placeholders, never run
        obj, name = checkpoints.load_checkpoint(file, stand_ins=True), os.fspath(file)
    if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        if layout is not None:
            raise ValueError(f"{name} is a checkpoint of adapters.train, not an official "
                             f"release: layout {layout!r} does not apply (leave it out)")
        return _from_project_checkpoint(obj, name, method, arch, head_options)
    if method is None:
        raise ValueError(f"{name} is not a checkpoint of adapters.train: say which method's "
                         "release it is")
    cls = METHODS[method]
    layout = layout or releases.detect_layout(obj)
    if layout not in cls.official_layouts:
        raise ValueError(
            f"{name} has layout {layout!r}, which is not a {method} release (expected one of "
            f"{list(cls.official_layouts)})"
        )
    arch = arch or "resnet50"
    weights = releases.load_official(obj, layout, arch=arch)
    backbone = build_backbone(arch, in_channels=in_channels)
    options = {**cls.options_from_official(weights.heads), **(head_options or {})}
    heads = cls(backbone.feature_dim, **options)
    backbone.load_state_dict(weights.backbone, strict=True)
    warning = None
    if weights.heads:
        heads.load_official_heads(weights.heads)
    else:
        warning = f"layout {layout} has no heads: they start randomly initialised"
    return LoadedModel(SSLModel(backbone, heads), arch, cls.head_options(options),
                       int(weights.epoch or 0), f"official {layout}", warning)


def _from_project_checkpoint(
    obj: Mapping[str, Any],
    name: str,
    method: str | None,
    arch: str | None,
    head_options: Mapping[str, Any] | None,
) -> LoadedModel:
    meta = obj["meta"]
    if method not in (None, meta["method"]):
        raise ValueError(f"{name} was trained with method {meta['method']!r}, not {method!r}")
    if arch not in (None, meta["backbone"]):
        raise ValueError(f"{name} holds a {meta['backbone']!r} backbone, not {arch!r}")
    cls = METHODS[meta["method"]]
    # checkpoints written before meta["head_options"] existed kept them in the config
    saved = meta.get("head_options", obj["config"]["head_options"])
    options = cls.head_options({**saved, **(head_options or {})})
    backbone = build_backbone(meta["backbone"], in_channels=meta["in_channels"])
    heads = cls(backbone.feature_dim, **options)
    backbone.load_state_dict(obj["model"]["backbone"])
    heads.load_state_dict(obj["model"]["heads"])
    return LoadedModel(SSLModel(backbone, heads), meta["backbone"], options,
                       int(obj["epoch"]), "project checkpoint")
