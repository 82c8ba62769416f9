"""entropylib: differential entropy estimators and entropy-based criteria for SSL embeddings.

The data path: samples -> :func:`estimate` (spacing, kNN, KDE and Gaussian estimators on
numpy, numba and torch backends) -> :mod:`entropylib.criteria` (E2MC and the criteria it is
compared with, as differentiable torch losses).

Importing entropylib imports neither torch, torchvision nor faiss, and compiles nothing.
"""

# the estimator modules register their methods on import
from entropylib import gaussian, kde, knn, ksg, spacings, weighted_knn  # noqa: F401
from entropylib.estimate import estimate
from entropylib.information import (
    conditional_mutual_information,
    mutual_information,
    total_correlation,
)
from entropylib.registry import methods

__all__ = [
    "conditional_mutual_information",
    "estimate",
    "methods",
    "mutual_information",
    "total_correlation",
]
__version__ = "0.1.0"
