"""Continue-train pretrained SSL models (VICReg, SwAV, SimSiam) with E2MC added to their loss.

Entry points: ``python -m adapters.continue_train`` and ``python -m adapters.pretrain`` (one
training loop, :mod:`adapters.train`); :func:`load_encoder` is how other code (evaluation)
gets a trained backbone.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

__all__ = ["FEATURES", "load_encoder"]

#: metadata keys every encoder comes with
ENCODER_META = ("method", "backbone", "dataset", "in_channels", "image_size", "mean", "std",
                "epoch")
#: what ``load_encoder`` can return: the backbone, or the backbone followed by the head whose
#: output the training criteria see (VICReg expander, SwAV projection head, SimSiam projector)
FEATURES = ("backbone", "projector")


def load_encoder(
    path: str | os.PathLike[str], *, map_location: str = "cpu", features: str = "backbone"
) -> tuple[nn.Module, dict[str, Any]]:
    """The backbone of a training checkpoint or backbone export, in eval mode, with metadata.

    ``path`` is a ``checkpoint.pt`` written by :func:`adapters.train.train` or a
    ``backbone.pt`` export (a bare torchvision-named state dict with its ``.json`` side file).
    The metadata dict holds ``method``, ``backbone``, ``dataset``, ``in_channels``,
    ``image_size``, ``mean``, ``std`` (the normalisation the encoder was trained with) and
    ``epoch``, plus ``features``.

    ``features="projector"`` returns ``nn.Sequential(backbone, head)`` with the method's
    embedding head (VICReg expander, SwAV projection head before L2 normalisation, SimSiam
    projector): the tensor E2MC and the other criteria act on. It needs a ``checkpoint.pt``;
    a backbone export holds no heads.

    Examples
    --------
    >>> import tempfile, torch
    >>> from adapters.backbones import build_backbone
    >>> from adapters.checkpoints import export_backbone
    >>> meta = {"method": "simsiam", "backbone": "small_cnn", "dataset": "digits",
    ...         "in_channels": 1, "image_size": 28, "mean": [0.31], "std": [0.32], "epoch": 0}
    >>> path = export_backbone(tempfile.mkdtemp() + "/backbone.pt",
    ...                        build_backbone("small_cnn", in_channels=1), metadata=meta)
    >>> encoder, meta = load_encoder(path)
    >>> encoder(torch.zeros(2, meta["in_channels"], 28, 28)).shape
    torch.Size([2, 256])
    """
    from adapters.backbones import build_backbone
    from adapters.checkpoints import CheckpointError, load_checkpoint, load_export_metadata
    from adapters.models import CHECKPOINT_FORMAT, load_model

    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    obj = load_checkpoint(path, map_location)
    if obj.get("format") == CHECKPOINT_FORMAT:
        model = load_model(obj).model
        meta = {**obj["meta"], "epoch": obj["epoch"]}
        encoder = model.backbone
        if features == "projector":
            encoder = nn.Sequential(encoder, getattr(model.heads, model.heads.embedding_head))
    else:
        meta = load_export_metadata(path)
        if meta is None:
            raise CheckpointError(
                f"{os.fspath(path)!r} is neither an adapters.train checkpoint nor a backbone "
                "export with its .json metadata; official releases load through "
                "adapters.models.load_model"
            )
        if features == "projector":
            raise CheckpointError(
                f"{os.fspath(path)!r} is a backbone export without heads; projector features "
                "need the run's checkpoint.pt"
            )
        encoder = build_backbone(meta["backbone"], in_channels=meta["in_channels"])
        encoder.load_state_dict(obj, strict=True)
    missing = [k for k in ENCODER_META if k not in meta]
    if missing:
        raise CheckpointError(f"{os.fspath(path)!r}: metadata lacks {missing}")
    encoder.to(map_location)
    return encoder.eval(), {**{k: meta[k] for k in ENCODER_META}, "features": features}
