"""The NumPy erf / erfinv of axonml.backend.special against SciPy and mpmath, in ulps."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from axonml.backend import special

HAS_SCIPY = importlib.util.find_spec("scipy") is not None
HAS_MPMATH = importlib.util.find_spec("mpmath") is not None
needs_scipy = pytest.mark.skipif(not HAS_SCIPY, reason="SciPy is not installed")
needs_mpmath = pytest.mark.skipif(not HAS_MPMATH, reason="mpmath is not installed")


def ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got - want| in units of the last place of ``want`` (0 where they are equal, infinities included)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    with np.errstate(invalid="ignore"):
        d = np.abs(got - want) / np.spacing(np.abs(want))
    d[got == want] = 0.0
    return d


def _erf_points() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.uniform(-7.0, 7.0, 200_000),
        rng.uniform(-1.2, 1.2, 200_000),  # the branch point at |x| = 1
        np.logspace(-310, 0.9, 20_000),  # subnormals up to the saturation at 6
        rng.uniform(5.5, 6.5, 20_000),
    ]


def _erfinv_points() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [
        rng.uniform(-1.0, 1.0, 200_000),
        1.0 - np.logspace(-16, -0.3, 50_000),  # the tail, down to 1 - 1e-16
        -np.logspace(-310, -0.3, 20_000),
        rng.uniform(0.49, 0.51, 20_000),  # the branch point at |y| = 0.5
        np.nextafter(1.0, 0.0) - np.arange(1000) * 2.0**-53,  # the largest doubles below 1
    ]


@needs_scipy
def test_erf_matches_scipy_within_a_few_ulp():
    from scipy import special as sp

    for x in _erf_points():
        assert ulps(special.erf(x), sp.erf(x)).max() <= 4


@needs_scipy
def test_erfinv_matches_scipy_within_a_few_ulp():
    from scipy import special as sp

    for y in _erfinv_points():
        # SciPy's own erfinv is within ~2 ulp of the true value, ours within ~5
        assert ulps(special.erfinv(y), sp.erfinv(y)).max() <= 8


@needs_mpmath
def test_erf_and_erfinv_against_high_precision():
    import mpmath as mp

    mp.mp.dps = 30
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(-6.5, 6.5, 400), rng.uniform(-1.0, 1.0, 200)])
    want = np.array([float(mp.erf(mp.mpf(float(v)))) for v in x])
    assert ulps(special.erf(x), want).max() <= 3
    y = np.concatenate([rng.uniform(-1.0, 1.0, 400), 1.0 - np.logspace(-15, -1, 200)])
    want = np.array([float(mp.erfinv(mp.mpf(float(v)))) for v in y])
    assert ulps(special.erfinv(y), want).max() <= 5
    # the relative accuracy of erfc on the fitted range is what makes the erfinv tail exact
    a = rng.uniform(special._ERFC_LO, special._ERFC_HI, 400)
    want = np.array([float(mp.erfc(mp.mpf(float(v)))) for v in a])
    assert ulps(special._erfc_mid(a), want).max() <= 6


def test_special_values():
    nan, inf = np.nan, np.inf
    e = special.erf(np.array([nan, inf, -inf, 0.0, -0.0, 10.0, -30.0]))
    assert np.isnan(e[0]) and e[1:].tolist() == [1.0, -1.0, 0.0, -0.0, 1.0, -1.0]
    assert np.signbit(e[4])
    v = special.erfinv(np.array([nan, 1.0, -1.0, 1.5, -2.0, 0.0, -0.0]))
    assert np.isnan(v[0]) and v[1] == inf and v[2] == -inf and np.isnan(v[3]) and np.isnan(v[4])
    assert v[5] == 0.0 and np.signbit(v[6])
    assert special.erf(np.zeros((2, 0))).shape == (2, 0) and special.erfinv(np.zeros(0)).shape == (0,)


def test_dtypes_and_round_trip():
    y = np.linspace(-0.999, 0.999, 1001)
    np.testing.assert_allclose(special.erf(special.erfinv(y)), y, rtol=0, atol=4e-16)
    for dt in (np.float16, np.float32, np.float64):
        x = np.linspace(-3, 3, 7, dtype=dt)
        assert special.erf(x).dtype == dt and special.erfinv(x / 4).dtype == dt
    assert special.erf(np.float64(0.5)).shape == ()
    assert special.erf(np.array([1, 2])).dtype == np.float64  # integers are computed in float64
    f32 = np.random.default_rng(3).uniform(-4, 4, 1000).astype(np.float32)
    want = np.array([np.float32(__import__("math").erf(float(v))) for v in f32])
    assert ulps(special.erf(f32), want).max() <= 1  # correctly rounded to float32 but for ties


@needs_mpmath
def test_coefficients_reproduce_from_their_definition():
    """Re-derive both polynomials with mpmath as the module docstring describes, and compare."""
    import mpmath as mp

    mp.mp.dps = 40

    def monomials(f, a, b, n=40, cut=1e-18):
        nodes = [mp.cos(mp.pi * (k + mp.mpf(1) / 2) / (n + 1)) for k in range(n + 1)]
        vals = [f((b - a) / 2 * t + (a + b) / 2) for t in nodes]
        c = [2 * mp.fsum(v * mp.cos(mp.pi * j * (k + mp.mpf(1) / 2) / (n + 1)) for k, v in enumerate(vals)) / (n + 1)
             for j in range(n + 1)]
        c[0] /= 2
        deg = max(j for j in range(n + 1) if abs(c[j]) > abs(c[0]) * cut)
        cheb = [[mp.mpf(1)], [mp.mpf(0), mp.mpf(1)]]  # T_j in monomials
        while len(cheb) <= deg:
            new = [mp.mpf(0)] + [2 * v for v in cheb[-1]]
            for i, v in enumerate(cheb[-2]):
                new[i] -= v
            cheb.append(new)
        out = [mp.mpf(0)] * (deg + 1)
        for j in range(deg + 1):
            for i, v in enumerate(cheb[j]):
                out[i] += c[j] * v
        return [float(v) for v in out]

    def small(u):
        return mp.erf(mp.sqrt(u)) / mp.sqrt(u) if u else 2 / mp.sqrt(mp.pi)

    k = mp.mpf(special._ERFC_K)

    def scaled(t):
        x = k / t - k
        return mp.exp(x * x) * mp.erfc(x) / t

    ta, tb = k / (k + mp.mpf(special._ERFC_HI)), k / (k + mp.mpf(special._ERFC_LO))
    np.testing.assert_allclose(monomials(small, mp.mpf(0), mp.mpf(1)), special._ERF_SMALL, rtol=1e-12, atol=1e-25)
    np.testing.assert_allclose(monomials(scaled, ta, tb), special._ERFC_Q, rtol=1e-12, atol=1e-25)


def test_ax_erf_uses_it():
    import axonml as ax

    x = ax.tensor([0.5, -1.5, 3.0], dtype=ax.float64, requires_grad=True)
    np.testing.assert_array_equal(ax.erf(x).detach().numpy(), special.erf(x.detach().numpy()))
    np.testing.assert_array_equal(ax.erfinv(x.detach() / 4).numpy(), special.erfinv(x.detach().numpy() / 4))
