"""ModelData: which images of each split are evaluated, and the caps it accepts."""

import numpy as np
import pytest
import torch

from adapters.backbones import build_backbone
from adapters.checkpoints import export_backbone
from adapters.data import dataset_info, load_dataset
from evaluation.model_data import DataSpec, ModelData


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    info = dataset_info("digits")
    meta = {"method": "vicreg", "backbone": "small_cnn", "dataset": "digits", "in_channels": 1,
            "image_size": info.image_size, "mean": list(info.mean), "std": list(info.std),
            "epoch": 0}
    return export_backbone(tmp_path / "m" / "backbone.pt",
                           build_backbone("small_cnn", in_channels=1), metadata=meta)


def _data(checkpoint, tmp_path, **caps):
    return ModelData(checkpoint, DataSpec("digits", **caps), cache_dir=tmp_path / "cache",
                     progress=False)


def test_capped_splits_are_seeded_draws_with_seeds_0_and_1(checkpoint, tmp_path):
    # the subsets every capped evaluation (and the paper's committed runs, which cap both
    # splits) was computed on: train drawn with seed 0, test with seed 1, without replacement
    data = _data(checkpoint, tmp_path, max_train=50, max_test=30)
    n_train = len(load_dataset("digits", None, train=True))
    n_test = len(load_dataset("digits", None, train=False))
    expected_train = np.random.default_rng(0).choice(n_train, 50, replace=False)
    expected_test = np.random.default_rng(1).choice(n_test, 30, replace=False)
    np.testing.assert_array_equal(data.train_idx, np.sort(expected_train))
    np.testing.assert_array_equal(data.test_idx, np.sort(expected_test))


def test_a_cap_of_one_image_is_accepted(checkpoint, tmp_path):
    data = _data(checkpoint, tmp_path, max_train=1, max_test=1)
    assert data.train_idx.size == 1 and data.test_idx.size == 1


@pytest.mark.parametrize("cap", ["max_train", "max_test"])
@pytest.mark.parametrize("value", [0, -3, True])
def test_a_cap_below_one_is_refused_before_any_extraction(checkpoint, tmp_path, cap, value):
    with pytest.raises(ValueError, match=f"{cap} must be a positive integer or None"):
        _data(checkpoint, tmp_path, **{cap: value})
    assert not (tmp_path / "cache").exists()


def test_an_image_folder_has_as_many_classes_as_subfolders(tmp_path):
    from PIL import Image

    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    torch.manual_seed(0)
    meta = {"method": "simsiam", "backbone": "small_cnn", "dataset": "imagefolder",
            "in_channels": 3, "image_size": 8, "mean": [0.5] * 3, "std": [0.25] * 3,
            "epoch": 0}
    ckpt = export_backbone(tmp_path / "m" / "backbone.pt",
                           build_backbone("small_cnn", in_channels=3), metadata=meta)
    data = ModelData(ckpt, DataSpec("imagefolder", str(root)), cache_dir=tmp_path / "cache",
                     progress=False)
    assert data.num_classes == 3  # not dataset_info's ImageNet default of 1000
    assert dataset_info("imagefolder").num_classes != 3
