"""The command lines: bad input is a clear error that overwrites nothing; official weights load."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from adapters.backbones import build_backbone
from adapters.checkpoints import load_checkpoint, save_checkpoint
from adapters.continue_train import main
from adapters.data import load_dataset
from adapters.methods.swav import projection_head
from adapters.methods.vicreg import expander
from adapters.train import train
from tests.adapters.train_helpers import one_thread, tiny_config  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
TINY = ["--backbone", "small_cnn", "--dataset", "fake", "--batch-size", "8", "--max-steps", "1",
        "--head-option", "expander_dim=32", "--no-progress"]


@pytest.fixture
def existing_run(tmp_path):
    """A run directory that already holds a checkpoint; bad commands must leave it alone."""
    out = tmp_path / "run"
    save_checkpoint(out / "checkpoint.pt", {"sentinel": torch.arange(3)})
    return out


def _snapshot(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


@pytest.mark.parametrize(
    "mode, args, message",
    [
        ("pretrain", ["--dataset", "imagefolder", "--data-root", "/nonexistent/imagenet"],
         "/nonexistent/imagenet"),
        ("pretrain", ["--dataset", "mnist-typo"], "unknown dataset 'mnist-typo'"),
        ("pretrain", ["--criterion", "entropy"], "unknown criterion 'entropy'"),
        ("pretrain", ["--epochs", "-1"], "epochs must be an integer >= 0"),
        ("pretrain", ["--criterion", "e2mc", "--m", "5"],
         "needs a global batch of at least 11 (2m+1 with m=5), got 8"),
        ("pretrain", ["--head-option", "width=3"], "unknown option 'width' for method"),
        ("continue", ["--checkpoint", "CORRUPT"], "corrupt"),
        ("continue", ["--checkpoint", "/nonexistent.pth"], "does not exist"),
    ],
)
def test_bad_input_is_a_clear_error_and_overwrites_nothing(
    mode, args, message, existing_run, tmp_path, capsys
):
    if "CORRUPT" in args:
        corrupt = tmp_path / "corrupt.pth"
        corrupt.write_bytes(b"PK\x03\x04 this is not a torch checkpoint")
        args = [str(corrupt) if a == "CORRUPT" else a for a in args]
    if mode == "continue":
        args = [*args, "--method", "vicreg"]
    before = _snapshot(existing_run)
    code = main([*TINY, *args, "--out", str(existing_run), "--overwrite"], mode=mode)
    assert code == 2
    assert message in capsys.readouterr().err
    assert _snapshot(existing_run) == before


def test_help_lists_the_data_sets(capsys):
    """--dataset had no help: the names were only in the README or an error."""
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in ("cifar10", "cifar100", "digits", "fake", "fashion-mnist", "imagefolder", "stl10"):
        assert name in text.split("--dataset DATASET")[-1]  # its help entry, not the usage
    assert "ENTROPYLIB_FASHION_MNIST" in text


def test_unknown_method_is_rejected_by_the_parser(existing_run, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*TINY, "--method", "byol", "--out", str(existing_run)], mode="pretrain")
    assert exc.value.code == 2
    assert "invalid choice: 'byol'" in capsys.readouterr().err
    assert load_checkpoint(existing_run / "checkpoint.pt")["sentinel"].tolist() == [0, 1, 2]


def exclude_bias_and_norm(p):
    # stands for the training-script function the real release pickles into its LARS groups
    return p.ndim == 1


def _official_vicreg_full(arch: str, width: int) -> dict:
    backbone = build_backbone(arch)
    model = {f"module.backbone.{k}": v for k, v in backbone.state_dict().items()}
    projector = expander(backbone.feature_dim, width)
    model.update({f"module.projector.{k}": v for k, v in projector.state_dict().items()})
    # like resnet50_fullckpt.pth: the optimizer state refers to functions, which a
    # weights_only load refuses unless they are replaced by inert stand-ins
    optimizer = {"state": {}, "param_groups": [
        {"lr": 0.2, "weight_decay_filter": exclude_bias_and_norm,
         "lars_adaptation_filter": exclude_bias_and_norm, "params": [0, 1]}]}
    return {"epoch": 1000, "model": model, "optimizer": optimizer}, backbone, projector


def test_continue_from_official_vicreg_full(tmp_path, capsys):
    obj, backbone, projector = _official_vicreg_full("resnet18", 24)
    torch.save(obj, tmp_path / "fullckpt.pth")
    code = main(["--method", "vicreg", "--checkpoint", str(tmp_path / "fullckpt.pth"),
                 "--backbone", "resnet18", "--dataset", "fake", "--batch-size", "8",
                 "--max-steps", "1", "--epochs", "10", "--no-progress", "--lr", "1e-12",
                 "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    # the official weights were loaded (a 1e-12 learning rate barely moves them) ...
    for key, value in backbone.state_dict().items():
        if value.is_floating_point() and "running" not in key:
            torch.testing.assert_close(state["model"]["backbone"][key], value)
    torch.testing.assert_close(state["model"]["heads"]["projector.6.weight"],
                               projector.state_dict()["6.weight"])
    # ... with the expander width read off the checkpoint, and epochs counted on top of 1000
    assert state["meta"]["head_options"]["expander_dim"] == 24
    assert state["config"]["head_options"] == {}  # the caller's config is kept as given
    assert state["end_epoch"] == 1010 and state["base_epoch"] == 1000


def test_another_methods_checkpoint_is_rejected(tmp_path, capsys):
    backbone = build_backbone("resnet18")
    swav = {f"module.{k}": v for k, v in backbone.state_dict().items()}
    swav.update({f"module.projection_head.{k}": v
                 for k, v in projection_head(512, 32, 16).state_dict().items()})
    swav["module.prototypes.weight"] = torch.randn(10, 16)
    torch.save(swav, tmp_path / "swav.pth")
    code = main(["--method", "vicreg", "--checkpoint", str(tmp_path / "swav.pth"),
                 "--backbone", "resnet18", "--dataset", "fake", "--batch-size", "8",
                 "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "layout 'swav'" in err and "not a vicreg release" in err
    assert not (tmp_path / "run").exists()


def test_continue_from_a_project_checkpoint_counts_additional_epochs(tmp_path):
    base = train(tiny_config(tmp_path / "base", max_steps=0, epochs=3))
    # a 0-step run is still at epoch 0; continue it for 2 more epochs, stopping after 1 step
    code = main(["--method", "vicreg", "--checkpoint", str(base.checkpoint), "--dataset", "fake",
                 "--batch-size", "8", "--epochs", "2", "--max-steps", "1", "--no-progress",
                 "--out", str(tmp_path / "run")])
    assert code == 0
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (state["base_epoch"], state["end_epoch"]) == (0, 2)
    assert state["meta"]["backbone"] == "small_cnn"
    assert state["meta"]["head_options"]["expander_dim"] == 32


def test_no_arguments_continues_the_shipped_default_and_prints_the_summary(
    tmp_path, monkeypatch, capsys
):
    import adapters.continue_train as cli

    # the real default run, 2 steps instead of 120, into a temporary directory
    monkeypatch.setattr(cli, "DEFAULT_OUT", str(tmp_path / "default"))
    monkeypatch.setattr(cli, "DEFAULT_STEPS", 2)
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert "for 2 steps of 256 images" in out and "done: trained 2 steps" in out
    assert "e2mc.entropy" in out and "kNN" not in out
    state = load_checkpoint(tmp_path / "default" / "checkpoint.pt")
    assert state["step"] == 2 and state["config"]["criterion"] == "e2mc"
    assert state["config"]["checkpoint"] == str(cli.DEFAULT_CHECKPOINT)
    assert (tmp_path / "default" / "backbone.pt").is_file()


def test_default_config_trains_the_steps_it_announces():
    # digits has 1,433 training images: 5 steps of 256 per epoch, so 120 steps need 24 epochs
    import adapters.continue_train as cli

    config = cli.default_config(steps=120)
    n = len(load_dataset(config.dataset, config.data_root, train=True))
    assert config.max_steps == 120
    assert config.epochs * (n // config.batch_size) >= 120
    assert (config.epochs - 1) * (n // config.batch_size) < 120


def _official(method: str) -> tuple[dict, dict[str, dict]]:
    """A synthetic release with the exact official layout (ResNet-18 trunk, small heads)."""
    from adapters.methods.simsiam import predictor
    from adapters.methods.simsiam import projector as simsiam_projector

    trunk = build_backbone("resnet18").state_dict()
    if method == "swav":
        head = projection_head(512, 32, 16).state_dict()
        prototypes = torch.nn.functional.normalize(torch.randn(10, 16), dim=1)
        obj = {f"module.{k}": v for k, v in trunk.items()}
        obj.update({f"module.projection_head.{k}": v for k, v in head.items()})
        obj["module.prototypes.weight"] = prototypes
        return obj, {"projection_head": head, "prototypes": {"weight": prototypes}}
    proj, pred = simsiam_projector(512, 64).state_dict(), predictor(64, 16).state_dict()
    state = {f"module.encoder.{k}": v for k, v in trunk.items()}
    state.update({f"module.encoder.fc.{k}": v for k, v in proj.items()})
    state.update({f"module.predictor.{k}": v for k, v in pred.items()})
    return {"epoch": 100, "arch": "resnet18", "state_dict": state, "optimizer": {}}, {
        "projector": proj, "predictor": pred}


@pytest.mark.parametrize("method", ["swav", "simsiam"])
def test_continue_from_official_swav_and_simsiam(method, tmp_path, capsys):
    obj, heads = _official(method)
    torch.save(obj, tmp_path / "official.pth")
    extra = ["--view-option", "n_local_crops=2"] if method == "swav" else []
    code = main(["--method", method, "--checkpoint", str(tmp_path / "official.pth"),
                 "--backbone", "resnet18", "--dataset", "fake", "--batch-size", "8",
                 "--max-steps", "1", "--no-progress", "--lr", "1e-12", *extra,
                 "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]["heads"]
    for name, state in heads.items():
        for key, value in state.items():
            if value.is_floating_point() and "running" not in key:
                torch.testing.assert_close(saved[f"{name}.{key}"], value)


# ----------------------------------------------------------------------------------------
# --resume: the run's own stopping point, new stopping points, options that cannot change

#: a pretraining run of 8 steps per epoch (512 FakeData images / 64), stopped after 2 steps
STOPPED = ["--method", "vicreg", "--backbone", "small_cnn", "--dataset", "fake",
           "--batch-size", "64", "--head-option", "expander_dim=32", "--no-progress",
           "--max-steps", "2"]


def _rows(out) -> list[dict]:
    import json

    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_resume_of_a_finished_run_says_so_and_trains_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*STOPPED, "--out", str(out)], mode="pretrain") == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert main(["--resume", "--out", str(out)], mode="pretrain") == 0
    assert "already finished at step 2" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2
    assert _snapshot(out) == before


def test_resume_honours_a_new_stopping_point(tmp_path):
    out = tmp_path / "run"
    assert main([*STOPPED, "--out", str(out)], mode="pretrain") == 0
    assert main(["--resume", "--out", str(out), "--max-steps", "3"], mode="pretrain") == 0
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3
    # a second epoch: the run's one epoch (8 steps) extended to 2, capped at 10 steps
    assert main(["--resume", "--out", str(out), "--epochs", "2", "--max-steps", "10"],
                mode="pretrain") == 0
    state = load_checkpoint(out / "checkpoint.pt")
    assert (state["step"], state["epoch"], state["end_epoch"]) == (10, 1, 2)
    assert [r["step"] for r in _rows(out)] == list(range(1, 11))


def test_resume_refuses_options_that_define_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*STOPPED, "--out", str(out)], mode="pretrain") == 0
    before = _snapshot(out)
    code = main(["--resume", "--out", str(out), "--max-steps", "4", "--lr", "0.5",
                 "--criterion", "e2mc", "--batch-size", "16"], mode="pretrain")
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot change when a run is resumed" in err
    for flag in ("--lr (run: None, given: 0.5)", "--criterion (run: 'none', given: 'e2mc')",
                 "--batch-size (run: 64, given: 16)"):
        assert flag in err
    assert "--max-steps" not in err
    assert _snapshot(out) == before


def test_resume_accepts_the_same_command_again(tmp_path):
    # what a scheduler does after a preemption: the original command line plus --resume
    out = tmp_path / "run"
    assert main([*STOPPED, "--out", str(out)], mode="pretrain") == 0
    again = [a if a != "2" else "3" for a in STOPPED]  # the same, with a later stopping point
    assert main([*again, "--out", str(out), "--resume"], mode="pretrain") == 0
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3


def test_help_does_not_require_out_for_the_default_run(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "[--out OUT]" in text
    assert "except without any arguments" in text


def test_out_is_required_when_arguments_are_given(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--method", "vicreg"])
    assert exc.value.code == 2
    assert "--out is required" in capsys.readouterr().err


def test_missing_data_root_names_the_command_line_flag(tmp_path, capsys):
    code = main([*TINY, "--dataset", "cifar10", "--out", str(tmp_path / "run")],
                mode="pretrain")
    assert code == 2
    err = capsys.readouterr().err
    assert "--data-root" in err and "pass root=" not in err
