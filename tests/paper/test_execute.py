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
