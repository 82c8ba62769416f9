"""Differentiable torch criteria: E2MC, the criteria it is compared with, and base SSL losses.

Every criterion is a small ``torch.nn.Module`` whose ``forward(*views)`` takes (N, D) tensors
and returns ``(loss, parts)``: a scalar loss and a dict of detached tensors for logging.
Criteria that need the global batch gather it themselves with
:func:`entropylib.criteria.distributed.gather_with_grad` (the identity in one process).

``CRITERIA`` maps the names used in configs to the criterion classes that are added to a base
SSL loss; ``VICRegLoss``, ``SwAVLoss`` and ``SimSiamLoss`` are the base losses themselves.
"""

from entropylib.registry import require_torch

require_torch("entropylib.criteria")

from entropylib.criteria.distributed import gather_with_grad
from entropylib.criteria.e2mc import E2MC, REFERENCE_SETTINGS
from entropylib.criteria.logdet import LogDet
from entropylib.criteria.mmcr import MMCR
from entropylib.criteria.simsiam_loss import SimSiamLoss
from entropylib.criteria.swav_loss import SwAVLoss
from entropylib.criteria.uniformity import Uniformity
from entropylib.criteria.vcreg import VCReg
from entropylib.criteria.vicreg_loss import VICRegLoss
from entropylib.criteria.views import NonFiniteInput

__all__ = [
    "CRITERIA",
    "E2MC",
    "LogDet",
    "MMCR",
    "NonFiniteInput",
    "REFERENCE_SETTINGS",
    "SimSiamLoss",
    "SwAVLoss",
    "Uniformity",
    "VCReg",
    "VICRegLoss",
    "gather_with_grad",
]


class _Criteria(dict):
    """A dict of criterion classes whose missing key names the ones there are."""

    def __missing__(self, key: object) -> type:
        # "vicreg" (the base loss) for "vcreg" (the criterion) is the likely slip
        raise KeyError(f"unknown criterion {key!r}; the criteria are {sorted(self)}; the base "
                       "SSL losses are the classes VICRegLoss, SwAVLoss and SimSiamLoss")


CRITERIA: dict[str, type] = _Criteria({
    "e2mc": E2MC,
    "vcreg": VCReg,
    "mmcr": MMCR,
    "uniformity": Uniformity,
    "logdet": LogDet,
})
