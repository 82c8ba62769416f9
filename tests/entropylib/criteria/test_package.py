"""The criteria package: registry, lazy import, and the docstring examples."""

import doctest
import importlib
import subprocess
import sys

import pytest

import entropylib.criteria as criteria

MODULES = [
    "distributed",
    "e2mc",
    "logdet",
    "mmcr",
    "simsiam_loss",
    "swav_loss",
    "uniformity",
    "vcreg",
    "vicreg_loss",
]


def test_registry_names_and_keyword_construction():
    assert set(criteria.CRITERIA) == {"e2mc", "vcreg", "mmcr", "uniformity", "logdet"}
    for cls in criteria.CRITERIA.values():
        assert cls().forward.__name__ == "forward"
    assert (
        criteria.CRITERIA["e2mc"](transform="gaussian_cdf", ent_coeff=1, cov_coeff=25).cov_coeff
        == 25
    )


def test_import_entropylib_does_not_import_torch_or_criteria():
    code = (
        "import sys, entropylib; "
        "print('torch' in sys.modules, 'entropylib.criteria' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"entropylib.criteria.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
