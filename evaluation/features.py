"""Features of a frozen backbone over a data set, extracted in batches and cached on disk.

The cache key is a SHA-256 over: the checkpoint's fingerprint (its content hash, or
path + size + mtime when hashing a large file is too slow), the data set's name, root, split,
length and index subset, and ``repr(transform)`` (torchvision transforms print all their
parameters). Changing any of them gives a new file; nothing is ever silently reused across
models or preprocessing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: mixed-precision modes of :func:`extract_features`
AMP_MODES = ("off", "bf16", "fp16")
#: bytes each process receives per collective when features are gathered (bounds GPU memory)
_GATHER_BYTES = 1 << 28


def extract_features(
    model: Any,
    dataset: Any,
    *,
    batch_size: int = 256,
    device: str | None = None,
    num_workers: int = 0,
    pin_memory: bool | None = None,
    amp: str = "off",
    distributed: bool | None = None,
    progress: bool = True,
    desc: str = "features",
) -> tuple[np.ndarray, np.ndarray]:
    """Run a frozen model over a data set of (image, label) pairs.

    The model is put in eval mode (batch-norm uses its running statistics) and run under
    ``torch.inference_mode``; its train/eval state is restored afterwards.

    Under ``torchrun`` (an initialised process group of more than one process) each process
    runs the model on one contiguous shard of the data set (sizes differ by at most one, no
    sample padded or repeated), and the shards are gathered so that every process returns
    the whole matrix in data-set order, the same as one process would.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a (B, C, H, W) batch to (B, F) features.
    dataset : torch.utils.data.Dataset
        Yields (image tensor, int label).
    batch_size, num_workers : int
        DataLoader settings (per process).
    device : str, optional
        Defaults to "cuda" when available (``cuda:LOCAL_RANK`` under torchrun), else "cpu".
    pin_memory : bool, optional
        Page-locked batches for faster host-to-GPU copies; defaults to True on CUDA.
    amp : {"off", "bf16", "fp16"}
        Autocast the forward pass; the features are returned in float32 either way.
    distributed : bool, optional
        Shard and gather across the process group; defaults to True when one of more than
        one process is initialised.
    progress : bool
        Show a tqdm bar (on the first process only).

    Returns
    -------
    features : numpy.ndarray, float32, shape (n, F)
    labels : numpy.ndarray, int64, shape (n,)

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.randn(10, 1, 4, 4), torch.arange(10))
    >>> feats, labels = extract_features(torch.nn.Flatten(), data, batch_size=4, progress=False)
    >>> feats.shape, labels[:3].tolist()
    ((10, 16), [0, 1, 2])
    """
    import torch
    import torch.distributed as dist
    from torch.utils.data import Subset

    if len(dataset) == 0:
        raise ValueError("the data set is empty: nothing to extract features from")
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    grouped = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if distributed is None:
        distributed = grouped
    elif distributed and not grouped:
        raise ValueError("distributed=True needs an initialised process group of more than "
                         "one process (run under torchrun and call init_process_group)")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if device is None:
        local = os.environ.get("LOCAL_RANK", "0") if distributed else "0"
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    bounds = shard_bounds(len(dataset), world)
    shard = Subset(dataset, range(bounds[rank], bounds[rank + 1])) if distributed else dataset
    loader = data_loader(shard, batch_size=batch_size, device=device, num_workers=num_workers,
                         pin_memory=pin_memory)
    feats, labels = _forward(model, loader, device, amp, progress=progress and rank == 0,
                             desc=desc)
    if distributed:
        # a process whose shard is empty (fewer samples than processes) learns F from the others
        width = torch.tensor([feats.shape[1]], device=_comm_device(device))
        dist.all_reduce(width, op=dist.ReduceOp.MAX)
        feats = _gather_rows(feats.reshape(-1, int(width)), bounds, device)
        labels = _gather_rows(labels.reshape(-1, 1), bounds, device)
    return feats.numpy(), labels.reshape(-1).numpy()


def _batch_labels(target: Any, n: int) -> Any:
    """A batch's labels as int64 class indices, one per image; non-integer values (which a
    cast would truncate, 0.5 -> 0) and a count other than ``n`` are errors."""
    import torch

    target = torch.as_tensor(target).reshape(-1)
    integral = not target.is_complex() and (
        not target.is_floating_point() or bool((target == target.round()).all()))
    if not integral:
        raise ValueError(f"the data set's labels must be integer class indices, got "
                         f"{target.dtype} values such as {target[:3].tolist()}")
    if target.numel() != n:
        raise ValueError(f"the data set gives {target.numel()} labels for a batch of {n} "
                         "images; expected one class index per image")
    return target.to(torch.int64)


def _forward(model: Any, loader: Any, device: str, amp: str, *, progress: bool,
             desc: str) -> tuple[Any, Any]:
    """Float32 CPU features (n, F) and int64 labels (n,) of every batch of ``loader``."""
    import torch
    from tqdm.auto import tqdm

    autocast = autocast_context(device, amp)
    was_training = model.training
    model.eval()
    model.to(device)
    feats, labels = [], []
    try:
        with torch.inference_mode(), autocast:
            for images, target in tqdm(loader, desc=desc, disable=not progress, leave=False):
                out = model(images.to(device, non_blocking=loader.pin_memory))
                if out.ndim != 2:
                    raise ValueError(
                        f"the model must return (batch, features), got shape {tuple(out.shape)}"
                    )
                feats.append(out.float().cpu())
                labels.append(_batch_labels(target, out.shape[0]))
    finally:
        model.train(was_training)
    if not feats:  # an empty shard
        return torch.empty(0, 0), torch.empty(0, dtype=torch.int64)
    return torch.cat(feats), torch.cat(labels)


def autocast_context(device: str, amp: str) -> Any:
    """``torch.autocast`` on ``device``'s type for an :data:`AMP_MODES` mode ("off": disabled)."""
    import torch

    return torch.autocast(torch.device(device).type, enabled=amp != "off",
                          dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def shard_bounds(n: int, world: int) -> list[int]:
    """Starts of ``world`` contiguous shards of ``range(n)`` and ``n``; sizes differ by <= 1.

    Examples
    --------
    >>> shard_bounds(10, 3)
    [0, 4, 7, 10]
    """
    base, extra = divmod(n, world)
    return [r * base + min(r, extra) for r in range(world + 1)]


def data_loader(
    dataset: Any,
    *,
    batch_size: int,
    device: str,
    num_workers: int = 0,
    pin_memory: bool | None = None,
    **options: Any,
) -> Any:
    """The DataLoader of the evaluation: workers, and pinned memory by default on CUDA.

    Workers are not kept across epochs (``persistent_workers``): a persistent iterator draws
    its seed once, which would change a shuffled loader's order from the second epoch on, so
    a probe's result would depend on the number of workers.
    """
    import torch
    from torch.utils.data import DataLoader

    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if pin_memory is None:
        pin_memory = torch.device(device).type == "cuda"
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                      pin_memory=pin_memory, **options)


def _comm_device(device: str) -> str:
    """Where collectives run: NCCL needs CUDA tensors, gloo takes CPU ones."""
    import torch.distributed as dist

    return device if dist.get_backend() == "nccl" else "cpu"


def _on_every_process(flag: bool) -> bool:
    """Whether ``flag`` holds on every process of the group."""
    import torch
    import torch.distributed as dist

    nccl = dist.get_backend() == "nccl"
    device = f"cuda:{torch.cuda.current_device()}" if nccl else "cpu"
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def _gather_rows(local: Any, bounds: list[int], device: str) -> Any:
    """Every process's rows (``bounds`` says how many each has), concatenated in rank order.

    Shards are padded to a common length for ``all_gather`` and exchanged in chunks of at
    most ``_GATHER_BYTES`` received per process; the result is on the CPU.
    """
    import torch
    import torch.distributed as dist

    world, width = len(bounds) - 1, local.shape[1]
    sizes = [hi - lo for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    chunk = max(1, _GATHER_BYTES // max(1, world * width * local.element_size()))
    comm = _comm_device(device)
    out = torch.empty(bounds[-1], width, dtype=local.dtype)
    for lo in range(0, max(sizes), chunk):
        hi = min(lo + chunk, max(sizes))
        piece = torch.zeros(hi - lo, width, dtype=local.dtype, device=comm)
        mine = local[lo:hi]
        piece[: len(mine)] = mine
        parts = [torch.empty_like(piece) for _ in range(world)]
        dist.all_gather(parts, piece)
        for r, part in enumerate(parts):
            take = max(0, min(hi, sizes[r]) - lo)
            out[bounds[r] + lo: bounds[r] + lo + take] = part[:take].cpu()
    return out


def checkpoint_fingerprint(path: str | os.PathLike, *, content_hash: bool = True) -> str:
    """Identity of a checkpoint file: SHA-256 of its bytes, or of path + size + mtime.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile(delete=False) as fh:
    ...     _ = fh.write(b"weights")
    >>> checkpoint_fingerprint(fh.name).startswith("sha256:")
    True
    >>> os.unlink(fh.name)
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {os.fspath(path)!r} does not exist or is not a file")
    if not content_hash:
        st = p.stat()
        return f"stat:{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def feature_cache_key(
    *,
    checkpoint: str,
    dataset: str,
    split: str,
    transform: Any,
    root: str | None = None,
    length: int | None = None,
    indices: Sequence[int] | None = None,
    amp: str = "off",
) -> str:
    """SHA-256 hex key of everything that determines a feature matrix.

    ``checkpoint`` is a :func:`checkpoint_fingerprint`; ``indices`` a subset of the data set;
    ``amp`` the mixed-precision mode of the extraction (features computed in bfloat16 or
    float16 differ from float32 ones; "off" leaves the key as it was before AMP existed, so
    existing caches stay valid).
    """
    parts = {
        "checkpoint": checkpoint,
        "dataset": dataset,
        "split": split,
        "transform": repr(transform),
        "root": None if root is None else os.fspath(root),
        "length": length,
        "indices": None
        if indices is None
        else hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest(),
    }
    if amp != "off":
        parts["amp"] = amp
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def cached_features(
    model: Any,
    dataset: Any,
    *,
    cache_dir: str | os.PathLike,
    key: str,
    **extract_options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`extract_features`, stored as ``cache_dir/<key>.npz`` and reused when present.

    The file is written to a temporary name and renamed, so an interrupted run never leaves
    a truncated cache entry behind; an entry that cannot be read all the same (damaged on
    disk, copied in part) is extracted again and replaced, with a warning. When the
    extraction is distributed (under torchrun, see :func:`extract_features`), the first
    process alone writes the file, and it is reused only if every process can read it (so
    processes without a shared file system all extract, rather than some waiting in a
    collective the others skip).
    """
    import torch.distributed as dist

    distributed = extract_options.get("distributed")
    if distributed is None:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    writer = not distributed or dist.get_rank() == 0
    cache = Path(cache_dir)
    target = cache / f"{key}.npz"
    stored = _read_cache(target)
    found = stored is not None
    if distributed:
        found = _on_every_process(found)
    if found:
        return stored
    feats, labels = extract_features(model, dataset, **extract_options)
    if not writer:
        return feats, labels
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, features=feats, labels=labels)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return feats, labels


def _read_cache(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The features and labels stored at ``path``; None when absent or unreadable (warned)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as stored:
            return stored["features"], stored["labels"]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        warnings.warn(f"feature cache entry {path} is unreadable ({err}); extracting the "
                      "features again", RuntimeWarning, stacklevel=3)
        return None
