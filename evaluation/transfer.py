"""Transfer: a linear probe, on another data set, of features learned on a first one.

The frozen encoder embeds the target data set's training and test images (preprocessed the
way the encoder was trained: same size, channels and normalisation), and the cached-feature
probe of :func:`evaluation.linear.linear_probe` is fitted on the target's training labels,
its regularisation chosen on a validation split of them. E.g. a Fashion-MNIST encoder
evaluated on scikit-learn's digits (``python -m evaluation ... --protocols transfer
--transfer-dataset digits``).
"""

from __future__ import annotations

from typing import Any

from evaluation.features import extract_features
from evaluation.linear import LinearProbeResult, linear_probe


def transfer_probe(
    model: Any,
    target_train: Any,
    target_test: Any,
    *,
    batch_size: int = 256,
    device: str | None = None,
    progress: bool = False,
    **probe_options: Any,
) -> LinearProbeResult:
    """Linear-probe accuracy of a frozen ``model`` on a target data set.

    Parameters
    ----------
    model : torch.nn.Module
        Frozen encoder (B, C, H, W) -> (B, F).
    target_train, target_test : torch Datasets of (image tensor, int label)
        Already transformed to the encoder's input format.
    batch_size, device, progress
        Passed to :func:`evaluation.features.extract_features`.
    **probe_options
        Passed to :func:`evaluation.linear.linear_probe` (``Cs``, ``val_fraction``, ``seed``).

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> x = torch.randn(300, 1, 2, 2); y = (x.flatten(1).sum(1) > 0).long()
    >>> res = transfer_probe(torch.nn.Flatten(), TensorDataset(x[:200], y[:200]),
    ...                      TensorDataset(x[200:], y[200:]), Cs=(1.0,))
    >>> res.top1 > 0.9
    True
    """
    x_tr, y_tr = extract_features(model, target_train, batch_size=batch_size, device=device,
                                  progress=progress, desc="target train features")
    x_te, y_te = extract_features(model, target_test, batch_size=batch_size, device=device,
                                  progress=progress, desc="target test features")
    return linear_probe(x_tr, y_tr, x_te, y_te, **probe_options)
