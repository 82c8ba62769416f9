"""Each method adapter's E2MC defaults are the paper's reference settings.

The values are written here from the paper (Chakraborty et al. 2025; docs/method.md,
'Reference settings'), not read from entropylib.criteria.REFERENCE_SETTINGS, so that neither
copy can drift from them unnoticed.
"""

import pytest

from adapters.methods import METHODS

PAPER = {
    "vicreg": ("sigmoid", 10.0, 1.0),
    "swav": ("gaussian_cdf", 10.0, 1.0),
    "simsiam": ("gaussian_cdf", 1.0, 25.0),
}


@pytest.mark.parametrize("method", sorted(PAPER))
def test_method_defaults_hold_the_paper_settings(method):
    settings = METHODS[method].reference_settings()
    assert (settings["transform"], settings["ent_coeff"], settings["cov_coeff"]) == PAPER[method]


def test_swav_uses_larc_clipping():
    assert METHODS["swav"].defaults.clip is True
    assert METHODS["vicreg"].defaults.clip is False
