"""Odd but legitimate inputs to the evaluation functions: the right number or a clear error.

Reference values are closed forms or sums written out here, never the functions' own output
on other data.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from evaluation.diagnostics import alignment, offdiag_covariance_energy, uniformity
from evaluation.separability import embed_2d, fisher_ratio, knn_purity, silhouette

#: feature scales a model can legitimately produce in float64 (tiny, huge) and a realistic
#: small one (an embedding whose rows have norm below 1e-12)
SCALES = (1e-14, 1e-200, 1e200)


@pytest.mark.parametrize("scale", SCALES)
def test_cosine_measures_do_not_depend_on_the_scale(scale):
    # one pair of antipodal points: squared distance 4 on the sphere, log exp(-2 * 4) = -8
    assert uniformity(np.array([[1.0, 0.0], [-1.0, 0.0]]) * scale) == pytest.approx(-8.0)
    # orthogonal unit views: ‖a - b‖^2 = 2
    assert alignment([[scale, 0.0]], [[0.0, scale]]) == pytest.approx(2.0)
    # two classes on orthogonal directions: a_i = 0, b_i = 1 (cosine distance), s_i = 1
    x = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]]) * scale
    assert silhouette(x, [0, 0, 1, 1]) == pytest.approx(1.0)
    # each point's nearest other point (cosine) is in its class
    x = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]) * scale
    assert knn_purity(x, [0, 0, 1, 1], k=1, backend="brute") == 1.0


@pytest.mark.parametrize("scale", SCALES)
def test_pca_map_does_not_depend_on_the_scale(scale):
    x = np.random.default_rng(0).normal(size=(30, 4))
    np.testing.assert_allclose(embed_2d(x * scale), embed_2d(x), atol=1e-9)


@pytest.mark.parametrize("scale", (1e-200, 1e200))
def test_fisher_ratio_at_extreme_scales(scale):
    # means 1 and 11, overall mean 6: tr(S_B) = 2 * 25 + 2 * 25 = 100, tr(S_W) = 4 * 1 = 4
    assert fisher_ratio(np.array([[0.0], [2.0], [10.0], [12.0]]) * scale, [0, 0, 1, 1]) == (
        pytest.approx(25.0)
    )


def _offdiag_energy_by_hand(x: np.ndarray) -> float:
    n, d = x.shape
    centred = x - x.mean(axis=0)
    total = 0.0
    for i in range(d):
        for j in range(d):
            if i != j:
                total += (float(centred[:, i] @ centred[:, j]) / (n - 1)) ** 2
    return total / d


def test_offdiag_covariance_energy_keeps_small_terms_next_to_a_dominant_unit():
    # one unit at scale 1e9: its variance squared (1e36) used to swamp the off-diagonal
    # terms (about 1e15) when they were taken as (sum of all squares) - (diagonal squares)
    x = np.random.default_rng(0).normal(size=(100, 3)) * np.array([1e9, 1.0, 1.0])
    expected = _offdiag_energy_by_hand(x)
    assert expected > 1e13
    assert offdiag_covariance_energy(x) == pytest.approx(expected, rel=1e-9)


def test_offdiag_covariance_energy_beyond_float64_is_an_error():
    x = np.random.default_rng(0).normal(size=(50, 3)) * 1e200
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the error alone: numpy's overflow warning is not shown
        with pytest.raises(ValueError, match="exceeds float64's range"):
            offdiag_covariance_energy(x)


# ------------------------------------------------------------- SGD probe and fine-tuning


def _two_class_set(n: int = 32, *, labels=None, nan_rows=()):
    import torch
    from torch.utils.data import TensorDataset

    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long() if labels is None else torch.as_tensor(labels)
    x[list(nan_rows)] = float("nan")
    return TensorDataset(x, y)


def _probe(train=None, test=None, **settings):
    import torch

    from evaluation.linear import sgd_linear_probe

    data = _two_class_set()
    kwargs = dict(num_classes=2, epochs=2, batch_size=8, progress=False, device="cpu")
    return sgd_linear_probe(settings.pop("trunk", torch.nn.Identity()), train or data, data,
                            test or data, **{**kwargs, **settings})


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), 0.0])
def test_probe_learning_rate_must_be_finite_and_positive(lr):
    # NaN and inf used to train a NaN head scored as "class 0 everywhere", 0 not to train
    with pytest.raises(ValueError, match="learning rates must be > 0 and finite"):
        _probe(lr=lr)


def test_finetune_learning_rate_must_be_finite():
    import torch

    from evaluation.finetune import finetune

    data = _two_class_set()
    with pytest.raises(ValueError, match="learning rates must be > 0 and finite"):
        finetune(torch.nn.Linear(2, 4), data, data, data, num_classes=2, epochs=1,
                 trunk_lr=float("nan"), batch_size=8, progress=False, device="cpu")


@pytest.mark.parametrize("setting", [{"weight_decay": float("nan")}, {"epochs": 1.5}])
def test_probe_settings_are_checked_by_name(setting):
    (name,) = setting
    with pytest.raises(ValueError, match=name):
        _probe(**setting)


def test_diverged_training_is_an_error_not_a_score():
    with pytest.raises(FloatingPointError, match="diverged in epoch 1"):
        _probe(lr=1e30)


def test_nan_images_are_an_error_not_a_score():
    with pytest.raises(FloatingPointError, match="diverged"):
        _probe(train=_two_class_set(nan_rows=[3]))
    with pytest.raises(FloatingPointError, match=r"2 of 32 test_set images \(first: \[3, 7\]\)"):
        _probe(test=_two_class_set(nan_rows=[3, 7]))


@pytest.mark.parametrize("where", ["train", "test"])
def test_labels_outside_num_classes_are_an_error(where):
    # a test label of 5 with num_classes=2 used to count as a silent miss
    bad = _two_class_set(labels=[0, 1] * 15 + [5, 0])
    with pytest.raises(ValueError, match=f"{where}_set has label 5 outside"):
        _probe(**{where: bad})


def test_frozen_probe_leaves_the_trunk_in_its_mode():
    import torch

    trunk = torch.nn.Linear(2, 3)
    trunk.train()
    _probe(trunk=trunk)
    assert trunk.training


# ------------------------------------------------------------------ python -m evaluation


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--temperature", "nan"], "--temperature must be a finite number > 0, got nan"),
        (["--probe-lr", "inf"], "--probe-lr must be a finite number > 0, got inf"),
        (["--head-lr", "-0.1"], "--head-lr must be a finite number > 0"),
        (["--val-fraction", "1.5"], "--val-fraction must be in (0, 1), got 1.5"),
        (["--out", "FILE"], "is a file, not a directory"),
        (["--out", "FILE/report"], "is a file, not a directory"),
    ],
)
def test_cli_settings_are_checked_before_any_feature_is_extracted(flags, message, tmp_path,
                                                                   capsys):
    # these failed only when a protocol reached them, after the features were extracted
    # (or, for --out, as a NotADirectoryError traceback)
    from evaluation.__main__ import main

    afile = tmp_path / "afile"
    afile.write_text("")
    flags = [f.replace("FILE", str(afile)) for f in flags]
    argv = ["--checkpoint", str(tmp_path / "never-read.pt"), "--dataset", "digits",
            "--protocols", "knn,linear", "--out", str(tmp_path / "report"), *flags]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "report").exists()


# ---------------------------------------------------------------------- feature cache


@pytest.mark.parametrize("damage", ["truncated", "empty", "other arrays"])
def test_an_unreadable_cache_entry_is_extracted_again(damage, tmp_path):
    # such an entry used to stop every later run with a BadZipFile / EOFError / KeyError
    import torch
    from torch.utils.data import TensorDataset

    from evaluation.features import cached_features

    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    data = TensorDataset(x, torch.arange(10))
    entry = tmp_path / "key.npz"
    np.savez(entry, features=np.zeros((10, 3)), labels=np.zeros(10))
    if damage == "truncated":
        entry.write_bytes(entry.read_bytes()[:200])
    elif damage == "empty":
        entry.write_bytes(b"")
    else:
        np.savez(entry, other=np.ones(3))
    with pytest.warns(RuntimeWarning, match="unreadable"):
        feats, labels = cached_features(torch.nn.Identity(), data, cache_dir=tmp_path,
                                        key="key", progress=False, device="cpu")
    np.testing.assert_allclose(feats, x.numpy())
    np.testing.assert_array_equal(labels, np.arange(10))
    with np.load(entry) as stored:  # replaced by the fresh extraction
        np.testing.assert_allclose(stored["features"], x.numpy())


# ------------------------------------------------------------------------- subsets


@pytest.mark.parametrize("indices", [np.arange(40) % 2 == 0, np.arange(20) + 0.5])
def test_validation_split_refuses_non_integer_indices(indices):
    # a mask became positions 0/1 ("duplicates"), float positions were silently truncated
    from evaluation.subsets import validation_split

    with pytest.raises(TypeError, match="indices must be integer positions"):
        validation_split(np.arange(40) % 2, indices)


@pytest.mark.parametrize(
    "labels, message",
    [
        ([0.5, 1.5] * 5, "labels must be integer class indices"),  # used to become 0, 1
        ([[0, 1]] * 10, "gives 8 labels for a batch of 4 images"),  # used to be 20 labels
    ],
)
def test_extracted_labels_are_class_indices_one_per_image(labels, message):
    import torch
    from torch.utils.data import TensorDataset

    from evaluation.features import extract_features

    data = TensorDataset(torch.randn(10, 3), torch.tensor(labels))
    with pytest.raises(ValueError, match=message):
        extract_features(torch.nn.Identity(), data, batch_size=4, progress=False, device="cpu")


def test_integer_valued_float_labels_are_kept():
    import torch
    from torch.utils.data import TensorDataset

    from evaluation.features import extract_features

    data = TensorDataset(torch.randn(6, 3), torch.tensor([0.0, 2.0, 1.0] * 2))
    labels = extract_features(torch.nn.Identity(), data, progress=False, device="cpu")[1]
    assert labels.tolist() == [0, 2, 1, 0, 2, 1] and labels.dtype == np.int64
