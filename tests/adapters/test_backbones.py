"""Backbones: output shapes, torchvision parameter names and numerics, stems, errors."""

import pytest
import torch
import torchvision
from torch import nn

from adapters.backbones import BACKBONES, SmallCNN, build_backbone


@pytest.fixture(scope="module")
def resnet50():
    torch.manual_seed(0)
    return build_backbone("resnet50").eval()


def test_registry_names():
    assert set(BACKBONES) == {"resnet50", "resnet18", "resnet18_small", "small_cnn"}


@pytest.mark.parametrize(
    ("name", "in_channels", "size", "feature_dim"),
    [
        # feature sizes of torchvision's resnet18/50 classifiers' inputs (512, 2048)
        ("resnet18", 3, 64, 512),
        ("resnet18", 1, 28, 512),
        ("resnet18_small", 3, 32, 512),
        ("resnet18_small", 3, 48, 512),
        ("resnet18_small", 1, 28, 512),
        ("small_cnn", 1, 28, 256),
        ("small_cnn", 3, 32, 256),
        ("small_cnn", 1, 8, 256),
    ],
)
def test_output_shape(name, in_channels, size, feature_dim):
    net = build_backbone(name, in_channels=in_channels)
    out = net(torch.randn(3, in_channels, size, size))
    assert net.feature_dim == feature_dim
    assert out.shape == (3, feature_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [32, 64])
def test_resnet50_output_shape(resnet50, size):
    with torch.no_grad():
        out = resnet50(torch.randn(2, 3, size, size))
    assert resnet50.feature_dim == torchvision.models.resnet50().fc.in_features == 2048
    assert out.shape == (2, 2048)


@pytest.mark.parametrize("name", ["resnet50", "resnet18"])
def test_torchvision_names_and_shapes(name, resnet50):
    ours = resnet50 if name == "resnet50" else build_backbone(name)
    reference = getattr(torchvision.models, name)()
    ref_shapes = {k: v.shape for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in ours.state_dict().items()} == ref_shapes
    result = reference.load_state_dict(ours.state_dict(), strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"]
    assert result.unexpected_keys == []


def test_same_features_as_torchvision_resnet18():
    # torchvision's own forward, with the classifier replaced by the identity, is the reference
    ours = build_backbone("resnet18").eval()
    reference = torchvision.models.resnet18()
    reference.load_state_dict(ours.state_dict(), strict=False)
    reference.fc = nn.Identity()
    reference.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=0)


def _layer4_size(net, size):
    seen = {}

    def record(module, inputs, output):
        seen["shape"] = output.shape

    handle = net.layer4.register_forward_hook(record)
    with torch.no_grad():
        net(torch.randn(1, 3, size, size))
    handle.remove()
    return seen["shape"][-2:]


def test_small_stem_keeps_resolution():
    small, imagenet = build_backbone("resnet18_small").eval(), build_backbone("resnet18").eval()
    # total stride: 8 with the 3x3 stride-1 stem, 32 with the ImageNet stem (conv 2, pool 2)
    assert tuple(_layer4_size(small, 32)) == (4, 4)
    assert tuple(_layer4_size(imagenet, 32)) == (1, 1)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)


def test_in_channels_changes_only_conv1():
    gray, rgb = build_backbone("resnet18", in_channels=1), build_backbone("resnet18")
    gray_shapes = {k: v.shape for k, v in gray.state_dict().items()}
    rgb_shapes = {k: v.shape for k, v in rgb.state_dict().items()}
    assert gray_shapes.pop("conv1.weight") == (64, 1, 7, 7)
    assert rgb_shapes.pop("conv1.weight") == (64, 3, 7, 7)
    assert gray_shapes == rgb_shapes


def test_small_cnn_parameter_count():
    # 3x3 convs without bias plus BatchNorm weight and bias, widths written out independently
    widths = [1, 32, 64, 128, 256]
    expected = sum(9 * a * b + 2 * b for a, b in zip(widths[:-1], widths[1:], strict=False))
    net = build_backbone("small_cnn", in_channels=1)
    assert isinstance(net, SmallCNN)
    assert sum(p.numel() for p in net.parameters()) == expected
    assert 100_000 < expected < 1_000_000


def test_gradients_reach_every_parameter():
    net = build_backbone("small_cnn", in_channels=1)
    net(torch.randn(4, 1, 28, 28)).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone 'resnet34'.*resnet18_small"):
        build_backbone("resnet34")


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
def test_bad_in_channels(bad):
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        build_backbone("small_cnn", in_channels=bad)
