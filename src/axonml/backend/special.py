"""erf and erfinv on NumPy arrays without SciPy (NumPy has neither)."""

from __future__ import annotations

import math

import numpy as np

_erf_scalar = np.vectorize(math.erf, otypes=[np.float64])


def erf(x: np.ndarray) -> np.ndarray:
    """Error function, to double precision (``math.erf`` per element)."""
    return _erf_scalar(np.asarray(x, dtype=np.float64)).astype(x.dtype, copy=False)


def erfinv(y: np.ndarray) -> np.ndarray:
    """Inverse error function by Newton's method on ``erf`` (double precision)."""
    y64 = np.asarray(y, dtype=np.float64)
    # Start from the closed-form approximation of Giles (2010) rewritten as
    # x ~ sign(y) * sqrt(-2/(pi a) - ln(1-y^2)/2 + sqrt((2/(pi a) + ln(1-y^2)/2)^2 - ln(1-y^2)/a)).
    a = 0.147
    with np.errstate(divide="ignore", invalid="ignore"):
        ln = np.log1p(-y64 * y64)
        t = 2.0 / (np.pi * a) + ln / 2.0
        x = np.sign(y64) * np.sqrt(np.sqrt(t * t - ln / a) - t)
        for _ in range(3):
            err = erf(x) - y64
            x = x - err / (2.0 / math.sqrt(math.pi) * np.exp(-x * x))
    x = np.where(np.abs(y64) == 1.0, np.sign(y64) * np.inf, x)
    x = np.where(np.abs(y64) > 1.0, np.nan, x)
    return x.astype(y.dtype, copy=False)
