"""`python -m evaluation` end to end on tiny encoders saved through adapters' own export."""

import json
import os

import numpy as np
import pytest
import torch

from adapters.backbones import build_backbone
from adapters.checkpoints import export_backbone
from adapters.data import DEBIAN_FASHION_MNIST, dataset_info
from evaluation.__main__ import main, parse_protocols
from evaluation.model_data import DataSpec, ModelData


def _transfer_set():
    """Fashion-MNIST when installed (a 1-channel transfer set for a digits model), else digits."""
    return "fashion-mnist" if os.path.isdir(DEBIAN_FASHION_MNIST) else "digits"


def _export(path, seed):
    torch.manual_seed(seed)
    info = dataset_info("digits")
    meta = {"method": "vicreg", "backbone": "small_cnn", "dataset": "digits", "in_channels": 1,
            "image_size": info.image_size, "mean": list(info.mean), "std": list(info.std),
            "epoch": seed}
    return export_backbone(path, build_backbone("small_cnn", in_channels=1), metadata=meta)


@pytest.mark.requires_fashion_mnist  # the transfer set
def test_cli_compares_two_checkpoints(tmp_path, capsys):
    a = _export(tmp_path / "a" / "backbone.pt", 0)
    b = _export(tmp_path / "b" / "backbone.pt", 1)
    out = tmp_path / "report"
    argv = ["--checkpoint", str(a), "--checkpoint", str(b), "--dataset", "digits",
            "--protocols", "knn,linear,semisup,transfer,diagnostics,separability",
            "--fractions", "50", "--seeds", "2", "--cs", "0.1,1",
            "--max-train", "200", "--max-test", "80",
            "--k", "5,20", "--finetune-epochs", "1", "--batch-size", "64",
            "--transfer-dataset", _transfer_set(), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| metric | a/backbone | b/backbone |" in printed
    result = json.loads((out / "results.json").read_text())
    metrics = result["results"]["a/backbone"]
    for name in ("knn_5", "knn_20_top5", "linear_50", "semisup_50",
                 f"transfer_{_transfer_set()}", "rankme", "uniformity", "alignment",
                 "offdiag_cov_energy", "entropy_mean", "fisher_ratio", "silhouette",
                 "knn_purity"):
        assert name in metrics, name
    lin = metrics["linear_50"]
    assert len(lin["values"]) == 2 and 0 <= lin["mean"] <= 1
    assert result["models"]["b/backbone"]["epoch"] == 1
    assert "| linear_50 (%) |" in (out / "results.md").read_text()
    assert "| rankme |" in (out / "results.md").read_text()  # not an accuracy: no %
    for png in ("spectrum.png", "entropy_profile.png", "embedding_2d.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    cached = sorted((out / "feature_cache").iterdir())
    # 2 models x (train, test) x (digits, transfer set; one file each when they coincide)
    assert len(cached) == (8 if _transfer_set() != "digits" else 4)


def test_unknown_protocol_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--checkpoint", "x.pt", "--dataset", "digits", "--protocols", "knn,lasso",
              "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "unknown protocol(s) ['lasso']" in capsys.readouterr().err
    with pytest.raises(ValueError, match="choose from"):
        parse_protocols("")


def test_subset_list_selects_exactly_the_listed_images(tmp_path):
    from PIL import Image

    from evaluation.subsets import write_subset_file

    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for c in range(2):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"img{c}_{i}.png")
    listed = [f"img{c}_{i}.png" for c in range(2) for i in (1, 4, 7, 9)]
    write_subset_file(tmp_path / "list.txt", listed)
    torch.manual_seed(0)
    meta = {"method": "simsiam", "backbone": "small_cnn", "dataset": "imagefolder",
            "in_channels": 3, "image_size": 224, "mean": [0.5] * 3, "std": [0.25] * 3,
            "epoch": 0}
    ckpt = export_backbone(tmp_path / "m" / "backbone.pt",
                           build_backbone("small_cnn", in_channels=3), metadata=meta)
    out = tmp_path / "report"
    argv = ["--checkpoint", str(ckpt), "--dataset", "imagefolder", "--data-root", str(root),
            "--protocols", "linear", "--fractions", "30", "--seeds", "2", "--cs", "1",
            "--subset-list", f"30={tmp_path / 'list.txt'}", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())["results"]["m/backbone"]
    assert len(res["linear_30"]["values"]) == 2
    data = ModelData(ckpt, DataSpec("imagefolder", str(root)), cache_dir=out / "feature_cache",
                     subset_lists={0.3: tmp_path / "list.txt"}, progress=False)
    for seed in (0, 1):
        chosen = data.train_idx[data.labelled(0.3, seed)]
        names = [os.path.basename(data.dataset(data.data, True).samples[i][0]) for i in chosen]
        assert sorted(names) == sorted(listed)
    with pytest.raises(SystemExit):
        main(argv[:-4] + ["--subset-list", "30", "--out", str(out)])


def test_projector_features_come_from_the_run_checkpoint(tmp_path, capsys):
    from adapters.train import TrainConfig, train

    run = train(TrainConfig(out=str(tmp_path / "run"), mode="pretrain", method="vicreg",
                            backbone="small_cnn", dataset="digits", batch_size=16, max_steps=1,
                            head_options={"expander_dim": 24}, progress=False))
    common = ["--dataset", "digits", "--max-train", "60", "--max-test", "20",
              "--out", str(tmp_path / "report")]
    widths = {}
    for features in ("backbone", "projector"):
        data = ModelData(run.checkpoint, DataSpec("digits", max_train=60, max_test=20),
                         features=features, cache_dir=tmp_path / "cache", progress=False)
        widths[features] = data.train[0].shape[1]
    assert widths == {"backbone": build_backbone("small_cnn", in_channels=1).feature_dim,
                      "projector": 24}
    # a backbone export has no heads: a clear error, not backbone features under another name
    assert main(["--checkpoint", str(run.backbone), "--features", "projector",
                 "--protocols", "knn", "--no-progress", *common]) != 0
    assert "without heads" in capsys.readouterr().err


def _tiny_argv(ckpt, out, *extra):
    return ["--checkpoint", str(ckpt), "--dataset", "digits", "--max-train", "120",
            "--max-test", "40", "--k", "5", "--seeds", "1", "--fractions", "100",
            "--cs", "1", "--out", str(out), "--no-progress", *extra]


def test_inputs_are_checked_before_any_work(tmp_path, capsys):
    # an incompatible transfer set failed only after the kNN and linear work, and lost it all
    ckpt = _export(tmp_path / "m" / "backbone.pt", 0)
    out = tmp_path / "report"
    argv = _tiny_argv(ckpt, out, "--protocols", "knn,linear,transfer",
                      "--transfer-dataset", "fake")  # 3-channel images for a 1-channel model
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "takes 1-channel images but 'fake' has 3" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()  # no feature extracted, no empty --out folder left behind
    for path, bad, message in (
        (tmp_path / "none.pt", [], "does not exist"),
        (ckpt, ["--data-root", str(tmp_path / "nowhere"), "--dataset", "fashion-mnist"], "nowhere"),
    ):
        assert main(_tiny_argv(path, out, "--protocols", "knn", *bad)) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()


def test_a_label_fraction_too_small_to_validate_is_checked_before_any_work(tmp_path, capsys):
    """1% of digits' ~143 training images per class is 1 image, which the probe's validation
    split refuses: that stopped the run (status 1) after the kNN work, with the default
    --fractions 1,10,100. The class counts are known before any feature is extracted."""
    ckpt = _export(tmp_path / "m" / "backbone.pt", 0)
    out = tmp_path / "report"
    argv = [a if a != "100" else "1,100" for a in _tiny_argv(ckpt, out, "--protocols",
                                                             "knn,linear")]
    argv[argv.index("--max-train") + 1] = "1433"  # the whole split: 143 to 160 per class
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "linear at --fractions 1 on digits: class" in err and "at least 2 per class" in err
    assert not out.exists()


def test_missing_subset_list_is_a_one_line_error(tmp_path, capsys):
    ckpt = _export(tmp_path / "m" / "backbone.pt", 0)
    out = tmp_path / "report"
    with pytest.raises(SystemExit) as exc:
        main(_tiny_argv(ckpt, out, "--subset-list", f"10={tmp_path / 'missing.txt'}"))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "missing.txt' does not exist" in err and "Traceback" not in err
    assert not out.exists()


def test_each_protocol_is_saved_as_it_finishes(tmp_path, capsys, monkeypatch):
    from evaluation import protocols

    def broken(data, options):
        raise ValueError("late failure")

    monkeypatch.setitem(protocols.PROTOCOLS, "separability",
                        protocols.Protocol("separability", broken,
                                           protocols.SeparabilityOptions))
    ckpt = _export(tmp_path / "m" / "backbone.pt", 0)
    out = tmp_path / "report"
    assert main(_tiny_argv(ckpt, out, "--protocols", "knn,linear,separability")) == 1
    assert "late failure" in capsys.readouterr().err
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["results"]["m/backbone"]) == {"knn_5", "knn_5_top5", "linear_100",
                                                   "linear_100_top5"}
    assert saved["pending"] == ["m/backbone separability"]
    assert "Partial report" in (out / "results.md").read_text()


def test_an_existing_report_is_replaced_only_with_overwrite(tmp_path, capsys):
    ckpt = _export(tmp_path / "m" / "backbone.pt", 0)
    out = tmp_path / "report"
    assert main(_tiny_argv(ckpt, out, "--protocols", "knn,separability")) == 0
    assert "plots embedding_2d.png" in capsys.readouterr().out
    first = (out / "results.json").read_text()
    with pytest.raises(SystemExit) as exc:
        main(_tiny_argv(ckpt, out, "--protocols", "knn"))
    assert exc.value.code == 2
    assert "already holds a report" in capsys.readouterr().err
    assert (out / "results.json").read_text() == first and (out / "embedding_2d.png").exists()
    assert main(_tiny_argv(ckpt, out, "--protocols", "knn", "--overwrite")) == 0
    printed = capsys.readouterr().out
    assert "plots" not in printed  # no plot was written, so none is announced
    assert not (out / "embedding_2d.png").exists()  # no stale plot beside the new results
    assert "knn_5" in json.loads((out / "results.json").read_text())["results"]["m/backbone"]


def test_workers_and_amp_reach_extraction_and_every_loader(tmp_path, monkeypatch):
    from evaluation import features

    extracted, loaders = [], []
    extract, loader = features.extract_features, features.data_loader

    def spy_extract(model, dataset, **options):
        extracted.append((options["amp"], options["num_workers"]))
        return extract(model, dataset, **options)

    def spy_loader(dataset, **options):
        loaders.append(options["num_workers"])
        return loader(dataset, **options)

    from evaluation import training

    trained = []
    train = training.train_classifier

    def spy_train(*args, **options):
        trained.append(options["amp"])
        return train(*args, **options)

    monkeypatch.setattr(features, "extract_features", spy_extract)
    monkeypatch.setattr(features, "data_loader", spy_loader)
    monkeypatch.setattr(training, "train_classifier", spy_train)
    ckpt = _export(tmp_path / "m" / "backbone.pt", 0)
    out = tmp_path / "report"
    assert main(_tiny_argv(ckpt, out, "--protocols", "knn,sgd-linear", "--probe-epochs", "1",
                           "--batch-size", "64", "--workers", "1", "--amp", "bf16")) == 0
    assert extracted == [("bf16", 1), ("bf16", 1)]  # train and test features
    # 2 extraction loaders, then the probe's train, validation and test loaders
    assert loaders == [1] * 5
    assert trained == ["bf16"]  # the probe's forward passes too
    # bfloat16 features are cached apart from float32 ones, never reused for them
    key = dict(checkpoint="c", dataset="digits", split="train", transform=None)
    assert features.feature_cache_key(**key, amp="bf16") != features.feature_cache_key(**key)
    with pytest.raises(SystemExit):
        main(_tiny_argv(ckpt, tmp_path / "r2", "--workers", "-1"))


def test_threads_limits_the_blas_pools_of_the_protocols(tmp_path, monkeypatch):
    from threadpoolctl import threadpool_info

    from evaluation import protocols

    seen = []

    def spy(data, options):
        seen.append({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
        return protocols.ProtocolResult({"knn_5": 0.5}, frozenset({"knn_5"}))

    monkeypatch.setitem(protocols.PROTOCOLS, "knn",
                        protocols.Protocol("knn", spy, protocols.KNNOptions))
    unlimited = {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}
    ckpt = _export(tmp_path / "m" / "backbone.pt", 0)
    assert main(_tiny_argv(ckpt, tmp_path / "a", "--protocols", "knn", "--threads", "1")) == 0
    assert main(_tiny_argv(ckpt, tmp_path / "b", "--protocols", "knn")) == 0
    assert seen == [{1}, unlimited] and unlimited  # default: the libraries' own thread count
    assert {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"} == unlimited
    with pytest.raises(SystemExit):
        main(_tiny_argv(ckpt, tmp_path / "c", "--threads", "0"))
