"""Cross entropy against class indices on CUDA in three launches: two forward, one backward.

The NumPy-style forward of ``loss.CrossEntropy`` is ~12 array calls (max, shift, exp, sum, log,
gather, reductions, the softmax division) and its target check another few; on a GPU each is a
launch costing ~10 us of CPU time. Here one block per row computes the row's log-sum-exp, its
loss and its softmax (all the backward needs); one block then reduces the rows (sum, count of
targets not ignored, and the targets' range for the bounds check, read back in one copy); the
backward is one elementwise pass ``(softmax - onehot) * coef``. Rows whose target is ignored or
out of range read no logit at the target (the host raises for the latter after the reduction).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _layernorm_cuda as _ln

_THREADS = 256

# Written over ``_layernorm_cuda.BLOCK_REDUCE`` (block_sum, NaN-propagating block_max) and compiled by its ``kernel``.
_KERNELS = r"""
// Row r of the (N, C) logits: prob = softmax, row_loss = log(sum exp(x - m)) - (x[t] - m), 0 when t is ignored.
extern "C" __global__ void axonml_ce_rows(const T* x, const long long* target, long long ignore, int C,
                                          T* prob, T* row_loss) {
    __shared__ T shared[32];
    const long long r = blockIdx.x;
    const T* xr = x + r * C;
    T* pr = prob + r * C;
    T m = xr[0];
    for (int j = threadIdx.x; j < C; j += blockDim.x) m = ax_max(m, xr[j]);
    m = block_max(m, shared, xr[0]);
    if (isinf(m)) m = 0;  // as log_softmax: no inf - inf
    T s = 0;
    for (int j = threadIdx.x; j < C; j += blockDim.x) {
        const T e = exp(xr[j] - m);
        pr[j] = e;
        s += e;
    }
    s = block_sum(s, shared);
    for (int j = threadIdx.x; j < C; j += blockDim.x) pr[j] /= s;
    if (threadIdx.x == 0) {
        const long long t = target[r];
        row_loss[r] = (t == ignore || t < 0 || t >= C) ? (T)0 : log(s) - (xr[t] - m);
    }
}

// One block: out = the rows' sum (divided by the count of targets not ignored when mean != 0), count,
// and the smallest and largest target not ignored (range[0] > range[1] when there is none).
extern "C" __global__ void axonml_ce_reduce(const T* row_loss, const long long* target, long long ignore,
                                            long long N, int mean, T* out, T* count, long long* range) {
    __shared__ T shared[32];
    __shared__ long long lo_s[THREADS];
    __shared__ long long hi_s[THREADS];
    T s = 0, k = 0;
    long long lo = 9223372036854775807LL, hi = -lo - 1;
    for (long long i = threadIdx.x; i < N; i += blockDim.x) {
        const long long t = target[i];
        if (t == ignore) continue;
        s += row_loss[i];
        k += 1;
        lo = min(lo, t);
        hi = max(hi, t);
    }
    s = block_sum(s, shared);
    k = block_sum(k, shared);
    lo_s[threadIdx.x] = lo;
    hi_s[threadIdx.x] = hi;
    __syncthreads();
    for (int h = blockDim.x / 2; h > 0; h >>= 1) {
        if (threadIdx.x < h) {
            lo_s[threadIdx.x] = min(lo_s[threadIdx.x], lo_s[threadIdx.x + h]);
            hi_s[threadIdx.x] = max(hi_s[threadIdx.x], hi_s[threadIdx.x + h]);
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        out[0] = mean ? s / k : s;
        count[0] = k;
        range[0] = lo_s[0];
        range[1] = hi_s[0];
    }
}

// d loss / d x = (prob - onehot(t)) * coef per row: coef = g / count ('mean'), g ('sum') or g[row] ('none'),
// 0 where the target is ignored.
extern "C" __global__ void axonml_ce_backward(const T* prob, const long long* target, long long ignore,
                                              const T* g, const T* count, int mode, long long n, int C, T* gx) {
    const long long step = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        const long long r = i / C;
        const long long t = target[r];
        T coef = mode == 2 ? g[r] : (mode == 1 ? g[0] / count[0] : g[0]);
        if (t == ignore) coef = 0;
        gx[i] = (prob[i] - (T)(i - r * C == t)) * coef;
    }
}
""".replace("THREADS", str(_THREADS))
_MODES = {"sum": 0, "mean": 1, "none": 2}
_MAX_BLOCKS = 4096


def _kernel(xp: Any, name: str, dtype: Any) -> Any:
    return _ln.kernel(xp, dtype, name, _KERNELS)


def forward(xp: Any, x2: Any, target: Any, ignore_index: int, reduction: str) -> tuple[Any, Any, Any, Any]:
    """(loss, softmax, count of targets not ignored, (lowest, highest) such target as a device array) of
    (N, C) float32/float64 logits and (N,) int64 targets; ``loss`` is (N,) for reduction 'none', else a scalar."""
    n, c = x2.shape
    prob = xp.ndarray(x2.shape, x2.dtype)
    rows = xp.ndarray((n,), x2.dtype)
    ignore = np.int64(ignore_index)
    _kernel(xp, "axonml_ce_rows", x2.dtype)((n,), (_THREADS,), (x2, target, ignore, np.int32(c), prob, rows))
    out, count = xp.empty((), x2.dtype), xp.empty((), x2.dtype)
    span = xp.empty(2, np.int64)
    _kernel(xp, "axonml_ce_reduce", x2.dtype)((1,), (_THREADS,), (rows, target, ignore, np.int64(n),
                                                                  np.int32(reduction == "mean"), out, count, span))
    return (rows if reduction == "none" else out), prob, count, span


def backward(xp: Any, prob: Any, target: Any, ignore_index: int, g: Any, count: Any, reduction: str) -> Any:
    """d loss / d logits, (N, C), for the incoming gradient ``g`` (a scalar, or (N,) for reduction 'none')."""
    n, c = prob.shape
    gx = xp.ndarray(prob.shape, prob.dtype)
    size = n * c
    blocks = min(_MAX_BLOCKS, -(-size // _THREADS))
    if size:
        _kernel(xp, "axonml_ce_backward", prob.dtype)(
            (blocks,), (_THREADS,), (prob, target, np.int64(ignore_index), xp.ascontiguousarray(g), count,
                                     np.int32(_MODES[reduction]), np.int64(size), np.int32(c), gx))
    return gx
