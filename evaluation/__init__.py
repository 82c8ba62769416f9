"""Evaluation of embeddings: faiss kNN, linear probes, fine-tuning, transfer, diagnostics.

Every function works on plain numpy arrays or torch tensors of features; models enter only
through :func:`extract_features` (any ``nn.Module``) and :class:`ModelData` (a checkpoint via
``adapters.load_encoder`` with its data and cached features). The protocols by name
(:data:`PROTOCOLS`, :func:`run_protocol`; see :mod:`evaluation.protocols`) are the one layer
behind both ``python -m evaluation`` and the paper's executor. Importing this package imports
neither torch nor faiss.

Examples
--------
>>> import numpy as np, evaluation
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 3, 600)
>>> x = 6 * np.eye(3)[y] + rng.normal(size=(600, 3))
>>> evaluation.knn_accuracy(x[:400], y[:400], x[400:], y[400:], k=20)[20].top1
1.0
"""

from evaluation.accuracy import topk_accuracy
from evaluation.diagnostics import (
    alignment,
    embedding_diagnostics,
    marginal_entropy_profile,
    offdiag_covariance_energy,
    plot_entropy_profiles,
    plot_spectra,
    rankme,
    singular_values,
    total_correlation,
    uniformity,
)
from evaluation.features import (
    cached_features,
    checkpoint_fingerprint,
    extract_features,
    feature_cache_key,
)
from evaluation.finetune import finetune
from evaluation.knn import KNNResult, knn_accuracy, knn_neighbors, l2_normalize
from evaluation.linear import (
    LinearProbeResult,
    linear_probe,
    probe_train_transform,
    sgd_linear_probe,
)
from evaluation.model_data import DataSpec, ModelData
from evaluation.protocols import (
    PROTOCOLS,
    ProtocolResult,
    make_options,
    register,
    run_protocol,
)
from evaluation.report import SeedSummary, comparison_table, write_report
from evaluation.separability import (
    embed_2d,
    fisher_ratio,
    knn_purity,
    plot_embeddings_2d,
    silhouette,
)
from evaluation.subsets import (
    label_subset,
    limit_indices,
    mean_std,
    read_subset_file,
    subset_from_names,
    validation_split,
    write_subset_file,
)
from evaluation.training import ClassifierResult
from evaluation.transfer import transfer_probe

__all__ = [
    "PROTOCOLS",
    "ClassifierResult",
    "DataSpec",
    "KNNResult",
    "LinearProbeResult",
    "ModelData",
    "ProtocolResult",
    "SeedSummary",
    "alignment",
    "cached_features",
    "checkpoint_fingerprint",
    "comparison_table",
    "embed_2d",
    "embedding_diagnostics",
    "extract_features",
    "feature_cache_key",
    "finetune",
    "fisher_ratio",
    "knn_accuracy",
    "knn_neighbors",
    "knn_purity",
    "l2_normalize",
    "label_subset",
    "limit_indices",
    "linear_probe",
    "make_options",
    "marginal_entropy_profile",
    "mean_std",
    "offdiag_covariance_energy",
    "plot_embeddings_2d",
    "plot_entropy_profiles",
    "plot_spectra",
    "probe_train_transform",
    "rankme",
    "read_subset_file",
    "register",
    "run_protocol",
    "sgd_linear_probe",
    "silhouette",
    "singular_values",
    "subset_from_names",
    "topk_accuracy",
    "total_correlation",
    "transfer_probe",
    "uniformity",
    "validation_split",
    "write_report",
    "write_subset_file",
]
