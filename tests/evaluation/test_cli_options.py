"""`python -m evaluation`'s option defaults are the documented ones (docs/evaluation.md), and
under torchrun the process group's backend follows --device. Only the parser and the
process-group start are exercised (no evaluation runs), so these tests take milliseconds."""

import pytest
import torch
import torch.distributed as dist

import evaluation.__main__ as cli


def _parse(*extra):
    return cli.build_parser().parse_args(["--checkpoint", "m.pt", "--dataset", "digits",
                                          "--out", "r", *extra])


def test_defaults_are_the_documented_ones():
    args = _parse()
    assert args.protocols == "knn,linear,diagnostics,separability"
    assert (args.fractions, args.seeds, args.val_fraction) == ("1,10,100", 3, 0.2)
    assert (args.k, args.temperature) == ("20,200", 0.07)
    assert (args.probe_epochs, args.probe_lr) == (100, 0.3)
    assert (args.finetune_epochs, args.trunk_lr, args.head_lr) == (20, 0.03, 0.08)
    assert (args.batch_size, args.workers, args.amp, args.threads) == (256, 0, "off", None)
    assert (args.transfer_dataset, args.map, args.features) == ("digits", "pca", "backbone")
    options = cli.shared_options(args)
    assert options["seeds"] == (0, 1, 2) and options["fractions"] == (0.01, 0.1, 1.0)
    assert options["k"] == (20, 200) and options["cs"] == (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def test_help_names_the_data_sets_and_the_seeded_defaults(capsys):
    """--dataset had no help, and --fractions / --seeds hid their defaults."""
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--dataset DATASET one of cifar10, cifar100, digits, fake, fashion-mnist" in text
    assert "label percentages (default: 1,10,100)" in text and "default: 3)" in text


def test_a_device_index_is_accepted_in_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert cli.shared_options(_parse("--device", "cpu:0"))["batch_size"] == 256


@pytest.mark.parametrize(("device", "cuda_present", "backend"), [
    ("cuda", False, "nccl"),  # asked for: NCCL, on this process's GPU
    ("cpu", True, "gloo"),  # CPU asked for although a GPU is there
    (None, True, "nccl"),  # default: CUDA when available
    (None, False, "gloo"),
])
def test_torchrun_backend_follows_the_device(monkeypatch, device, cuda_present, backend):
    started, gpus = [], []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", started.append)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_present)
    monkeypatch.setattr(torch.cuda, "set_device", gpus.append)
    assert cli._start_process_group(device) is True
    assert started == [backend]
    assert gpus == ([1] if backend == "nccl" else [])  # the GPU of LOCAL_RANK
