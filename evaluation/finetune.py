"""Semi-supervised evaluation: fine-tune the whole network on a 1% or 10% labelled subset.

The protocol of the VICReg / SwAV semi-supervised tables (docs/evaluation.md): backbone and a
new linear head trained together by SGD (momentum 0.9) with separate learning rates for trunk
and head, no weight decay, a cosine schedule, 20 epochs; the epoch is selected on a validation
split carved from the labelled subset, and the test set is scored once.
"""

from __future__ import annotations

from typing import Any

from evaluation.training import ClassifierResult, train_classifier


def finetune(
    backbone: Any,
    train_set: Any,
    val_set: Any,
    test_set: Any,
    *,
    num_classes: int,
    epochs: int = 20,
    trunk_lr: float = 0.03,
    head_lr: float = 0.08,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    device: str | None = None,
    seed: int = 0,
    num_workers: int = 0,
    amp: str = "off",
    progress: bool = True,
) -> ClassifierResult:
    """Fine-tune ``backbone`` plus a linear head; returns test accuracy of the best-val epoch.

    Defaults are VICReg's 1% semi-supervised settings (trunk lr 0.03, head lr 0.08, wd 0,
    20 epochs, batch 256). The backbone is modified in place (pass a copy to keep it).

    Parameters
    ----------
    backbone : torch.nn.Module
        (B, C, H, W) -> (B, F); trained in train mode (batch-norm statistics update).
    train_set, val_set, test_set : torch Datasets of (image, label)
        ``train_set`` usually holds augmented views of the labelled subset, ``val_set`` center
        views of the held-out part of it.
    num_classes, epochs, trunk_lr, head_lr, batch_size, weight_decay, device, seed
        Training settings; ``seed`` fixes head initialisation and batch order.
    num_workers, amp
        DataLoader workers and autocast mode (:func:`evaluation.training.train_classifier`).

    Returns
    -------
    :class:`evaluation.training.ClassifierResult`

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> x = torch.randn(64, 2); y = (x[:, 0] > 0).long()
    >>> data = TensorDataset(x, y)
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU())
    >>> res = finetune(net, data, data, data, num_classes=2, epochs=10, trunk_lr=0.05,
    ...                head_lr=0.5, batch_size=16, progress=False)
    >>> res.top1 > 0.8
    True
    """
    return train_classifier(
        backbone,
        train_set,
        val_set,
        test_set,
        num_classes=num_classes,
        epochs=epochs,
        head_lr=head_lr,
        trunk_lr=trunk_lr,
        batch_size=batch_size,
        weight_decay=weight_decay,
        device=device,
        seed=seed,
        num_workers=num_workers,
        amp=amp,
        progress=progress,
    )
