"""SSL views: count, shapes and channels for every method on 1- and 3-channel data."""

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from torch.utils.data import DataLoader

from adapters.augment import MultiView, RandomGaussianBlur
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
    blur_p = [next(t.p for t in view.transforms if isinstance(t, RandomGaussianBlur))
              for view in (first, second)]
    assert blur_p == [1.0, 0.1]


def test_views_collate_into_batches():
    info = dataset_info("fashion-mnist")
    images = np.random.default_rng(1).integers(0, 256, size=(8, 28, 28), dtype=np.uint8)
    ds = ImageArrayDataset(images, np.arange(8) % 3, transform=ssl_views("swav", info,
                                                                           n_local_crops=2))
    views, labels = next(iter(DataLoader(ds, batch_size=4)))
    assert [tuple(v.shape) for v in views] == [(4, 1, 28, 28)] * 2 + [(4, 1, 12, 12)] * 2
    assert labels.tolist() == [0, 1, 2, 0]


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_blur_is_gaussian(sigma):
    # scipy's exact Gaussian filter is the reference; PIL approximates it by box blurs, and
    # the unblurred image is far further away (a mean difference of 25-60 grey levels)
    image = np.random.default_rng(2).integers(0, 256, size=(40, 40), dtype=np.uint8)
    ours = np.asarray(RandomGaussianBlur((sigma, sigma), p=1.0)(Image.fromarray(image)))
    reference = gaussian_filter(image.astype(np.float64), sigma, mode="nearest")
    diff = np.abs(ours - reference)[5:-5, 5:-5]
    assert diff.mean() < 1.5 and diff.max() < 5


def test_blur_probability_and_range():
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (16, 16), dtype=np.uint8))
    assert RandomGaussianBlur((1.0, 2.0), p=0.0)(image) is image
    torch.manual_seed(0)
    blurred = sum(RandomGaussianBlur((1.0, 2.0), p=0.3)(image) is not image for _ in range(400))
    assert 80 <= blurred <= 160  # Binomial(400, 0.3): mean 120, sd 9.2
    with pytest.raises(ValueError, match="sigma must be a range"):
        RandomGaussianBlur((2.0, 1.0), p=0.5)
    with pytest.raises(ValueError, match="p must be a probability"):
        RandomGaussianBlur((1.0, 2.0), p=1.5)


@pytest.mark.parametrize(("dataset", "size"), [("fashion-mnist", 28), ("stl10", 96)])
def test_blur_range_scales_with_the_image(dataset, size):
    # the reference's sigma range [0.1, 2] px at 224 px, scaled to the data's crop size
    view = ssl_views("simsiam", dataset_info(dataset)).transforms[0]
    (blur,) = [t for t in view.transforms if isinstance(t, RandomGaussianBlur)]
    assert blur.sigma == pytest.approx((0.1 * size / 224, 2.0 * size / 224))
    assert blur.p == 0.5


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

