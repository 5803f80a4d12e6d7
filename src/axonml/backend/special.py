"""erf and erfinv on NumPy arrays, vectorized and accurate to a few ulp in float64, without SciPy.

How the approximations were made (tests/backend/test_special.py re-derives them
with mpmath and checks every result against SciPy):

- ``|x| <= 1``: ``erf(x) = x * P(2 x^2 - 1)``, where ``P`` interpolates
  ``erf(sqrt(u)) / sqrt(u)`` at 41 Chebyshev nodes of ``u`` in [0, 1], truncated
  where the Chebyshev terms fall below 1e-18 and rewritten in monomials (the sum
  of their magnitudes stays near the function's, so Horner's rule is stable).
- ``0.46 <= x <= 6.5``: ``erfc(x) = exp(-x^2) * t * Q(s)`` with ``t = 3 / (3 + x)``
  and ``s`` the affine map of ``t`` onto [-1, 1]; ``Q`` fits ``exp(x^2) erfc(x) / t``
  the same way. ``exp(-x^2)`` is taken as ``exp(-h^2) exp(-(x-h)(x+h))`` with ``h``
  ``x`` rounded to 24 bits, so ``h^2`` is exact and no rounding of ``x^2`` is
  amplified (a plain ``exp(-x*x)`` loses up to ~36 ulp at ``x = 6``).
- ``erf(x) = 1 - erfc(x)`` for ``1 < |x| < 6``; beyond 6, ``erfc(x) < 2**-54`` and
  ``erf`` rounds to +-1.
- ``erfinv``: Winitzki's closed-form estimate (relative error < 2e-3), then
  Halley's method on ``erf(x) = y`` for ``|y| <= 0.5`` and on
  ``erfc(x) = 1 - |y|`` (exact by Sterbenz's lemma) above, where the problem is
  well conditioned in terms of ``1 - |y|``.

Inputs of any float dtype are computed in float64 and cast back.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# erf(sqrt(u)) / sqrt(u) on u in [0, 1], as a polynomial in s = 2u - 1.
_ERF_SMALL = (
    0.9654687386698673, -0.1405360890227171, 0.019852496688983708, -0.0022854855611441132,
    0.00021751715604160108, -1.7537169441124826e-05, 1.223382738352401e-06, -7.51156928660089e-08,
    4.11580059766496e-09, -2.035228404899467e-10, 9.167606746069445e-12, -3.8078827395263415e-13,
    1.454817075960679e-14,
)
# exp(x^2) erfc(x) / t with t = 3 / (3 + x), x in [0.46, 6.5], as a polynomial in s (t mapped to [-1, 1]).
_ERFC_K = 3.0
_ERFC_LO, _ERFC_HI = 0.46, 6.5
_ERFC_TA, _ERFC_TB = _ERFC_K / (_ERFC_K + _ERFC_HI), _ERFC_K / (_ERFC_K + _ERFC_LO)
_ERFC_Q = (
    0.4190989205056217, 0.20827410787407508, 0.0796303103466011, 0.02270400964632581,
    0.0043946396105175745, 0.0003940897902246238, -5.093621641449004e-05, -1.772819644796856e-05,
    8.570978079914155e-08, 6.249292392747426e-07, 1.6041931692553917e-08, -2.4748827661828647e-08,
    -2.8054538260430193e-10, 1.0962491360225092e-09, -4.7146723181146417e-11, -4.8356678262457135e-11,
    6.341028317691522e-12, 1.6331211382486242e-12, -4.063054656774987e-13,
)
_ERFC_S_MUL = 2.0 * _ERFC_K / (_ERFC_TB - _ERFC_TA)
_ERFC_S_SUB = (_ERFC_TA + _ERFC_TB) / (_ERFC_TB - _ERFC_TA)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_ERF_ONE = 6.0  # erf(x) rounds to 1.0 in float64 for x >= 6
# Halley's error shrinks as e -> K e^3 from Winitzki's < 2e-3; K grows with x (about 12 at x = 6), so the
# tail needs one more step than the center.
_STEPS_CENTER, _STEPS_TAIL = 2, 3


def _horner(coeffs: tuple[float, ...], s: np.ndarray) -> np.ndarray:
    out = np.full_like(s, coeffs[-1])
    for c in coeffs[-2::-1]:
        out *= s
        out += c
    return out


def _erf_small(a: np.ndarray) -> np.ndarray:
    """erf for |a| <= 1."""
    return a * _horner(_ERF_SMALL, 2.0 * a * a - 1.0)


def _exp_neg_sq(a: np.ndarray) -> np.ndarray:
    """exp(-a^2) without the rounding error of a^2 (see the module docstring)."""
    hi = a.astype(np.float32).astype(np.float64)
    return np.exp(-hi * hi) * np.exp(-(a - hi) * (a + hi))


def _erfc_mid(a: np.ndarray, e: np.ndarray | None = None) -> np.ndarray:
    """erfc for a in [0.46, 6.5]; ``e`` is exp(-a^2) when the caller already has it."""
    d = _ERFC_K + a
    t = _ERFC_K / d
    s = _ERFC_S_MUL / d - _ERFC_S_SUB  # t mapped onto [-1, 1] with one rounding fewer
    if e is None:
        e = _exp_neg_sq(a)
    return e * (t * _horner(_ERFC_Q, s))


def _float64(x: Any) -> tuple[np.ndarray, Any]:
    x = np.asarray(x)
    out_dtype = x.dtype if x.dtype.kind == "f" or x.dtype.name == "bfloat16" else np.dtype(np.float64)
    return x.astype(np.float64), out_dtype


def erf(x: Any) -> np.ndarray:
    """Error function, elementwise, within a few ulp of the correctly rounded float64 value."""
    x64, out_dtype = _float64(x)
    a = np.abs(x64)
    small = a <= 1.0
    if small.all():
        out = _erf_small(a)
    else:
        out = np.ones_like(a)
        out[small] = _erf_small(a[small])
        mid = (a > 1.0) & (a < _ERF_ONE)
        out[mid] = 1.0 - _erfc_mid(a[mid])
        out[np.isnan(a)] = np.nan
    return np.copysign(out, x64).astype(out_dtype, copy=False)


def _halley(x: np.ndarray, residual: np.ndarray, e: np.ndarray, sign: float) -> np.ndarray:
    """One Halley step for erf(x) = y (sign 1) or erfc(x) = w (sign -1): f''/f' = -2x for both."""
    d = sign * residual / (_TWO_OVER_SQRT_PI * e)  # f / f'
    return x - d / (1.0 + x * d)


def _winitzki(a: np.ndarray, log_1my2: np.ndarray) -> np.ndarray:
    """Winitzki's estimate of erfinv(a) given log(1 - a^2); relative error below 2e-3."""
    k = 0.147
    t = 2.0 / (math.pi * k) + 0.5 * log_1my2
    return np.sqrt(np.sqrt(t * t - log_1my2 / k) - t)


def erfinv(y: Any) -> np.ndarray:
    """Inverse error function, elementwise: +-inf at +-1, NaN outside [-1, 1]."""
    y64, out_dtype = _float64(y)
    a = np.abs(y64)
    out = np.full_like(a, np.nan)
    center = a <= 0.5
    if center.any():
        yc = a[center]
        x = _winitzki(yc, np.log1p(-yc * yc))
        for _ in range(_STEPS_CENTER):
            x = _halley(x, _erf_small(x) - yc, np.exp(-x * x), 1.0)
        out[center] = x
    tail = (a > 0.5) & (a < 1.0)
    if tail.any():
        w = 1.0 - a[tail]  # exact for a in [0.5, 1]
        x = _winitzki(1.0 - w, np.log(w) + np.log(2.0 - w))
        for _ in range(_STEPS_TAIL):
            x = np.clip(x, _ERFC_LO, _ERFC_HI)
            e = _exp_neg_sq(x)
            x = _halley(x, _erfc_mid(x, e) - w, e, -1.0)
        out[tail] = x
    out[a == 1.0] = np.inf
    return np.copysign(out, y64).astype(out_dtype, copy=False)
