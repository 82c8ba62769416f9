"""The tie counts of the numba spacing kernels against counts made by hand: the share of
floored gaps that `estimate` reports under ties="floor" (with the floored estimate equal to the
numpy backend's), and the count in the error under "raise". Interior triples of equal values:
with m = 1 each has exactly one zero two-sided gap s[i+1] - s[i-1] and two zero one-sided gaps
s[i+1] - s[i]."""

import numpy as np
import pytest

import entropylib

N, TRIPLES = 10_000, 30


def with_triples() -> np.ndarray:
    """N distinct sorted values, then TRIPLES interior triples made equal (no other ties)."""
    s = np.sort(np.random.default_rng(0).normal(size=N))
    for p in range(100, 100 + 200 * TRIPLES, 200):
        s[p + 1] = s[p + 2] = s[p]
    return np.random.default_rng(1).permutation(s)


@pytest.mark.parametrize("method", ["vasicek", "ebrahimi", "m_spacing"])
def test_floored_share_is_the_share_of_zero_gaps(method):
    zero_gaps = TRIPLES if method != "m_spacing" else 2 * TRIPLES
    gaps = N if method != "m_spacing" else N - 1  # m_spacing has n - m gaps
    share = f"{zero_gaps / gaps:.1%}"
    with pytest.warns(RuntimeWarning, match=rf"floored {share} of the spacings"):
        h = entropylib.estimate(with_triples(), method, m=1, ties="floor", backend="numba")
    with pytest.warns(RuntimeWarning, match=rf"floored {share} of the spacings"):
        reference = entropylib.estimate(with_triples(), method, m=1, ties="floor",
                                        backend="numpy")
    assert np.isfinite(h) and h == pytest.approx(reference, abs=1e-12)


@pytest.mark.parametrize("method", ["vasicek", "ebrahimi", "m_spacing"])
def test_the_tie_error_counts_the_zero_gaps(method):
    zero_gaps = TRIPLES if method != "m_spacing" else 2 * TRIPLES
    with pytest.raises(ValueError, match=rf"column 0 has {zero_gaps} zero spacings"):
        entropylib.estimate(with_triples(), method, m=1, backend="numba")
