"""SimSiam (Chen & He, CVPR 2021): projector, predictor, and E2MC on the projector output."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from adapters.augment import DatasetInfo, MultiView, augmented_view, check_size
from adapters.methods.base import (
    MethodAdapter,
    MethodDefaults,
    MethodOutput,
    OfficialLayout,
    load_exact,
)
from entropylib.criteria import SimSiamLoss


def projector(in_dim: int, dim: int) -> nn.Sequential:
    """SimSiam's 3-layer projector, ending in BatchNorm without affine parameters.

    Indices 0, 1, 3, 4, 6, 7 hold parameters or running statistics, as ``module.encoder.fc.*``
    in the official ``checkpoint_0099.pth.tar``. The bias of the last Linear is frozen, as in
    the reference: the BatchNorm after it removes any shift, so it never gets a gradient
    that matters.
    """
    head = nn.Sequential(
        nn.Linear(in_dim, in_dim, bias=False),
        nn.BatchNorm1d(in_dim),
        nn.ReLU(inplace=True),
        nn.Linear(in_dim, in_dim, bias=False),
        nn.BatchNorm1d(in_dim),
        nn.ReLU(inplace=True),
        nn.Linear(in_dim, dim),
        nn.BatchNorm1d(dim, affine=False),
    )
    head[6].bias.requires_grad = False
    return head


def predictor(dim: int, pred_dim: int) -> nn.Sequential:
    """SimSiam's bottleneck predictor ``dim -> pred_dim -> dim`` (2048-512-2048)."""
    return nn.Sequential(
        nn.Linear(dim, pred_dim, bias=False),
        nn.BatchNorm1d(pred_dim),
        nn.ReLU(inplace=True),
        nn.Linear(pred_dim, dim),
    )


class SimSiam(MethodAdapter):
    """SimSiam adapter: two views, projector + predictor, negative cosine with stop-gradient.

    E2MC sees the projector outputs (not detached) with the normal-CDF transform, ent_coeff 1,
    cov_coeff 25 (docs/method.md). SGD momentum 0.9, weight decay 1e-4, base lr 0.05 per
    256 images; the predictor keeps its initial learning rate whatever the schedule (the
    reference's ``fix_pred_lr``). ``dim`` None means the backbone's feature size (2048 for
    ResNet-50), ``pred_dim`` None a quarter of ``dim``.

    Examples
    --------
    >>> import torch
    >>> from adapters.backbones import build_backbone
    >>> net = build_backbone("small_cnn", in_channels=1)
    >>> heads = SimSiam(net.feature_dim, dim=64)
    >>> out = heads(net, [torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)])
    >>> [tuple(e.shape) for e in out.embeddings]
    [(8, 64), (8, 64)]
    """

    name = "simsiam"
    defaults = MethodDefaults(
        optimizer="sgd",
        base_lr=0.05,
        weight_decay=1e-4,
        head_options={"dim": None, "pred_dim": None},
    )
    official_layouts = {
        # checkpoint_0099.pth.tar: {epoch, arch, state_dict, optimizer}; the projector is
        # torchvision's encoder.fc replaced by the MLP, so its keys sit under the backbone's
        "simsiam": OfficialLayout("module.encoder.", {
            "projector": ("module.encoder.fc.", (
                (0, "linear_nobias"), (1, "bn"), (3, "linear_nobias"), (4, "bn"), (6, "linear"),
                (7, "bn_noaffine"))),
            "predictor": ("module.predictor.", ((0, "linear_nobias"), (1, "bn"), (3, "linear")))},
            wrapper=("state_dict", "epoch", "arch", "optimizer"),
            same_width=("projector", "predictor")),
    }
    embedding_head = "projector"

    def __init__(self, feature_dim: int, **options) -> None:
        super().__init__()
        opts = self.head_options(options)
        dim = int(opts["dim"] or feature_dim)
        pred_dim = int(opts["pred_dim"] or max(dim // 4, 1))
        self.projector = projector(feature_dim, dim)
        self.predictor = predictor(dim, pred_dim)
        self.loss = SimSiamLoss()

    def forward(self, backbone: nn.Module, views: list[torch.Tensor]) -> MethodOutput:
        if len(views) != 2:
            raise ValueError(f"SimSiam takes 2 views, got {len(views)}")
        z1, z2 = (self.projector(backbone(v)) for v in views)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss, parts = self.loss(p1, p2, z1, z2)
        return MethodOutput(loss, parts, [z1, z2])

    def param_groups(self, backbone: nn.Module) -> list[dict]:
        rest = [*backbone.parameters(), *self.projector.parameters()]
        return [
            {"params": [p for p in rest if p.requires_grad], "fixed_lr": False},
            {"params": list(self.predictor.parameters()), "fixed_lr": True},
        ]

    @classmethod
    def views(cls, info: DatasetInfo, *, size: int | None = None) -> MultiView:
        """Chen & He 2021, sizes for 224 px scaled by ``size / 224``: two views from one
        distribution: crop scale (0.2, 1); jitter (0.4, 0.4, 0.4, 0.1) p=0.8; grayscale p=0.2;
        blur p=0.5; flip."""
        size = info.image_size if size is None else check_size("size", size)
        view = augmented_view(info, size, (0.2, 1.0), (0.4, 0.4, 0.4, 0.1), blur_p=0.5,
                              blur_size=size)
        return MultiView([view, view])

    @classmethod
    def options_from_official(cls, heads):
        return {"dim": heads["projector"]["6.weight"].shape[0],
                "pred_dim": heads["predictor"]["0.weight"].shape[0]}

    def load_official_heads(self, heads: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        load_exact(self.projector, heads["projector"], "SimSiam projector")
        load_exact(self.predictor, heads["predictor"], "SimSiam predictor")
