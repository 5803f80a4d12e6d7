"""Layer norm on CUDA in one launch forward and two backward.

The array code of ``norm.LayerNorm`` makes ~9 CuPy calls forward and ~12 backward; on a GPU
each is a launch costing ~10 us of CPU time, which is what a small model's eager step waits
for (a Transformer encoder layer of d 256 spends far less than that on the arithmetic). Here
one block per row computes the mean, the biased variance, ``rstd`` and the output in one
kernel; the backward runs one kernel per call for the input gradient (one block per row) and
the weight and bias gradients as one matrix-vector product (the column sums of
``[g * x_hat | g]``, which that kernel writes side by side), so cuBLAS reduces over the rows.

The formulas and their order of operations are the array code's, compiled without FMA
contraction and with IEEE division and square root (``backend/fused.py``), so results differ
from the CPU's only in the order of the row sums. Inputs are contiguous (M, D) arrays in the
compute dtype (float32 or float64) with D > 0; per-row statistics are (M,), weight and bias (D,).
The block-reduction helpers here are shared with ``_attention_cuda.py``.
"""

from __future__ import annotations

import functools
from typing import Any

from ...backend.fused import FUSED_DTYPES, OPTIONS, PREAMBLE
from ...backend.launch import Launcher
from ._fastpath import col_sum, split_col_sum

# Block reductions for blocks of a power-of-two size >= 32: a butterfly of warp shuffles, then
# every warp adds the 32 per-warp totals the same way, so all threads hold the same bits (a fixed
# order: results do not change between runs). ``shared`` holds 32 values; the closing barrier
# lets the next reduction reuse it.
BLOCK_REDUCE = r"""
__device__ __forceinline__ float ax_exp(float x) { return expf(x); }
__device__ __forceinline__ double ax_exp(double x) { return exp(x); }

__device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ T warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) v = ax_max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ T block_sum(T v, T* shared) {
    v = warp_sum(v);
    if (blockDim.x == 32) return v;
    const int lane = threadIdx.x & 31;
    if (lane == 0) shared[threadIdx.x >> 5] = v;
    __syncthreads();
    v = warp_sum(lane < (int)(blockDim.x >> 5) ? shared[lane] : T(0));
    __syncthreads();
    return v;
}

__device__ T block_max(T v, T* shared, T lowest) {
    v = warp_max(v);
    if (blockDim.x == 32) return v;
    const int lane = threadIdx.x & 31;
    if (lane == 0) shared[threadIdx.x >> 5] = v;
    __syncthreads();
    v = warp_max(lane < (int)(blockDim.x >> 5) ? shared[lane] : lowest);
    __syncthreads();
    return v;
}
"""

# One block per row of D values; thread t handles elements t, t + blockDim.x, ... in every pass.
_KERNELS = r"""
extern "C" __global__ void axonml_ln_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd,
                                             int d, T inv_d, T eps, int has_w, int has_b) {
    __shared__ T shared[32];
    const long long base = (long long)blockIdx.x * d;
    const T* xr = x + base;
    T* yr = y + base;
    T s = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) s += xr[i];
    const T m = block_sum(s, shared) * inv_d;
    T q = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        const T c = xr[i] - m;
        q += c * c;
    }
    const T r = T(1) / ax_sqrt(block_sum(q, shared) * inv_d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        T v = (xr[i] - m) * r;
        if (has_w) v = v * w[i];
        if (has_b) v = v + b[i];
        yr[i] = v;
    }
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = m;
        rstd[blockIdx.x] = r;
    }
}

// dx = ((gy - x_hat * mean(gy * x_hat)) - mean(gy)) * rstd with gy = g * w; gg's row is [g * x_hat | g].
extern "C" __global__ void axonml_ln_backward(const T* g, const T* x, const T* mean, const T* rstd, const T* w,
                                              T* dx, T* gg, int d, T inv_d, int has_w, int want_dx,
                                              int want_gg) {
    __shared__ T shared[32];
    const long long base = (long long)blockIdx.x * d;
    const T* gr = g + base;
    const T* xr = x + base;
    const T m = mean[blockIdx.x], r = rstd[blockIdx.x];
    if (want_dx) {
        T a = 0, c = 0;
        for (int i = threadIdx.x; i < d; i += blockDim.x) {
            const T xh = (xr[i] - m) * r;
            const T gy = has_w ? gr[i] * w[i] : gr[i];
            a += gy * xh;
            c += gy;
        }
        a = block_sum(a, shared) * inv_d;
        c = block_sum(c, shared) * inv_d;
        T* dr = dx + base;
        for (int i = threadIdx.x; i < d; i += blockDim.x) {
            const T xh = (xr[i] - m) * r;
            const T gy = has_w ? gr[i] * w[i] : gr[i];
            dr[i] = ((gy - xh * a) - c) * r;
        }
    }
    if (want_gg) {
        T* ggr = gg + 2 * base;
        for (int i = threadIdx.x; i < d; i += blockDim.x) {
            ggr[i] = gr[i] * ((xr[i] - m) * r);
            ggr[d + i] = gr[i];
        }
    }
}
"""


def threads_for(n: int) -> int:
    """Threads of a block that reduces a row of ``n`` values: ~8 values a thread, a power of two in [32, 1024]."""
    t = 32
    while t < 1024 and t * 8 < n:
        t *= 2
    return t


def supports(xp: Any, a: Any) -> bool:
    """True when the fused kernels take ``a`` (a CuPy array): float32 or float64 with at least one element."""
    return a.dtype in FUSED_DTYPES and a.size > 0


@functools.cache
def _module(xp: Any, ctype: str, source: str) -> Any:
    return xp.RawModule(code=f"typedef {ctype} T;\n{PREAMBLE}{BLOCK_REDUCE}{source}", options=OPTIONS)


@functools.cache
def kernel(xp: Any, dtype: Any, name: str, source: str = _KERNELS) -> Any:
    """The kernel ``name`` of CUDA C++ ``source`` (written over ``BLOCK_REDUCE``) for ``dtype``, compiled once
    per dtype, as a :class:`~axonml.backend.launch.Launcher` (kept: looking a function up costs host time on
    every call, and the launcher packs its arguments with less host time than CuPy's call)."""
    return Launcher(_module(xp, "double" if dtype == xp.float64 else "float", source).get_function(name))


def forward(xp: Any, x2: Any, weight: Any, bias: Any, eps: float) -> tuple[Any, Any, Any]:
    """(y, mean, rstd) of an (M, D) array normalized over its rows; ``weight``/``bias`` (D,) or None."""
    x2 = xp.ascontiguousarray(x2)
    m, d = x2.shape
    t = x2.dtype.type
    y = xp.empty_like(x2)
    mean, rstd = xp.empty(m, x2.dtype), xp.empty(m, x2.dtype)
    w = x2 if weight is None else xp.ascontiguousarray(weight)  # x2 stands in for an absent array (never read)
    b = x2 if bias is None else xp.ascontiguousarray(bias)
    kernel(xp, x2.dtype, "axonml_ln_forward")(
        (m,), (threads_for(d),),
        (x2, w, b, y, mean, rstd, xp.int32(d), t(1.0 / d), t(eps), xp.int32(weight is not None),
         xp.int32(bias is not None)))
    return y, mean, rstd


def backward(xp: Any, g2: Any, x2: Any, mean: Any, rstd: Any, weight: Any, need_x: bool, need_w: bool,
             need_b: bool) -> tuple[Any, Any, Any]:
    """(dx, dweight, dbias) of an (M, D) layer norm, each None where not asked for.

    ``weight`` is the (D,) weight or None; ``need_w`` asks for its gradient (the column sums of
    ``g * x_hat``), ``need_b`` for the bias's (the column sums of ``g``).
    """
    g2, x2 = xp.ascontiguousarray(g2), xp.ascontiguousarray(x2)
    m, d = x2.shape
    t = x2.dtype.type
    want_gg = need_w and weight is not None
    dx = xp.empty_like(x2) if need_x else None
    gg = xp.empty((m, 2 * d), x2.dtype) if want_gg else None
    if need_x or want_gg:
        w = x2 if weight is None else xp.ascontiguousarray(weight)  # x2 stands in for an absent array
        kernel(xp, x2.dtype, "axonml_ln_backward")(
            (m,), (threads_for(d),),
            (g2, x2, mean, rstd, w, x2 if dx is None else dx, x2 if gg is None else gg, xp.int32(d), t(1.0 / d),
             xp.int32(weight is not None), xp.int32(need_x), xp.int32(want_gg)))
    gw = gb = None
    if gg is not None:
        gw, gb = split_col_sum(xp, gg, d)  # both parameters' sums in one launch, each in its own buffer
        if not need_b:
            gb = None
    elif need_b:
        gb = col_sum(xp, g2)
    return dx, gw, gb
