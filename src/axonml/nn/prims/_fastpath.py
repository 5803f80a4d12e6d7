"""Shared helpers of the fused nn primitives (normalization, attention, embedding).

A fused primitive's backward has two forms with the same values: array code with
in-place NumPy/CuPy calls, used when no graph is recorded, and the same formula
in Tensor ops, used under ``create_graph=True`` or while forward-mode tangents
flow, so that higher derivatives work.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...backend import matmul
from ...backend.graphs import current_capture
from ...core.function import arrays_only as arrays_only  # re-exported for the fused primitives
from ...core.tensor import Tensor


def compute_dtype(np_dtype: Any) -> Any:
    """The dtype statistics are computed in: float32 for half precision (as PyTorch), else the dtype itself."""
    return np.dtype(np.float32) if np.dtype(np_dtype).itemsize < 4 else np.dtype(np_dtype)


def as_compute(a: Any, ct: Any) -> Any:
    return a if a.dtype == ct else a.astype(ct)


_ONES: dict[tuple[int, Any, int], Any] = {}


def _ones(xp: Any, n: int, like: Any) -> Any:
    """A vector of ``n`` ones like ``like``'s dtype and device; read only.

    On a GPU it is kept between calls (a fill is a launch, ~10 us of host time; the bias gradients
    of a step make one each), except inside a CUDA graph capture, where a fill is only recorded.
    """
    if xp is np or current_capture() is not None:
        return xp.ones(n, like.dtype)
    key = (n, like.dtype, like.device.id)
    ones = _ONES.get(key)
    if ones is None:
        if len(_ONES) > 64:  # shapes that keep changing must not grow it forever
            _ONES.clear()
        ones = _ONES[key] = xp.ones(n, like.dtype)
    return ones


def row_sum(xp: Any, a: Any) -> Any:
    """Sums of the rows of a 2-D array; a matrix-vector product is ~6x faster than ``a.sum(-1)``."""
    if a.shape[1] == 0:
        return xp.zeros(a.shape[0], a.dtype)
    return matmul(xp, a, _ones(xp, a.shape[1], a))


def col_sum(xp: Any, a: Any) -> Any:
    """Sums of the columns of a 2-D array (a matrix-vector product with the transpose)."""
    if a.shape[0] == 0:
        return xp.zeros(a.shape[1], a.dtype)
    return matmul(xp, _ones(xp, a.shape[0], a), a)


def row_dot(xp: Any, a: Any, b: Any) -> Any:
    """``(a * b).sum(-1)`` without the temporary product (with it inside a CUDA graph capture, where
    CuPy's vecdot/einsum would call cuBLAS through CuPy)."""
    if xp is not np and current_capture() is not None:
        return (a * b).sum(-1)
    if hasattr(xp, "vecdot"):
        return xp.vecdot(a, b)
    if a.dtype.name == "bfloat16":  # CuPy's einsum has no bfloat16 product: accumulate in float32
        return xp.einsum("...i,...i->...", a.astype(xp.float32), b.astype(xp.float32)).astype(a.dtype)
    return xp.einsum("...i,...i->...", a, b)  # pragma: no cover - CuPy without vecdot


def wrap(a: Any, like: Tensor | Any, device: Any) -> Tensor:
    """A Tensor of array ``a`` on ``device``, reshaped and cast to ``like``'s (shape, dtype) meta."""
    shape, dtype = like
    if a.dtype != dtype:
        a = a.astype(dtype)
    return Tensor._make(a.reshape(shape), device)
