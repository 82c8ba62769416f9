"""The method adapters, by name: ``METHODS["vicreg" | "swav" | "simsiam"]``.

Each adapter declares its heads, base loss, the tensors an added criterion sees, its
augmentations and optimizer defaults (:class:`MethodDefaults`), and how official weights map
onto its heads. :mod:`adapters.train` runs all of them through one loop.
"""

from adapters.methods.base import MethodAdapter, MethodDefaults, MethodOutput
from adapters.methods.simsiam import SimSiam
from adapters.methods.swav import SwAV
from adapters.methods.vicreg import VICReg

METHODS: dict[str, type[MethodAdapter]] = {
    "vicreg": VICReg,
    "swav": SwAV,
    "simsiam": SimSiam,
}

__all__ = ["METHODS", "MethodAdapter", "MethodDefaults", "MethodOutput", "SimSiam", "SwAV",
           "VICReg"]
