"""Batch norm on CUDA in a few fused launches.

The array code of ``norm.BatchNorm`` runs ~15 NumPy-style calls forward and ~20 backward;
on a GPU each is a launch costing ~10 us of CPU time, more than the work of a CIFAR-sized
layer. Here a forward is two launches (per-channel statistics, normalize-scale-shift) and
a backward two (per-channel sums, the input gradient), with the same formulas. The
per-channel sums run one block per channel: CuPy's generic reductions over axes (0, 2)
of an (N, C, L) array took 0.2-0.4 ms each on an H100 for a CIFAR ResNet layer.
Inputs are (N, C, *S) arrays in the compute dtype (float32 or float64), read as contiguous (N, C, L) with
L = prod(S) (no reshaped views: the kernels take the sizes); per-channel arrays are (C,) and contiguous.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from . import _layernorm_cuda as _ln

_THREADS = 256

# One block per channel c; its threads stride over the channel's N * L values. ``block_sum`` is
# ``_layernorm_cuda.BLOCK_REDUCE``'s (these kernels are compiled by its ``kernel``).
_REDUCE = """
extern "C" __global__ void axonml_bn_stats(const T* x, T* mean, T* rstd, int N, int C, int L, T eps, T* var,
                                           T* rm, T* rv, T keep, T mom, T unbias, long long* batches) {
    __shared__ T shared[32];
    const int c = blockIdx.x;
    const long long count = (long long)N * L;
    T s = 0;
    for (long long i = threadIdx.x; i < count; i += blockDim.x) {
        s += x[((i / L) * C + c) * L + i % L];
    }
    const T m = block_sum(s, shared) / (T)count;
    T q = 0;
    for (long long i = threadIdx.x; i < count; i += blockDim.x) {
        const T d = x[((i / L) * C + c) * L + i % L] - m;
        q += d * d;
    }
    const T v = block_sum(q, shared) / (T)count;
    if (threadIdx.x == 0) {
        mean[c] = m;
        rstd[c] = rsqrt(v + eps);
        if (var) var[c] = v;  // null when the running statistics are updated here
        // the running statistics (null when absent), as the tensor ops round them
        if (rm) rm[c] = rm[c] * keep + m * mom;
        if (rv) rv[c] = rv[c] * keep + (v * unbias) * mom;
        if (batches && c == 0) *batches += 1;
    }
}

extern "C" __global__ void axonml_bn_grad_sums(const T* g, const T* x, const T* mean, const T* rstd,
                                               T* sum_g, T* sum_gx, int N, int C, int L) {
    __shared__ T shared[32];
    const int c = blockIdx.x;
    const long long count = (long long)N * L;
    const T m = mean[c], r = rstd[c];
    T a = 0, b = 0;
    for (long long i = threadIdx.x; i < count; i += blockDim.x) {
        const long long j = ((i / L) * C + c) * L + i % L;
        a += g[j];
        b += g[j] * ((x[j] - m) * r);
    }
    a = block_sum(a, shared);
    b = block_sum(b, shared);
    if (threadIdx.x == 0) {
        sum_g[c] = a;
        sum_gx[c] = b;
    }
}
"""

# One thread per element; the channel of element i of a contiguous (N, C, L) array is (i / L) % C.
# Raw kernels, not CuPy ElementwiseKernels: those broadcast (1, C, 1) per-channel arrays on the host
# at every call, which cost more CPU time than the launch. Null weight/bias pointers stand for 1 and 0.
_ELEMENTWISE = """
extern "C" __global__ void axonml_bn_normalize(const T* x, const T* mean, const T* rstd, const T* w, const T* b,
                                               T* y, IDX n, int C, int L) {
    for (IDX i = (IDX)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (IDX)blockDim.x * gridDim.x) {
        const int c = (int)((i / L) % C);
        y[i] = (x[i] - mean[c]) * rstd[c] * (w ? w[c] : (T)1) + (b ? b[c] : (T)0);
    }
}

extern "C" __global__ void axonml_bn_grad_input(const T* g, const T* x, const T* mean, const T* rstd, const T* w,
                                                const T* sum_g, const T* sum_gx, T inv_n, T* dx, IDX n, int C, int L) {
    for (IDX i = (IDX)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (IDX)blockDim.x * gridDim.x) {
        const int c = (int)((i / L) % C);
        const T r = rstd[c];
        dx[i] = (g[i] - ((x[i] - mean[c]) * r) * (sum_gx[c] * inv_n) - sum_g[c] * inv_n) * (r * (w ? w[c] : (T)1));
    }
}
"""
_MAX_BLOCKS = 4096


# The four kernels' source per index type: BLOCK_REDUCE's kernel cache compiles each once per dtype.
_SOURCES = {idx: f"typedef {idx} IDX;\n" + _REDUCE + _ELEMENTWISE for idx in ("int", "long long")}


def _kernel(xp: Any, name: str, x: Any) -> Any:
    return _ln.kernel(xp, x.dtype, name, _SOURCES["int" if x.size < 2**31 else "long long"])


_NULL = np.uint64(0)


class Running(NamedTuple):
    """The running statistics a training forward updates in place, as the statistics launch does it:
    ``stat = stat * (1 - momentum) + batch_stat * momentum`` (the variance unbiased by ``unbias``, n / (n - 1))
    and ``count += 1``. Contiguous (C,) arrays of the compute dtype and an int64 scalar, each maybe None.
    (A named tuple: one is made at every batch norm call, and a tuple is built in C.)"""

    mean: Any
    var: Any
    momentum: float
    unbias: float
    count: Any


def _or_null(a: Any) -> Any:
    """An array written in place (the caller made sure it is contiguous), or a null pointer for None."""
    return _NULL if a is None else a


def _pointer(a: Any) -> Any:
    """A per-channel array (made contiguous: the kernels index it), or a null pointer for an absent one."""
    if a is None:
        return _NULL
    return a if a.flags.c_contiguous else a.copy()


def _sizes(x: Any) -> tuple[int, int, int]:
    """(N, C, L) of an (N, C, *S) array."""
    n, c = x.shape[:2]
    return n, c, x.size // (n * c) if n * c else 0


def _elementwise(xp: Any, name: str, x: Any, c: int, length: int, *args: Any) -> None:
    n = x.size
    blocks = min(_MAX_BLOCKS, -(-n // _THREADS))
    if n:
        _kernel(xp, name, x)((blocks,), (_THREADS,), (*args, np.int64(n) if n >= 2**31 else np.int32(n),
                                                    np.int32(c), np.int32(length)))


def forward(xp: Any, x: Any, weight: Any, bias: Any, eps: float,
            running: Running | None = None) -> tuple[Any, Any, Any, Any]:
    """(y, mean, biased var, 1/sqrt(var + eps)) of an (N, C, *S) array; weight/bias (C,) or None.

    ``running``: the running statistics' update (:class:`Running`), made by the statistics launch itself; the
    variance is then not returned (None: nothing else reads it).
    """
    if not x.flags.c_contiguous:
        x = xp.ascontiguousarray(x)
    n, c, length = _sizes(x)
    dt = x.dtype
    # ``ndarray``: ``empty`` wraps it in Python; separate arrays: slicing one costs more host time than allocating
    mean, rstd = xp.ndarray((c,), dt), xp.ndarray((c,), dt)
    T = dt.type
    if running is None:
        var = xp.ndarray((c,), dt)
        update: tuple[Any, ...] = (var, _NULL, _NULL, T(0), T(0), T(0), _NULL)
    else:
        var = None
        update = (_NULL, _or_null(running.mean), _or_null(running.var), T(1.0 - running.momentum),
                  T(running.momentum), T(running.unbias), _or_null(running.count))
    _kernel(xp, "axonml_bn_stats", x)((c,), (_THREADS,), (x, mean, rstd, np.int32(n), np.int32(c),
                                                       np.int32(length), T(eps), *update))
    y = xp.ndarray(x.shape, dt)
    _elementwise(xp, "axonml_bn_normalize", x, c, length, x, mean, rstd, _pointer(weight), _pointer(bias), y)
    return y, mean, var, rstd


def backward(xp: Any, g: Any, x: Any, mean: Any, rstd: Any, weight: Any, n: int,
             need_x: bool) -> tuple[Any, Any, Any]:
    """(sum of g, sum of g * xhat, dx or None) per channel, for (N, C, *S) arrays ``g`` and ``x``."""
    if not g.flags.c_contiguous:
        g = xp.ascontiguousarray(g)
    if not x.flags.c_contiguous:
        x = xp.ascontiguousarray(x)
    batch, c, length = _sizes(x)
    dt = x.dtype
    # two allocations: these become the weight's and bias's .grad, which take over buffers nothing else shares
    sum_g, sum_gx = xp.ndarray((c,), dt), xp.ndarray((c,), dt)
    _kernel(xp, "axonml_bn_grad_sums", x)((c,), (_THREADS,), (g, x, mean, rstd, sum_g, sum_gx, np.int32(batch),
                                                           np.int32(c), np.int32(length)))
    if not need_x:
        return sum_g, sum_gx, None
    dx = xp.ndarray(x.shape, dt)
    _elementwise(xp, "axonml_bn_grad_input", x, c, length, g, x, mean, rstd, _pointer(weight), sum_g, sum_gx,
                 dt.type(1.0 / n), dx)
    return sum_g, sum_gx, dx
