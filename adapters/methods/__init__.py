"""The method adapters, by name: ``METHODS["vicreg" | "swav" | "simsiam"]``.

Each adapter declares its heads, base loss, the tensors an added criterion sees, its views
(``views``), its optimizer defaults (:class:`MethodDefaults`), its E2MC reference settings
and how official weights map onto its heads. :mod:`adapters.train` runs all of them through
one loop.
"""

import inspect
from typing import Any

from adapters.augment import DatasetInfo, MultiView
from adapters.methods.base import MethodAdapter, MethodDefaults, MethodOutput, OfficialLayout
from adapters.methods.simsiam import SimSiam
from adapters.methods.swav import SwAV
from adapters.methods.vicreg import VICReg

METHODS: dict[str, type[MethodAdapter]] = {
    "vicreg": VICReg,
    "swav": SwAV,
    "simsiam": SimSiam,
}


def ssl_views(method: str, info: DatasetInfo, **options: Any) -> MultiView:
    """The augmented views ``method`` trains on (its class's ``views`` recipe).

    Examples
    --------
    >>> from PIL import Image
    >>> from adapters.data import dataset_info, ssl_views
    >>> views = ssl_views("swav", dataset_info("fashion-mnist"), n_local_crops=2)
    >>> [tuple(v.shape) for v in views(Image.new("L", (28, 28)))]
    [(1, 28, 28), (1, 28, 28), (1, 12, 12), (1, 12, 12)]
    """
    if method not in METHODS:
        raise ValueError(f"unknown SSL method {method!r} for views; expected one of "
                         f"{sorted(METHODS)}")
    accepted = sorted(set(inspect.signature(METHODS[method].views).parameters) - {"info"})
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown view option(s) {unknown} for method {method!r}; it takes "
                         f"{accepted}")
    return METHODS[method].views(info, **options)


__all__ = ["METHODS", "MethodAdapter", "MethodDefaults", "MethodOutput", "OfficialLayout",
           "SimSiam", "SwAV", "VICReg", "ssl_views"]
