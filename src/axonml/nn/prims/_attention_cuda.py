"""The attention softmax on CUDA: one launch forward, one backward.

As CuPy calls, the row softmax of ``attention._softmax_rows_`` is ~9 launches (max, isfinite,
where, subtract, exp, the row sums, the zero test, where, divide) and its backward ~4; each
launch costs ~10 us of CPU time, which is what an eager Transformer step on a GPU waits for.
Here one block per row of the (..., L, S) scores does each in one kernel, with the same
semantics: the row's maximum is subtracted (0 where it is not finite, so an all -inf row gives
exp(-inf) = 0), and a row whose sum is 0 (every key masked) stays zero instead of NaN.

Both kernels take a ``scale``: the forward multiplies the raw scores by it (the product
``q @ k^T`` then needs no separate scaling launch), the backward returns ``ds * scale`` (the
gradients of q and k then need none either). Compiled without FMA contraction, with IEEE
division (``backend/fused.py``), on the block reductions of ``_layernorm_cuda.py``. Arrays are
contiguous, float32 or float64, with at least one element.
"""

from __future__ import annotations

from typing import Any

from . import _layernorm_cuda as _ln

_KERNELS = r"""
// In place over rows of n scores: s = softmax(s * scale); the max of a row that is not finite counts as 0.
extern "C" __global__ void axonml_softmax_rows(T* s, int n, T scale) {
    __shared__ T shared[32];
    T* row = s + (long long)blockIdx.x * n;
    const T lowest = (T)__int_as_float((int)0xff800000u);  // -inf
    T m = lowest;
    for (int i = threadIdx.x; i < n; i += blockDim.x) m = ax_max(m, row[i] * scale);
    m = block_max(m, shared, lowest);
    if (!(m - m == T(0))) m = T(0);  // +-inf or NaN: shift by 0 (a NaN row stays NaN through its sum)
    T z = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const T e = ax_exp(row[i] * scale - m);
        row[i] = e;
        z += e;
    }
    z = block_sum(z, shared);
    if (z == T(0)) z = T(1);  // every key masked: the row stays zero
    for (int i = threadIdx.x; i < n; i += blockDim.x) row[i] = row[i] / z;
}

// ds = (g - sum(g * p)) * p * scale over rows of n values.
extern "C" __global__ void axonml_softmax_rows_grad(const T* g, const T* p, T* ds, int n, T scale) {
    __shared__ T shared[32];
    const long long base = (long long)blockIdx.x * n;
    const T* gr = g + base;
    const T* pr = p + base;
    T* dr = ds + base;
    T a = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) a += gr[i] * pr[i];
    a = block_sum(a, shared);
    for (int i = threadIdx.x; i < n; i += blockDim.x) dr[i] = (gr[i] - a) * pr[i] * scale;
}
"""


def supports(xp: Any, s: Any, *others: Any) -> bool:
    """True when the kernels take these CuPy arrays: ``s`` contiguous, float32 or float64, with at least one
    element, and ``others`` of its dtype (any layout: they are made contiguous)."""
    return _ln.supports(xp, s) and s.flags.c_contiguous and all(a.dtype == s.dtype for a in others)


def softmax_(xp: Any, s: Any, scale: float) -> Any:
    """``softmax(s * scale)`` over the last axis of the contiguous array ``s``, in place; returns ``s``."""
    n = s.shape[-1]
    _ln.kernel(xp, s.dtype, "axonml_softmax_rows", _KERNELS)(
        (s.size // n,), (_ln.threads_for(n),), (s, xp.int32(n), s.dtype.type(scale)))
    return s


def softmax_backward(xp: Any, g: Any, p: Any, scale: float) -> Any:
    """``(g - rowsum(g * p)) * p * scale`` for probabilities ``p`` (..., L, S) and their gradient ``g``."""
    g = xp.ascontiguousarray(g)
    n = p.shape[-1]
    ds = xp.empty(p.shape, p.dtype)
    _ln.kernel(xp, p.dtype, "axonml_softmax_rows_grad", _KERNELS)(
        (p.size // n,), (_ln.threads_for(n),), (g, p, ds, xp.int32(n), p.dtype.type(scale)))
    return ds
