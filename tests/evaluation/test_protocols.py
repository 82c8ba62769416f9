"""The protocol registry: one layer for the command line and the paper's executor."""

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from adapters.backbones import build_backbone
from adapters.checkpoints import export_backbone
from adapters.data import dataset_info
from evaluation import protocols
from evaluation.__main__ import main
from evaluation.model_data import DataSpec, ModelData
from evaluation.protocols import ProtocolResult, make_options, register, run_protocol


def _export(path):
    torch.manual_seed(0)
    info = dataset_info("digits")
    meta = {"method": "vicreg", "backbone": "small_cnn", "dataset": "digits", "in_channels": 1,
            "image_size": info.image_size, "mean": list(info.mean), "std": list(info.std),
            "epoch": 0}
    return export_backbone(path, build_backbone("small_cnn", in_channels=1), metadata=meta)


@pytest.fixture
def toy_protocol():
    """A protocol registered the way the registry's docstring shows, removed afterwards."""

    @dataclass(frozen=True)
    class MeanNormOptions:
        seeds: tuple[int, ...] = (0,)  # named like the --seeds flag: the CLI fills it in
        scale: float = 1.0

    @register("mean-norm", MeanNormOptions)
    def _mean_norm(data, options):
        x = data.test[0]
        value = options.scale * float(np.linalg.norm(x, axis=1).mean())
        return ProtocolResult({"mean_norm": value, "n_seeds": float(len(options.seeds))})

    yield MeanNormOptions
    protocols.PROTOCOLS.pop("mean-norm")


def test_a_registered_protocol_runs_from_the_api_and_the_command_line(tmp_path, toy_protocol):
    ckpt = _export(tmp_path / "m" / "backbone.pt")
    data = ModelData(ckpt, DataSpec("digits", max_train=50, max_test=30),
                     cache_dir=tmp_path / "cache", progress=False)
    direct = run_protocol("mean-norm", data, toy_protocol(scale=2.0))
    expected = 2.0 * np.linalg.norm(data.test[0].astype(np.float64), axis=1).mean()
    assert direct.metrics["mean_norm"] == pytest.approx(expected, rel=1e-6)
    out = tmp_path / "report"
    assert main(["--checkpoint", str(ckpt), "--dataset", "digits", "--max-train", "50",
                 "--max-test", "30", "--protocols", "mean-norm", "--seeds", "4",
                 "--out", str(out), "--no-progress"]) == 0
    saved = json.loads((out / "results.json").read_text())["results"]["m/backbone"]
    assert saved["mean_norm"] == pytest.approx(expected / 2, rel=1e-6)
    assert saved["n_seeds"] == 4.0
    with pytest.raises(ValueError, match="already registered"):
        register("mean-norm", toy_protocol)
    with pytest.raises(TypeError, match="takes MeanNormOptions"):
        run_protocol("mean-norm", data, protocols.KNNOptions())
    with pytest.raises(ValueError, match="unknown protocol 'nope'"):
        make_options("nope", {})


def test_linear_probes_show_progress_per_probe(tmp_path, capsys):
    ckpt = _export(tmp_path / "m" / "backbone.pt")
    data = ModelData(ckpt, DataSpec("digits", max_train=200, max_test=40),
                     cache_dir=tmp_path / "cache", progress=True)
    data.train, data.test  # noqa: B018 (features first, so only the probes' bar is read below)
    capsys.readouterr()
    res = run_protocol("linear", data,
                       protocols.LinearOptions(fractions=(0.5, 1.0), seeds=(0, 1), cs=(1.0,)))
    err = capsys.readouterr().err
    # one bar over the 4 probes; its first render is always printed (the last may be skipped
    # by tqdm's refresh interval on a fast machine)
    assert "linear probes" in err and "0/4" in err
    assert set(res.metrics) == {"linear_50", "linear_50_top5", "linear_100", "linear_100_top5"}
    assert res.not_converged[1] == 4 * 2  # each probe: one candidate C and the refit


def test_convergence_note_is_one_line():
    ok = ProtocolResult({"a": 1.0}, not_converged=(0, 6))
    bad = ProtocolResult({"a": 1.0}, not_converged=(5, 12))
    assert protocols.convergence_note({"m linear": ok}) is None
    note = protocols.convergence_note({"m linear": bad, "m transfer": ok})
    assert note.count("\n") == 0 and "m linear: 5 of 12" in note
