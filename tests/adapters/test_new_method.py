"""Adding a method touches at most three files: its class (here, this file), its entry in
``adapters.methods.METHODS`` and its E2MC reference settings in
``entropylib.criteria.REFERENCE_SETTINGS``. The toy method below (a linear projector and an
invariance-only loss, with an "official release" format of its own) then trains, checkpoints,
resumes bit for bit, continues from its release and loads as an encoder through the same code
as VICReg, SwAV and SimSiam, with nothing else changed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adapters import load_encoder
from adapters.augment import MultiView, augmented_view
from adapters.backbones import build_backbone
from adapters.checkpoints import load_checkpoint
from adapters.continue_train import main
from adapters.methods import METHODS, MethodAdapter, MethodDefaults, MethodOutput, OfficialLayout
from adapters.methods.base import load_exact
from adapters.train import TrainConfig, build_criterion, train
from entropylib.criteria import REFERENCE_SETTINGS
from tests.adapters.train_helpers import one_thread, state_tensors  # noqa: F401


class Toy(MethodAdapter):
    """Two views, a linear projector, and the mean squared distance between the views."""

    name = "toy"
    defaults = MethodDefaults(optimizer="sgd", base_lr=0.05, weight_decay=1e-4,
                              head_options={"dim": 16})
    #: {"weights": {"net.<backbone key>": ..., "proj.weight": ..., "proj.bias": ...}}
    official_layouts = {"toy_release": OfficialLayout(
        "net.", {"projector": ("proj.", ((None, "linear"),))}, wrapper=("weights",))}
    embedding_head = "projector"

    def __init__(self, feature_dim: int, **options) -> None:
        super().__init__()
        self.projector = nn.Linear(feature_dim, int(self.head_options(options)["dim"]))

    @classmethod
    def views(cls, info, *, size=None):
        view = augmented_view(info, size or info.image_size, (0.5, 1.0), (0.4, 0.4, 0.4, 0.1),
                              blur_p=0.0, blur_size=info.image_size)
        return MultiView([view, view])

    @classmethod
    def options_from_official(cls, heads):
        return {"dim": heads["projector"]["weight"].shape[0]}

    def load_official_heads(self, heads):
        load_exact(self.projector, heads["projector"], "toy projector")

    def forward(self, backbone, views):
        z1, z2 = (self.projector(backbone(v)) for v in views)
        loss = F.mse_loss(z1, z2)
        return MethodOutput(loss, {"invariance": loss.detach()}, [z1, z2])


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(METHODS, "toy", Toy)
    monkeypatch.setitem(REFERENCE_SETTINGS, "toy",
                        {"transform": "sigmoid", "ent_coeff": 1.0, "cov_coeff": 1.0})


def _run(out, *extra):
    return main(["--method", "toy", "--backbone", "small_cnn", "--dataset", "fake",
                 "--batch-size", "8", "--criterion", "e2mc", "--no-progress",
                 "--out", str(out), *extra], mode="pretrain")


def test_a_new_method_trains_resumes_and_loads(toy, tmp_path):
    assert _run(tmp_path / "straight", "--max-steps", "4") == 0
    assert _run(tmp_path / "resumed", "--max-steps", "2") == 0
    assert main(["--resume", "--out", str(tmp_path / "resumed"), "--max-steps", "4"],
                mode="pretrain") == 0
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    ta, tb = state_tensors(a), state_tensors(b)
    assert a["step"] == b["step"] == 4
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    encoder, meta = load_encoder(tmp_path / "straight" / "checkpoint.pt", features="projector")
    assert meta["method"] == "toy"
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, 16)


def test_a_new_method_uses_its_reference_settings(toy, tmp_path):
    config = TrainConfig(out=str(tmp_path), mode="pretrain", method="toy",
                         backbone="small_cnn", dataset="fake", batch_size=8, max_steps=2,
                         criterion="e2mc", progress=False)
    crit = build_criterion(config)
    assert (crit.transform, crit.ent_coeff, crit.cov_coeff) == ("sigmoid", 1.0, 1.0)
    assert train(config).step == 2


def test_a_new_method_continues_from_its_own_release_format(toy, tmp_path):
    backbone, projector = build_backbone("small_cnn"), nn.Linear(256, 12)
    weights = {f"net.{k}": v for k, v in backbone.state_dict().items()}
    weights.update({f"proj.{k}": v for k, v in projector.state_dict().items()})
    torch.save({"weights": weights}, tmp_path / "toy.pth")
    code = main(["--method", "toy", "--checkpoint", str(tmp_path / "toy.pth"),
                 "--layout", "toy_release", "--backbone", "small_cnn", "--dataset", "fake",
                 "--batch-size", "8", "--max-steps", "1", "--lr", "1e-12", "--no-progress",
                 "--out", str(tmp_path / "run")])
    assert code == 0
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["meta"]["head_options"]["dim"] == 12  # read off the release
    torch.testing.assert_close(state["model"]["heads"]["projector.weight"], projector.weight)
