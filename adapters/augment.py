"""Building blocks of the SSL views: one PIL image -> a list of augmented, normalised tensors.

Each method class holds its own recipe (``views``, :mod:`adapters.methods`), made of
:func:`augmented_view` and :class:`MultiView`, with every size scaled to the data (the
reference recipes are for 224 px ImageNet). Colour jitter keeps only brightness and contrast
on 1-channel images, where saturation, hue and random grayscale have no meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from PIL import Image, ImageFilter
from torch import Tensor
from torchvision import transforms as T

from entropylib.validation import is_integer


class DatasetInfo(Protocol):
    """What the transforms read of a data set (:class:`adapters.data.DatasetInfo` has it).

    A protocol rather than an import keeps this module a leaf: ``adapters.data`` imports it.
    """

    name: str
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

#: datasets whose images come in many sizes: evaluated after resize + centre crop (ratio 256/224)
VARIABLE_SIZE_DATASETS = frozenset({"imagefolder"})

class MultiView:
    """Apply several transforms to one image: ``image -> [t(image) for t in transforms]``.

    Used as a dataset ``transform``; the default DataLoader collation then yields a list of
    (B, C, H, W) batches, one per view.

    Examples
    --------
    >>> from PIL import Image
    >>> from torchvision import transforms as T
    >>> from adapters.augment import MultiView
    >>> views = MultiView([T.ToTensor(), T.Compose([T.CenterCrop(4), T.ToTensor()])])
    >>> [v.shape for v in views(Image.new("L", (8, 8)))]
    [torch.Size([1, 8, 8]), torch.Size([1, 4, 4])]
    """

    def __init__(self, transforms: Sequence[Callable[[Any], Tensor]]) -> None:
        if not transforms:
            raise ValueError("MultiView needs at least one transform")
        self.transforms = list(transforms)

    def __call__(self, image: Any) -> list[Tensor]:
        return [t(image) for t in self.transforms]

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        inner = ",\n".join(f"  {t!r}" for t in self.transforms)
        return f"MultiView([\n{inner}\n])"


def eval_transform(info: DatasetInfo) -> Callable[[Any], Tensor]:
    """The evaluation transform: (resize + centre crop for variable-size data), tensor, normalise.

    Fixed-size data sets are only converted and normalised with ``info.mean`` and ``info.std``;
    ImageFolder images are resized to ``round(image_size * 256 / 224)`` on the short side and
    centre-cropped to ``image_size`` (the standard ImageNet protocol).

    Examples
    --------
    >>> from PIL import Image
    >>> from adapters.data import dataset_info, eval_transform
    >>> eval_transform(dataset_info("fashion-mnist"))(Image.new("L", (28, 28))).shape
    torch.Size([1, 28, 28])
    """
    steps: list[Callable[[Any], Any]] = []
    if info.name in VARIABLE_SIZE_DATASETS:
        steps += [T.Resize(round(info.image_size * 256 / 224)), T.CenterCrop(info.image_size)]
    steps += [T.ToTensor(), T.Normalize(info.mean, info.std)]
    return T.Compose(steps)


def check_size(name: str, value: Any) -> int:
    if not is_integer(value) or value < 1:
        raise ValueError(f"{name} must be a positive int (pixels), got {value!r}")
    return int(value)


class RandomGaussianBlur:
    """With probability ``p``, blur a PIL image with PIL's Gaussian filter, sigma ~ U(sigma).

    PIL's filter works on the uint8 image directly; torchvision's tensor-based
    ``GaussianBlur`` costs about 50x more per small image on CPU. Random draws come from
    torch's generator, like torchvision's transforms, so ``torch.manual_seed`` (and the
    DataLoader's per-worker seeding) makes views reproducible.

    Examples
    --------
    >>> from PIL import Image
    >>> from adapters.augment import RandomGaussianBlur
    >>> RandomGaussianBlur((0.5, 1.0), p=1.0)(Image.new("L", (8, 8))).size
    (8, 8)
    """

    def __init__(self, sigma: tuple[float, float], p: float) -> None:
        low, high = sigma
        if not 0 < low <= high:
            raise ValueError(f"sigma must be a range 0 < low <= high, got {sigma!r}")
        if not 0 <= p <= 1:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        self.sigma, self.p = (float(low), float(high)), float(p)

    def __call__(self, image: Image.Image) -> Image.Image:
        if self.p < 1 and torch.rand(()).item() >= self.p:
            return image
        low, high = self.sigma
        radius = low + (high - low) * torch.rand(()).item()
        return image.filter(ImageFilter.GaussianBlur(radius=radius))

    def __repr__(self) -> str:
        return f"RandomGaussianBlur(sigma={self.sigma}, p={self.p})"


def augmented_view(
    info: DatasetInfo,
    size: int,
    scale: tuple[float, float],
    jitter: tuple[float, float, float, float],
    *,
    blur_p: float,
    blur_size: int,
    solarize_p: float = 0.0,
    bicubic: bool = False,
) -> T.Compose:
    """One augmented view: random resized crop of ``size`` (``scale`` of the area), flip,
    colour jitter ``(brightness, contrast, saturation, hue)`` p=0.8 and grayscale p=0.2 (only
    brightness and contrast on 1-channel data), Gaussian blur with probability ``blur_p``
    (sigma in [0.1, 2] * ``blur_size`` / 224 px), solarisation with ``solarize_p``, then
    tensor and normalisation. The building block of the methods' ``views`` recipes.
    """
    interpolation = T.InterpolationMode.BICUBIC if bicubic else T.InterpolationMode.BILINEAR
    steps: list[Callable[[Any], Any]] = [
        T.RandomResizedCrop(size, scale=scale, interpolation=interpolation),
        T.RandomHorizontalFlip(p=0.5),
    ]
    brightness, contrast, saturation, hue = jitter
    if info.channels == 3:
        steps += [
            T.RandomApply([T.ColorJitter(brightness, contrast, saturation, hue)], p=0.8),
            T.RandomGrayscale(p=0.2),
        ]
    else:
        steps.append(T.RandomApply([T.ColorJitter(brightness, contrast)], p=0.8))
    if blur_p > 0:
        scale = blur_size / 224
        steps.append(RandomGaussianBlur((0.1 * scale, 2.0 * scale), p=blur_p))
    if solarize_p > 0:
        steps.append(T.RandomSolarize(threshold=128, p=solarize_p))
    steps += [T.ToTensor(), T.Normalize(info.mean, info.std)]
    return T.Compose(steps)
