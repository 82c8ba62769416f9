"""Each method x criterion trains: finite loss, parameters move, checkpoint reloadable."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from adapters import load_encoder
from adapters.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from adapters.methods import METHODS
from adapters.optim import LARS, lars_param_groups, lr_at
from adapters.train import (
    CHECKPOINT_FORMAT,
    CRITERION_NAMES,
    NonFiniteLoss,
    build_criterion,
    min_batch,
    train,
)
from entropylib.criteria import CRITERIA
from tests.adapters.train_helpers import TINY_HEADS, one_thread, tiny_config  # noqa: F401


@pytest.fixture(scope="module")
def base_checkpoints(tmp_path_factory):
    """One untrained (0-step) checkpoint per method to continue from."""
    root = tmp_path_factory.mktemp("base")
    return {
        method: train(tiny_config(root / method, method, max_steps=0)).checkpoint
        for method in METHODS
    }


@pytest.mark.parametrize("criterion", CRITERION_NAMES)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_two_steps(method, criterion, base_checkpoints, tmp_path):
    start = load_checkpoint(base_checkpoints[method])
    config = tiny_config(tmp_path / "run", method, mode="continue",
                         checkpoint=str(base_checkpoints[method]), backbone=None,
                         criterion=criterion)
    result = train(config)
    assert result.step == 2

    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert math.isfinite(row["loss"])
        # the logged total is the base loss plus the criterion (one process)
        assert row["loss"] == pytest.approx(row["base_loss"] + row["criterion_loss"], rel=1e-5)
        if criterion == "none":
            assert row["criterion_loss"] == 0
        else:
            assert any(key.startswith(f"{criterion}.") for key in row)

    end = load_checkpoint(result.checkpoint)
    assert end["format"] == CHECKPOINT_FORMAT and end["step"] == 2
    for part in ("backbone", "heads"):
        before, after = start["model"][part], end["model"][part]
        assert before.keys() == after.keys()
        moved = [k for k in before if before[k].is_floating_point()
                 and not torch.equal(before[k], after[k])]
        assert moved, f"no {part} tensor changed"
    assert end["optimizer"]["state"], "optimizer state was not saved"

    encoder, meta = load_encoder(result.backbone)
    assert meta["method"] == method and meta["backbone"] == "small_cnn"
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, end["model"]["backbone"][key])
    from_ckpt, _ = load_encoder(result.checkpoint)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(encoder(x), from_ckpt(x))


def test_e2mc_defaults_follow_the_method_table():
    # docs/method.md: VICReg sigmoid/10/1, SwAV gaussian_cdf/10/1, SimSiam gaussian_cdf/1/25
    expected = {"vicreg": ("sigmoid", 10, 1), "swav": ("gaussian_cdf", 10, 1),
                "simsiam": ("gaussian_cdf", 1, 25)}
    for method, (transform, ent, cov) in expected.items():
        crit = build_criterion(tiny_config("unused", method, criterion="e2mc"))
        assert (crit.transform, crit.ent_coeff, crit.cov_coeff) == (transform, ent, cov)
    crit = build_criterion(tiny_config("unused", "swav", criterion="e2mc", ent_coeff=0.0))
    assert crit.ent_coeff == 0 and crit.cov_coeff == 1


def test_reference_settings_have_one_source():
    # the method classes, the training defaults, the CPU-scale study and the ImageNet recipes
    # all read entropylib.criteria.REFERENCE_SETTINGS, which holds the paper's table
    from entropylib.criteria import REFERENCE_SETTINGS
    from paper.config import E2MC_REFERENCE
    from paper.imagenet.recipes import RECIPES, train_command

    assert set(REFERENCE_SETTINGS) == set(METHODS)
    for method, settings in REFERENCE_SETTINGS.items():
        assert METHODS[method].reference_settings() == settings
        crit = build_criterion(tiny_config("unused", method, criterion="e2mc"))
        assert {k: getattr(crit, k) for k in settings} == settings
        assert dict(E2MC_REFERENCE[method]) == settings
    for recipe in RECIPES.values():
        command = " ".join(train_command(recipe, "e2mc"))
        settings = REFERENCE_SETTINGS[recipe.method]
        assert (f"--transform {settings['transform']} --ent-coeff {settings['ent_coeff']:g} "
                f"--cov-coeff {settings['cov_coeff']:g}") in command


def test_min_batch_is_2m_plus_1():
    assert min_batch("e2mc", 7) == 15
    # default window round(sqrt(N)): N=4 gives m=2 and 2m+1=5 > 4; N=5 is the first that works
    assert min_batch("e2mc", None) == 5
    assert min_batch("none", None) == 2


def test_swav_heads_and_queue(tmp_path):
    heads = METHODS["swav"](256, out_dim=16, n_prototypes=12, queue_length=16)
    heads.prototypes.weight.data.mul_(3.0)
    heads.before_step()
    norms = heads.prototypes.weight.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(12))
    result = train(tiny_config(tmp_path, "swav", max_steps=3,
                               head_options={"out_dim": 16, "n_prototypes": 12,
                                             "queue_length": 16}))
    saved = load_checkpoint(result.checkpoint)
    assert "queue" not in saved["model"]["heads"]  # per-process state, saved by rank
    [queue_state] = saved["process_states"]
    # 3 steps of 8 images, 16 slots: full, and the newest 8 are the last batch's global crops
    assert int(queue_state["queue_count"]) == 24
    assert queue_state["queue"].shape == (2, 16, 16)
    torch.testing.assert_close(queue_state["queue"].norm(dim=2), torch.ones(2, 16))
    heads.set_world_size(4)  # the reference's split of the global queue over processes
    assert heads.queue.shape == (2, 4, 16)
    with pytest.raises(ValueError, match="queue_length 16 is shorter than the number of "
                                         r"processes \(32\)"):
        heads.set_world_size(32)


def test_swav_prototypes_frozen_for_the_first_steps(tmp_path):
    heads = METHODS["swav"](256, out_dim=16, n_prototypes=12, freeze_prototypes_steps=2)
    heads.prototypes.weight.grad = torch.ones_like(heads.prototypes.weight)
    heads.after_backward(1)
    assert heads.prototypes.weight.grad is None
    heads.prototypes.weight.grad = torch.ones_like(heads.prototypes.weight)
    heads.after_backward(2)
    assert heads.prototypes.weight.grad is not None
    with pytest.raises(ValueError, match="'freeze_prototypes_steps' of method 'swav' is a size or "
                       "count: expected an integer >= 0, got -1"):
        METHODS["swav"](256, freeze_prototypes_steps=-1)

    def prototypes(name, steps, freeze):
        options = {**TINY_HEADS["swav"], "freeze_prototypes_steps": freeze}
        result = train(tiny_config(tmp_path / name, "swav", max_steps=steps,
                                   head_options=options))
        return load_checkpoint(result.checkpoint)["model"]["heads"]["prototypes.weight"]

    # frozen for 3 steps: after steps 1, 2 and 3 the prototypes are their renormalised start
    # (renormalising unit rows again moves them by an ulp, no more)
    one, three = prototypes("one", 1, freeze=3), prototypes("three", 3, freeze=3)
    torch.testing.assert_close(one, three, rtol=0, atol=1e-6)
    # frozen for 1 step: steps 2 and 3 move them
    assert (prototypes("thaw", 3, freeze=1) - three).abs().max() > 1e-4


def test_simsiam_predictor_keeps_its_lr(tmp_path):
    result = train(tiny_config(tmp_path, "simsiam", schedule="cosine", max_steps=3, epochs=1))
    groups = load_checkpoint(result.checkpoint)["optimizer"]["param_groups"]
    fixed = [g for g in groups if g["fixed_lr"]]
    scheduled = [g for g in groups if not g["fixed_lr"]]
    peak = 0.05 * 8 / 256
    assert fixed and all(g["lr"] == pytest.approx(peak) for g in fixed)
    # the cosine spans the epoch (512 images / 8 = 64 steps), max_steps only stops early
    expected = lr_at(2, base_lr=peak, total_steps=64, schedule="cosine")
    assert all(g["lr"] == pytest.approx(expected) for g in scheduled)
    assert expected < peak


def test_lars_matches_the_formula():
    torch.manual_seed(0)
    w, b = torch.randn(3, 4, requires_grad=True), torch.randn(3, requires_grad=True)
    w0, b0 = w.detach().clone(), b.detach().clone()
    module = torch.nn.Module()
    module.w, module.b = torch.nn.Parameter(w), torch.nn.Parameter(b)
    opt = LARS(lars_param_groups(module, weight_decay=0.1), lr=0.5, momentum=0.9, eta=0.02)
    gw, gb = torch.randn(3, 4), torch.randn(3)
    module.w.grad, module.b.grad = gw.clone(), gb.clone()
    opt.step()
    d = gw + 0.1 * w0
    trust = 0.02 * w0.norm() / d.norm()
    torch.testing.assert_close(module.w.detach(), w0 - 0.5 * trust * d)
    # biases: plain SGD, no weight decay, no adaptation
    torch.testing.assert_close(module.b.detach(), b0 - 0.5 * gb)


def test_lr_schedule_warmup_and_cosine():
    values = [lr_at(t, base_lr=2.0, total_steps=12, schedule="cosine", warmup_steps=2)
              for t in range(12)]
    assert values[:2] == [1.0, 2.0]
    assert values[2] == 2.0
    # halfway through the cosine part (t - 2 = 5 of 10) the rate is half of base
    assert values[7] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[2:-1], values[3:], strict=True))


class _NaNAtThirdCall(CRITERIA["e2mc"]):
    calls = 0

    def forward(self, *views):
        type(self).calls += 1
        loss, parts = super().forward(*views)
        if type(self).calls == 3:
            loss = loss * float("nan")
        return loss, parts


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setitem(CRITERIA, "e2mc", _NaNAtThirdCall)
    _NaNAtThirdCall.calls = 0
    config = tiny_config(tmp_path, criterion="e2mc", max_steps=5, save_every=1)
    with pytest.raises(NonFiniteLoss, match=r"loss is nan at step 3 .*e2mc\.entropy.*The last "
                       r"good checkpoint is .*checkpoint.pt \(step 2\)"):
        train(config)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2
    assert not (tmp_path / "backbone.pt").exists()


def test_existing_run_is_not_overwritten(tmp_path):
    save_checkpoint(tmp_path / "checkpoint.pt", {"sentinel": 1})
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(tmp_path))
    assert load_checkpoint(tmp_path / "checkpoint.pt") == {"sentinel": 1}


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_runs_and_criterion_sees_float32(amp, tmp_path, monkeypatch):
    seen = []

    class Recording(CRITERIA["e2mc"]):
        def forward(self, *views):
            seen.extend(v.dtype for v in views)
            return super().forward(*views)

    monkeypatch.setitem(CRITERIA, "e2mc", Recording)
    result = train(tiny_config(tmp_path, criterion="e2mc", amp=amp))
    assert result.step == 2 and math.isfinite(result.metrics["loss"])
    assert seen and set(seen) == {torch.float32}


def test_workers_do_not_change_the_run(tmp_path):
    # each sample is augmented from its own (seed, epoch, index) generator, so worker
    # processes produce exactly the batches the main process would
    a = train(tiny_config(tmp_path / "a", criterion="e2mc", workers=0))
    b = train(tiny_config(tmp_path / "b", criterion="e2mc", workers=2))
    sa = load_checkpoint(a.checkpoint)["model"]["backbone"]
    sb = load_checkpoint(b.checkpoint)["model"]["backbone"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tensorboard_is_written_or_a_clear_error(tmp_path):
    config = tiny_config(tmp_path / "run", tensorboard=True)
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ValueError, match="tensorboard package, which is not installed"):
            train(config)
        assert not (tmp_path / "run").exists()
    else:
        assert train(config).step == 2
        assert any((tmp_path / "run" / "tensorboard").iterdir())


#: the head whose output E2MC sees, per docs/method.md, and its width in TINY_HEADS
EMBEDDING_HEADS = {"vicreg": ("projector", "expander_dim"),
                   "swav": ("projection_head", "out_dim"),
                   "simsiam": ("projector", "dim")}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_load_encoder_projector_features(method, base_checkpoints):
    path = base_checkpoints[method]
    state = load_checkpoint(path)
    model, meta = load_encoder(path, features="projector")
    assert meta["features"] == "projector"
    backbone, _ = load_encoder(path)
    heads = METHODS[method](backbone.feature_dim, **state["config"]["head_options"])
    heads.load_state_dict(state["model"]["heads"])
    attr, width = EMBEDDING_HEADS[method]
    head = getattr(heads, attr).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = head(backbone(x))
        assert torch.equal(model(x), expected)
    assert expected.shape == (4, TINY_HEADS[method][width])


def test_load_encoder_projector_needs_heads(base_checkpoints, tmp_path):
    result = train(tiny_config(tmp_path / "run", "vicreg", mode="continue",
                               checkpoint=str(base_checkpoints["vicreg"]), backbone=None,
                               max_steps=1))
    with pytest.raises(CheckpointError, match="without heads"):
        load_encoder(result.backbone, features="projector")
    with pytest.raises(ValueError, match="features must be one of"):
        load_encoder(result.checkpoint, features="expander")


def test_pretrain_config_defaults_to_no_criterion_like_the_command_line():
    from adapters.continue_train import build_parser, config_from_args
    from adapters.train import TrainConfig

    for mode, expected in (("pretrain", "none"), ("continue", "e2mc")):
        args = build_parser(mode).parse_args(["--out", "x"])
        assert config_from_args(args, mode).criterion == expected
        assert TrainConfig(out="x", mode=mode).criterion == expected


def test_divergence_before_any_checkpoint_says_none_was_written(tmp_path, monkeypatch):
    monkeypatch.setitem(CRITERIA, "e2mc", _NaNAtThirdCall)
    _NaNAtThirdCall.calls = 0
    with pytest.raises(NonFiniteLoss) as err:
        train(tiny_config(tmp_path, criterion="e2mc", max_steps=5))
    assert "last good checkpoint" not in str(err.value)
    assert "No checkpoint of this run was written" in str(err.value)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_train_never_changes_the_callers_config(base_checkpoints, tmp_path):
    import dataclasses

    config = tiny_config(tmp_path / "run", "swav", mode="continue", backbone=None,
                         checkpoint=str(base_checkpoints["swav"]), head_options={})
    before = dataclasses.asdict(config)
    train(config)
    assert dataclasses.asdict(config) == before


def test_one_model_from_file_for_continuing_resuming_and_encoders(base_checkpoints):
    from adapters.models import load_model

    path = base_checkpoints["simsiam"]
    loaded = load_model(path)
    state = load_checkpoint(path)
    assert loaded.backbone == "small_cnn" and loaded.head_options["dim"] == 32
    for part in ("backbone", "heads"):
        got = getattr(loaded.model, part).state_dict()
        assert all(torch.equal(got[k], v) for k, v in state["model"][part].items())
    encoder, _ = load_encoder(path, features="projector")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = loaded.model.heads.projector.eval()(loaded.model.backbone.eval()(x))
        assert torch.equal(encoder(x), expected)
    with pytest.raises(ValueError, match="trained with method 'simsiam', not 'vicreg'"):
        load_model(path, method="vicreg")
