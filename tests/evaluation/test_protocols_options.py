"""The protocols' options: their defaults are the documented protocol (docs/evaluation.md), and
the numbers they report are those of the library functions they wrap, on inputs where a
protocol must adapt (fewer test points than the purity k or the map size, more test points
than the diagnostics' sample cap).

The end-to-end tests pass every option explicitly, so nothing else would notice a changed
default; stub data (an object with ``test = (features, labels)``) keeps these tests fast.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from adapters.backbones import build_backbone
from adapters.checkpoints import export_backbone
from adapters.data import dataset_info, load_dataset, ssl_views
from evaluation import protocols
from evaluation.diagnostics import embedding_diagnostics
from evaluation.model_data import DataSpec, ModelData
from evaluation.protocols import run_protocol


def test_defaults_are_the_documented_protocol():
    # docs/evaluation.md: kNN k = 20, 200 and T = 0.07 (DINO); purity over 20 neighbours;
    # alignment on 512 image pairs; the 2-D map only when asked for; sgd-linear: lr 0.3,
    # 100 epochs, batch 256; semisup: 1% and 10% labels, 20 epochs, trunk lr 0.03, head lr
    # 0.08, batch 256; one replicate with seed 0 (the first of the command line's 0..S-1).
    assert protocols.KNNOptions().k == (20, 200)
    assert protocols.KNNOptions().temperature == 0.07
    assert protocols.SeparabilityOptions().purity_k == 20
    assert protocols.SeparabilityOptions().map_points == 0
    assert protocols.DiagnosticsOptions().alignment_pairs == 512
    sgd = protocols.SGDLinearOptions()
    assert (sgd.probe_lr, sgd.probe_epochs, sgd.batch_size) == (0.3, 100, 256)
    semi = protocols.SemisupOptions()
    assert semi.fractions == (0.01, 0.1)
    assert (semi.finetune_epochs, semi.trunk_lr, semi.head_lr, semi.batch_size) == (
        20, 0.03, 0.08, 256)
    for options in (protocols.LinearOptions, protocols.SGDLinearOptions,
                    protocols.SemisupOptions, protocols.TransferOptions):
        assert options().seeds == (0,), options
        assert options().val_fraction == 0.2, options


def _blobs(n_per_class, d=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = 3 * np.eye(3, d)
    x = np.concatenate([c + rng.normal(size=(n_per_class, d)) for c in centres])
    y = np.repeat(np.arange(3), n_per_class)
    return x.astype(np.float32), y


def _brute_purity(x, y, k):
    """Share of each point's k most cosine-similar other points in its class."""
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    nearest = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return float(np.mean(y[nearest] == y[:, None]))


def test_purity_k_is_reduced_to_the_number_of_other_test_points():
    x, y = _blobs(4)  # 12 test points, fewer than the default 20 neighbours
    res = run_protocol("separability", SimpleNamespace(test=(x, y)))
    assert res.metrics["knn_purity"] == pytest.approx(_brute_purity(x, y, 11), abs=1e-12)
    assert "map" not in res.details  # the default draws no map


def test_map_is_the_pca_of_the_normalised_test_features():
    x, y = _blobs(5)
    res = run_protocol("separability", SimpleNamespace(test=(x, y)),
                       protocols.SeparabilityOptions(purity_k=3, map_points=100))
    m = res.details["map"]
    assert m["method"] == "pca"
    np.testing.assert_array_equal(np.sort(m["label"]), np.sort(y))  # every point, once
    # PCA by hand: the top two principal axes of the centred unit rows (signs are arbitrary);
    # every point is mapped, so each coordinate's values are compared as a sorted set
    z = x.astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    z -= z.mean(axis=0)
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    expected = z @ vt[:2].T
    for col, name in enumerate(("x", "y")):
        got = np.sort(np.asarray(m[name]))
        assert min(np.abs(got - np.sort(expected[:, col])).max(),
                   np.abs(got - np.sort(-expected[:, col])).max()) < 1e-6, name


def test_diagnostics_above_the_sample_cap_are_those_of_the_library_defaults():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5003, 3)) * [1.0, 2.0, 0.5]
    res = run_protocol("diagnostics", SimpleNamespace(test=(x, np.zeros(5003, dtype=int))),
                       protocols.DiagnosticsOptions(alignment_pairs=0))
    expected = embedding_diagnostics(x)  # ev.embedding_diagnostics as a user calls it
    assert res.metrics == pytest.approx(expected, rel=1e-12)
    assert "alignment" not in res.metrics


def test_alignment_uses_the_checkpoint_method_views_seeded_at_zero(tmp_path):
    torch.manual_seed(0)
    info = dataset_info("digits")
    meta = {"method": "vicreg", "backbone": "small_cnn", "dataset": "digits", "in_channels": 1,
            "image_size": info.image_size, "mean": list(info.mean), "std": list(info.std),
            "epoch": 0}
    ckpt = export_backbone(tmp_path / "m" / "backbone.pt",
                           build_backbone("small_cnn", in_channels=1), metadata=meta)
    data = ModelData(ckpt, DataSpec("digits", max_train=30, max_test=24),
                     cache_dir=tmp_path / "cache", progress=False)
    got = run_protocol("diagnostics", data, protocols.DiagnosticsOptions(alignment_pairs=10))

    # by hand: VICReg's two training views of the first 10 evaluated test images, drawn in
    # order after seeding torch with 0, through the model in eval mode
    test_set = load_dataset("digits", None, train=False,
                            transform=ssl_views("vicreg", data.info))
    torch.manual_seed(0)
    pairs = [test_set[int(i)][0] for i in data.test_idx[:10]]
    with torch.no_grad():
        f1 = data.model.eval()(torch.stack([p[0] for p in pairs])).double().numpy()
        f2 = data.model(torch.stack([p[1] for p in pairs])).double().numpy()
    f1 /= np.linalg.norm(f1, axis=1, keepdims=True)
    f2 /= np.linalg.norm(f2, axis=1, keepdims=True)
    expected = float(np.mean(np.sum((f1 - f2) ** 2, axis=1)))
    assert got.metrics["alignment"] == pytest.approx(expected, rel=1e-5)
