"""Linear probes: logistic regression on cached features, and the paper's augmented SGD probe.

Two different protocols; a reported number must say which one it comes from.

* :func:`linear_probe` ("cached-feature probe"): multinomial logistic regression
  (scikit-learn, L-BFGS) on frozen, standardised center-crop features. The inverse
  regularisation C is chosen on a validation split carved from the TRAINING labels
  (:func:`evaluation.subsets.validation_split`); the model is then refitted on all training
  labels with that C and scored once on the test set.
* :func:`sgd_linear_probe` (the protocol of docs/evaluation.md): a linear layer on a frozen
  backbone, trained by SGD (momentum 0.9, batch 256, cosine schedule) on RandomResizedCrop +
  flip views; the epoch is selected on a validation split, never on test.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evaluation.accuracy import topk_accuracy
from evaluation.inputs import (
    as_features,
    as_labels,
    check_same_width,
    positive_int,
    positive_real,
)
from evaluation.subsets import validation_split

#: Inverse regularisation strengths tried by default (log grid, as in Kornblith et al. 2019).
DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass(frozen=True)
class LinearProbeResult:
    """Test accuracy of a probe and how its hyper-parameter was selected.

    ``not_converged`` of the ``n_fits`` L-BFGS fits (one per candidate C, and the refit)
    stopped at ``max_iter`` before converging; their ConvergenceWarnings are counted here
    instead of printed.
    """

    top1: float
    top5: float
    C: float
    val_top1: dict[float, float] = field(default_factory=dict)
    n_train: int = 0
    n_val: int = 0
    not_converged: int = 0
    n_fits: int = 0


def linear_probe(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    test_labels: Any,
    *,
    Cs: Sequence[float] = DEFAULT_CS,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = 200,
) -> LinearProbeResult:
    """Cached-feature linear probe with C selected on a validation split of the training labels.

    Model: p(y = c | x) = softmax_c(W z + b), z the standardised features (mean / std of the
    training features), fitted by minimising  sum_i -log p(y_i | x_i) + ‖W‖^2 / (2 C).
    Each column is divided by its largest absolute training value before the mean and std
    are taken, so features at any finite scale (1e-200 or 1e200) give the same probe.

    Parameters
    ----------
    train_features, test_features : array_like or torch.Tensor, shapes (n, d), (m, d)
    train_labels, test_labels : array_like of int
    Cs : sequence of float
        Candidate inverse regularisation strengths; ties in validation accuracy go to the
        smaller C (the simpler model).
    val_fraction : float
        Share of each class's training labels held out for selection.
    seed : int
        Seed of the validation split.
    max_iter : int
        L-BFGS iterations.

    Returns
    -------
    :class:`LinearProbeResult` with test top-1 / top-5 of the refitted model, the chosen C
    and the validation accuracy of every candidate.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 300)
    >>> x = 5 * np.eye(3)[y] + rng.normal(size=(300, 3))
    >>> res = linear_probe(x[:200], y[:200], x[200:], y[200:], Cs=(0.1, 1.0))
    >>> res.top1 > 0.95
    True
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_tr = as_features(train_features, "train_features", dtype=np.float64)
    x_te = as_features(test_features, "test_features", dtype=np.float64)
    check_same_width(x_tr, x_te, ("train_features", "test_features"))
    y_tr = as_labels(train_labels, x_tr.shape[0], "train_labels")
    y_te = as_labels(test_labels, x_te.shape[0], "test_labels")
    if np.ndim(Cs) != 1 or len(Cs) == 0:
        raise TypeError(f"Cs must be a non-empty sequence of positive numbers, got {Cs!r}")
    cs = [positive_real(c, "Cs") for c in Cs]
    max_iter = positive_int(max_iter, "max_iter")
    if np.unique(y_tr).size < 2:
        raise ValueError("train_labels hold a single class; a classifier needs at least two")
    x_tr, x_te = _unit_peak_columns(x_tr, x_te)

    not_converged = 0

    def fit(x: np.ndarray, y: np.ndarray, c: float) -> Any:
        nonlocal not_converged
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x, y)
        for w in caught:
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        not_converged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
        return model

    fit_idx, val_idx = validation_split(y_tr, fraction=val_fraction, seed=seed)
    val_top1 = {}
    for c in sorted(cs):
        model = fit(x_tr[fit_idx], y_tr[fit_idx], c)
        val_top1[c] = float(np.mean(model.predict(x_tr[val_idx]) == y_tr[val_idx]))
    best_c = max(sorted(cs), key=lambda c: val_top1[c])
    final = fit(x_tr, y_tr, best_c)
    top1, top5 = topk_accuracy(final.predict_proba(x_te), y_te, final.classes_)
    return LinearProbeResult(
        top1=top1,
        top5=top5,
        C=best_c,
        val_top1=val_top1,
        n_train=int(fit_idx.size),
        n_val=int(val_idx.size),
        not_converged=not_converged,
        n_fits=len(cs) + 1,
    )


def _unit_peak_columns(x_tr: np.ndarray, x_te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets divided by each column's largest absolute TRAINING value.

    StandardScaler alone fails at the extremes: the sum of squares behind its std overflows
    at 1e200 (NaN features), and below ~1e-150 it underflows, a scale under 10 eps counts as
    "constant" and the features are left unscaled (the probe then returns chance).
    """
    peak = np.max(np.abs(x_tr), axis=0)
    peak[peak == 0] = 1.0
    x_te = x_te / peak
    if not np.isfinite(x_te).all():
        raise ValueError(
            "test_features exceed the training features' range by more than float64 can "
            "represent (the probe scales both by the training maxima); check the features"
        )
    return x_tr / peak, x_te


def probe_train_transform(info: Any) -> Any:
    """RandomResizedCrop + horizontal flip + normalisation: the SGD probe's training views.

    ``info`` is an ``adapters.data.DatasetInfo`` (image_size, mean, std).
    """
    from torchvision import transforms as T

    return T.Compose(
        [
            T.RandomResizedCrop(info.image_size),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(info.mean, info.std),
        ]
    )


def sgd_linear_probe(
    backbone: Any,
    train_set: Any,
    val_set: Any,
    test_set: Any,
    *,
    num_classes: int,
    epochs: int = 100,
    lr: float = 0.3,
    batch_size: int = 256,
    weight_decay: float = 1e-6,
    device: str | None = None,
    seed: int = 0,
    num_workers: int = 0,
    amp: str = "off",
    progress: bool = True,
) -> Any:
    """The paper's linear evaluation: a linear layer trained by SGD on a frozen backbone.

    SGD with momentum 0.9, batch 256, learning rate ``lr`` (VICReg's head default 0.3) on a
    cosine schedule to 0 over ``epochs``; ``train_set`` should yield augmented views (see
    :func:`probe_train_transform`), ``val_set`` and ``test_set`` center views. The backbone
    stays in eval mode with no gradient. The head of the epoch with the best validation top-1
    is scored once on ``test_set``. ``num_workers`` and ``amp`` are those of
    :func:`evaluation.training.train_classifier`.

    Returns
    -------
    :class:`evaluation.training.ClassifierResult`

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> x = torch.randn(64, 2); y = (x[:, 0] > 0).long()
    >>> data = TensorDataset(x, y)
    >>> res = sgd_linear_probe(torch.nn.Identity(), data, data, data, num_classes=2,
    ...                        epochs=5, lr=0.5, batch_size=16, progress=False)
    >>> res.top1 > 0.8
    True
    """
    from evaluation.training import train_classifier

    return train_classifier(
        backbone,
        train_set,
        val_set,
        test_set,
        num_classes=num_classes,
        epochs=epochs,
        head_lr=lr,
        trunk_lr=None,
        batch_size=batch_size,
        weight_decay=weight_decay,
        device=device,
        seed=seed,
        num_workers=num_workers,
        amp=amp,
        progress=progress,
    )
