"""A training unit killed half-way continues from its checkpoint instead of starting over."""

import hashlib
import json

import pytest

from paper import config as cfg
from paper.execute import CHECKPOINT, pretrain
from paper.units import RunStore, Unit

pytest.importorskip("adapters.train")


@pytest.mark.slow
@pytest.mark.requires_fashion_mnist
def test_half_finished_training_unit_resumes(tmp_path):
    from adapters.train import TrainConfig, train

    model = cfg.PretrainConfig(method="simsiam", epochs=1, batch_size=32, max_steps=3)
    unit = Unit("pretrain", {"data": {"name": "fashion-mnist", "root": cfg.FASHION_MNIST_ROOT},
                             "model": cfg.canonical(model)})
    store = RunStore(tmp_path)
    folder = store.folder(unit)
    # the first attempt "dies" after one step, leaving its checkpoint behind
    train(TrainConfig(out=str(folder / "train"), mode="pretrain", method="simsiam",
                      backbone="small_cnn", batch_size=32, max_steps=1, criterion="none",
                      progress=False))
    first = (folder / CHECKPOINT).read_bytes()
    result = pretrain(unit, folder, store, progress=False)
    assert result["steps"] == 3
    # the result names its backbone, which is not committed
    backbone = (folder / "train" / "backbone.pt").read_bytes()
    assert result["backbone_digest"] == hashlib.sha256(backbone).hexdigest()[:16]
    rows = [json.loads(x) for x in (folder / "train" / "metrics.jsonl").read_text().splitlines()]
    # one step from the first attempt, two more after the resume: not a restart from step 0
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert (folder / CHECKPOINT).read_bytes() != first


@pytest.mark.slow
def test_the_paper_and_the_command_line_give_the_same_numbers(tmp_path):
    # one protocol layer (evaluation.protocols): same checkpoint, same options, same numbers
    from adapters.train import TrainConfig, train
    from evaluation.__main__ import main
    from paper.execute import evaluate

    base = Unit("pretrain", {"model": "a tiny digits model"})
    store = RunStore(tmp_path / "runs")
    train(TrainConfig(out=str(store.folder(base) / "train"), mode="pretrain", method="vicreg",
                      backbone="small_cnn", dataset="digits", batch_size=16, max_steps=1,
                      progress=False))
    data = {"name": "digits", "root": None, "eval_train_limit": 300, "eval_test_limit": None,
            "val_fraction": 0.25, "transfer": "digits", "transfer_limit": 300}
    units = {
        "linear": ((("fractions", (50, 100)), ("Cs", (0.1, 1.0))), 0),
        "knn": ((("k", 20), ("temperature", 0.05)), None),
        "semisup": ((("fractions", (50,)), ("epochs", 1)), 0),
        "transfer": ((("fraction", 100), ("Cs", (0.1, 1.0))), 0),
        "diagnostics": ((("map_points", 50),), None),
    }
    paper = {}
    for name, (options, seed) in units.items():
        unit = Unit("evaluate", {"data": data, "protocol": name, "options": options,
                                 "seed": seed}, deps=(base,))
        paper.update(evaluate(unit, store.folder(unit), store, progress=False)["metrics"])
    out = tmp_path / "report"
    assert main(["--checkpoint", str(store.folder(base) / CHECKPOINT), "--dataset", "digits",
                 "--max-train", "300", "--val-fraction", "0.25", "--seeds", "1",
                 "--fractions", "50,100", "--cs", "0.1,1", "--k", "20", "--temperature", "0.05",
                 "--finetune-epochs", "1", "--transfer-dataset", "digits",
                 "--protocols", "knn,linear,semisup,transfer,diagnostics,separability",
                 "--out", str(out), "--no-progress"]) == 0
    saved = json.loads((out / "results.json").read_text())
    cli = {k: v["values"][0] if isinstance(v, dict) else v
           for k, v in next(iter(saved["results"].values())).items()}
    accuracies = set(saved["accuracies"])
    compared = ["linear_50", "linear_100", "knn_20", "semisup_50", "transfer_digits",
                "rankme", "entropy_mean", "offdiag_cov_energy", "fisher_ratio", "silhouette",
                "knn_purity"]
    for key in compared:
        expected = round(100 * cli[key], 4) if key in accuracies else cli[key]
        assert paper[key] == expected, key
