"""The supervised training loop behind the SGD linear probe and semi-supervised fine-tuning.

One loop: a linear head on a trunk, SGD (momentum 0.9) with a cosine schedule per step, the
head (and trunk, when it is trained) of the epoch with the best validation top-1 kept in
memory, and the test set scored exactly once, with that selected model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from entropylib.validation import is_real
from evaluation.accuracy import topk_accuracy
from evaluation.inputs import as_labels, positive_int


@dataclass(frozen=True)
class ClassifierResult:
    """A trained classifier's test accuracy (the epoch selected on validation) and its
    validation curve."""

    top1: float
    top5: float
    best_epoch: int
    val_top1: list[float] = field(default_factory=list)


def train_classifier(
    trunk: Any,
    train_set: Any,
    val_set: Any,
    test_set: Any,
    *,
    num_classes: int,
    epochs: int,
    head_lr: float,
    trunk_lr: float | None,
    batch_size: int = 256,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    device: str | None = None,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool | None = None,
    amp: str = "off",
    progress: bool = True,
) -> ClassifierResult:
    """Train ``Linear(trunk(x))``; ``trunk_lr=None`` freezes the trunk (eval mode, no grad).

    ``num_workers`` and ``pin_memory`` (default: on CUDA) apply to the train, validation and
    test loaders (:func:`evaluation.features.data_loader`). ``amp`` ("off", "bf16", "fp16")
    autocasts the forward passes; the loss is taken in float32, the weights stay float32, and
    fp16 gradients are scaled (``torch.amp.GradScaler``). Returns the test top-1 / top-5 of
    the epoch with the best validation top-1 (the earliest such epoch on ties).

    Every label must be a class index in [0, num_classes). A loss or class score that is
    not finite (a learning rate too large, NaN inputs) stops the run with a
    FloatingPointError instead of scoring a diverged head. The trunk's train/eval mode and
    ``requires_grad`` flags are restored on return.
    """
    import torch
    from torch import nn
    from tqdm.auto import tqdm

    from evaluation.features import AMP_MODES, autocast_context, data_loader

    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    _check_settings(epochs, num_classes, head_lr, trunk_lr, batch_size, momentum, weight_decay)
    for name, data in (("train_set", train_set), ("val_set", val_set), ("test_set", test_set)):
        if len(data) == 0:
            raise ValueError(f"{name} is empty")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    frozen = trunk_lr is None
    grad_flags = [p.requires_grad for p in trunk.parameters()]
    was_training = trunk.training
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trunk.to(device)
        dim = _feature_dim(trunk, train_set, device)
        head = nn.Linear(dim, num_classes).to(device)
        params = [{"params": head.parameters(), "lr": head_lr}]
        if frozen:
            trunk.requires_grad_(False)
        else:
            params.append({"params": list(trunk.parameters()), "lr": trunk_lr})
        opt = torch.optim.SGD(params, lr=head_lr, momentum=momentum, weight_decay=weight_decay)
        loading = dict(batch_size=batch_size, device=device, num_workers=num_workers,
                       pin_memory=pin_memory)
        loader = data_loader(
            train_set,
            shuffle=True,
            drop_last=len(train_set) > batch_size,
            generator=torch.Generator().manual_seed(seed),
            **loading,
        )
        val_loader = data_loader(val_set, **loading)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(loader))
        loss_fn = nn.CrossEntropyLoss()
        autocast = autocast_context(device, amp)
        scaler = torch.amp.GradScaler(torch.device(device).type, enabled=amp == "fp16")
        best, best_epoch, val_curve = None, 0, []
        for epoch in tqdm(range(epochs), desc="train", disable=not progress, leave=False):
            trunk.train(not frozen)
            head.train()
            finite = torch.ones((), dtype=torch.bool, device=device)
            for images, target in loader:
                _check_targets(target, num_classes, "train_set")
                images = images.to(device, non_blocking=loader.pin_memory)
                target = target.to(device, non_blocking=loader.pin_memory)
                with autocast:
                    if frozen:
                        with torch.no_grad():
                            feats = trunk(images)
                    else:
                        feats = trunk(images)
                    scores = head(feats)
                loss = loss_fn(scores.float(), target)
                finite &= torch.isfinite(loss)  # checked once per epoch: no per-step sync
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
            if not bool(finite):
                raise FloatingPointError(
                    f"training diverged in epoch {epoch + 1}: the loss became NaN or infinite; "
                    f"lower the learning rate (head {head_lr}, trunk {trunk_lr}) or check the "
                    "training images for NaN/inf"
                )
            val_acc = _accuracy(trunk, head, val_loader, device, amp, "val_set")[0]
            val_curve.append(val_acc)
            if best is None or val_acc > max(val_curve[:-1]):
                best_epoch = epoch + 1
                best = (
                    copy.deepcopy(head.state_dict()),
                    None if frozen else copy.deepcopy(trunk.state_dict()),
                )
        head.load_state_dict(best[0])
        if best[1] is not None:
            trunk.load_state_dict(best[1])
        top1, top5 = _accuracy(trunk, head, data_loader(test_set, **loading), device, amp,
                               "test_set")
    for p, flag in zip(trunk.parameters(), grad_flags, strict=True):
        p.requires_grad_(flag)
    trunk.train(was_training)
    return ClassifierResult(top1=top1, top5=top5, best_epoch=best_epoch, val_top1=val_curve)


def _check_settings(
    epochs: Any, num_classes: Any, head_lr: Any, trunk_lr: Any, batch_size: Any,
    momentum: Any, weight_decay: Any,
) -> None:
    """Refuse settings that would train nothing or train on NaN, naming the setting."""
    positive_int(epochs, "epochs")
    if positive_int(num_classes, "num_classes") < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    positive_int(batch_size, "batch_size")
    if not all(lr is None or _finite(lr) and lr > 0 for lr in (head_lr, trunk_lr)):
        raise ValueError(
            f"learning rates must be > 0 and finite, got trunk {trunk_lr}, head {head_lr}"
        )
    for name, value in (("momentum", momentum), ("weight_decay", weight_decay)):
        if not (_finite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _finite(value: Any) -> bool:
    return is_real(value) and bool(np.isfinite(value))


def _check_targets(target: Any, num_classes: int, name: str) -> None:
    """A batch's labels are class indices in [0, num_classes); checked on the CPU copy."""
    target = as_labels(np.asarray(target).reshape(-1), None, f"{name} labels")
    if target.size and target.max() >= num_classes:
        raise ValueError(
            f"{name} has label {target.max()} outside [0, num_classes={num_classes}); labels "
            "must be class indices below num_classes"
        )


def _feature_dim(trunk: Any, data: Any, device: str) -> int:
    dim = getattr(trunk, "feature_dim", None)
    if isinstance(dim, int):
        return dim
    import torch

    was_training = trunk.training
    trunk.eval()
    with torch.no_grad():
        out = trunk(data[0][0].unsqueeze(0).to(device))
    trunk.train(was_training)
    return int(out.shape[-1])


def _accuracy(
    trunk: Any, head: Any, loader: Any, device: str, amp: str, name: str
) -> tuple[float, float]:
    """Top-1 / top-5 of ``head(trunk(x))`` on ``loader``; non-finite scores are an error."""
    import torch

    from evaluation.features import autocast_context

    trunk.eval()
    head.eval()
    scores, labels = [], []
    with torch.no_grad(), autocast_context(device, amp):
        for images, target in loader:
            _check_targets(target, head.out_features, name)
            images = images.to(device, non_blocking=loader.pin_memory)
            scores.append(head(trunk(images)).float().cpu().numpy())
            labels.append(np.asarray(target, dtype=np.int64).reshape(-1))
    scores = np.concatenate(scores)
    bad = np.flatnonzero(~np.isfinite(scores).all(axis=1))
    if bad.size:
        raise FloatingPointError(
            f"the classifier gives NaN or infinite scores for {bad.size} of {len(scores)} "
            f"{name} images (first: {bad[:5].tolist()}); check those images for NaN/inf"
        )
    return topk_accuracy(scores, np.concatenate(labels))
