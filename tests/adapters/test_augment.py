"""SSL views: count, shapes and channels for every method on 1- and 3-channel data."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms as T

from adapters.augment import MultiView, blur_kernel_size
from adapters.data import ImageArrayDataset, dataset_info, eval_transform, ssl_views


def _image(info, size=None, seed=0):
    rng = np.random.default_rng(seed)
    side = info.image_size if size is None else size
    shape = (side, side) if info.channels == 1 else (side, side, 3)
    return Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8))


@pytest.mark.parametrize("dataset", ["fashion-mnist", "cifar10", "stl10"])
@pytest.mark.parametrize("method", ["vicreg", "simsiam"])
def test_two_views(method, dataset):
    info = dataset_info(dataset)
    views = ssl_views(method, info)(_image(info))
    assert len(views) == 2
    for view in views:
        assert view.shape == (info.channels, info.image_size, info.image_size)
        assert view.dtype == torch.float32 and torch.isfinite(view).all()


@pytest.mark.parametrize(
    ("dataset", "local"),
    # local crops are 96/224 of the global crop side, rounded: 28 -> 12, 32 -> 14, 96 -> 41
    [("fashion-mnist", 12), ("cifar10", 14), ("stl10", 41)],
)
@pytest.mark.parametrize("n_local", [0, 2, 6])
def test_swav_multicrop(dataset, local, n_local):
    info = dataset_info(dataset)
    views = ssl_views("swav", info, n_local_crops=n_local)(_image(info))
    assert len(views) == 2 + n_local
    c, s = info.channels, info.image_size
    assert [tuple(v.shape) for v in views] == [(c, s, s)] * 2 + [(c, local, local)] * n_local


def test_imagenet_sized_views_from_a_larger_image():
    info = dataset_info("imagefolder")
    image = _image(info, size=256).resize((300, 256))
    views = ssl_views("swav", info, n_local_crops=1)(image)
    assert [tuple(v.shape) for v in views] == [(3, 224, 224)] * 2 + [(3, 96, 96)]


def test_explicit_sizes():
    info = dataset_info("cifar10")
    views = ssl_views("swav", info, size=24, local_size=8, n_local_crops=3)(_image(info))
    assert [v.shape[-1] for v in views] == [24, 24, 8, 8, 8]
    assert [v.shape[-1] for v in ssl_views("vicreg", info, size=16)(_image(info))] == [16, 16]


def test_views_are_random_and_seeded():
    info = dataset_info("cifar10")
    transform, image = ssl_views("simsiam", info), _image(info)
    torch.manual_seed(0)
    first = transform(image)
    torch.manual_seed(0)
    again = transform(image)
    assert not torch.equal(first[0], first[1])
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_grayscale_data_stays_single_channel():
    info = dataset_info("digits")
    for method in ("vicreg", "simsiam", "swav"):
        assert all(v.shape[0] == 1 for v in ssl_views(method, info)(_image(info)))


def test_vicreg_recipe_is_asymmetric():
    # blur always on view 1 and solarisation only on view 2 (Bardes et al. 2022, BYOL recipe)
    first, second = ssl_views("vicreg", dataset_info("cifar10")).transforms
    kinds = [[type(t).__name__ for t in view.transforms] for view in (first, second)]
    assert "RandomSolarize" not in kinds[0] and "RandomSolarize" in kinds[1]
    blur_p = [next(t.p for t in view.transforms if isinstance(t, T.RandomApply)
                   and isinstance(t.transforms[0], T.GaussianBlur)) for view in (first, second)]
    assert blur_p == [1.0, 0.1]


def test_views_collate_into_batches():
    info = dataset_info("fashion-mnist")
    images = np.random.default_rng(1).integers(0, 256, size=(8, 28, 28), dtype=np.uint8)
    ds = ImageArrayDataset(images, np.arange(8) % 3, transform=ssl_views("swav", info,
                                                                           n_local_crops=2))
    views, labels = next(iter(DataLoader(ds, batch_size=4)))
    assert [tuple(v.shape) for v in views] == [(4, 1, 28, 28)] * 2 + [(4, 1, 12, 12)] * 2
    assert labels.tolist() == [0, 1, 2, 0]


@pytest.mark.parametrize(("size", "kernel"), [(224, 23), (96, 11), (32, 3), (28, 3), (8, 3)])
def test_blur_kernel_about_a_tenth_and_odd(size, kernel):
    assert blur_kernel_size(size) == kernel


def test_eval_transform_shape():
    info = dataset_info("stl10")
    assert eval_transform(info)(_image(info)).shape == (3, 96, 96)


def test_bad_arguments():
    info = dataset_info("cifar10")
    with pytest.raises(ValueError, match="unknown SSL method 'byol'"):
        ssl_views("byol", info)
    with pytest.raises(ValueError, match="n_local_crops must be a non-negative int"):
        ssl_views("swav", info, n_local_crops=-1)
    with pytest.raises(ValueError, match="size must be a positive int"):
        ssl_views("vicreg", info, size=0)
    with pytest.raises(ValueError, match="local_size must be a positive int"):
        ssl_views("swav", info, local_size=2.5)
    with pytest.raises(ValueError, match="at least one transform"):
        MultiView([])
