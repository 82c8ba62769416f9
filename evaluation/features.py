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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def extract_features(
    model: Any,
    dataset: Any,
    *,
    batch_size: int = 256,
    device: str | None = None,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "features",
) -> tuple[np.ndarray, np.ndarray]:
    """Run a frozen model over a data set of (image, label) pairs.

    The model is put in eval mode (batch-norm uses its running statistics) and run under
    ``torch.inference_mode``; its train/eval state is restored afterwards.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a (B, C, H, W) batch to (B, F) features.
    dataset : torch.utils.data.Dataset
        Yields (image tensor, int label).
    batch_size, num_workers : int
        DataLoader settings.
    device : str, optional
        Defaults to "cuda" when available, else "cpu".
    progress : bool
        Show a tqdm bar.

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
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    if len(dataset) == 0:
        raise ValueError("the data set is empty: nothing to extract features from")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval()
    model.to(device)
    feats, labels = [], []
    try:
        with torch.inference_mode():
            for images, target in tqdm(loader, desc=desc, disable=not progress, leave=False):
                out = model(images.to(device))
                if out.ndim != 2:
                    raise ValueError(
                        f"the model must return (batch, features), got shape {tuple(out.shape)}"
                    )
                feats.append(out.float().cpu().numpy())
                labels.append(np.asarray(target, dtype=np.int64).reshape(-1))
    finally:
        model.train(was_training)
    return np.concatenate(feats), np.concatenate(labels)


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
) -> str:
    """SHA-256 hex key of everything that determines a feature matrix.

    ``checkpoint`` is a :func:`checkpoint_fingerprint`; ``indices`` a subset of the data set.
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
    a truncated cache entry behind.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{key}.npz"
    if target.is_file():
        with np.load(target) as stored:
            return stored["features"], stored["labels"]
    feats, labels = extract_features(model, dataset, **extract_options)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, features=feats, labels=labels)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return feats, labels
