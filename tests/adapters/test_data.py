"""Data sets: real Fashion-MNIST from its installed folder, embedded digits, FakeData, ImageFolder,
the IDX reader, statistics in DatasetInfo, and clear errors for missing or unknown data."""

import gzip
import math
import struct

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from sklearn.datasets import load_digits

from adapters.data import (
    DEBIAN_FASHION_MNIST,
    FASHION_MNIST_ENV,
    DatasetInfo,
    _fashion_files,
    dataset_info,
    eval_transform,
    fashion_mnist_available,
    fashion_mnist_root,
    load_dataset,
    read_idx,
)

needs_fashion = pytest.mark.requires_fashion_mnist
NAMES = ["imagefolder", "cifar10", "cifar100", "stl10", "fashion-mnist", "digits", "fake"]


def test_dataset_info_fields():
    for name in NAMES:
        info = dataset_info(name)
        assert isinstance(info, DatasetInfo) and info.name == name
        assert len(info.mean) == len(info.std) == info.channels
    assert dataset_info("fashion-mnist").channels == 1
    assert dataset_info("cifar100").num_classes == 100


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*fashion-mnist"):
        dataset_info("mnist")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_dataset("mnist", "/tmp", train=True)


@needs_fashion
def test_fashion_mnist_debian_shapes_and_labels():
    train = load_dataset("fashion-mnist", train=True)
    test = load_dataset("fashion-mnist", fashion_mnist_root(), train=False)
    # the published split: 60,000 training and 10,000 test images, 10 balanced classes
    assert (len(train), len(test)) == (60_000, 10_000)
    assert np.bincount(train.targets).tolist() == [6000] * 10
    assert np.bincount(test.targets).tolist() == [1000] * 10
    image, label = test[0]
    assert image.size == (28, 28) and image.mode == "L"
    assert isinstance(label, int)
    tensor, _ = load_dataset("fashion-mnist", train=False, transform=eval_transform(
        dataset_info("fashion-mnist")))[0]
    assert tensor.shape == (1, 28, 28) and tensor.dtype == torch.float32
    assert train.classes[0] == "T-shirt/top"


@needs_fashion
def test_fashion_mnist_matches_torchvision_reader(tmp_path):
    # torchvision's own IDX reader on the decompressed files is the independent reference
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    installed = _fashion_files(fashion_mnist_root(), train=False)
    for stem, path in zip(("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"), installed,
                          strict=True):
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as src:
            (raw / stem).write_bytes(src.read())
    images = torchvision.datasets.mnist.read_image_file(str(raw / "t10k-images-idx3-ubyte"))
    labels = torchvision.datasets.mnist.read_label_file(str(raw / "t10k-labels-idx1-ubyte"))
    ours = load_dataset("fashion-mnist", tmp_path, train=False)  # torchvision's layout
    np.testing.assert_array_equal(ours.data, images.numpy())
    assert ours.targets == labels.tolist()
    np.testing.assert_array_equal(np.asarray(ours[17][0]), images[17].numpy())


def _pixel_mean_std(data):
    # exact integer moments from the histogram of the uint8 pixels, then scaled to [0, 1]
    counts = np.bincount(data.ravel(), minlength=256).astype(np.int64)
    levels = np.arange(256, dtype=np.int64)
    n = int(counts.sum())
    mean = int(counts @ levels) / n
    return mean / 255, math.sqrt(int(counts @ levels**2) / n - mean**2) / 255


@needs_fashion
def test_fashion_mnist_statistics_match_info():
    mean, std = _pixel_mean_std(load_dataset("fashion-mnist", train=True).data)
    info = dataset_info("fashion-mnist")
    assert info.mean[0] == pytest.approx(mean, abs=5e-4)
    assert info.std[0] == pytest.approx(std, abs=5e-4)


def _write_fashion_mnist(folder, n_train=6, n_test=3):
    """Tiny IDX files in the Debian layout: image i is filled with the value i, label i % 10."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = bytes(i for i in range(n) for _ in range(28 * 28))
        labels = bytes(i % 10 for i in range(n))
        for stem, raw in ((f"{split}-images-idx3-ubyte", _idx_bytes(0x08, (n, 28, 28), images)),
                          (f"{split}-labels-idx1-ubyte", _idx_bytes(0x08, (n,), labels))):
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))


def test_fashion_mnist_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path / "fm"))
    assert fashion_mnist_root() == tmp_path / "fm"
    assert not fashion_mnist_available()  # missing folder
    (tmp_path / "fm").mkdir()
    assert not fashion_mnist_available()  # empty folder: the same as not installed
    _write_fashion_mnist(tmp_path / "fm")
    assert fashion_mnist_available()
    test = load_dataset("fashion-mnist", train=False)  # no root: the variable's folder
    assert len(test) == 3 and test.targets == [0, 1, 2]
    assert np.asarray(test[2][0]).tolist() == [[2] * 28] * 28
    monkeypatch.setenv(FASHION_MNIST_ENV, "")
    assert fashion_mnist_root() == DEBIAN_FASHION_MNIST
    monkeypatch.delenv(FASHION_MNIST_ENV)
    assert fashion_mnist_root() == DEBIAN_FASHION_MNIST


@pytest.mark.parametrize("state", ["missing", "empty", "one split"])
def test_default_fashion_mnist_not_installed_names_the_variable(tmp_path, monkeypatch, state):
    folder = tmp_path / "fm"
    if state != "missing":
        folder.mkdir()
    if state == "one split":
        _write_fashion_mnist(folder)
        (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv(FASHION_MNIST_ENV, str(folder))
    assert not fashion_mnist_available()
    for train in (True, False):
        with pytest.raises(FileNotFoundError, match=f"not installed in '{folder}'.*"
                                                    f"set {FASHION_MNIST_ENV}"):
            load_dataset("fashion-mnist", train=train)


def test_fashion_mnist_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST files .*FashionMNIST/raw"):
        load_dataset("fashion-mnist", tmp_path, train=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("fashion-mnist", tmp_path / "nowhere", train=True)


def test_digits_split_and_images():
    bunch = load_digits()
    train, test = load_dataset("digits", train=True), load_dataset("digits", train=False)
    counts = np.bincount(bunch.target)
    # every 5th image of each class is test: ceil(n_c / 5) per class
    assert np.bincount(test.targets).tolist() == [math.ceil(c / 5) for c in counts]
    assert np.bincount(train.targets).tolist() == [c - math.ceil(c / 5) for c in counts]
    assert len(train) + len(test) == len(bunch.target) == 1797
    image, label = test[0]
    assert image.size == (28, 28) and image.mode == "L" and label == bunch.target[0]
    # deterministic: a second load gives the same arrays
    np.testing.assert_array_equal(load_dataset("digits", train=False).data, test.data)


def test_digits_upscaling_matches_bilinear_interpolation():
    # torch's bilinear interpolation (half-pixel centres) on the 0..255-scaled 8x8 image is an
    # independent implementation of the same upscaling; allow one grey level for rounding
    bunch = load_digits()
    small = torch.from_numpy(np.rint(bunch.images[0] * 255 / 16)).float()[None, None]
    big = torch.nn.functional.interpolate(small, size=(28, 28), mode="bilinear")
    ours = load_dataset("digits", train=False).data[0].astype(np.float64)
    assert np.abs(ours - big[0, 0].numpy()).max() <= 1.0


@pytest.mark.parametrize("size", [8, 32])
def test_digits_chosen_size(size):
    ds = load_dataset("digits", train=True, digits_size=size)
    assert ds.data.shape == (1433, size, size) and ds[0][0].size == (size, size)
    if size == 8:  # no resampling: the 0..16 counts scaled to 0..255
        bunch, seen, ranks = load_digits(), {}, []
        for label in bunch.target:
            seen[label] = seen.get(label, -1) + 1
            ranks.append(seen[label])
        first = next(i for i, rank in enumerate(ranks) if rank % 5)  # first training image
        np.testing.assert_array_equal(ds.data[0], np.rint(bunch.images[first] * 255 / 16))
        assert ds.targets[0] == bunch.target[first]


def test_digits_size_errors():
    with pytest.raises(ValueError, match="digits_size must be an int >= 8"):
        load_dataset("digits", train=True, digits_size=4)
    with pytest.raises(ValueError, match="digits_size applies to the 'digits' dataset only"):
        load_dataset("fake", train=True, digits_size=32)


def test_digits_statistics_match_info():
    mean, std = _pixel_mean_std(load_dataset("digits", train=True).data)
    info = dataset_info("digits")
    assert info.mean[0] == pytest.approx(mean, abs=5e-4)
    assert info.std[0] == pytest.approx(std, abs=5e-4)


def test_fake_data():
    train, test = load_dataset("fake", train=True), load_dataset("fake", train=False)
    assert (len(train), len(test)) == (512, 256)
    image, label = train[3]
    assert image.size == (32, 32) and image.mode == "RGB" and 0 <= label < 10
    assert np.array_equal(np.asarray(train[3][0]), np.asarray(image))
    assert not np.array_equal(np.asarray(test[3][0]), np.asarray(image))


def _write_png(path, value, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (40, 30), color=value).save(path)


def test_imagefolder(tmp_path):
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            _write_png(tmp_path / split / cls / "a.png", 10 if split == "train" else 200)
    train = load_dataset("imagefolder", tmp_path, train=True)
    val = load_dataset("imagefolder", tmp_path, train=False)
    assert train.classes == ["cat", "dog"] and len(train) == len(val) == 2
    assert np.asarray(train[0][0])[0, 0, 0] == 10 and np.asarray(val[0][0])[0, 0, 0] == 200
    # a folder of class folders is used as is, whatever ``train`` says
    direct = load_dataset("imagefolder", tmp_path / "val", train=True)
    assert len(direct) == 2
    x, y = load_dataset(
        "imagefolder", tmp_path, train=False, transform=eval_transform(dataset_info("imagefolder"))
    )[1]
    assert x.shape == (3, 224, 224) and y == 1


@pytest.mark.parametrize("name", ["imagefolder", "cifar10", "cifar100", "stl10"])
def test_missing_root(name, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(name, tmp_path / "absent", train=True)
    with pytest.raises(ValueError, match="needs its data directory: --data-root"):
        load_dataset(name, None, train=True)


@pytest.mark.parametrize(
    ("name", "subdir"),
    [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("stl10", "stl10")],
)
def test_root_without_data(name, subdir, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"not found or incomplete.*{subdir}"):
        load_dataset(name, tmp_path, train=False)


def test_train_flag_must_be_bool():
    with pytest.raises(TypeError, match="train must be True or False"):
        load_dataset("digits", train="yes")


def test_eval_transform_normalises():
    info = dataset_info("cifar10")
    x = eval_transform(info)(Image.new("RGB", (32, 32), color=(51, 102, 204)))
    expected = [(v / 255 - m) / s for v, m, s in zip((51, 102, 204), info.mean, info.std,
                                                      strict=True)]
    torch.testing.assert_close(x[:, 5, 7], torch.tensor(expected), rtol=0, atol=1e-6)


def _idx_bytes(code, shape, payload):
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


def test_read_idx_int32_and_gzip(tmp_path):
    values = [-3, 7, 1 << 20, 0, 5, -1]
    raw = _idx_bytes(0x0C, (2, 3), struct.pack(">6i", *values))
    (tmp_path / "a-idx2-int").write_bytes(raw)
    with gzip.open(tmp_path / "b-idx2-int.gz", "wb") as f:
        f.write(raw)
    for name in ("a-idx2-int", "b-idx2-int.gz"):
        out = read_idx(tmp_path / name)
        assert out.shape == (2, 3) and out.tolist() == [values[:3], values[3:]]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x00\x08", "not an IDX file"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "not an IDX file"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated inside its header"),
        (_idx_bytes(0x08, (2, 2), b"\x01\x02\x03"), "has 3 data bytes"),
    ],
)
def test_read_idx_rejects_bad_files(tmp_path, raw, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=message):
        read_idx(path)


def test_read_idx_truncated_gzip(tmp_path):
    # random bytes barely compress: the cut falls inside the compressed stream
    payload = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    path = tmp_path / "cut-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(0x08, (5000,), payload))[:1000])
    with pytest.raises(ValueError, match="cannot read IDX file"):
        read_idx(path)


def test_image_array_dataset_checks_its_input():
    from adapters.data import ImageArrayDataset

    with pytest.raises(ValueError, match="images must be uint8 of shape"):
        ImageArrayDataset(np.zeros((2, 4, 4), np.float32), np.array([0, 1]))
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        ImageArrayDataset(np.zeros((2, 4, 4), np.uint8), np.array([0, 1, 1]))
    rgb = ImageArrayDataset(np.full((1, 4, 4, 3), 7, np.uint8), np.array([2]))
    image, label = rgb[0]
    assert image.mode == "RGB" and label == 2 and rgb.classes == ["0", "1", "2"]
