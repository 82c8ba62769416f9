"""Exact properties of every spacing estimator on every backend (hypothesis), and torch gradients.

The data are drawn tie-free (continuous distributions from a hypothesis-chosen seed); the
transformations (shift, scale, permutation) are drawn by hypothesis.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import entropylib
from entropylib.spacings import default_window

METHODS = ("m_spacing", "vasicek", "van_es", "ebrahimi", "correa")
BACKENDS = ("numpy", "numba", "torch")
CASES = [(m, b) for m in METHODS for b in BACKENDS]
# option sets beyond the defaults whose properties also hold exactly
VARIANTS = [("m_spacing", {"bias_correction": True}), ("vasicek", {"bias_correction": True})]


def draw_sample(seed: int, n: int, d: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(size=(n, d))
    if kind == "exponential":
        return rng.exponential(size=(n, d))
    if kind == "cauchy":
        return rng.standard_cauchy(size=(n, d))
    return rng.uniform(-3.0, 5.0, size=(n, d))


samples = st.builds(
    draw_sample,
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(12, 80),
    d=st.integers(1, 4),
    kind=st.sampled_from(["normal", "exponential", "cauchy", "uniform"]),
)


def est(x, method, backend, **kw):
    """estimate() on `backend`, always from and to numpy."""
    if backend == "torch":
        return entropylib.estimate(torch.as_tensor(x), method, backend="torch", **kw).numpy()
    return np.asarray(entropylib.estimate(x, method, backend=backend, **kw))


def window(x, data):
    """The default window, or a hypothesis-drawn valid one."""
    n = x.shape[0]
    return data.draw(st.one_of(st.none(), st.integers(1, (n - 1) // 2)), label="m")


def opts(m):
    return {} if m is None else {"m": m}


@pytest.mark.parametrize(("method", "backend"), CASES)
@given(x=samples, data=st.data())
def test_translation(method, backend, x, data):
    b = data.draw(st.floats(-10, 10), label="b") * np.abs(x).max()
    m = window(x, data)
    np.testing.assert_allclose(
        est(x + b, method, backend, **opts(m)), est(x, method, backend, **opts(m)), atol=1e-8
    )


@pytest.mark.parametrize(("method", "backend"), CASES)
@given(x=samples, data=st.data())
def test_scale(method, backend, x, data):
    a = data.draw(st.floats(1e-3, 1e3) | st.floats(-1e3, -1e-3), label="a")
    m = window(x, data)
    np.testing.assert_allclose(
        est(a * x, method, backend, **opts(m)),
        est(x, method, backend, **opts(m)) + math.log(abs(a)),
        atol=1e-9,
    )


@pytest.mark.parametrize(("method", "backend"), CASES)
@given(x=samples, data=st.data())
def test_reflection(method, backend, x, data):
    m = window(x, data)
    np.testing.assert_allclose(
        est(-x, method, backend, **opts(m)), est(x, method, backend, **opts(m)), atol=1e-12
    )


@pytest.mark.parametrize(("method", "backend"), CASES)
@given(x=samples, data=st.data())
def test_permutation_bit_exact(method, backend, x, data):
    perm = data.draw(st.permutations(range(x.shape[0])), label="perm")
    np.testing.assert_array_equal(est(x[perm], method, backend), est(x, method, backend))


@pytest.mark.parametrize(("method", "backend"), CASES)
@given(x=samples, base=st.sampled_from([2.0, 10.0, math.e, 0.5, 7.3]))
def test_base(method, backend, x, base):
    np.testing.assert_allclose(
        est(x, method, backend, base=base), est(x, method, backend) / math.log(base), rtol=1e-15
    )


@pytest.mark.parametrize(("method", "backend"), CASES)
@given(x=samples)
def test_columnwise_equals_looped_bit_exact(method, backend, x):
    looped = np.array([est(x[:, j], method, backend) for j in range(x.shape[1])])
    np.testing.assert_array_equal(est(x, method, backend), looped)


@pytest.mark.parametrize(("method", "backend"), CASES)
@given(x=samples)
def test_float32_in_float32_out(method, backend, x):
    x32 = x.astype(np.float32)
    h32 = est(x32, method, backend)
    assert h32.dtype == np.float32
    np.testing.assert_allclose(h32, est(x32.astype(np.float64), method, backend), atol=1e-5)


@pytest.mark.parametrize(("method", "backend"), CASES)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(12, 60))
def test_integer_input_is_float64(method, backend, seed, n):
    x = np.random.default_rng(seed).permutation(n * 7)[: n * 2].reshape(n, 2) - 3 * n
    got = est(x, method, backend)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, est(x.astype(np.float64), method, backend))
    if backend == "torch":
        assert entropylib.estimate(torch.as_tensor(x), method).dtype == torch.float64


@pytest.mark.parametrize("method", METHODS)
@given(x=samples, data=st.data())
def test_backends_agree(method, x, data):
    m = window(x, data)
    ref = est(x, method, "numpy", **opts(m))
    for backend in ("numba", "torch"):
        np.testing.assert_allclose(est(x, method, backend, **opts(m)), ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize(("method", "options"), VARIANTS)
@given(x=samples, data=st.data())
def test_variants_properties(method, options, x, data):
    """Bias-corrected variants: shift/scale/permutation rules and backend agreement."""
    a = data.draw(st.floats(0.01, 100), label="a")
    perm = data.draw(st.permutations(range(x.shape[0])), label="perm")
    ref = est(x, method, "numpy", **options)
    np.testing.assert_allclose(
        est(a * x + 1.0, method, "numpy", **options), ref + math.log(a), atol=1e-9
    )
    np.testing.assert_array_equal(est(x[perm], method, "numpy", **options), ref)
    for backend in ("numba", "torch"):
        np.testing.assert_allclose(est(x, method, backend, **options), ref, atol=1e-10)


def test_parallel_numba_path_agrees():
    """Inputs above numba_kernels.PARALLEL_SIZE take the threaded sort and prange kernels."""
    from entropylib import numba_kernels

    x = np.random.default_rng(0).normal(size=(1200, numba_kernels.PARALLEL_SIZE // 1000))
    for method in METHODS:
        ref = est(x, method, "numpy")
        np.testing.assert_allclose(est(x, method, "numba"), ref, rtol=0, atol=1e-10)


# ---- torch gradients ---------------------------------------------------------------------


def grad_of(x: torch.Tensor, method: str, **kw) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    entropylib.estimate(x, method, **kw).sum().backward()
    return x.grad


@pytest.mark.parametrize("method", METHODS)
@given(x=samples, data=st.data())
def test_gradient_identities(method, x, data):
    """H(a x + b) = H(x) + log|a| gives sum_i x_i dH/dx_i = 1 and sum_i dH/dx_i = 0 per column."""
    t = torch.as_tensor(x)
    m = window(x, data)
    g = grad_of(t, method, **opts(m))
    # rounding tolerance: a few ulps of the sum of the absolute terms, per column
    tol_euler = 1e-13 * (t * g).abs().sum(0) + 1e-13
    tol_shift = 1e-13 * g.abs().sum(0)
    assert ((t * g).sum(0) - 1).abs().le(tol_euler).all()
    assert g.sum(0).abs().le(tol_shift).all()


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck(method):
    x = torch.as_tensor(np.random.default_rng(1).normal(size=(13, 2))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: entropylib.estimate(t, method, m=3), (x,))
    assert torch.autograd.gradcheck(lambda t: entropylib.estimate(t, method), (x,))


# Correa has no "floor" policy (a floored window would still have zero slope): see the
# validation tests for the error it gives
TIE_CASES = [(m, t) for m in METHODS for t in ("floor", "jitter") if (m, t) != ("correa", "floor")]


@pytest.mark.parametrize(("method", "ties"), TIE_CASES)
def test_gradients_finite_under_ties(method, ties):
    rng = np.random.default_rng(2)
    x = torch.as_tensor(rng.integers(0, 6, size=(40, 3)).astype(np.float64))
    for dtype in (torch.float64, torch.float32):
        g = grad_of(x.to(dtype), method, ties=ties)
        assert g.dtype == dtype
        assert torch.isfinite(g).all()
        assert g.abs().sum() > 0


def test_e2mc_style_call_has_finite_gradients_under_ties():
    """The contract E2MC uses: m_spacing on (N, D) with eps and ties="floor", differentiable.

    Saturated sigmoids give many values of exactly 1.0 (and 0.99999994, one float32 ulp
    below): ties that jitter cannot break in float32 (see the validation tests).
    """
    from entropylib.spacings import m_spacing

    z = torch.sigmoid(torch.randn(64, 5, generator=torch.Generator().manual_seed(0)) * 30)
    for dtype in (torch.float32, torch.float64):
        u = z.to(dtype).requires_grad_(True)
        h = m_spacing(u, m=default_window(64), eps=1e-7, ties="floor")
        (g,) = torch.autograd.grad(h.sum(), u)
        assert h.shape == (5,) and h.dtype == dtype
        assert torch.isfinite(h).all() and torch.isfinite(g).all()
