"""The one training loop behind ``adapters.continue_train`` and ``adapters.pretrain``.

Every method (:data:`adapters.methods.METHODS`) and every added criterion
(:data:`entropylib.criteria.CRITERIA`, or none for the "continued" control) runs through
:func:`train`: per step, the method's base loss plus the criterion on the tensors the method
exposes (docs/method.md), in one process or under ``torchrun`` (DistributedDataParallel;
NCCL on GPU, gloo on CPU).

The parts: :class:`TrainingState` (model, optimizer, grad scaler, schedule, position in the
data, generator states) saves and restores itself; :func:`train_step` is one optimisation
step; ``_loop`` runs steps and checkpoints (:class:`CheckpointWriter`); :func:`train`
orchestrates them.

Host and device. A step reads nothing from the device, so the host queues the next step's
work while a GPU runs this one's: the criteria skip their own NaN checks (the step checks its
loss and embeddings on the device), the gathers are told that every process has a full batch,
and the step's flags and loss parts stay on the device until :class:`StepRecords` reads the
pending steps, every ``log_every`` steps and before each checkpoint
(``tests/adapters/test_syncs.py`` counts this).

Exact resumption. The learning rate is a function of the global step; the data order and each
sample's augmentation are seeded (:mod:`adapters.sampling`). A checkpoint therefore determines
the rest of the run: ``--resume`` continues bit for bit on a deterministic CPU.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import inspect
import json
import math
import os
import signal
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from adapters import checkpoints, data, releases
from adapters.backbones import BACKBONES, build_backbone
from adapters.methods import METHODS
from adapters.models import CHECKPOINT_FORMAT, LoadedModel, SSLModel, load_model
from adapters.optim import LARS, SCHEDULES, lars_param_groups, lr_at
from adapters.sampling import (
    ResumableSampler,
    SeededViews,
    epoch_generator,
    rng_state,
    seed_all,
    set_rng_state,
)
from entropylib.criteria import CRITERIA
from entropylib.criteria.distributed import equal_batches
from entropylib.criteria.views import caller_checks_finite
from entropylib.spacings import default_window
from entropylib.validation import is_integer

CRITERION_NAMES = ("none", *sorted(CRITERIA))
AMP_MODES = ("off", "bf16", "fp16")
#: config fields a resumed run may change: where it stops, where its files and data are, and
#: how it runs; every other field defines the run and must stay as saved
RESUME_CHANGEABLE = ("out", "overwrite", "data_root", "epochs", "max_steps", "save_every",
                     "log_every", "workers", "progress", "tensorboard", "device")


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
    absolute; when None it is the method's ``base_lr * global_batch / 256``. Every step is
    logged; ``log_every`` is how often the host reads the device to write the steps since the
    last read (and to check them for non-finite values, and, under torchrun, for a signal).
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
    log_every: int = 20
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
    flagged = _criterion_flags(config)
    if config.criterion == "none" and (flagged or config.criterion_options):
        raise ValueError(f"criterion options {sorted({*flagged, *config.criterion_options})} "
                         "need a --criterion: the 'none' control adds no criterion")
    twice = sorted(set(flagged) & set(config.criterion_options))
    if twice:
        raise ValueError(f"criterion option(s) {twice} given both by their own flag and by "
                         "--criterion-option; give each once")
    if config.backbone is not None and config.backbone not in BACKBONES:
        raise ValueError(
            f"unknown backbone {config.backbone!r}; expected one of {sorted(BACKBONES)}"
        )
    if config.mode == "pretrain" and config.backbone is None:
        raise ValueError("pretraining needs --backbone (one of " f"{sorted(BACKBONES)})")
    if config.mode == "continue" and not config.checkpoint:
        raise ValueError("continued training needs --checkpoint (a file to start from)")
    if config.mode == "continue" and not resuming and not Path(config.checkpoint).is_file():
        problem = "is a directory, not a file" if Path(config.checkpoint).is_dir() else (
            "does not exist")
        raise FileNotFoundError(f"checkpoint {config.checkpoint!r} {problem}")
    if config.layout is not None and config.layout not in releases.official_layouts():
        raise ValueError(f"unknown checkpoint layout {config.layout!r}; expected one of "
                         f"{list(releases.official_layouts())} (docs/checkpoints.md)")
    _check_int("epochs", config.epochs, low=0)
    _check_int("batch_size", config.batch_size, low=1)
    _check_int("workers", config.workers, low=0)
    _check_int("save_every", config.save_every, low=0)
    _check_int("log_every", config.log_every, low=1)
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
    _views(config)
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ValueError("--tensorboard needs the tensorboard package, which is not installed")


def _check_int(name: str, value: Any, *, low: int) -> None:
    if not is_integer(value) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


# ----------------------------------------------------------------------------------------
# model, criterion, optimizer


def build_criterion(config: TrainConfig) -> nn.Module | None:
    """The added criterion with the method's reference defaults filled in (None for "none")."""
    if config.criterion == "none":
        return None
    cls = CRITERIA[config.criterion]
    # the method's reference settings, then --criterion-option, then the dedicated flags
    options = METHODS[config.method].reference_settings() if config.criterion == "e2mc" else {}
    options.update(config.criterion_options)
    options.update(_criterion_flags(config))
    accepted = inspect.signature(cls).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"criterion {config.criterion!r} has no option(s) {unknown}; "
            f"it takes {sorted(accepted)}"
        )
    return cls(**options)


def _criterion_flags(config: TrainConfig) -> dict[str, Any]:
    """The criterion settings given by their own flags (--ent-coeff, ...), by option name."""
    flags = {"transform": config.transform, "ent_coeff": config.ent_coeff,
             "cov_coeff": config.cov_coeff, "m": config.m, "eps": config.eps}
    return {k: v for k, v in flags.items() if v is not None}


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


def resolve_device(name: str | None, *, world: int, local_rank: int) -> torch.device:
    """The device of process ``local_rank`` on its machine, in a run of ``world`` processes.

    ``name`` is ``--device``: None for CUDA when available (else CPU); ``"cuda"`` is this
    process's own GPU, ``cuda:LOCAL_RANK``. An explicit index under torchrun would put every
    process on that one GPU, so it is refused.
    """
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device; give cpu, cuda or cuda:N") from None
    if device.index is not None and world > 1:
        raise ValueError(f"--device {name} would put every torchrun process on one device; give "
                         f"the type only (--device {device.type}: each process then uses the "
                         "GPU of its LOCAL_RANK)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


@dataclass
class StepLoss:
    """The loss of one step and its pieces, all left on the device.

    ``finite`` is a 0-dim bool tensor: True when the loss and every embedding of this process
    are finite.
    """

    loss: torch.Tensor
    base_loss: torch.Tensor
    base_parts: dict[str, torch.Tensor]
    criterion_loss: torch.Tensor
    criterion_parts: dict[str, torch.Tensor]
    finite: torch.Tensor

    def metrics(self, method: str, criterion: str) -> tuple[list[str], torch.Tensor]:
        """This process's loss parts for logging: their flat names and one float64 tensor of
        their values, on the device (read with other steps' by :class:`StepRecords`)."""
        names, values = ["base_loss", "criterion_loss"], [self.base_loss, self.criterion_loss]
        for prefix, parts in ((method, self.base_parts), (criterion, self.criterion_parts)):
            for key, value in parts.items():
                value = value.detach().float()
                names.append(f"{prefix}.{key}")
                values.append(value.mean())
                if value.numel() > 1:
                    names += [f"{prefix}.{key}.{i}" for i in range(value.numel())]
                    values.append(value.flatten())
        return names, torch.cat([v.detach().double().reshape(-1) for v in values])


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
    autocast itself). Nothing is read from the device: the losses do not check their inputs
    for NaN and inf (:func:`~entropylib.criteria.views.caller_checks_finite`), so every process
    runs the same collectives whatever its values, and ``finite`` tells the caller.
    """
    device = views[0].device
    with caller_checks_finite():
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            base_loss, base_parts, embeddings = model(views)
        embeddings = [e.float() for e in embeddings]
        crit_loss, crit_parts = torch.zeros((), device=device), {}
        if criterion is not None:
            crit_loss, crit_parts = criterion(*embeddings)
    loss = base_loss.float() + crit_loss
    finite = torch.stack([torch.isfinite(t).all() for t in (loss, *embeddings)]).all()
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


@dataclass
class StepRecord:
    """One step as the host reads it: its metrics row and what every process agreed on."""

    row: dict[str, float]
    #: processes whose loss or embeddings were not finite at this step
    non_finite: int
    #: whether a stop signal had reached any process by the end of the step's forward pass
    signalled: bool


class StepRecords:
    """The steps trained since the host last read the device, read in one transfer.

    A step leaves its flags (mean loss over the processes, the two counts of
    :class:`StepRecord`) and its loss parts on the device; :meth:`read` copies those of every
    pending step at once (one synchronisation with a GPU), when the loop logs or checkpoints.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[dict[str, float], list[str], torch.Tensor]] = []

    def add(self, step: int, epoch: int, lr: float, flags: torch.Tensor,
            metrics: tuple[list[str], torch.Tensor]) -> None:
        names, values = metrics
        self.pending.append(({"step": step, "epoch": epoch, "lr": lr}, names,
                             torch.cat([flags.detach().double(), values])))

    def read(self) -> list[StepRecord]:
        """The pending steps in order (and none pending afterwards)."""
        if not self.pending:
            return []
        flat = torch.cat([values for _, _, values in self.pending]).tolist()
        records, start = [], 0
        for host, names, values in self.pending:
            loss, non_finite, signalled, *parts = flat[start : start + len(values)]
            start += len(values)
            row = {"step": host["step"], "epoch": host["epoch"], "loss": loss,
                   **dict(zip(names, parts, strict=True)), "lr": host["lr"]}
            records.append(StepRecord(row, round(non_finite), signalled > 0))
        self.pending = []
        return records


# ----------------------------------------------------------------------------------------
# the loop


class StopFlag:
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


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers ignore SIGTERM/SIGINT: a scheduler that cancels or preempts a job
    signals the whole process group, and a worker killed by it would take the loop down before
    the main process (which :class:`StopFlag` lets finish the step) writes its checkpoint.
    Workers still end with the main process, which shuts them down."""
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by start_workers


def start_workers(loader: DataLoader) -> Iterator:
    """``iter(loader)`` with the stop signals blocked while its workers are forked, so that none
    can kill a worker before :func:`ignore_stop_signals` runs in it; a signal sent meanwhile
    reaches this process when they are unblocked."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@dataclass
class Process:
    """Where this process trains: its rank among ``world`` processes and its device."""

    world: int
    rank: int
    device: torch.device

    @classmethod
    def from_environment(cls, config: TrainConfig) -> Process:
        """Rank and world size as ``torchrun`` sets them (1 process otherwise); a CUDA device
        becomes the current one."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        device = resolve_device(config.device, world=world,
                                local_rank=int(os.environ.get("LOCAL_RANK", "0")))
        if config.sync_bn and world > 1 and device.type == "cpu":
            raise ValueError("--sync-bn needs GPUs: torch's SyncBatchNorm does not run on CPU")
        if device.type == "cuda":
            # pinned memory, NCCL and every bare "cuda" use the current GPU: GPU 0 unless set
            torch.cuda.set_device(device)
        return cls(world, int(os.environ.get("RANK", "0")), device)

    def check_global_batch(self, config: TrainConfig) -> None:
        """The global batch must be large enough for the criterion."""
        global_batch = config.batch_size * self.world
        need = min_batch(config.criterion, config.m)
        if global_batch < need:
            raise ValueError(
                f"criterion {config.criterion!r} needs a global batch of at least {need}"
                + (f" (2m+1 with m={config.m})" if config.criterion == "e2mc" and config.m
                   else "")
                + f", got {global_batch} ({config.batch_size} per process x {self.world})"
            )

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class TrainingState:
    """Everything that determines the rest of a run: model, optimizer, grad scaler, learning
    rate schedule, position in the data (epoch, step in the epoch) and the generator states.

    :meth:`payload` is the checkpoint; :meth:`restore` puts a checkpoint's state back, after
    which training continues bit for bit.
    """

    def __init__(self, config: TrainConfig, model: SSLModel, process: Process,
                 meta: dict[str, Any], *, steps_per_epoch: int, base_epoch: int) -> None:
        self.config, self.model, self.meta = config, model, meta
        self.steps_per_epoch = steps_per_epoch
        self.step, self.epoch, self.epoch_step = 0, base_epoch, 0
        self.base_epoch, self.end_epoch = base_epoch, base_epoch + config.epochs
        self.world, self.rank = process.world, process.rank
        global_batch = config.batch_size * process.world
        d = METHODS[config.method].defaults
        self.peak_lr = config.lr if config.lr is not None else d.base_lr * global_batch / 256
        self.optimizer = build_optimizer(config, model, self.peak_lr)
        self.scaler = torch.amp.GradScaler(process.device.type, enabled=config.amp == "fp16")
        self.warmup_steps = round(config.warmup_epochs * steps_per_epoch)

    @property
    def schedule_steps(self) -> int:
        """The steps the learning-rate schedule spans: all the run's epochs."""
        return (self.end_epoch - self.base_epoch) * self.steps_per_epoch

    @property
    def stop_step(self) -> int:
        """The step the run stops after: the end of its epochs, or ``max_steps`` if earlier."""
        if self.config.max_steps is None:
            return self.schedule_steps
        return min(self.schedule_steps, self.config.max_steps)

    @property
    def finished(self) -> bool:
        return self.epoch >= self.end_epoch or self.step >= self.stop_step

    def lr(self) -> float:
        """The scheduled learning rate of the coming step."""
        c = self.config
        return lr_at(self.step, base_lr=self.peak_lr, total_steps=self.schedule_steps,
                     schedule=c.schedule, warmup_steps=self.warmup_steps, final_lr=c.final_lr)

    def advance(self) -> None:
        """Count one step done (and one epoch, at its last step)."""
        self.step += 1
        self.epoch_step += 1
        if self.epoch_step == self.steps_per_epoch:
            self.epoch, self.epoch_step = self.epoch + 1, 0

    def non_finite(self) -> str:
        """Names of the parameters, buffers and optimizer-state tensors that are not finite."""
        tensors = [*self.model.named_parameters(), *self.model.named_buffers()]
        for param, values in self.optimizer.state.items():
            tensors += [(f"optimizer {key} of a {tuple(param.shape)} parameter", v)
                        for key, v in values.items() if isinstance(v, torch.Tensor)]
        bad = [name for name, t in tensors
               if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        return ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")

    def process_states(self) -> list[dict[str, torch.Tensor]]:
        """Every process's own state of the heads (e.g. SwAV's queue), by rank. Every process
        must call it (it gathers)."""
        mine = {k: v.cpu() for k, v in self.model.heads.process_state().items()}
        if self.world == 1:
            return [mine]
        every: list[Any] = [None] * self.world
        dist.all_gather_object(every, mine)
        return every

    def payload(self, process_states: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
        """The checkpoint's contents; ``process_states`` from :meth:`process_states`."""
        c = self.config
        return {
            "format": CHECKPOINT_FORMAT,
            "meta": self.meta,
            "model": {"backbone": self.model.backbone.state_dict(),
                      "heads": self.model.heads.state_dict()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "lr_schedule": {"peak_lr": self.peak_lr, "schedule": c.schedule,
                            "warmup_steps": self.warmup_steps,
                            "total_steps": self.schedule_steps, "final_lr": c.final_lr},
            "epoch": self.epoch, "epoch_step": self.epoch_step, "step": self.step,
            "base_epoch": self.base_epoch, "end_epoch": self.end_epoch,
            "data_order": {"seed": c.seed, "epoch": self.epoch,
                           "position": self.epoch_step * c.batch_size, "world_size": self.world},
            "rng": rng_state(),
            "process_states": process_states,
            "config": dataclasses.asdict(c),
        }

    def restore(self, payload: Mapping[str, Any]) -> None:
        """Continue from a checkpoint's state (the model's weights are already loaded)."""
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        # checkpoints written before per-process state existed had none to save
        own = payload.get("process_states", [{}] * self.world)[self.rank]
        self.model.heads.load_process_state(own)
        self.step, self.epoch = payload["step"], payload["epoch"]
        self.epoch_step, self.base_epoch = payload["epoch_step"], payload["base_epoch"]
        # the stopping point is the config's: a resumed run may be given new epochs
        self.end_epoch = self.base_epoch + self.config.epochs
        set_rng_state(payload["rng"])


class CheckpointWriter:
    """Writes the run's checkpoints (main process) and knows the last good one on disk."""

    def __init__(self, out: Path, process: Process, resumed: tuple[Path, int] | None) -> None:
        self.path = out / "checkpoint.pt"
        self.is_main = process.is_main
        #: (path, step) of the newest good checkpoint of this run: resumed from, or written
        self.last_good = resumed

    def save(self, state: TrainingState) -> Path:
        """Write the state unless it is already on disk; a non-finite state is never saved."""
        if self.last_good is not None and self.last_good[1] == state.step:
            return self.last_good[0]
        # every rank checks (DDP replicas are equal), so that every rank stops together
        bad = state.non_finite()
        if bad:
            raise NonFiniteLoss(f"the state after step {state.step} (epoch {state.epoch}) is not "
                                f"finite ({bad}), so it was not saved. " + self.last_good_text())
        process_states = state.process_states()
        if self.is_main:
            # the file replaced becomes the previous generation only if it is this run's own
            # good checkpoint (not, e.g., a damaged one resumed around)
            keep = self.last_good is not None and self.last_good[0].resolve() == \
                self.path.resolve()
            checkpoints.save_checkpoint(self.path, state.payload(process_states),
                                        keep_previous=keep)
        self.last_good = (self.path, state.step)
        return self.path

    def last_good_text(self) -> str:
        if self.last_good is None:
            return ("No checkpoint of this run was written before it diverged (--save-every N "
                    "keeps one every N steps).")
        return f"The last good checkpoint is {self.last_good[0]} (step {self.last_good[1]})."


def train_step(state: TrainingState, ddp: nn.Module, criterion: nn.Module | None,
               batch: list[torch.Tensor], *, stop: StopFlag,
               amp_dtype: torch.dtype | None) -> tuple[StepLoss, torch.Tensor]:
    """One optimisation step, which reads nothing from the device. Returns the step's loss
    parts and, on the device, the flags every process agreed on: ``[mean loss, number of
    processes whose loss or an embedding was not finite, number a signal had reached]``.

    The update is made whatever the flags say: the caller reads them (:class:`StepRecords`)
    before it saves, and stops with :class:`NonFiniteLoss` at a non-finite step, so that a
    state after one is never saved.
    """
    lr = state.lr()
    for group in state.optimizer.param_groups:
        group["lr"] = state.peak_lr if group["fixed_lr"] else lr
    model = state.model
    model.heads.before_step()
    with equal_batches():  # the sampler gives every process full batches of one size
        step_loss = compute_loss(ddp, criterion, batch, amp_dtype=amp_dtype)
    loss = step_loss.loss
    # the signal is read after the forward pass, so one that arrived during it stops after
    # this step
    flags = torch.stack([loss.detach(), (~step_loss.finite).to(loss.dtype),
                         torch.full((), float(stop.signum != 0), device=loss.device)])
    if state.world > 1:
        dist.all_reduce(flags)
        flags[0] /= state.world
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    model.heads.after_backward(state.step)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    return step_loss, flags


def train(config: TrainConfig, *, resume: str | None = None) -> TrainResult:
    """Run (or with ``resume``, continue) a training run; see :class:`TrainConfig`.

    ``resume`` is a checkpoint path written by an earlier run of this loop. ``config`` must
    then be the run's own config (:func:`resumed_config` reads it) except for the fields of
    :data:`RESUME_CHANGEABLE`; a new stopping point (``epochs``, ``max_steps``) is honoured.
    A run already at its stopping point trains nothing (``steps_run == 0``). ``config`` itself
    is never changed.

    Raises ValueError/FileNotFoundError on bad input and OSError on an unwritable ``out``
    before anything is loaded or written, :class:`NonFiniteLoss` when the loss or the state
    diverges and :class:`TrainingInterrupted` after a signal (both after the last good
    checkpoint is on disk).

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
    config = dataclasses.replace(config)
    validate(config, resuming=resume is not None)
    out = Path(config.out)
    check_writable(out)
    saved = _load_run(resume, config) if resume is not None else None
    if saved is None and (out / "checkpoint.pt").exists() and not config.overwrite:
        raise FileExistsError(f"{out} already holds a run (checkpoint.pt); use --resume to "
                              "continue it, --overwrite to replace it, or another --out")
    process = Process.from_environment(config)
    if saved is not None:
        _check_same_world(saved, process, resume)
    process.check_global_batch(config)
    info, dataset = _training_data(config, process)
    state, criterion, notes = _start_state(config, info, process, dataset, saved)
    if saved is not None and state.finished:
        backbone = out / "backbone.pt"
        return TrainResult(out, Path(resume), backbone if backbone.is_file() else None,
                           state.step, state.epoch, {})
    writer = CheckpointWriter(out, process, None if saved is None else (Path(resume), state.step))
    if process.is_main:
        _prepare_out(out, state, notes, fresh=saved is None)
    log = (MetricsLog(out, tensorboard=config.tensorboard, keep_until=state.step)
           if process.is_main else None)
    first_step = state.step
    try:
        last = _loop(state, writer, log, criterion, dataset, process)
        path = writer.save(state)
        backbone = None
        if process.is_main:
            backbone = out / "backbone.pt"
            checkpoints.export_backbone(backbone, state.model.backbone,
                                        metadata={**state.meta, "epoch": state.epoch})
        return TrainResult(out, path, backbone, state.step, state.epoch, last,
                           steps_run=state.step - first_step)
    finally:
        if log is not None:
            log.close()


def _training_data(config: TrainConfig, process: Process) -> tuple[data.DatasetInfo, SeededViews]:
    """The training images with the method's views, each sample seeded by (seed, epoch, i)."""
    info, views = _views(config)
    dataset = data.load_dataset(config.dataset, config.data_root, train=True, transform=views)
    global_batch = config.batch_size * process.world
    if len(dataset) < global_batch:
        raise ValueError(
            f"dataset {config.dataset!r} has {len(dataset)} training images, fewer than one "
            f"global batch of {global_batch}"
        )
    return info, SeededViews(dataset, config.seed)


def _views(config: TrainConfig) -> tuple[data.DatasetInfo, data.MultiView]:
    """The data set's description and the method's views with the run's view options (their
    names and values checked)."""
    info = data.dataset_info(config.dataset)
    return info, data.ssl_views(config.method, info, **{
        **METHODS[config.method].defaults.view_options, **config.view_options})


def _start_state(
    config: TrainConfig, info: data.DatasetInfo, process: Process, dataset: SeededViews,
    saved: Mapping[str, Any] | None,
) -> tuple[TrainingState, nn.Module | None, dict[str, Any]]:
    """The model (started or resumed), its optimizer and schedule, and the criterion."""
    if saved is not None:
        loaded = load_model(saved)
    elif config.mode == "pretrain":
        seed_all(config.seed)  # a pretraining backbone and its heads start from the seed
        backbone = build_backbone(config.backbone, in_channels=info.channels)
        method = METHODS[config.method]
        model = SSLModel(backbone, method(backbone.feature_dim, **config.head_options))
        loaded = LoadedModel(model, config.backbone, method.head_options(config.head_options),
                             0, "random")
    else:
        seed_all(config.seed)  # heads a release lacks start from a seeded initialisation
        loaded = load_model(config.checkpoint, method=config.method, arch=config.backbone,
                            layout=config.layout, head_options=config.head_options,
                            in_channels=info.channels)
    criterion = build_criterion(config)
    if process.world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if process.device.type == "cuda" else "gloo")
    loaded.model.heads.set_world_size(process.world)
    model = loaded.model.to(process.device)
    if config.sync_bn and process.world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    meta = {"method": config.method, "backbone": loaded.backbone, "dataset": config.dataset,
            "in_channels": info.channels, "image_size": info.image_size,
            "mean": list(info.mean), "std": list(info.std), "head_options": loaded.head_options}
    steps_per_epoch = _steps_per_epoch(config, process, dataset)
    state = TrainingState(config, model, process, meta, steps_per_epoch=steps_per_epoch,
                          base_epoch=loaded.epoch if saved is None else 0)
    if saved is not None:
        state.restore(saved)
    notes = {"start": loaded.source if saved is None else "resume",
             **({"warning": loaded.warning} if loaded.warning else {})}
    return state, criterion, notes


def _steps_per_epoch(config: TrainConfig, process: Process, dataset: SeededViews) -> int:
    shard = ResumableSampler(dataset, num_replicas=process.world, rank=process.rank,
                             seed=config.seed)
    return len(shard) // config.batch_size


def _prepare_out(out: Path, state: TrainingState, notes: dict[str, Any], *, fresh: bool) -> None:
    """Create the run directory, clear what a killed save or a replaced run left, write
    config.json."""
    out.mkdir(parents=True, exist_ok=True)
    checkpoints.remove_stale_temporaries(out)
    if fresh:  # --overwrite: nothing of the replaced run may pass for this one's
        for old in (out / "checkpoint.pt", checkpoints.previous_path(out / "checkpoint.pt")):
            old.unlink(missing_ok=True)
    c = state.config
    resolved = {"peak_lr": state.peak_lr, "global_batch": c.batch_size * state.world,
                "world_size": state.world, "steps_per_epoch": state.steps_per_epoch,
                "end_epoch": state.end_epoch, "backbone": state.meta["backbone"],
                "head_options": state.meta["head_options"], **notes}
    (out / "config.json").write_text(json.dumps(
        {**dataclasses.asdict(c), "resolved": resolved}, indent=2, default=str))
    if "warning" in notes:
        print(f"warning: {notes['warning']}")


def _loop(state: TrainingState, writer: CheckpointWriter, log: MetricsLog | None,
          criterion: nn.Module | None, dataset: SeededViews, process: Process) -> dict[str, float]:
    """Train until the stopping point; checkpoint every epoch, every ``save_every`` steps and
    when a signal arrives. Returns the last step's metrics.

    The host reads the device every ``log_every`` steps and before each checkpoint, nowhere
    else (:class:`StepRecords`): it then logs the steps since the last read, stops at the first
    that was not finite, and learns whether a signal reached any process.
    """
    c = state.config
    ddp = state.model
    if process.world > 1:
        ddp = nn.parallel.DistributedDataParallel(
            state.model, broadcast_buffers=False,
            device_ids=[process.device.index] if process.device.type == "cuda" else None)
    sampler = ResumableSampler(dataset, num_replicas=process.world, rank=process.rank,
                               seed=c.seed)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(c.amp)
    bar = tqdm(total=state.stop_step, initial=state.step, dynamic_ncols=True,
               disable=not (process.is_main and c.progress), desc=f"{c.method}+{c.criterion}")
    stop = StopFlag()
    stop.install()
    records = StepRecords()
    last: dict[str, float] = {}
    try:
        ddp.train()
        while not state.finished:
            sampler.set_epoch(state.epoch)
            dataset.epoch = state.epoch
            sampler.start = state.epoch_step * c.batch_size
            loader = DataLoader(dataset, sampler=sampler, batch_size=c.batch_size,
                                num_workers=c.workers, drop_last=True,
                                pin_memory=process.device.type == "cuda",
                                worker_init_fn=ignore_stop_signals,
                                generator=epoch_generator(c.seed, state.epoch))
            tic = time.perf_counter()
            for batch, _ in start_workers(loader):
                batch = [v.to(process.device, non_blocking=True) for v in batch]
                epoch, lr = state.epoch, state.lr()
                step_loss, flags = train_step(state, ddp, criterion, batch, stop=stop,
                                              amp_dtype=amp_dtype)
                state.advance()
                metrics = step_loss.metrics(c.method, c.criterion)
                records.add(state.step, epoch, lr, flags, metrics)
                bar.update(1)
                # one process sees its signal at once; processes must stop after the same
                # step, so under torchrun a signal is learnt from the flags when they are read
                interrupted = process.world == 1 and stop.signum != 0
                save = interrupted or state.finished or state.epoch_step == 0 or bool(
                    c.save_every and state.step % c.save_every == 0)
                if save or state.step % c.log_every == 0:
                    last, signalled = _log_steps(records, log, writer, process,
                                                 samples=c.batch_size * process.world, since=tic)
                    bar.set_postfix(loss=f"{last['loss']:.4g}")
                    if save or signalled:
                        path = writer.save(state)
                        if interrupted or signalled:
                            raise TrainingInterrupted(stop.signum or signal.SIGTERM, path)
                    tic = time.perf_counter()
                if state.epoch_step == 0 or state.finished:
                    break
        return last
    finally:
        stop.restore()
        bar.close()


def _log_steps(records: StepRecords, log: MetricsLog | None, writer: CheckpointWriter,
               process: Process, *, samples: int, since: float) -> tuple[dict[str, float], bool]:
    """Read the pending steps and log them (main process) with their throughput: ``samples``
    images per step in the time ``since`` the first began (per-step times of work queued on a
    GPU are not known without a synchronisation each). Raises :class:`NonFiniteLoss` at the
    first step that was not finite, after logging those before it. Returns the last step's
    row and whether a signal had reached any process."""
    steps = records.read()
    rate = samples * len(steps) / max(time.perf_counter() - since, 1e-9)
    rows = [{**record.row, "samples_per_s": rate} for record in steps]
    for record, row in zip(steps, rows, strict=True):
        if record.non_finite:
            parts = {k: v for k, v in record.row.items()
                     if k not in ("step", "epoch", "loss", "lr")}
            raise NonFiniteLoss(
                f"loss is {row['loss']} at step {row['step']} (epoch {row['epoch']}); the loss "
                f"or an embedding was not finite in {record.non_finite} of {process.world} "
                f"process(es); parts: {parts}. {writer.last_good_text()}")
        if log is not None:
            log.write(row)
    return rows[-1], any(record.signalled for record in steps)


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


def resumed_config(path: str, **changes: Any) -> TrainConfig:
    """The config of the run saved in checkpoint ``path``, with ``changes`` applied.

    What the command line's ``--resume`` passes to :func:`train`: the run as it was, plus the
    flags given with ``--resume``.
    """
    return dataclasses.replace(TrainConfig(**_read_run(path)["config"]), **changes)


def _read_run(path: str) -> dict[str, Any]:
    """A checkpoint of this loop; a damaged one names the intact previous generation."""
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


def _check_same_world(saved: Mapping[str, Any], process: Process, path: str) -> None:
    """Refuse to resume on another number of processes: the data order (one shard per process)
    and the learning rate (scaled by the global batch) would silently change."""
    world = saved["data_order"]["world_size"]
    if world != process.world:
        batch = saved["config"]["batch_size"]
        raise ValueError(
            f"{path} was saved by a run of {world} process(es) (global batch {world * batch}); "
            f"this is {process.world} process(es) (global batch {process.world * batch}). "
            f"Resume it with {world} process(es) (torchrun --nproc_per_node={world} for "
            "several), or start a new run from it with --checkpoint"
        )


#: command-line flags of the config fields whose flag is not ``--<field with dashes>``
_FLAGS = {"criterion_options": "--criterion-option", "head_options": "--head-option",
          "view_options": "--view-option", "progress": "--no-progress"}


def _load_run(path: str, config: TrainConfig) -> dict[str, Any]:
    """The checkpoint to resume, refusing a config that changes what defines the run."""
    state = _read_run(path)
    saved = TrainConfig(**state["config"])
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
    return state


__all__ = [
    "CHECKPOINT_FORMAT",
    "NonFiniteLoss",
    "SSLModel",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "TrainingState",
    "build_criterion",
    "build_optimizer",
    "compute_loss",
    "min_batch",
    "resolve_device",
    "resumed_config",
    "train",
    "train_step",
    "validate",
]
