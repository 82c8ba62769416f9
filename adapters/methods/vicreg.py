"""VICReg (Bardes, Ponce & LeCun, ICLR 2022): the expander, its loss and E2MC on the expander."""

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
from entropylib.criteria import VICRegLoss


def expander(in_dim: int, width: int) -> nn.Sequential:
    """Linear-BN-ReLU, Linear-BN-ReLU, Linear without bias: VICReg's 2048-8192-8192-8192 MLP.

    Indices 0, 1, 3, 4, 6 hold parameters, as ``module.projector.*`` in the official
    ``resnet50_fullckpt.pth``.
    """
    return nn.Sequential(
        nn.Linear(in_dim, width),
        nn.BatchNorm1d(width),
        nn.ReLU(inplace=True),
        nn.Linear(width, width),
        nn.BatchNorm1d(width),
        nn.ReLU(inplace=True),
        nn.Linear(width, width, bias=False),
    )


class VICReg(MethodAdapter):
    """VICReg adapter: two views, expander, variance-invariance-covariance loss.

    E2MC sees the expander output of both views with the sigmoid ("hypercube") transform,
    ent_coeff 10, cov_coeff 1 (docs/method.md). LARS, weight decay 1e-6, base lr 0.2 per
    256 images, as in the VICReg reference. ``expander_dim`` None means 4x the backbone's
    feature size (8192 for ResNet-50's 2048).

    Examples
    --------
    >>> import torch
    >>> from adapters.backbones import build_backbone
    >>> net = build_backbone("small_cnn", in_channels=1)
    >>> heads = VICReg(net.feature_dim, expander_dim=32)
    >>> out = heads(net, [torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)])
    >>> [tuple(e.shape) for e in out.embeddings]
    [(8, 32), (8, 32)]
    """

    name = "vicreg"
    defaults = MethodDefaults(
        optimizer="lars",
        base_lr=0.2,
        weight_decay=1e-6,
        head_options={"expander_dim": None, "sim_coeff": 25.0, "std_coeff": 25.0,
                      "vicreg_cov_coeff": 1.0},
    )
    official_layouts = {
        # resnet50_fullckpt.pth: {epoch, model, optimizer}
        "vicreg_full": OfficialLayout("module.backbone.", {"projector": (
            "module.projector.",
            ((0, "linear"), (1, "bn"), (3, "linear"), (4, "bn"), (6, "linear_nobias")))},
            wrapper=("model", "epoch", "optimizer")),
        # resnet50.pth: the backbone alone, torchvision names without fc
        "vicreg_backbone": OfficialLayout(""),
    }
    embedding_head = "projector"

    def __init__(self, feature_dim: int, **options) -> None:
        super().__init__()
        opts = self.head_options(options)
        width = opts["expander_dim"] or 4 * feature_dim
        self.projector = expander(feature_dim, int(width))
        self.loss = VICRegLoss(
            sim_coeff=opts["sim_coeff"], std_coeff=opts["std_coeff"],
            cov_coeff=opts["vicreg_cov_coeff"],
        )

    def forward(self, backbone: nn.Module, views: list[torch.Tensor]) -> MethodOutput:
        if len(views) != 2:
            raise ValueError(f"VICReg takes 2 views, got {len(views)}")
        # one forward per view: BatchNorm statistics are per view, as in the reference
        z1, z2 = (self.projector(backbone(v)) for v in views)
        loss, parts = self.loss(z1, z2)
        return MethodOutput(loss, parts, [z1, z2])

    @classmethod
    def views(cls, info: DatasetInfo, *, size: int | None = None) -> MultiView:
        """Bardes et al. 2022, appendix C (the BYOL recipe), sizes for 224 px scaled by
        ``size / 224``: random resized crop, scale (0.08, 1), bicubic; flip p=0.5; colour
        jitter (0.4, 0.4, 0.2, 0.1) p=0.8; grayscale p=0.2; Gaussian blur p=1.0 / 0.1 for
        view 1 / 2; solarisation p=0.0 / 0.2."""
        size = info.image_size if size is None else check_size("size", size)
        return MultiView([
            augmented_view(info, size, (0.08, 1.0), (0.4, 0.4, 0.2, 0.1), blur_p=blur,
                           blur_size=size, solarize_p=solarize, bicubic=True)
            for blur, solarize in ((1.0, 0.0), (0.1, 0.2))
        ])

    @classmethod
    def options_from_official(cls, heads):
        return {"expander_dim": heads["projector"]["0.weight"].shape[0]} if heads else {}

    def load_official_heads(self, heads: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        load_exact(self.projector, heads["projector"], "VICReg expander")
