"""Shared data for the axonml.io tests: arrays of every dtype with awkward values, and bitwise checks."""

from __future__ import annotations

from typing import Any

import numpy as np

import axonml as ax


def every_dtype_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """One array per axonml dtype (bfloat16 included), with NaN payloads, infinities, -0.0, extremes."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for d in ax.core.dtypes.ALL_DTYPES:
        npd = d.np
        if d is ax.bool:
            arr = rng.random((3, 5)) > 0.5
        elif d.is_floating_point:
            arr = rng.standard_normal((3, 5)).astype(np.float64).astype(npd)
            flat = arr.reshape(-1)
            flat[0], flat[1], flat[2], flat[3] = np.inf, -np.inf, -0.0, np.nan
            bits = flat.view(f"u{npd.itemsize}")
            bits[4] = bits[3] | 1  # a NaN with a payload: only a byte copy keeps it
        else:
            info = np.iinfo(npd)
            arr = rng.integers(info.min, info.max, size=(3, 5), dtype=npd, endpoint=True)
            arr.reshape(-1)[:2] = (info.min, info.max)
        out[d.name] = arr
    return out


def as_bits(x: Any) -> np.ndarray:
    """The raw bytes of a tensor or array (C order), for bit-for-bit comparisons."""
    arr = x._host() if isinstance(x, ax.Tensor) else np.asarray(x)
    return np.ascontiguousarray(arr).view(np.uint8).reshape(-1)


def same_bits(a: Any, b: Any) -> bool:
    """Same shape, same dtype, same bytes."""
    da = a.dtype if isinstance(a, ax.Tensor) else ax.core.dtypes.from_numpy_dtype(np.asarray(a).dtype)
    db = b.dtype if isinstance(b, ax.Tensor) else ax.core.dtypes.from_numpy_dtype(np.asarray(b).dtype)
    return tuple(a.shape) == tuple(b.shape) and da is db and np.array_equal(as_bits(a), as_bits(b))
