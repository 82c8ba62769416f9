"""The project's own checkpoints: atomic, checksummed save; safe load; backbone export.

:func:`save_checkpoint` writes atomically with a SHA-256 of the payload inside and, when
asked, keeps the previous generation; :func:`load_checkpoint` reads any torch file with
``weights_only=True`` (official releases too: :mod:`adapters.releases` imports their
weights) and checks the checksum when there is one; :func:`export_backbone` writes a
backbone as a bare torchvision-named state dict.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor, nn


class CheckpointError(ValueError):
    """A checkpoint file or object does not have the content or layout that was asked for."""


class UnloadedGlobal:
    """Stands in for a function or class a release file refers to but this code does not trust.

    VICReg's full checkpoint stores its LARS optimizer's parameter groups, which hold the
    function ``exclude_bias_and_norm`` of the training script (pickled as
    ``__main__.exclude_bias_and_norm``): neither ``weights_only=True`` nor a plain
    ``torch.load`` can read such a file. :func:`load_checkpoint` with ``stand_ins=True``
    maps every such reference to an inert ``UnloadedGlobal`` (nothing from the file is
    imported or run); the weights must still be plain tensors, so a file that needs the
    object to build its weights is still rejected.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"UnloadedGlobal({self.name!r})"


#: payload key of the checksum :func:`save_checkpoint` stores and :func:`load_checkpoint` checks
INTEGRITY_KEY = "integrity"
#: key of a backbone export's side file holding the SHA-256 of the weights file
EXPORT_DIGEST_KEY = "weights_sha256"


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the previous file is intact."""


#: value types ``torch.load(weights_only=True)`` reads back (containers are checked recursively)
_PLAIN_TYPES = (str, bytes, int, float, complex, bool, type(None), torch.Size, torch.dtype,
                torch.device)


def save_checkpoint(
    path: str | os.PathLike[str], payload: Mapping[str, Any], *, keep_previous: bool = False
) -> Path:
    """Write a checkpoint atomically: temp file in the same directory, fsync, ``os.replace``.

    A crash or exception at any point leaves either the previous file or the complete new one,
    never a partial file (``os.replace`` is atomic on POSIX and Windows within one file
    system); the temp file is removed on failure. The payload may hold tensors, dicts, lists,
    tuples, sets and plain Python scalars/strings only, so that :func:`load_checkpoint` can
    read it with ``weights_only=True``; anything else (numpy arrays, arbitrary objects) is
    rejected before writing, naming where it is.

    The file also holds a SHA-256 of the payload (:func:`payload_digest`), which
    :func:`load_checkpoint` checks: damaged bytes anywhere, tensor data included, are an
    error instead of a silently different model. With ``keep_previous`` the file being
    replaced stays as :func:`previous_path` (one older generation), so a damaged latest file
    leaves a good one to go back to.

    Returns
    -------
    Path
        The written path. Missing parent directories are created.

    Raises
    ------
    CheckpointWriteError
        The file system refused the write (no space left, quota, I/O error); the message says
        which, and the previous file (if any) is unchanged.

    Examples
    --------
    >>> import tempfile, torch
    >>> from adapters.checkpoints import load_checkpoint, save_checkpoint
    >>> path = save_checkpoint(tempfile.mkdtemp() + "/last.pt", {"epoch": 3, "w": torch.ones(2)})
    >>> load_checkpoint(path)["epoch"]
    3
    """
    if not isinstance(payload, Mapping):
        raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
    _check_plain(payload, "payload")
    if INTEGRITY_KEY in payload:
        raise ValueError(f"payload key {INTEGRITY_KEY!r} is reserved for the checksum")
    path = Path(path)
    stored = {**payload, INTEGRITY_KEY: {"sha256": payload_digest(payload)}}
    _atomic_write(path, lambda f: torch.save(stored, f), keep_previous=keep_previous)
    return path


def previous_path(path: str | os.PathLike[str]) -> Path:
    """Where ``save_checkpoint(path, ..., keep_previous=True)`` keeps the generation before."""
    path = Path(path)
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files of saves that were killed midway (``.<name>.*.tmp``).

    Only a process killed with SIGKILL (or a power loss) during a save leaves one; call this
    when a run (re)starts in ``directory``. Returns the removed paths.
    """
    removed = []
    for tmp in Path(directory).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def payload_digest(payload: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint payload: every tensor's dtype, shape and bytes, and every
    other value's type and ``repr``, in container order (sets sorted).

    Equal for a payload and what :func:`load_checkpoint` reads back from its file.

    Examples
    --------
    >>> import torch
    >>> a = payload_digest({"w": torch.zeros(3), "step": 1})
    >>> a == payload_digest({"w": torch.zeros(3), "step": 1})
    True
    >>> a == payload_digest({"w": torch.ones(3), "step": 1})
    False
    """
    h = hashlib.sha256()
    _digest(payload, h)
    return h.hexdigest()


def _digest(value: Any, h: Any) -> None:
    if isinstance(value, Tensor):
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(value.shape)};".encode())
        h.update(t.view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        h.update(f"D{len(value)};".encode())
        for key, item in value.items():
            _digest(key, h)
            _digest(item, h)
    elif isinstance(value, (set, frozenset)):
        h.update(f"S{sorted(map(repr, value))!r};".encode())
    elif isinstance(value, (list, tuple)):
        h.update(f"L{type(value).__name__}{len(value)};".encode())
        for item in value:
            _digest(item, h)
    else:
        h.update(f"V{type(value).__name__}{value!r};".encode())


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device | None = "cpu",
    *,
    weights_only: bool = True,
    stand_ins: bool = False,
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (or any dict saved with torch.save).

    ``weights_only=True`` (default) unpickles only tensors and plain containers, so a file from
    elsewhere cannot run code; pass ``False`` only for files you trust. ``stand_ins=True``
    (with ``weights_only``) reads files that merely refer to functions or classes, such as
    VICReg's full release with the LARS filter functions in its optimizer state, putting an
    inert :class:`UnloadedGlobal` where each reference was: use it for files that then go to
    :func:`adapters.releases.load_official` or :func:`adapters.releases.detect_layout`, which
    check that the weights are tensors.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    CheckpointError
        The file is empty, truncated, not a torch checkpoint, holds objects ``weights_only``
        refuses, or is not a dict.

    Examples
    --------
    >>> from adapters.checkpoints import load_checkpoint
    >>> load_checkpoint("/nonexistent/last.pt")
    Traceback (most recent call last):
    ...
    FileNotFoundError: checkpoint file '/nonexistent/last.pt' does not exist
    """
    obj = _torch_load(
        Path(path), map_location, weights_only=weights_only, stand_ins=stand_ins and weights_only
    )
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds a {type(obj).__name__}, expected a dict"
        )
    # files from elsewhere (official releases, older runs) carry no checksum
    stored = obj.pop(INTEGRITY_KEY, None)
    if stored is not None and payload_digest(obj) != stored.get("sha256"):
        raise CheckpointError(
            f"checkpoint file {str(path)!r} is corrupt: its contents do not match the SHA-256 "
            "checksum stored in it"
        )
    return obj


def export_backbone(
    path: str | os.PathLike[str],
    module: nn.Module,
    *,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a backbone's state dict alone, loadable by torchvision code, atomically.

    For the ResNets the keys are torchvision's, so ``torchvision.models.resnet50()`` loads the
    file with ``strict=False`` and missing exactly ``fc.weight`` and ``fc.bias`` (and
    :func:`adapters.releases.load_official` reads it as ``"vicreg_backbone"``). A
    ``DistributedDataParallel`` wrapper is unwrapped; tensors are copied to CPU. ``metadata``
    (JSON-serialisable: method, backbone name, dataset, image size, mean, std, epoch, ...)
    goes to the side file
    :func:`export_metadata_path` so the weights file stays a bare state dict.

    Examples
    --------
    >>> import tempfile, torch, torchvision
    >>> from adapters.backbones import build_backbone
    >>> from adapters.checkpoints import export_backbone
    >>> path = export_backbone(tempfile.mkdtemp() + "/r18.pth", build_backbone("resnet18"))
    >>> torchvision.models.resnet18().load_state_dict(torch.load(path), strict=False)
    _IncompatibleKeys(missing_keys=['fc.weight', 'fc.bias'], unexpected_keys=[])
    """
    if isinstance(module, nn.parallel.DistributedDataParallel):
        module = module.module
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    state = OrderedDict((k, v.detach().cpu().clone()) for k, v in module.state_dict().items())
    path = Path(path)
    _atomic_write(path, lambda f: torch.save(state, f))
    if metadata is not None:
        # the side file names the weights it describes: `sha256sum <path>` prints the same
        text = json.dumps({**dict(metadata), EXPORT_DIGEST_KEY: _file_sha256(path)}, indent=2,
                          sort_keys=True)
        _atomic_write(export_metadata_path(path), lambda f: f.write(text.encode()))
    return path


def export_metadata_path(path: str | os.PathLike[str]) -> Path:
    """The JSON side file of a backbone export: ``<path>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def load_export_metadata(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The metadata written by :func:`export_backbone`, or None if the export has none.

    Raises :class:`CheckpointError` when the side file records the SHA-256 of the weights
    file and ``path`` no longer matches it (changed, truncated, or exported again without its
    side file); side files from before the checksum was recorded are read as they are.
    """
    meta = export_metadata_path(path)
    if not meta.is_file():
        return None
    try:
        value = json.loads(meta.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read export metadata {str(meta)!r}: {err}") from err
    expected = value.pop(EXPORT_DIGEST_KEY, None)
    if expected is not None:
        actual = _file_sha256(path)
        if actual != expected:
            raise CheckpointError(
                f"backbone export {os.fspath(path)!r} does not match its metadata {str(meta)!r}: "
                f"SHA-256 {actual}, the metadata records {expected}; the run's checkpoint.pt "
                "holds the same backbone (adapters.load_encoder reads it too)"
            )
    return value


def _file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, as ``sha256sum`` prints it."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, Tensor) or type(value) in _PLAIN_TYPES:
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in _PLAIN_TYPES:
                raise TypeError(f"{where} has a key of type {type(key).__name__}: {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if type(value) in (list, tuple, set, frozenset):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}; a checkpoint may "
        "hold only tensors, dicts, lists, tuples, sets, str, bytes, numbers, bools and None "
        "(so it loads with weights_only=True): convert it, e.g. numpy arrays with "
        "torch.from_numpy or .tolist()"
    )


def _atomic_write(
    path: Path, write: Callable[[IO[bytes]], Any], *, keep_previous: bool = False
) -> None:
    if path.is_dir():
        raise IsADirectoryError(f"cannot write checkpoint to {str(path)!r}: it is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; give the result the permissions of the file it replaces
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        if hasattr(os, "fchmod"):  # not on Windows before Python 3.13
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            # a hard link, then a rename: at every instant both names hold a complete file
            link = f"{tmp}.previous"
            os.link(path, link)
            os.replace(link, previous_path(path))
        os.replace(tmp, path)
    except BaseException as err:
        for leftover in (tmp, f"{tmp}.previous"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        cause = _os_error(err)
        if cause is None or cause.errno is None:
            raise
        raise CheckpointWriteError(cause.errno, _write_failure(path, cause)) from err
    _fsync_directory(path.parent)


def _os_error(err: BaseException) -> OSError | None:
    """The OSError behind ``err``: torch's zip writer reports a failed write as a RuntimeError
    ("unexpected pos") with the OSError only as its context."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _write_failure(path: Path, err: OSError) -> str:
    kept = f"; the previous {path.name} is intact" if path.exists() else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(path.parent).free
        return (f"no space left on the device (or quota) of {str(path.parent)!r} while "
                f"writing {path.name} ({free} bytes free){kept}")
    return f"cannot write {str(path)!r}: {err.strerror or err}{kept}"


def _fsync_directory(directory: Path) -> None:
    # makes the rename itself durable; not every platform lets a directory be opened
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _torch_load(
    path: Path, map_location: Any, *, weights_only: bool, stand_ins: bool = False
) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path {str(path)!r} is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file {str(path)!r} is empty")
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as err:
        if weights_only and "Weights only load failed" in str(err):
            if stand_ins:
                return _load_with_stand_ins(path, map_location, err)
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds objects other than tensors and plain "
                "containers, which weights_only=True refuses; if you trust the file, load it "
                f"with weights_only=False ({str(err).splitlines()[-1][:200]})"
            ) from err
        raise CheckpointError(
            f"checkpoint file {str(path)!r} is corrupt or not a torch checkpoint: {err}"
        ) from err
    except Exception as err:
        # a damaged file can fail anywhere inside the unpickler, with any exception type
        raise CheckpointError(
            f"checkpoint file {str(path)!r} is truncated, corrupt or not a torch checkpoint: "
            f"{err}"
        ) from err


def _load_with_stand_ins(path: Path, map_location: Any, first_error: Exception) -> Any:
    find = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    try:
        names = find(path) if find is not None else []
        if not names:
            raise first_error
        stand_ins = [(UnloadedGlobal(name), name) for name in names]
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} needs objects other than tensors and plain containers "
            f"to be rebuilt ({str(err).splitlines()[-1][:300]}); official releases hold plain "
            "tensors, so this file is not one of the supported layouts"
        ) from err
