"""The one training loop behind ``adapters.continue_train`` and ``adapters.pretrain``.

Every method (:data:`adapters.methods.METHODS`) and every added criterion
(:data:`entropylib.criteria.CRITERIA`, or none for the "continued" control) runs through
:func:`train`: per step, the method's base loss plus the criterion on the tensors the method
exposes (docs/method.md), in one process or under ``torchrun`` (DistributedDataParallel;
NCCL on GPU, gloo on CPU).

Exact resumption. The learning rate is a function of the global step; the data order is a
permutation seeded by ``(seed, epoch)``; each sample's augmentation draws from generators
seeded by ``(seed, epoch, index)`` whatever process or worker makes it. A checkpoint (model,
heads, optimizer, grad scaler, step, epoch, position in the epoch, python/numpy/torch RNG
states, config) therefore determines the rest of the run: ``--resume`` continues bit for bit
on a deterministic CPU.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import inspect
import json
import math
import os
import random
import signal
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from adapters import checkpoints, data
from adapters.backbones import BACKBONES, build_backbone
from adapters.methods import METHODS, MethodAdapter
from adapters.optim import LARS, SCHEDULES, lars_param_groups, lr_at
from entropylib.criteria import CRITERIA
from entropylib.spacings import default_window

#: value of ``payload["format"]`` in the checkpoints this loop writes
CHECKPOINT_FORMAT = "entropylib-adapters-train/1"
CRITERION_NAMES = ("none", *sorted(CRITERIA))
AMP_MODES = ("off", "bf16", "fp16")
#: config fields a resumed run may change: where it stops, where its files and data are, and
#: how it runs; every other field defines the run and must stay as saved
RESUME_CHANGEABLE = ("out", "overwrite", "data_root", "epochs", "max_steps", "save_every",
                     "workers", "progress", "tensorboard", "device")


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the last checkpoint on disk is the last good state."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM or SIGINT arrived; a checkpoint was written before stopping."""

    def __init__(self, signum: int, path: Path | None) -> None:
        super().__init__(
            f"stopped by signal {signal.Signals(signum).name}; checkpoint written to {path}"
        )
        self.signum = signum


@dataclass
class TrainConfig:
    """Everything that defines a run. ``None`` means "the method's default" (see METHODS).

    ``mode`` is ``"continue"`` (start from ``checkpoint``: an official release of
    docs/checkpoints.md or a checkpoint of this loop) or ``"pretrain"`` (random ``backbone``).
    ``criterion`` None means ``"e2mc"`` when continuing and ``"none"`` when pretraining (as
    the two command lines default). ``epochs`` counts additional epochs; ``max_steps`` caps
    the total number of steps of the run (including steps done before a resume). ``lr`` is
    absolute; when None it is the method's ``base_lr * global_batch / 256``.
    """

    out: str
    mode: str = "continue"
    method: str = "vicreg"
    checkpoint: str | None = None
    layout: str | None = None
    backbone: str | None = None
    dataset: str = "fashion-mnist"
    data_root: str | None = None
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 256
    criterion: str | None = None
    transform: str | None = None
    ent_coeff: float | None = None
    cov_coeff: float | None = None
    m: int | None = None
    eps: float | None = None
    criterion_options: dict[str, Any] = field(default_factory=dict)
    head_options: dict[str, Any] = field(default_factory=dict)
    view_options: dict[str, Any] = field(default_factory=dict)
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float | None = None
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    final_lr: float = 0.0
    amp: str = "off"
    device: str | None = None
    workers: int = 0
    seed: int = 0
    save_every: int = 0
    sync_bn: bool = False
    tensorboard: bool = False
    progress: bool = True
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.criterion is None:
            self.criterion = "e2mc" if self.mode == "continue" else "none"


@dataclass
class TrainResult:
    """Where a finished run left its files, and its final counters and metrics.

    ``steps_run`` counts the steps of this call: 0 when a resumed run had already reached
    its stopping point.
    """

    out: Path
    checkpoint: Path
    backbone: Path | None
    step: int
    epoch: int
    metrics: dict[str, float]
    steps_run: int = 0


class SSLModel(nn.Module):
    """Backbone + method heads, one module so that DistributedDataParallel wraps both.

    ``forward(views)`` returns ``(base_loss, base_parts, embeddings)`` of the method.
    """

    def __init__(self, backbone: nn.Module, heads: MethodAdapter) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = heads

    def forward(self, views: list[torch.Tensor]):
        out = self.heads(self.backbone, views)
        return out.loss, out.parts, out.embeddings


# ----------------------------------------------------------------------------------------
# validation


def min_batch(criterion: str, m: int | None) -> int:
    """Smallest global batch the criterion accepts.

    E2MC's m-spacings need ``N >= 2 m + 1`` (with ``m = round(sqrt(N))`` by default, N >= 5);
    every other criterion and base loss needs a covariance, so ``N >= 2``.
    """
    if criterion != "e2mc":
        return 2
    if m is not None:
        return 2 * m + 1
    n = 2
    while n < 2 * default_window(n) + 1:
        n += 1
    return n


def validate(config: TrainConfig, *, resuming: bool = False) -> None:
    """Reject a bad configuration before anything is loaded or written.

    ``resuming``: the run's start checkpoint is no longer needed (the resumed state is).
    """
    if config.mode not in ("continue", "pretrain"):
        raise ValueError(f"mode must be 'continue' or 'pretrain', got {config.mode!r}")
    if config.method not in METHODS:
        raise ValueError(f"unknown method {config.method!r}; expected one of {sorted(METHODS)}")
    if config.criterion not in CRITERION_NAMES:
        raise ValueError(
            f"unknown criterion {config.criterion!r}; expected one of {list(CRITERION_NAMES)}"
        )
    if config.criterion != "e2mc":
        e2mc_only = {"transform": config.transform, "ent_coeff": config.ent_coeff,
                     "m": config.m, "eps": config.eps}
        given = sorted(k for k, v in e2mc_only.items() if v is not None)
        if given:
            raise ValueError(f"options {given} apply to --criterion e2mc only")
    if config.backbone is not None and config.backbone not in BACKBONES:
        raise ValueError(
            f"unknown backbone {config.backbone!r}; expected one of {sorted(BACKBONES)}"
        )
    if config.mode == "pretrain" and config.backbone is None:
        raise ValueError("pretraining needs --backbone (one of " f"{sorted(BACKBONES)})")
    if config.mode == "continue" and not config.checkpoint:
        raise ValueError("continued training needs --checkpoint (a file to start from)")
    if config.mode == "continue" and not resuming and not Path(config.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {config.checkpoint!r} does not exist")
    _check_int("epochs", config.epochs, low=0)
    _check_int("batch_size", config.batch_size, low=1)
    _check_int("workers", config.workers, low=0)
    _check_int("save_every", config.save_every, low=0)
    if config.max_steps is not None:
        _check_int("max_steps", config.max_steps, low=0)
    if config.m is not None:
        _check_int("m", config.m, low=1)
    if config.amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {config.amp!r}")
    if config.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {config.schedule!r}")
    if config.optimizer not in (None, "lars", "sgd"):
        raise ValueError(f"optimizer must be 'lars' or 'sgd', got {config.optimizer!r}")
    for name in ("lr", "weight_decay", "momentum", "warmup_epochs", "final_lr"):
        value = getattr(config, name)
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if config.lr is not None and config.lr == 0:
        raise ValueError("lr must be > 0")
    METHODS[config.method].head_options(config.head_options)
    data.dataset_info(config.dataset)
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ValueError("--tensorboard needs the tensorboard package, which is not installed")


def _check_int(name: str, value: Any, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


# ----------------------------------------------------------------------------------------
# data: resumable order and augmentation


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for one sample's augmentation, independent of process and worker."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class SeededViews(Dataset):
    """Wrap a dataset so sample ``i`` of epoch ``e`` is augmented from seed ``(seed, e, i)``.

    The python, numpy and torch generators are seeded for the call and restored after it, so
    the augmentation of a sample never depends on which worker makes it or on what ran before.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        s = sample_seed(self.seed, self.epoch, index)
        # The legacy global numpy generator is what third-party transforms draw from.
        py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                random.seed(s)
                np.random.seed(s)  # noqa: NPY002
                return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)  # noqa: NPY002


class ResumableSampler(DistributedSampler):
    """DistributedSampler (seeded shuffle per epoch, one shard per rank) that can start
    part-way into an epoch: ``start`` indices of this rank's shard are skipped."""

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
            drop_last=True,
        )
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start :])

    def __len__(self) -> int:
        return super().__len__() - self.start


# ----------------------------------------------------------------------------------------
# model, criterion, optimizer


def build_criterion(config: TrainConfig) -> nn.Module | None:
    """The added criterion with the method's reference defaults filled in (None for "none")."""
    if config.criterion == "none":
        return None
    cls = CRITERIA[config.criterion]
    options = dict(config.criterion_options)
    if config.criterion == "e2mc":
        d = METHODS[config.method].defaults
        options.update(
            transform=config.transform or d.transform,
            ent_coeff=d.ent_coeff if config.ent_coeff is None else config.ent_coeff,
            cov_coeff=d.cov_coeff if config.cov_coeff is None else config.cov_coeff,
            m=config.m,
        )
        if config.eps is not None:
            options["eps"] = config.eps
    elif config.cov_coeff is not None:
        options["cov_coeff"] = config.cov_coeff
    accepted = inspect.signature(cls).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"criterion {config.criterion!r} has no option(s) {unknown}; "
            f"it takes {sorted(accepted)}"
        )
    return cls(**options)


def build_optimizer(
    config: TrainConfig, model: SSLModel, lr: float
) -> torch.optim.Optimizer:
    """The method's optimizer (LARS or SGD) with its defaults unless overridden."""
    d = METHODS[config.method].defaults
    kind = config.optimizer or d.optimizer
    wd = d.weight_decay if config.weight_decay is None else config.weight_decay
    momentum = d.momentum if config.momentum is None else config.momentum
    groups = model.heads.param_groups(model.backbone)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=wd)
    split = []
    for group in groups:
        holder = nn.ParameterList(group["params"])
        for sub in lars_param_groups(holder, weight_decay=wd):
            sub["fixed_lr"] = group["fixed_lr"]
            split.append(sub)
    return LARS(split, lr=lr, weight_decay=wd, momentum=momentum, eta=d.eta, clip=d.clip)


def _resolve_device(name: str | None, local_rank: int) -> torch.device:
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def _load_start(
    config: TrainConfig, info: data.DatasetInfo
) -> tuple[SSLModel, int, dict[str, Any]]:
    """Build the model and load the starting weights. Returns (model, base epoch, notes).

    ``notes["backbone"]`` and ``notes["head_options"]`` are what the model was built with
    (read off the start checkpoint when continuing); ``config`` is left as it is.
    """
    method = METHODS[config.method]
    if config.mode == "pretrain":
        backbone = build_backbone(config.backbone, in_channels=info.channels)
        heads = method(backbone.feature_dim, **config.head_options)
        return SSLModel(backbone, heads), 0, {
            "start": "random", "backbone": config.backbone,
            "head_options": method.head_options(config.head_options)}
    # stand_ins: official releases (VICReg's full checkpoint) pickle training-script functions
    # into their optimizer state; they are read as inert placeholders, never run.
    obj = checkpoints.load_checkpoint(config.checkpoint, stand_ins=True)
    if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        meta = obj["meta"]
        if meta["method"] != config.method:
            raise ValueError(
                f"{config.checkpoint} was trained with method {meta['method']!r}, "
                f"not {config.method!r}"
            )
        if config.backbone not in (None, meta["backbone"]):
            raise ValueError(
                f"{config.checkpoint} holds a {meta['backbone']!r} backbone, "
                f"not {config.backbone!r}"
            )
        head_options = {**_head_options(obj), **config.head_options}
        model = _model_from_state(obj, head_options)
        return model, int(obj["epoch"]), {
            "start": "project checkpoint", "backbone": meta["backbone"],
            "head_options": method.head_options(head_options)}
    layout = config.layout or checkpoints.detect_layout(obj)
    if layout not in method.official_layouts:
        raise ValueError(
            f"{config.checkpoint} has layout {layout!r}, which is not a {config.method} "
            f"release (expected one of {list(method.official_layouts)})"
        )
    arch = config.backbone or "resnet50"
    weights = checkpoints.load_official(obj, layout, arch=arch)
    backbone = build_backbone(arch, in_channels=info.channels)
    head_options = {**method.options_from_official(weights.heads), **config.head_options}
    heads = method(backbone.feature_dim, **head_options)
    backbone.load_state_dict(weights.backbone, strict=True)
    notes: dict[str, Any] = {"start": f"official {layout}", "backbone": arch,
                             "head_options": method.head_options(head_options)}
    if weights.heads:
        heads.load_official_heads(weights.heads)
    else:
        notes["warning"] = f"layout {layout} has no heads: they start randomly initialised"
    return SSLModel(backbone, heads), int(weights.epoch or 0), notes


@dataclass
class StepLoss:
    """The loss of one step and its pieces (``finite`` is False if an embedding is not)."""

    loss: torch.Tensor
    base_loss: torch.Tensor
    base_parts: dict[str, torch.Tensor]
    criterion_loss: torch.Tensor
    criterion_parts: dict[str, torch.Tensor]
    finite: bool

    def metrics(self, method: str, criterion: str) -> dict[str, float]:
        """Flat ``name -> float`` of this rank's loss parts, for logging."""
        return {
            "base_loss": self.base_loss.item(),
            "criterion_loss": self.criterion_loss.item(),
            **_flatten_parts(method, self.base_parts),
            **_flatten_parts(criterion, self.criterion_parts),
        }


def compute_loss(
    model: nn.Module,
    criterion: nn.Module | None,
    views: list[torch.Tensor],
    *,
    amp_dtype: torch.dtype | None = None,
) -> StepLoss:
    """Base loss of the method plus the criterion on the method's embeddings.

    The model (an :class:`SSLModel`, possibly DDP-wrapped) runs under autocast when
    ``amp_dtype`` is given; the criterion always gets float32 embeddings (and disables
    autocast itself). The criterion is skipped when an embedding is not finite, so that the
    caller can report the divergence instead of an input error.
    """
    device = views[0].device
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        base_loss, base_parts, embeddings = model(views)
    embeddings = [e.float() for e in embeddings]
    finite = all(bool(torch.isfinite(e).all()) for e in embeddings)
    crit_loss, crit_parts = torch.zeros((), device=device), {}
    if criterion is not None and finite:
        crit_loss, crit_parts = criterion(*embeddings)
    loss = base_loss.float() + crit_loss
    return StepLoss(loss, base_loss, base_parts, crit_loss, crit_parts, finite)


# ----------------------------------------------------------------------------------------
# output


class MetricsLog:
    """Per-step metrics to ``metrics.jsonl`` and ``metrics.csv`` (+ TensorBoard if asked).

    Rows after step ``keep_until`` (those of steps a killed run logged after its last
    checkpoint, or a replaced run's) are removed first, so a resumed run logs each step once.
    """

    def __init__(self, out: Path, *, tensorboard: bool, keep_until: int) -> None:
        self.jsonl = out / "metrics.jsonl"
        self.csv = out / "metrics.csv"
        self.columns: list[str] | None = None
        if self.jsonl.exists():
            lines = self.jsonl.read_text().splitlines(keepends=True)
            _rewrite(self.jsonl, [r for r in lines if json.loads(r)["step"] <= keep_until])
        if self.csv.exists():
            header, *lines = self.csv.read_text().splitlines(keepends=True)
            columns = next(csv.reader([header]))
            step = columns.index("step")
            kept = [r for r in lines if float(next(csv.reader([r]))[step]) <= keep_until]
            _rewrite(self.csv, [header, *kept] if kept else [])
            self.columns = columns if kept else None
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"))

    def write(self, row: dict[str, float]) -> None:
        with self.jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.columns is None:
            self.columns = list(row)
            with self.csv.open("w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        with self.csv.open("a", newline="") as f:
            csv.writer(f).writerow([row.get(c, "") for c in self.columns])
        if self.writer is not None:
            for key, value in row.items():
                if key != "step":
                    self.writer.add_scalar(key, value, int(row["step"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _rewrite(path: Path, lines: list[str]) -> None:
    """Replace a text file by ``lines`` in one rename (no file when there are none)."""
    if not lines:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f".{path.name}.rewrite.tmp")
    tmp.write_text("".join(lines))
    os.replace(tmp, path)


def _flatten_parts(prefix: str, parts: Mapping[str, torch.Tensor]) -> dict[str, float]:
    row = {}
    for key, value in parts.items():
        value = value.detach().float()
        row[f"{prefix}.{key}"] = value.mean().item()
        if value.numel() > 1:
            for i, v in enumerate(value.flatten().tolist()):
                row[f"{prefix}.{key}.{i}"] = v
    return row


# ----------------------------------------------------------------------------------------
# the loop


class _StopFlag:
    """Records SIGTERM/SIGINT so the loop can write a checkpoint at the end of the step."""

    def __init__(self) -> None:
        self.signum = 0
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                return

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def train(config: TrainConfig, *, resume: str | None = None) -> TrainResult:
    """Run (or with ``resume``, continue) a training run; see :class:`TrainConfig`.

    ``resume`` is a checkpoint path written by an earlier run of this loop. ``config`` must
    then be the run's own config (:func:`resumed_config` reads it) except for the fields of
    :data:`RESUME_CHANGEABLE`; a new stopping point (``epochs``, ``max_steps``) is honoured.
    A run already at its stopping point trains nothing (``steps_run == 0``).

    Raises ValueError/FileNotFoundError on bad input before writing anything,
    :class:`NonFiniteLoss` when the loss diverges and :class:`TrainingInterrupted` after a
    signal (both after the last good checkpoint is on disk).

    Examples
    --------
    >>> import tempfile
    >>> cfg = TrainConfig(out=tempfile.mkdtemp() + "/run", mode="pretrain", method="simsiam",
    ...                   backbone="small_cnn", dataset="digits", max_steps=2, batch_size=8,
    ...                   progress=False)
    >>> result = train(cfg)
    >>> result.step, result.checkpoint.name, result.backbone.name
    (2, 'checkpoint.pt', 'backbone.pt')
    """
    validate(config, resuming=resume is not None)
    out = Path(config.out)
    check_writable(out)
    state = None
    if resume is not None:
        state = _load_run(resume)
        _check_unchanged(TrainConfig(**state["config"]), config)
    if resume is None and (out / "checkpoint.pt").exists() and not config.overwrite:
        raise FileExistsError(
            f"{out} already holds a run (checkpoint.pt); use --resume to continue it, "
            "--overwrite to replace it, or another --out"
        )

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _resolve_device(config.device, local_rank)
    if config.sync_bn and world > 1 and device.type == "cpu":
        raise ValueError("--sync-bn needs GPUs: torch's SyncBatchNorm does not run on CPU")
    global_batch = config.batch_size * world
    need = min_batch(config.criterion, config.m)
    if global_batch < need:
        raise ValueError(
            f"criterion {config.criterion!r} needs a global batch of at least {need}"
            + (f" (2m+1 with m={config.m})" if config.criterion == "e2mc" and config.m else "")
            + f", got {global_batch} ({config.batch_size} per process x {world})"
        )

    info = data.dataset_info(config.dataset)
    views = data.ssl_views(
        config.method, info, **{**METHODS[config.method].defaults.view_options,
                                **config.view_options}
    )
    base_dataset = data.load_dataset(config.dataset, config.data_root, train=True,
                                     transform=views)
    if len(base_dataset) < global_batch:
        raise ValueError(
            f"dataset {config.dataset!r} has {len(base_dataset)} training images, fewer than "
            f"one global batch of {global_batch}"
        )
    if state is None:
        # heads (and a pretraining backbone) start from a seeded initialisation
        random.seed(config.seed)
        np.random.seed(config.seed)  # noqa: NPY002
        torch.manual_seed(config.seed)
    model, base_epoch, notes = _load_start(config, info) if state is None else (
        _model_from_state(state), 0, {"start": f"resume {resume}",
                                      "backbone": state["meta"]["backbone"],
                                      "head_options": _head_options(state)}
    )
    criterion = build_criterion(config)

    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    model.to(device)
    if config.sync_bn and world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    d = METHODS[config.method].defaults
    peak_lr = config.lr if config.lr is not None else d.base_lr * global_batch / 256
    optimizer = build_optimizer(config, model, peak_lr)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
    ddp = (
        nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,
        )
        if world > 1 else model
    )

    dataset = SeededViews(base_dataset, config.seed)
    sampler = ResumableSampler(dataset, num_replicas=world, rank=rank, seed=config.seed)
    steps_per_epoch = len(sampler) // config.batch_size
    if state is None:
        step, epoch, epoch_step = 0, base_epoch, 0
        end_epoch = base_epoch + config.epochs
    else:
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step, epoch, epoch_step = state["step"], state["epoch"], state["epoch_step"]
        base_epoch = state["base_epoch"]
        end_epoch = base_epoch + config.epochs
    # the schedule spans the epochs; max_steps only stops early (so it may change on resume)
    schedule_steps = (end_epoch - base_epoch) * steps_per_epoch
    total_steps = schedule_steps
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    if state is not None:
        _set_rng_state(state["rng"])

    is_main = rank == 0
    meta = {
        "method": config.method, "backbone": notes.pop("backbone"), "dataset": config.dataset,
        "in_channels": info.channels, "image_size": info.image_size,
        "mean": list(info.mean), "std": list(info.std), "head_options": notes.pop("head_options"),
    }
    if state is not None and (epoch >= end_epoch or step >= total_steps):
        return TrainResult(out, Path(resume), _existing(out / "backbone.pt"), step, epoch, {})

    def payload() -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "meta": meta,
            "model": {"backbone": model.backbone.state_dict(), "heads": model.heads.state_dict()},
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "lr_schedule": {"peak_lr": peak_lr, "schedule": config.schedule,
                            "warmup_steps": warmup_steps, "total_steps": schedule_steps,
                            "final_lr": config.final_lr},
            "epoch": epoch, "epoch_step": epoch_step, "step": step,
            "base_epoch": base_epoch, "end_epoch": end_epoch,
            "data_order": {"seed": config.seed, "epoch": epoch,
                           "position": epoch_step * config.batch_size, "world_size": world},
            "rng": _rng_state(),
            "config": dataclasses.asdict(config),
        }

    saved_at = [-1]
    # (path, step) of the newest checkpoint of this run on disk: the one resumed from, or the
    # last one written
    last_good: list[tuple[Path, int]] = [] if state is None else [(Path(resume), step)]

    def save() -> Path:
        path = out / "checkpoint.pt"
        if saved_at[0] != step:
            # every rank checks (DDP replicas are equal), so that every rank stops together
            bad = _non_finite_state(model, optimizer)
            if bad:
                raise NonFiniteLoss(
                    f"the state after step {step} (epoch {epoch}) is not finite ({bad}), so it "
                    "was not saved. " + _last_good_message(last_good)
                )
        if is_main and saved_at[0] != step:
            # the file replaced becomes the previous generation only if it is this run's own
            # good checkpoint (not, e.g., a damaged one resumed around)
            keep = bool(last_good) and last_good[0][0].resolve() == path.resolve()
            checkpoints.save_checkpoint(path, payload(), keep_previous=keep)
        saved_at[0] = step
        last_good[:] = [(path, step)]
        return path

    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        checkpoints.remove_stale_temporaries(out)
        if state is None:  # --overwrite: nothing of the replaced run may pass for this one's
            for old in (out / "checkpoint.pt", checkpoints.previous_path(out / "checkpoint.pt")):
                old.unlink(missing_ok=True)
        (out / "config.json").write_text(
            json.dumps({**dataclasses.asdict(config), "resolved": {
                "peak_lr": peak_lr, "global_batch": global_batch, "world_size": world,
                "steps_per_epoch": steps_per_epoch, "end_epoch": end_epoch,
                "backbone": meta["backbone"], "head_options": meta["head_options"],
                "criterion": repr(criterion), **notes}}, indent=2, default=str)
        )
        if "warning" in notes:
            print(f"warning: {notes['warning']}")
    log = (MetricsLog(out, tensorboard=config.tensorboard, keep_until=step)
           if is_main else None)
    bar = tqdm(total=total_steps, initial=step, disable=not (is_main and config.progress),
               desc=f"{config.method}+{config.criterion}", dynamic_ncols=True)
    stop = _StopFlag()
    stop.install()
    loader_kwargs = dict(batch_size=config.batch_size, num_workers=config.workers,
                         drop_last=True, pin_memory=device.type == "cuda")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
    last: dict[str, float] = {}
    first_step = step
    try:
        ddp.train()
        if state is not None:
            saved_at[0] = step  # the checkpoint we resumed from holds this very state
        while epoch < end_epoch and step < total_steps:
            sampler.set_epoch(epoch)
            dataset.epoch = epoch
            sampler.start = epoch_step * config.batch_size
            # the loader draws its workers' base seed from this generator, not the global one
            order_rng = torch.Generator().manual_seed(
                int(np.random.SeedSequence([config.seed, epoch]).generate_state(1)[0])
            )
            loader = DataLoader(dataset, sampler=sampler, generator=order_rng, **loader_kwargs)
            tic = time.perf_counter()
            for batch, _ in loader:
                lr = lr_at(step, base_lr=peak_lr, total_steps=schedule_steps,
                           schedule=config.schedule, warmup_steps=warmup_steps,
                           final_lr=config.final_lr)
                for group in optimizer.param_groups:
                    group["lr"] = peak_lr if group["fixed_lr"] else lr
                batch = [v.to(device, non_blocking=True) for v in batch]
                model.heads.before_step()
                step_loss = compute_loss(ddp, criterion, batch, amp_dtype=amp_dtype)
                loss = step_loss.loss
                flags = torch.stack(
                    [loss.detach(), torch.tensor(float(stop.signum != 0), device=device)]
                )
                if world > 1:
                    dist.all_reduce(flags)
                    flags[0] /= world
                if not step_loss.finite or not torch.isfinite(flags[0]):
                    raise NonFiniteLoss(
                        f"loss is {flags[0].item()} at step {step + 1} (epoch {epoch}); "
                        f"embeddings finite: {step_loss.finite}; parts: "
                        f"{step_loss.metrics(config.method, config.criterion)}. "
                        + _last_good_message(last_good)
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                model.heads.after_backward(step)
                scaler.step(optimizer)
                scaler.update()
                step += 1
                epoch_step += 1
                if is_main:
                    elapsed = time.perf_counter() - tic
                    last = {
                        "step": step, "epoch": epoch, "loss": flags[0].item(),
                        **step_loss.metrics(config.method, config.criterion),
                        "lr": lr, "samples_per_s": global_batch / max(elapsed, 1e-9),
                    }
                    log.write(last)
                    bar.update(1)
                    bar.set_postfix(loss=f"{last['loss']:.4g}")
                tic = time.perf_counter()
                if epoch_step == steps_per_epoch:
                    epoch, epoch_step = epoch + 1, 0
                if flags[1].item() != 0 or step >= total_steps or (
                    config.save_every and step % config.save_every == 0
                ) or epoch_step == 0:
                    path = save()
                    if flags[1].item() != 0:
                        raise TrainingInterrupted(stop.signum or signal.SIGTERM, path)
                if epoch_step == 0 or step >= total_steps:
                    break
        path = save()
        backbone_path = None
        if is_main:
            backbone_path = out / "backbone.pt"
            checkpoints.export_backbone(backbone_path, model.backbone,
                                        metadata={**meta, "epoch": epoch})
        return TrainResult(out, path, backbone_path, step, epoch, last,
                           steps_run=step - first_step)
    finally:
        stop.restore()
        bar.close()
        if log is not None:
            log.close()


def _load_run(path: str) -> dict[str, Any]:
    try:
        state = checkpoints.load_checkpoint(path)
    except checkpoints.CheckpointError as err:
        previous = checkpoints.previous_path(path)
        try:
            step = checkpoints.load_checkpoint(previous)["step"]
        except (FileNotFoundError, checkpoints.CheckpointError):
            raise err from None
        raise checkpoints.CheckpointError(
            f"{err}. The previous checkpoint {str(previous)!r} (step {step}) is intact: "
            f"resume from it with --resume {previous}"
        ) from err
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint written by adapters.train")
    return state


def check_writable(out: Path) -> None:
    """Fail now, before anything is loaded, if the run directory cannot be written."""
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"--out {str(out)!r}: {str(existing)!r} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise OSError(err.errno, f"--out {str(out)!r} is not writable "
                                 f"({str(existing)!r}: {err.strerror})") from err


def _non_finite_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> str:
    """Names of the parameters, buffers and optimizer-state tensors that are not finite."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    for index, values in optimizer.state.items():
        tensors += [(f"optimizer state {key} of parameter {tuple(index.shape)}", v)
                    for key, v in values.items() if isinstance(v, torch.Tensor)]
    bad = [name for name, t in tensors
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    return ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")


def resumed_config(path: str, **changes: Any) -> TrainConfig:
    """The config of the run saved in checkpoint ``path``, with ``changes`` applied.

    What the command line's ``--resume`` passes to :func:`train`: the run as it was, plus the
    flags given with ``--resume``.
    """
    return dataclasses.replace(TrainConfig(**_load_run(path)["config"]), **changes)


#: command-line flags of the config fields whose flag is not ``--<field with dashes>``
_FLAGS = {"criterion_options": "--criterion-option", "head_options": "--head-option",
          "view_options": "--view-option", "progress": "--no-progress"}


def _check_unchanged(saved: TrainConfig, config: TrainConfig) -> None:
    """Refuse a resumed config that changes what defines the run (not its stopping point)."""
    changed = [
        f"{_FLAGS.get(f.name, '--' + f.name.replace('_', '-'))} (run: "
        f"{getattr(saved, f.name)!r}, given: {getattr(config, f.name)!r})"
        for f in dataclasses.fields(TrainConfig)
        if f.name not in RESUME_CHANGEABLE and getattr(saved, f.name) != getattr(config, f.name)
    ]
    if changed:
        raise ValueError(
            "these options cannot change when a run is resumed: " + ", ".join(changed)
            + "; resume without them, or start a new run in another --out"
        )


def _last_good_message(last_good: list[tuple[Path, int]]) -> str:
    if not last_good:
        return ("No checkpoint of this run was written before it diverged (--save-every N "
                "keeps one every N steps).")
    path, step = last_good[0]
    return f"The last good checkpoint is {path} (step {step})."


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _rng_state() -> dict[str, Any]:
    """python, numpy and torch generator states in plain types (lists, ints, a tensor)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    return {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    keys = np.asarray(keys, dtype=np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(state["torch"])


def _head_options(state: Mapping[str, Any]) -> dict[str, Any]:
    """The head options a checkpoint of this loop was built with."""
    # checkpoints written before meta["head_options"] existed kept them in the config
    return dict(state["meta"].get("head_options", state["config"]["head_options"]))


def _model_from_state(
    state: Mapping[str, Any], head_options: Mapping[str, Any] | None = None
) -> SSLModel:
    meta = state["meta"]
    backbone = build_backbone(meta["backbone"], in_channels=meta["in_channels"])
    heads = METHODS[meta["method"]](backbone.feature_dim,
                                    **(_head_options(state) if head_options is None
                                       else head_options))
    backbone.load_state_dict(state["model"]["backbone"])
    heads.load_state_dict(state["model"]["heads"])
    return SSLModel(backbone, heads)


__all__ = [
    "CHECKPOINT_FORMAT",
    "NonFiniteLoss",
    "SSLModel",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "build_criterion",
    "build_optimizer",
    "compute_loss",
    "min_batch",
    "resumed_config",
    "train",
    "validate",
]
