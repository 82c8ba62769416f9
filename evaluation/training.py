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

from evaluation.accuracy import topk_accuracy


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
    """
    import torch
    from torch import nn
    from tqdm.auto import tqdm

    from evaluation.features import AMP_MODES, autocast_context, data_loader

    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    for name, data in (("train_set", train_set), ("val_set", val_set), ("test_set", test_set)):
        if len(data) == 0:
            raise ValueError(f"{name} is empty")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    frozen = trunk_lr is None
    grad_flags = [p.requires_grad for p in trunk.parameters()]
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
            for images, target in loader:
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
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
            val_acc = _accuracy(trunk, head, val_loader, device, amp)[0]
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
        top1, top5 = _accuracy(trunk, head, data_loader(test_set, **loading), device, amp)
    for p, flag in zip(trunk.parameters(), grad_flags, strict=True):
        p.requires_grad_(flag)
    return ClassifierResult(top1=top1, top5=top5, best_epoch=best_epoch, val_top1=val_curve)


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
    trunk: Any, head: Any, loader: Any, device: str, amp: str = "off"
) -> tuple[float, float]:
    import torch

    from evaluation.features import autocast_context

    trunk.eval()
    head.eval()
    scores, labels = [], []
    with torch.no_grad(), autocast_context(device, amp):
        for images, target in loader:
            images = images.to(device, non_blocking=loader.pin_memory)
            scores.append(head(trunk(images)).float().cpu().numpy())
            labels.append(np.asarray(target, dtype=np.int64).reshape(-1))
    return topk_accuracy(np.concatenate(scores), np.concatenate(labels))
