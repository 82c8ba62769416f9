"""Data sets by name, read from local disk only (nothing is ever downloaded).

``load_dataset(name, root, train=...)`` returns a torch ``Dataset`` of ``(transform(image),
label)`` pairs, ``image`` a PIL image, like torchvision's data sets. Names: ``imagefolder``,
``cifar10``, ``cifar100``, ``stl10`` (torchvision readers), ``fashion-mnist`` (torchvision's
layout or the Debian package's IDX ``.gz`` folder), ``digits`` (scikit-learn's embedded 8x8
digits, upscaled to 28x28) and ``fake`` (torchvision ``FakeData``). ``dataset_info(name)``
gives the shape and normalisation statistics the transforms need.
"""

from __future__ import annotations

import functools
import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets

from adapters.augment import MultiView, eval_transform
from adapters.methods import ssl_views
from entropylib.validation import is_integer

__all__ = [
    "DEBIAN_FASHION_MNIST",
    "FASHION_MNIST_ENV",
    "DatasetInfo",
    "ImageArrayDataset",
    "MultiView",
    "dataset_info",
    "eval_transform",
    "fashion_mnist_available",
    "fashion_mnist_root",
    "load_dataset",
    "read_idx",
    "ssl_views",
]

#: where Debian's ``dataset-fashion-mnist`` package installs the IDX files
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: environment variable naming another Fashion-MNIST folder (see :func:`fashion_mnist_root`)
FASHION_MNIST_ENV = "ENTROPYLIB_FASHION_MNIST"

#: how a user names the data directory, in error messages
_ROOT_OPTION = "--data-root on the command line, root= in Python"

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    """What models and transforms need to know about a data set.

    ``image_size`` is the side of the (square) images the data comes in, or the crop size for
    variable-size data (ImageFolder: 224). ``mean``/``std`` are per-channel statistics of the
    training images in [0, 1] used by ``Normalize``.

    Examples
    --------
    >>> from adapters.data import dataset_info
    >>> info = dataset_info("fashion-mnist")
    >>> info.channels, info.image_size, info.num_classes
    (1, 28, 10)
    """

    name: str
    num_classes: int
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


# Statistics: fashion-mnist and digits are computed from the training images here (and checked
# by tests/adapters/test_data.py); CIFAR values are the widely published training-set values
# (not re-measured on this machine, whose disks hold no CIFAR); STL10 and ImageFolder use the
# ImageNet statistics (STL10's images are taken from ImageNet); FakeData's are nominal.
_INFOS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        # num_classes 1000 assumes ImageNet; a loaded ImageFolder's own count is len(ds.classes)
        DatasetInfo("imagefolder", 1000, 3, 224, _IMAGENET_MEAN, _IMAGENET_STD),
        DatasetInfo(
            "cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
        ),
        DatasetInfo(
            "cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
        ),
        DatasetInfo("stl10", 10, 3, 96, _IMAGENET_MEAN, _IMAGENET_STD),
        DatasetInfo("fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,)),
        DatasetInfo("digits", 10, 1, 28, (0.3056,), (0.3249,)),
        DatasetInfo("fake", 10, 3, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    )
}

#: class names in label order, for legends (data sets not listed have numbered classes)
CLASS_NAMES = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
    "digits": tuple(str(i) for i in range(10)),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
}

#: default side the 8x8 scikit-learn digits are upscaled to (Fashion-MNIST's, for transfer)
DIGITS_SIZE = 28
#: every DIGITS_TEST_EVERY-th digit of each class (its 0th, 5th, ...) is in the fixed test split
DIGITS_TEST_EVERY = 5
#: sizes of the FakeData train and test splits
FAKE_SIZES = {True: 512, False: 256}


def dataset_names() -> list[str]:
    """The names :func:`dataset_info` and :func:`load_dataset` take, sorted.

    Examples
    --------
    >>> from adapters.data import dataset_names
    >>> "fashion-mnist" in dataset_names()
    True
    """
    return sorted(_INFOS)


def dataset_info(name: str) -> DatasetInfo:
    """Shape, class count and normalisation statistics of a named data set.

    Examples
    --------
    >>> from adapters.data import dataset_info
    >>> dataset_info("cifar10").image_size
    32
    """
    try:
        return _INFOS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; expected one of {dataset_names()}") from None


class ImageArrayDataset(Dataset):
    """Images held in a uint8 array (N, H, W) or (N, H, W, 3) with integer labels.

    Items are ``(transform(PIL image), int label)``; ``data``, ``targets`` and ``classes``
    mirror torchvision's MNIST-style data sets.

    Examples
    --------
    >>> import numpy as np
    >>> from adapters.data import ImageArrayDataset
    >>> ds = ImageArrayDataset(np.zeros((3, 8, 8), np.uint8), np.array([0, 1, 1]))
    >>> img, label = ds[1]
    >>> img.size, label
    ((8, 8), 1)
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        transform: Callable[[Any], Any] | None = None,
        classes: list[str] | None = None,
    ) -> None:
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ValueError(
                f"images must be uint8 of shape (N, H, W) or (N, H, W, C), got "
                f"{images.dtype} {images.shape}"
            )
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.data = images
        self.targets = [int(y) for y in labels]
        n_classes = max(self.targets, default=-1) + 1
        self.classes = classes if classes is not None else [str(i) for i in range(n_classes)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = Image.fromarray(self.data[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


def fashion_mnist_root() -> Path:
    """The Fashion-MNIST folder used when no ``root`` is given.

    ``$ENTROPYLIB_FASHION_MNIST`` if that variable is set and not empty, else Debian's
    ``/usr/share/datasets/fashion-mnist``. The folder may not hold the data: see
    :func:`fashion_mnist_available`.

    Examples
    --------
    >>> from unittest import mock
    >>> from adapters.data import fashion_mnist_root
    >>> with mock.patch.dict("os.environ", {"ENTROPYLIB_FASHION_MNIST": "/data/fmnist"}):
    ...     print(fashion_mnist_root())
    /data/fmnist
    >>> with mock.patch.dict("os.environ", {"ENTROPYLIB_FASHION_MNIST": ""}):  # empty: unset
    ...     print(fashion_mnist_root())
    /usr/share/datasets/fashion-mnist
    """
    chosen = os.environ.get(FASHION_MNIST_ENV, "")
    return Path(chosen).expanduser() if chosen else DEBIAN_FASHION_MNIST


def fashion_mnist_available(root: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``root`` (default :func:`fashion_mnist_root`) holds both Fashion-MNIST splits.

    True when the four IDX files (gzipped or not) are in a layout :func:`load_dataset` reads;
    an empty or missing folder is False, like a machine without the data.
    """
    base = fashion_mnist_root() if root is None else Path(root).expanduser()
    return all(_fashion_files(base, train) is not None for train in (True, False))


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    train: bool,
    transform: Callable[[Any], Any] | None = None,
    digits_size: int = DIGITS_SIZE,
) -> Dataset:
    """Load a named data set from local disk (never downloads).

    Parameters
    ----------
    name : str
        ``imagefolder`` (``root`` holds one folder per class; if it holds ``train/`` and
        ``val/`` instead, ``train`` picks one), ``cifar10``/``cifar100`` (``root`` holds
        ``cifar-10-batches-py`` / ``cifar-100-python``, or is that folder), ``stl10`` (``root``
        holds ``stl10_binary``; splits "train"/"test"), ``fashion-mnist`` (``root`` holds the
        four IDX files, gzipped or not, directly or under ``FashionMNIST/raw``; default
        :func:`fashion_mnist_root`), ``digits`` (scikit-learn's 1797 8x8 digits,
        embedded, upscaled bilinearly to ``digits_size``; ``root`` unused; fixed stratified
        split: the
        0th, 5th, 10th, ... image of each class are the 364 test images, the other 1433 the
        training images) or ``fake``
        (torchvision FakeData, 3x32x32, 10 classes, 512 train / 256 test images).
    root : path, optional
        Data directory; required except for ``fashion-mnist``, ``digits`` and ``fake``.
    train : bool
        Training or test split.
    transform : callable, optional
        Applied to each PIL image (e.g. :func:`eval_transform` or :func:`ssl_views`).
    digits_size : int
        ``digits`` only: side of the upscaled images (28 matches Fashion-MNIST, for transfer
        experiments; ``dataset_info("digits")`` describes the 28x28 version).

    Returns
    -------
    torch.utils.data.Dataset
        Items ``(transform(image), label)`` with ``label`` an int in [0, num_classes).

    Examples
    --------
    >>> from adapters.data import load_dataset
    >>> ds = load_dataset("digits", train=False)
    >>> len(ds), ds[0][0].size, ds[0][1]
    (364, (28, 28), 0)
    """
    dataset_info(name)
    if not isinstance(train, bool):
        raise TypeError(f"train must be True or False, got {train!r}")
    if name != "digits" and digits_size != DIGITS_SIZE:
        raise ValueError(f"digits_size applies to the 'digits' dataset only, not {name!r}")
    if name == "digits":
        if not is_integer(digits_size) or digits_size < 8:
            raise ValueError(f"digits_size must be an int >= 8 (pixels), got {digits_size!r}")
        images, labels = _digits(train, digits_size)
        return ImageArrayDataset(images, labels, transform=transform)
    if name == "fake":
        info = _INFOS["fake"]
        return datasets.FakeData(
            size=FAKE_SIZES[train],
            image_size=(info.channels, info.image_size, info.image_size),
            num_classes=info.num_classes,
            transform=transform,
            random_offset=0 if train else FAKE_SIZES[True],
        )
    if name == "fashion-mnist":
        if root is None:
            folder = _default_fashion_mnist()
        else:
            folder = _existing_root(name, root)
        images, labels = _fashion_mnist(str(folder), train)
        classes = list(datasets.FashionMNIST.classes)
        return ImageArrayDataset(images, labels, transform=transform, classes=classes)
    if root is None:
        raise ValueError(f"dataset {name!r} needs its data directory: {_ROOT_OPTION}")
    folder = _existing_root(name, root)
    if name == "imagefolder":
        if (folder / "train").is_dir() and (folder / "val").is_dir():
            folder = folder / ("train" if train else "val")
        return datasets.ImageFolder(str(folder), transform=transform)
    if name == "stl10":
        return _torchvision_reader(
            name, folder, "stl10_binary", datasets.STL10,
            split="train" if train else "test", transform=transform,
        )
    subdir = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]
    reader = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    if folder.name == subdir:
        folder = folder.parent
    return _torchvision_reader(name, folder, subdir, reader, train=train, transform=transform)


def _existing_root(name: str, root: str | os.PathLike[str]) -> Path:
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"data root {str(folder)!r} for dataset {name!r} does not exist or is not a "
            f"directory; nothing is downloaded: put the data there or give its directory "
            f"({_ROOT_OPTION})"
        )
    return folder


def _default_fashion_mnist() -> Path:
    folder = fashion_mnist_root()
    if not fashion_mnist_available(folder):
        raise FileNotFoundError(
            f"Fashion-MNIST is not installed in {str(folder)!r} (the folder is missing or lacks "
            f"the four IDX files, e.g. train-images-idx3-ubyte.gz); set {FASHION_MNIST_ENV} to "
            f"the folder that holds them, or install Debian's dataset-fashion-mnist package "
            f"({DEBIAN_FASHION_MNIST})"
        )
    return folder


def _torchvision_reader(
    name: str, folder: Path, subdir: str, reader: Callable[..., Dataset], **kwargs: Any
) -> Dataset:
    try:
        return reader(str(folder), download=False, **kwargs)
    except RuntimeError as err:
        raise FileNotFoundError(
            f"dataset {name!r} not found or incomplete under {str(folder)!r}: expected the "
            f"torchvision layout {str(folder / subdir)!r} ({err})"
        ) from err


def _digits(train: bool, size: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # pixel values are counts 0..16 of a 4x4 block; map them onto the 0..255 grey range
    small = np.rint(bunch.images * (255 / 16)).astype(np.uint8)
    # stratified and fixed: the 0th, 5th, 10th, ... image of each class (in file order) is test
    rank_in_class = np.zeros(len(small), dtype=np.int64)
    for label in np.unique(bunch.target):
        members = np.flatnonzero(bunch.target == label)
        rank_in_class[members] = np.arange(len(members))
    is_test = rank_in_class % DIGITS_TEST_EVERY == 0
    keep = ~is_test if train else is_test
    images = np.stack(
        [
            np.asarray(
                Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR)
            )
            for img in small[keep]
        ]
    )
    return images, bunch.target[keep].astype(np.int64)


_FASHION_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@functools.lru_cache(maxsize=4)
def _fashion_mnist(folder: str, train: bool) -> tuple[np.ndarray, np.ndarray]:
    base = Path(folder)
    found = _fashion_files(base, train)
    if found is None:
        images_name, labels_name = _FASHION_FILES[train]
        raise FileNotFoundError(
            f"Fashion-MNIST files {images_name}[.gz] and {labels_name}[.gz] not found in "
            f"{[str(c) for c in _fashion_folders(base)]}; expected the Debian layout (the "
            f"files directly in the folder) or torchvision's <root>/FashionMNIST/raw layout"
        )
    images, labels = found
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            f"Fashion-MNIST files do not match: images {x.shape} from {images}, labels "
            f"{y.shape} from {labels}; expected (N, 28, 28) and (N,)"
        )
    if y.size and y.max() > 9:
        raise ValueError(f"Fashion-MNIST labels in {labels} exceed 9 (max {y.max()})")
    x.flags.writeable = False
    y = y.astype(np.int64)
    y.flags.writeable = False
    return x, y


def _fashion_folders(base: Path) -> list[Path]:
    return [base, base / "FashionMNIST" / "raw", base / "raw"]


def _fashion_files(base: Path, train: bool) -> tuple[Path, Path] | None:
    """The images and labels files of one split under ``base``, or None if absent."""
    images_name, labels_name = _FASHION_FILES[train]
    for directory in _fashion_folders(base):
        images = _find_idx(directory, images_name)
        labels = _find_idx(directory, labels_name)
        if images is not None and labels is not None:
            return images, labels
    return None


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into a numpy array.

    Format (LeCun et al., MNIST database page): bytes 0-1 zero, byte 2 the element type
    (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), byte 3 the
    number of dimensions d; then d big-endian uint32 sizes; then the elements, big-endian,
    row-major.

    Examples
    --------
    >>> from adapters.data import read_idx
    >>> read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").shape
    (10000,)
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read IDX file {str(path)!r}: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{str(path)!r} is not an IDX file (bad magic number {raw[:4]!r})")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX file {str(path)!r} is truncated inside its header")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"IDX file {str(path)!r} has {len(raw) - header} data bytes; its header "
            f"{shape} of {dtype} needs {expected}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)
