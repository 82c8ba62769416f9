"""entropylib.registry: the ImportError that names the torch extra, and the method records."""

import builtins

import numpy as np
import pytest

import entropylib
from entropylib import registry


def _import_failing(monkeypatch, missing: str) -> None:
    """`import torch` raises ModuleNotFoundError for the module ``missing``."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "torch":
            raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_missing_torch_names_the_extra_to_install(monkeypatch):
    _import_failing(monkeypatch, "torch")
    with pytest.raises(ImportError, match=r'backend="torch" needs PyTorch') as err:
        registry.require_torch('backend="torch"')
    assert 'pip install "entropylib[torch]"' in str(err.value)


def test_a_broken_torch_install_raises_its_own_error(monkeypatch):
    """torch is there but one of its own dependencies is missing: that is what the user must
    see, not advice to install torch."""
    _import_failing(monkeypatch, "sympy")
    with pytest.raises(ModuleNotFoundError, match="sympy") as err:
        registry.require_torch('backend="torch"')
    assert "entropylib[torch]" not in str(err.value)


def test_methods_reports_joint_support_as_a_bool_that_estimate_honours():
    """``methods()[name]["joint"]`` is True exactly for the methods `estimate` runs with
    ``joint=True`` (a bool, as documented, not the table of backends behind it)."""
    x = np.random.default_rng(0).normal(size=(200, 2))
    for name, info in entropylib.methods().items():
        if "entropy" not in info["measures"]:
            continue
        assert type(info["joint"]) is bool, name
        try:
            entropylib.estimate(x, name, joint=True)
        except ValueError as err:
            assert "univariate" in str(err), name
            runs = False
        else:
            runs = True
        assert info["joint"] is runs, name


@pytest.mark.parametrize("method", ["vasicek", "knn"])
def test_marginal_estimates_rescale_each_column_by_its_own_power_of_two(method):
    """A method's default frame is per column for marginal estimates: one column near 1e300
    and one subnormal, in one call, are each estimated as H(z) + e log 2 (z the unscaled data;
    an exact power of two). One common factor would push the subnormal column to zero."""
    z = np.random.default_rng(0).normal(size=(500, 2))
    exponents = np.array([996, -1030])
    x = np.ldexp(z, exponents)
    reference = entropylib.estimate(z, method) + exponents * np.log(2.0)
    np.testing.assert_allclose(entropylib.estimate(x, method), reference, rtol=1e-12)
