"""The criteria package: registry and lazy import (docstring examples run as doctests)."""

import subprocess
import sys

import pytest
import torch

import entropylib.criteria as criteria


def test_registry_names_and_keyword_construction():
    assert set(criteria.CRITERIA) == {"e2mc", "vcreg", "mmcr", "uniformity", "logdet"}
    for cls in criteria.CRITERIA.values():
        assert cls().forward.__name__ == "forward"
    assert (
        criteria.CRITERIA["e2mc"](transform="gaussian_cdf", ent_coeff=1, cov_coeff=25).cov_coeff
        == 25
    )


def test_an_unknown_criterion_names_the_criteria_and_the_base_losses():
    """A bare KeyError('vicreg') left a reader to guess that VICReg is a base loss here."""
    with pytest.raises(KeyError, match=r"unknown criterion 'vicreg'; the criteria are \[.*'vcreg'"
                       r".*base SSL losses are the classes VICRegLoss"):
        criteria.CRITERIA["vicreg"]
    assert criteria.CRITERIA.get("vicreg") is None and "vicreg" not in criteria.CRITERIA


def test_import_entropylib_does_not_import_torch_or_criteria():
    code = (
        "import sys, entropylib; "
        "print('torch' in sys.modules, 'entropylib.criteria' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


HALF_CASES = [
    ("e2mc", lambda: criteria.E2MC(), 2),
    ("vcreg", lambda: criteria.VCReg(), 2),
    ("mmcr", lambda: criteria.MMCR(), 2),
    ("uniformity", lambda: criteria.Uniformity(align_coeff=1.0), 2),
    ("logdet", lambda: criteria.LogDet(), 2),
    ("vicreg", lambda: criteria.VICRegLoss(), 2),
    ("simsiam", lambda: criteria.SimSiamLoss(), 4),
    ("swav", lambda: criteria.SwAVLoss(), 3),
]


@pytest.mark.parametrize(("name", "factory", "n_views"), HALF_CASES, ids=[c[0] for c in HALF_CASES])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_under_autocast_are_computed_in_float32(name, factory, n_views, dtype):
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(64, 16, generator=g).to(dtype).requires_grad_() for _ in range(n_views)]
    expected, _ = factory()(*[v.detach().float() for v in views])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = factory()(*views)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    loss.backward()
    for v in views:
        assert v.grad is None or torch.isfinite(v.grad).all()
