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

_COMPUTE: dict[Any, Any] = {}


def compute_dtype(np_dtype: Any) -> Any:
    """The dtype statistics are computed in: float32 for half precision (as PyTorch), else the dtype itself."""
    ct = _COMPUTE.get(np_dtype)
    if ct is None:  # once per dtype: np.dtype() costs more than the lookup
        dt = np.dtype(np_dtype)
        ct = _COMPUTE[np_dtype] = np.dtype(np.float32) if dt.itemsize < 4 else dt
    return ct


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
    if _column_kernel_fits(xp, a):
        return split_col_sum(xp, a, a.shape[1])[0]
    return matmul(xp, _ones(xp, a.shape[0], a), a)


def split_col_sum(xp: Any, a: Any, at: int) -> tuple[Any, Any]:
    """The column sums of ``a[:, :at]`` and of ``a[:, at:]``, each in its own new buffer (two parameters'
    gradients: a view of one shared result would be copied to become a ``.grad``). On CUDA one launch; a
    matrix-vector product costs several times its host time (cuBLAS's own ~10 us, CuPy's or ours on top)."""
    rows, cols = a.shape
    if rows == 0 or not _column_kernel_fits(xp, a):
        return col_sum(xp, a[:, :at]), col_sum(xp, a[:, at:])
    lo = xp.empty(at, a.dtype)
    hi = xp.empty(cols - at, a.dtype) if at < cols else lo  # never written when empty
    ld = a.strides[0] // a.itemsize
    from . import _layernorm_cuda  # the shared kernel cache; imported here since that module imports this one

    _layernorm_cuda.kernel(xp, a.dtype, "axonml_col_sums", _COL_SUMS)(
        ((cols + 31) // 32,), (32, _COL_SUM_ROWS),
        (a, np.int64(rows), np.int64(cols), np.int64(ld), np.int64(at), lo, hi))
    return lo, hi


def _column_kernel_fits(xp: Any, a: Any) -> bool:
    """A CUDA float32/float64 matrix whose rows are contiguous and evenly strided (a column block is too)."""
    if xp is np or a.dtype.char not in "fd" or a.ndim != 2:
        return False
    item = a.itemsize
    s_r, s_c = a.strides
    return (s_c == item or a.shape[1] == 1) and s_r % item == 0 and s_r >= a.shape[1] * item


_COL_SUM_ROWS = 16  # threads per column; each sums every 16th row, then the 16 partial sums add in order

_COL_SUMS = f"#define ROWS {_COL_SUM_ROWS}\n" + r"""
extern "C" __global__ void axonml_col_sums(const T* a, long long rows, long long cols, long long ld,
                                           long long at, T* lo, T* hi) {
    __shared__ T part[ROWS][33];
    const long long j = (long long)blockIdx.x * 32 + threadIdx.x;
    T acc = 0;
    if (j < cols) {
        for (long long r = threadIdx.y; r < rows; r += ROWS) acc += a[r * ld + j];
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < cols) {
        T sum = part[0][threadIdx.x];
        for (int k = 1; k < ROWS; ++k) sum += part[k][threadIdx.x];
        if (j < at) lo[j] = sum; else hi[j - at] = sum;
    }
}
"""


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
    return Tensor._make(a if a.shape == shape else a.reshape(shape), device)
