"""Backbones: image batches (B, C, H, W) to feature batches (B, F), chosen by name.

The ResNets are torchvision's own classes with the classifier removed, so their state dicts use
torchvision parameter names and the official VICReg, SwAV and SimSiam weights load into them
unchanged (see :mod:`adapters.checkpoints`). ``small_cnn`` is a few-hundred-thousand-parameter
network for 28x28 grayscale data, fast enough to train on two CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from entropylib.validation import is_integer


class ResNetBackbone(ResNet):
    """A torchvision ResNet without its classifier: images (B, C, H, W) -> features (B, F).

    ``fc`` is an ``nn.Identity`` (no parameters), so the state dict holds exactly the torchvision
    keys minus ``fc.weight`` and ``fc.bias``; a torchvision ``resnet50()`` loads it with
    ``strict=False`` reporting exactly those two keys missing.

    Parameters
    ----------
    block, layers
        As in ``torchvision.models.resnet.ResNet`` (Bottleneck, [3, 4, 6, 3] is ResNet-50).
    in_channels : int
        Image channels; 3 keeps torchvision's ``conv1`` (and its weight shape).
    small_stem : bool
        Replace the ImageNet stem (7x7 stride-2 conv + 3x3 stride-2 max-pool, which shrinks
        the input 4x) by a 3x3 stride-1 conv and no pool, the usual CIFAR/STL variant
        (He et al. 2016, section 4.2), so 32-96 px images keep enough spatial resolution.

    Examples
    --------
    >>> import torch
    >>> from adapters.backbones import build_backbone
    >>> net = build_backbone("resnet18_small")
    >>> net(torch.zeros(2, 3, 32, 32)).shape, net.feature_dim
    (torch.Size([2, 512]), 512)
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: list[int],
        *,
        in_channels: int = 3,
        small_stem: bool = False,
    ) -> None:
        super().__init__(block, layers)
        self.feature_dim: int = self.fc.in_features
        self.fc = nn.Identity()
        if small_stem:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        elif in_channels != 3:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if small_stem or in_channels != 3:
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")


class SmallCNN(nn.Module):
    """A fast four-block CNN for 28x28 (any size works) images: (B, C, H, W) -> (B, 256).

    Blocks of 3x3 conv - BatchNorm - ReLU with widths 32, 64, 128, 256. The first conv has
    stride 2 (28 -> 14), a 2x2 max-pool follows the second block (-> 7) and the last conv has
    stride 2 (-> 4), then global average pooling. About 0.39 M parameters and 12 M
    multiply-adds per 28x28 image (a ResNet-18 with the small stem needs about 0.56 G at
    32x32). Striding the first conv instead of pooling after it keeps no 28x28 activations;
    in the recorded runs on a loaded 2-core CPU a 256-image training step took 0.39 s (one
    thread), 1.21x less than the pool-first layout and 46x less than ``resnet18_small``
    (benchmarks/bench_backbones.py; benchmarks/results/adapters-core.md).

    Examples
    --------
    >>> import torch
    >>> from adapters.backbones import SmallCNN
    >>> net = SmallCNN(in_channels=1)
    >>> net(torch.zeros(4, 1, 28, 28)).shape
    torch.Size([4, 256])
    """

    widths = (32, 64, 128, 256)

    def __init__(self, *, in_channels: int = 1) -> None:
        super().__init__()
        c1, c2, c3, c4 = self.widths
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, c1, stride=2),
            _conv_bn_relu(c1, c2),
            nn.MaxPool2d(2),
            _conv_bn_relu(c2, c3),
            _conv_bn_relu(c3, c4, stride=2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.feature_dim: int = c4
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


#: backbone name -> constructor taking ``in_channels``
BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet50": lambda in_channels: ResNetBackbone(
        Bottleneck, [3, 4, 6, 3], in_channels=in_channels
    ),
    "resnet18": lambda in_channels: ResNetBackbone(
        BasicBlock, [2, 2, 2, 2], in_channels=in_channels
    ),
    "resnet18_small": lambda in_channels: ResNetBackbone(
        BasicBlock, [2, 2, 2, 2], in_channels=in_channels, small_stem=True
    ),
    "small_cnn": lambda in_channels: SmallCNN(in_channels=in_channels),
}


def build_backbone(name: str, *, in_channels: int = 3) -> nn.Module:
    """Build a randomly initialised backbone by name.

    Parameters
    ----------
    name : {"resnet50", "resnet18", "resnet18_small", "small_cnn"}
        ``resnet50``/``resnet18``: torchvision ResNets with the ImageNet stem (He et al. 2016,
        "Deep Residual Learning for Image Recognition") and torchvision parameter names, ``fc``
        removed; ``resnet18_small``: 3x3 stride-1 stem without max-pool for 32-96 px images;
        ``small_cnn``: :class:`SmallCNN` for 28x28 data on CPU.
    in_channels : int
        Image channels (1 for Fashion-MNIST and digits, 3 for RGB).

    Returns
    -------
    nn.Module
        Maps (B, in_channels, H, W) to (B, F); ``module.feature_dim == F``.

    Examples
    --------
    >>> import torch
    >>> from adapters.backbones import build_backbone
    >>> net = build_backbone("small_cnn", in_channels=1)
    >>> net(torch.zeros(2, 1, 28, 28)).shape == (2, net.feature_dim)
    True
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}")
    if not is_integer(in_channels) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    return BACKBONES[name](int(in_channels))
