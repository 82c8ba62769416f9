"""`python -m evaluation` end to end on tiny encoders saved through adapters' own export."""

import json
import os

import numpy as np
import pytest
import torch

from adapters.backbones import build_backbone
from adapters.checkpoints import export_backbone
from adapters.data import dataset_info
from evaluation.__main__ import _Run, build_parser, main, parse_protocols


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
            "--transfer-dataset", "fashion-mnist", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| metric | a/backbone | b/backbone |" in printed
    result = json.loads((out / "results.json").read_text())
    metrics = result["results"]["a/backbone"]
    for name in ("knn k=5 top1", "knn k=20 top5", "linear 50% top1",
                 "semisup 50% top1", "transfer fashion-mnist linear 100% top1", "rankme",
                 "uniformity", "alignment", "offdiag_cov_energy", "entropy_mean",
                 "fisher_ratio", "silhouette_cosine", "knn_purity k=20"):
        assert name in metrics, name
    lin = metrics["linear 50% top1"]
    assert len(lin["values"]) == 2 and 0 <= lin["mean"] <= 1
    assert result["models"]["b/backbone"]["epoch"] == 1
    assert "| linear 50% top1 (%) |" in (out / "results.md").read_text()
    for png in ("spectrum.png", "entropy_profile.png", "embedding_2d.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    cached = sorted((out / "feature_cache").iterdir())
    assert len(cached) == 8  # 2 models x (train, test) x (digits, fashion-mnist)


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
    assert len(res["linear 30% top1"]["values"]) == 2
    args = build_parser().parse_args(argv)
    args.subset_lists = {0.3: str(tmp_path / "list.txt")}
    args.cache_dir = str(out / "feature_cache")
    run = _Run(args, str(ckpt))
    for seed in (0, 1):
        chosen = run.train_idx[run.labelled(0.3, seed)]
        names = [os.path.basename(run._dataset(True, None).samples[i][0]) for i in chosen]
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
        args = build_parser().parse_args(
            ["--checkpoint", str(run.checkpoint), "--features", features, *common])
        args.cache_dir = str(tmp_path / "cache")  # main() fills this in
        widths[features] = _Run(args, str(run.checkpoint)).xtr.shape[1]
    assert widths == {"backbone": build_backbone("small_cnn", in_channels=1).feature_dim,
                      "projector": 24}
    # a backbone export has no heads: a clear error, not backbone features under another name
    assert main(["--checkpoint", str(run.backbone), "--features", "projector",
                 "--protocols", "knn", "--no-progress", *common]) != 0
    assert "without heads" in capsys.readouterr().err
