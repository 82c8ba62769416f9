"""Checkpoints: synthetic files with exactly the official layouts (docs/checkpoints.md) load with
only the documented extra keys; wrong prefixes, other methods' files, corrupt files and failed
writes give clear errors and never a silently random or half-written model."""

import itertools
import os
import pickle
import stat

import pytest
import torch
import torchvision
from torch import nn

from adapters import checkpoints
from adapters.backbones import build_backbone
from adapters.checkpoints import (
    CheckpointError,
    UnloadedGlobal,
    export_backbone,
    load_checkpoint,
    load_export_metadata,
    save_checkpoint,
)
from adapters.methods import METHODS
from adapters.releases import detect_layout, load_official, official_layouts

# The official heads, built here from the release descriptions (Linear(in, out[, bias]),
# BatchNorm1d, ReLU) with small widths; the key layout does not depend on the widths.
HIDDEN, OUT, PROTOTYPES, PRED = 32, 16, 30, 8


def vicreg_projector(dim):
    return nn.Sequential(
        nn.Linear(dim, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(),
        nn.Linear(HIDDEN, OUT, bias=False),
    )


def swav_projection_head(dim):
    return nn.Sequential(nn.Linear(dim, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, OUT))


def simsiam_projector(dim):
    return nn.Sequential(
        nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(),
        nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(),
        nn.Linear(dim, OUT), nn.BatchNorm1d(OUT, affine=False),
    )


def simsiam_predictor():
    return nn.Sequential(nn.Linear(OUT, PRED, bias=False), nn.BatchNorm1d(PRED), nn.ReLU(),
                         nn.Linear(PRED, OUT))


def _prefixed(prefix, state):
    return {prefix + k: v for k, v in state.items()}


def official_objects(tv):
    """The five release layouts, built from a torchvision ResNet (docs/checkpoints.md)."""
    arch = "resnet50" if tv.fc.in_features == 2048 else "resnet18"
    dim = tv.fc.in_features
    full = tv.state_dict()
    backbone = {k: v for k, v in full.items() if not k.startswith("fc.")}
    heads = {
        "vicreg": vicreg_projector(dim).state_dict(),
        "swav": swav_projection_head(dim).state_dict(),
        "prototypes": {"weight": torch.randn(PROTOTYPES, OUT)},
        "simsiam_fc": simsiam_projector(dim).state_dict(),
        "predictor": simsiam_predictor().state_dict(),
    }
    objects = {
        "torchvision": full,
        "vicreg_backbone": backbone,
        "vicreg_full": {
            "epoch": 1000,
            "model": {**_prefixed("module.backbone.", backbone),
                      **_prefixed("module.projector.", heads["vicreg"])},
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.2, "params": [0, 1]}]},
        },
        "swav": {**_prefixed("module.", backbone),
                 **_prefixed("module.projection_head.", heads["swav"]),
                 "module.prototypes.weight": heads["prototypes"]["weight"]},
        "simsiam": {
            "epoch": 100,
            "arch": arch,
            "state_dict": {**_prefixed("module.encoder.", backbone),
                           **_prefixed("module.encoder.fc.", heads["simsiam_fc"]),
                           **_prefixed("module.predictor.", heads["predictor"])},
            "optimizer": {"state": {}, "param_groups": []},
        },
    }
    return objects, backbone, heads


@pytest.fixture(scope="module")
def tv_resnet50():
    torch.manual_seed(0)
    return torchvision.models.resnet50()


@pytest.fixture(scope="module")
def resnet50_official(tv_resnet50):
    return official_objects(tv_resnet50)


@pytest.fixture(scope="module")
def resnet18_official():
    torch.manual_seed(1)
    return official_objects(torchvision.models.resnet18())


def _assert_state_equal(got, expected):
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def _expected_heads(layout, heads):
    return {
        "vicreg_backbone": {},
        "torchvision": None,
        "vicreg_full": {"projector": heads["vicreg"]},
        "swav": {"projection_head": heads["swav"], "prototypes": heads["prototypes"]},
        "simsiam": {"projector": heads["simsiam_fc"], "predictor": heads["predictor"]},
    }[layout]


@pytest.mark.parametrize("layout", tuple(official_layouts()))
def test_resnet50_official_layouts_load_exactly(layout, resnet50_official, tv_resnet50):
    objects, backbone, heads = resnet50_official
    weights = load_official(objects[layout], layout)
    assert weights.layout == layout
    _assert_state_equal(weights.backbone, backbone)
    # into torchvision's resnet50: only the classifier is missing, nothing unexpected
    result = tv_resnet50.load_state_dict(weights.backbone, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"]
    assert result.unexpected_keys == []
    expected = _expected_heads(layout, heads)
    if expected is None:
        expected = {"fc": {k[3:]: v for k, v in objects["torchvision"].items()
                           if k.startswith("fc.")}}
    assert sorted(weights.heads) == sorted(expected)
    for name in expected:
        _assert_state_equal(weights.heads[name], expected[name])


def test_heads_load_strictly_into_the_official_modules(resnet18_official):
    objects, _, _ = resnet18_official
    vicreg = load_official(objects["vicreg_full"], "vicreg_full", arch="resnet18")
    vicreg_projector(512).load_state_dict(vicreg.heads["projector"])
    swav = load_official(objects["swav"], "swav", arch="resnet18")
    swav_projection_head(512).load_state_dict(swav.heads["projection_head"])
    nn.Linear(OUT, PROTOTYPES, bias=False).load_state_dict(swav.heads["prototypes"])
    simsiam = load_official(objects["simsiam"], "simsiam", arch="resnet18")
    simsiam_projector(512).load_state_dict(simsiam.heads["projector"])
    simsiam_predictor().load_state_dict(simsiam.heads["predictor"])
    build_backbone("resnet18").load_state_dict(simsiam.backbone)  # strict
    assert (vicreg.epoch, simsiam.epoch, swav.epoch) == (1000, 100, None)


def test_head_keys_match_the_reference_modules():
    # the layouts the method classes declare, against the modules built from the releases
    def head_keys(method, layout, head):
        return METHODS[method].official_layouts[layout].head_keys(head)

    assert head_keys("vicreg", "vicreg_full", "projector") == list(
        vicreg_projector(8).state_dict())
    assert head_keys("swav", "swav", "projection_head") == list(
        swav_projection_head(8).state_dict())
    assert head_keys("swav", "swav", "prototypes") == ["weight"]
    assert head_keys("simsiam", "simsiam", "projector") == list(
        simsiam_projector(8).state_dict())
    assert head_keys("simsiam", "simsiam", "predictor") == list(
        simsiam_predictor().state_dict())


def test_files_on_disk_and_auto_layout(tmp_path, resnet50_official):
    objects, backbone, _ = resnet50_official
    for layout in ("vicreg_full", "swav"):
        path = tmp_path / f"{layout}.pth"
        torch.save(objects[layout], path)
        assert detect_layout(path) == layout
        _assert_state_equal(load_official(path, "auto").backbone, backbone)


def exclude_bias_and_norm(p):
    # stands for the training-script function VICReg's LARS keeps in its parameter groups
    return p.ndim == 1


def test_vicreg_full_with_function_in_optimizer_state(tmp_path, resnet18_official):
    objects, backbone, heads = resnet18_official
    obj = dict(objects["vicreg_full"])
    obj["optimizer"] = {"state": {}, "param_groups": [
        {"lr": 0.2, "weight_decay_filter": exclude_bias_and_norm,
         "lars_adaptation_filter": exclude_bias_and_norm, "params": [0, 1]}]}
    path = tmp_path / "resnet50_fullckpt.pth"
    torch.save(obj, path)
    with pytest.raises(pickle.UnpicklingError):  # what a plain weights_only load does
        torch.load(path, weights_only=True)
    with pytest.raises(CheckpointError, match="weights_only=False"):
        load_checkpoint(path)
    assert detect_layout(path) == "vicreg_full"
    weights = load_official(path, "vicreg_full", arch="resnet18")
    _assert_state_equal(weights.backbone, backbone)
    _assert_state_equal(weights.heads["projector"], heads["vicreg"])
    loaded = load_checkpoint(path, stand_ins=True)
    group = loaded["optimizer"]["param_groups"][0]
    assert isinstance(group["weight_decay_filter"], UnloadedGlobal)
    assert group["weight_decay_filter"].name.endswith("test_checkpoints.exclude_bias_and_norm")
    assert load_official(loaded, "vicreg_full", arch="resnet18").epoch == 1000


def test_pickled_module_is_rejected(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError, match="not one of the supported layouts"):
        load_official(path, "vicreg_backbone")


@pytest.mark.parametrize("layout", tuple(official_layouts()))
def test_detect_layout(layout, resnet18_official):
    assert detect_layout(resnet18_official[0][layout]) == layout


@pytest.mark.parametrize(("actual", "asked"), list(itertools.permutations(official_layouts(), 2)))
def test_another_layout_is_a_clear_error(actual, asked, resnet18_official):
    with pytest.raises(CheckpointError, match=f"'{asked}'") as info:
        load_official(resnet18_official[0][actual], asked, arch="resnet18")
    assert f"looks like the '{actual}' layout" in str(info.value)


def test_swav_without_module_prefix(resnet18_official):
    stripped = {k.removeprefix("module."): v for k, v in resnet18_official[0]["swav"].items()}
    with pytest.raises(CheckpointError, match="every key lacks the prefix 'module.'"):
        load_official(stripped, "swav", arch="resnet18")


def test_backbone_with_ddp_prefix(resnet18_official):
    prefixed = _prefixed("module.", resnet18_official[1])
    with pytest.raises(CheckpointError, match="every key has an extra prefix 'module.'"):
        load_official(prefixed, "vicreg_backbone", arch="resnet18")


def test_vicreg_full_with_wrong_inner_prefix(resnet18_official):
    obj = dict(resnet18_official[0]["vicreg_full"])
    obj["model"] = {k.replace("module.backbone.", "module.encoder."): v
                    for k, v in obj["model"].items()}
    with pytest.raises(CheckpointError, match="missing key.*module.backbone.bn1.bias"):
        load_official(obj, "vicreg_full", arch="resnet18")


def test_one_extra_or_missing_key_is_named(resnet18_official):
    swav = dict(resnet18_official[0]["swav"])
    swav["module.queue"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\) \['module.queue'\]"):
        load_official(swav, "swav", arch="resnet18")
    backbone = dict(resnet18_official[1])
    del backbone["layer3.1.bn2.running_var"]
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\) \['layer3.1.bn2.running_var'\]"):
        load_official(backbone, "vicreg_backbone", arch="resnet18")


def test_wrong_arch_or_shapes(resnet18_official, resnet50_official):
    objects, backbone, _ = resnet18_official
    with pytest.raises(CheckpointError, match="layer1.0.conv3.weight"):
        load_official(objects["vicreg_backbone"], "vicreg_backbone")  # resnet50 expected
    bad = dict(backbone, **{"conv1.weight": torch.zeros(64, 1, 7, 7)})
    with pytest.raises(CheckpointError, match=r"conv1.weight: \(64, 1, 7, 7\)"):
        load_official(bad, "vicreg_backbone", arch="resnet18")
    resnet50_simsiam = dict(resnet50_official[0]["simsiam"], arch="resnet18")
    with pytest.raises(CheckpointError, match="arch 'resnet18' but arch='resnet50'"):
        load_official(resnet50_simsiam, "simsiam")




def test_head_shapes_must_chain(resnet18_official):
    swav = dict(resnet18_official[0]["swav"])
    swav["module.prototypes.weight"] = torch.zeros(PROTOTYPES, OUT + 1)
    with pytest.raises(CheckpointError, match="head 'prototypes': weight of shape"):
        load_official(swav, "swav", arch="resnet18")
    vicreg = dict(resnet18_official[0]["vicreg_full"])
    model = dict(vicreg["model"])
    model["module.projector.3.weight"] = torch.zeros(HIDDEN, HIDDEN + 1)
    with pytest.raises(CheckpointError, match="head 'projector' layer 3"):
        load_official(dict(vicreg, model=model), "vicreg_full", arch="resnet18")
    simsiam = dict(resnet18_official[0]["simsiam"])
    state = dict(simsiam["state_dict"])
    state["module.encoder.fc.7.running_mean"] = torch.zeros(OUT + 1)
    message = r"key 7.running_mean: shape \(17,\), expected \(16,\)"
    with pytest.raises(CheckpointError, match=message):
        load_official(dict(simsiam, state_dict=state), "simsiam", arch="resnet18")
    state = dict(simsiam["state_dict"])
    state["module.predictor.3.weight"] = torch.zeros(OUT + 1, PRED)
    state["module.predictor.3.bias"] = torch.zeros(OUT + 1)
    with pytest.raises(CheckpointError, match="must output one width; they output projector "
                       "16, predictor 17"):
        load_official(dict(simsiam, state_dict=state), "simsiam", arch="resnet18")


def test_unexpected_top_level_key(resnet18_official):
    obj = dict(resnet18_official[0]["vicreg_full"], scaler={})
    with pytest.raises(CheckpointError, match="unexpected.*'scaler'"):
        load_official(obj, "vicreg_full", arch="resnet18")


def test_unknown_layout_and_unrecognised_object():
    with pytest.raises(ValueError, match="unknown checkpoint layout 'moco'"):
        load_official({"conv1.weight": torch.zeros(1)}, "moco")
    with pytest.raises(CheckpointError, match="cannot recognise the checkpoint layout"):
        detect_layout({"encoder_q.conv1.weight": torch.zeros(1)})


# --- the project's own checkpoints -------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    payload = {"epoch": 2, "model": {"w": torch.arange(6.0).reshape(2, 3)},
               "rng": torch.get_rng_state(), "config": {"lr": 0.1, "betas": (0.9, 0.99)},
               "dtype": torch.float32, "none": None}
    path = save_checkpoint(tmp_path / "runs" / "last.pt", payload)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 2 and loaded["config"] == {"lr": 0.1, "betas": (0.9, 0.99)}
    assert torch.equal(loaded["model"]["w"], payload["model"]["w"])
    assert torch.equal(loaded["rng"], payload["rng"]) and loaded["dtype"] is torch.float32
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", {"epoch": 1})
    before = path.read_bytes()

    def half_written(obj, f):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.torch, "save", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"epoch": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_failed_fsync_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", {"epoch": 1})
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(checkpoints.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="I/O error"):
        save_checkpoint(path, {"epoch": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_payload_that_weights_only_cannot_read_is_refused_before_writing(tmp_path):
    import numpy as np

    path = save_checkpoint(tmp_path / "last.pt", {"epoch": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"payload\['rng'\]\[1\] is a numpy.ndarray"):
        save_checkpoint(path, {"epoch": 2, "rng": ("MT19937", np.zeros(3))})
    with pytest.raises(TypeError, match="payload must be a dict"):
        save_checkpoint(path, [1, 2])
    assert path.read_bytes() == before


def test_replacing_keeps_permissions(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", {"epoch": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    os.chmod(path, 0o600)
    save_checkpoint(path, {"epoch": 2})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_corrupt_files_are_clear_errors_and_untouched(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", {"w": torch.randn(1000)})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint\n" * 10)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    cases = [(truncated, "truncated, corrupt"), (garbage, "corrupt"), (empty, "is empty")]
    for path, message in cases:
        before = path.read_bytes()
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(path)
        with pytest.raises(CheckpointError, match=message):
            load_official(path, "vicreg_backbone")
        assert path.read_bytes() == before
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match="not a file"):
        load_checkpoint(tmp_path)


class _Custom:
    pass


def test_untrusted_objects_need_explicit_weights_only_false(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"obj": _Custom()}, path)
    with pytest.raises(CheckpointError, match="weights_only=False"):
        load_checkpoint(path)
    assert isinstance(load_checkpoint(path, weights_only=False)["obj"], _Custom)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, expected a dict"):
        load_checkpoint(tmp_path / "list.pt")


def test_export_backbone_loads_into_torchvision(tmp_path):
    net = build_backbone("resnet18")
    meta = {"method": "vicreg", "backbone": "resnet18", "image_size": 32, "epoch": 3}
    path = export_backbone(tmp_path / "export" / "backbone.pth", net, metadata=meta)
    state = torch.load(path, weights_only=True)
    result = torchvision.models.resnet18().load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"]
    assert result.unexpected_keys == []
    _assert_state_equal(state, net.state_dict())
    assert load_export_metadata(path) == meta
    _assert_state_equal(load_official(path, "vicreg_backbone", arch="resnet18").backbone, state)
    bare = export_backbone(tmp_path / "bare.pth", build_backbone("small_cnn", in_channels=1))
    assert load_export_metadata(bare) is None
    with pytest.raises(TypeError, match="must be an nn.Module"):
        export_backbone(tmp_path / "x.pth", state)


def test_export_side_file_records_the_weights_checksum(tmp_path):
    """The side file holds the SHA-256 of the weights file (what `sha256sum` prints), and
    loading an export whose weights no longer match it is refused with both digests named."""
    import hashlib
    import json

    from adapters import load_encoder

    net = build_backbone("small_cnn", in_channels=1)
    meta = {"method": "simsiam", "backbone": "small_cnn", "dataset": "digits", "in_channels": 1,
            "image_size": 28, "mean": [0.3], "std": [0.3], "epoch": 1}
    path = export_backbone(tmp_path / "backbone.pt", net, metadata=meta)
    recorded = json.loads((tmp_path / "backbone.pt.json").read_text())["weights_sha256"]
    assert recorded == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_export_metadata(path) == meta
    load_encoder(path)
    # another run's weights put in its place (same keys and shapes, other values)
    other = build_backbone("small_cnn", in_channels=1)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    torch.save(other.state_dict(), path)
    with pytest.raises(CheckpointError, match="does not match its metadata") as err:
        load_encoder(path)
    assert recorded in str(err.value)
    assert hashlib.sha256(path.read_bytes()).hexdigest() in str(err.value)
    # a side file written before the checksum was recorded still loads
    (tmp_path / "backbone.pt.json").write_text(json.dumps(meta))
    assert load_export_metadata(path) == meta
