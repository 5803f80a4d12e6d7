"""im2col and col2im on CUDA, one kernel launch each.

The NumPy path copies one strided slice per kernel offset (a cache-friendly memcpy on a
CPU). On a GPU each of those copies is a separate launch costing ~10 us of CPU time, so
a 3x3 convolution paid 9 launches for its columns and 9 more for their adjoint; here a
thread computes one column entry (im2col) or gathers every column entry that lands on one
input element (col2im: no atomics, so sums are deterministic). Spatial dims are padded to
three (a 1-D or 2-D convolution is a 3-D one with unit leading dims). IDX is the index type.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ...backend.fused import Kernel, elementwise

# (B, C, S0, S1, S2) input, kernel K, output O, stride, dilation, leading zero padding P:
# column row = c * nk + (k0 * K1 + k1) * K2 + k2, column = ((b * O0 + o0) * O1 + o1) * O2 + o2.
# The geometry travels as one small int32 device array (kept by the caller): CuPy spends
# ~1 us of CPU time per scalar kernel argument, and these kernels would take 20.
_GEOMETRY = """
    const int B = g[0], C = g[1], S0 = g[2], S1 = g[3], S2 = g[4], K0 = g[5], K1 = g[6], K2 = g[7];
    const int O0 = g[8], O1 = g[9], O2 = g[10], st0 = g[11], st1 = g[12], st2 = g[13];
    const int d0 = g[14], d1 = g[15], d2 = g[16], p0 = g[17], p1 = g[18], p2 = g[19];
"""

# One thread per (channel, output position) writes that position's prod(K) column entries: the
# index arithmetic (divisions by runtime sizes, the costly part) is paid once per nk entries,
# and a warp's writes of one row stay contiguous.
_IM2COL = _GEOMETRY + """
    const IDX M = (IDX)B * O0 * O1 * O2;
    const int c = (int)(i / M);
    const IDX m = (IDX)i - (IDX)c * M;
    IDX t = m / O2;
    const int o2 = (int)(m - t * O2);
    const int o1 = (int)(t % O1);
    t /= O1;
    const int o0 = (int)(t % O0);
    const IDX b = t / O0;
    const int b0 = o0 * st0 - p0, b1 = o1 * st1 - p1, b2 = o2 * st2 - p2;
    const IDX base = (b * C + c) * S0 * S1 * S2;
    IDX r = (IDX)c * K0 * K1 * K2 * M + m;
    for (int k0 = 0; k0 < K0; ++k0) {
        const int s0 = b0 + k0 * d0;
        const bool in0 = s0 >= 0 && s0 < S0;
        for (int k1 = 0; k1 < K1; ++k1) {
            const int s1 = b1 + k1 * d1;
            const bool in01 = in0 && s1 >= 0 && s1 < S1;
            for (int k2 = 0; k2 < K2; ++k2, r += M) {
                const int s2 = b2 + k2 * d2;
                col[r] = (in01 && s2 >= 0 && s2 < S2) ? x[base + ((IDX)s0 * S1 + s1) * S2 + s2] : (T)0.0f;
            }
        }
    }
"""

_COL2IM = _GEOMETRY + """
    const IDX j = (IDX)i;
    const int s2 = j % S2, s1 = (j / S2) % S1, s0 = (j / ((IDX)S2 * S1)) % S0;
    const IDX bc = j / ((IDX)S2 * S1 * S0);
    const int c = bc % C;
    const IDX b = bc / C;
    const IDX M = (IDX)B * O0 * O1 * O2;
    const int nk = K0 * K1 * K2;
    ACC acc = 0;
    for (int k0 = 0; k0 < K0; ++k0) {
        const int t0 = s0 + p0 - k0 * d0, q0 = st0 == 1 ? t0 : t0 / st0;
        if (t0 < 0 || q0 * st0 != t0 || q0 >= O0) continue;
        for (int k1 = 0; k1 < K1; ++k1) {
            const int t1 = s1 + p1 - k1 * d1, q1 = st1 == 1 ? t1 : t1 / st1;
            if (t1 < 0 || q1 * st1 != t1 || q1 >= O1) continue;
            for (int k2 = 0; k2 < K2; ++k2) {
                const int t2 = s2 + p2 - k2 * d2, q2 = st2 == 1 ? t2 : t2 / st2;
                if (t2 < 0 || q2 * st2 != t2 || q2 >= O2) continue;
                const IDX row = (IDX)c * nk + (k0 * K1 + k1) * K2 + k2;
                const IDX m = ((b * O0 + q0) * O1 + q1) * O2 + q2;
                acc += (ACC)dcol[row * M + m];
            }
        }
    }
    dx = (T)acc;
"""

_INDEX_CTYPES = {"i32": "int", "i64": "long long"}


@functools.cache
def _im2col_kernel(idx: str) -> Kernel:
    return elementwise(f"axonml_im2col_{idx}", "raw T x, raw int32 g", "raw T col",
                       _IM2COL.replace("IDX", _INDEX_CTYPES[idx]))


@functools.cache
def _col2im_kernel(idx: str, acc: str) -> Kernel:
    return elementwise(f"axonml_col2im_{idx}_{acc}", "raw T dcol, raw int32 g", "T dx",
                       _COL2IM.replace("IDX", _INDEX_CTYPES[idx]).replace("ACC", acc))


def _index_type(a: Any, b: Any) -> str:
    """32-bit index arithmetic when every index of arrays ``a`` and ``b`` fits (64-bit division costs ~2x on a
    GPU)."""
    return "i32" if a.size < 2**31 and b.size < 2**31 else "i64"


def geometry(xp: Any, batch: int, channels: int, size: tuple[int, ...], kernel: tuple[int, ...],
             out: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...], pad: tuple[int, ...]) -> Any:
    """The kernels' int32 geometry array on the current device, spatial dims padded to three (callers keep it:
    ``_conv_plan._Plan`` holds one per device and channel count)."""
    def three(t: tuple[int, ...], fill: int) -> tuple[int, ...]:
        return (fill,) * (3 - len(t)) + tuple(t)

    return xp.asarray((batch, channels, *three(size, 1), *three(kernel, 1), *three(out, 1), *three(stride, 1),
                       *three(dilation, 1), *three(pad, 0)), dtype=xp.int32)


def im2col(xp: Any, x: Any, kernel: tuple[int, ...], out: tuple[int, ...], g: Any) -> Any:
    """Columns (C * prod(K), B * prod(O)) of a (B, C, *S) CuPy array (1 to 3 spatial dims); ``xp`` is CuPy,
    ``g`` the :func:`geometry` of this convolution."""
    B, C = x.shape[:2]
    nk, m = 1, B
    for k, o in zip(kernel, out):
        nk, m = nk * k, m * o
    col = xp.ndarray((C * nk, m), x.dtype)
    _im2col_kernel(_index_type(col, x))(x if x.flags.c_contiguous else xp.ascontiguousarray(x), g, col,
                                         size=C * m)
    return col


def col2im(xp: Any, dcol: Any, batch: int, channels: int, size: tuple[int, ...], g: Any) -> Any:
    """The adjoint of ``im2col``: (C * prod(K), B * prod(O)) columns summed into a new (B, C, *size) array."""
    dx = xp.ndarray((batch, channels, *size), dcol.dtype)
    acc = "double" if dcol.dtype == xp.float64 else "float"
    _col2im_kernel(_index_type(dcol, dx), acc)(dcol if dcol.flags.c_contiguous else xp.ascontiguousarray(dcol),
                                                g, dx)
    return dx


# (B, C, S) -> (C, B, S): out element i = (c, b, s) reads g[(b * C + c) * S + s]
_CHANNEL_MAJOR = elementwise("axonml_channel_major", "raw T g, int64 nb, int64 nc, int64 ns", "T out",
                             "const long long s = i % ns, t = i / ns; out = g[((t % nb) * nc + t / nb) * ns + s];")


def channel_major(xp: Any, g: Any) -> Any:
    """A contiguous (B, C, *S) CuPy array as a new (C, B * prod(S)) matrix, in one launch (CuPy's copy of the
    transposed view resolves its strides on the host: ~3x the host time)."""
    B, C = g.shape[:2]
    S = g.size // (B * C) if B * C else 0
    out = xp.ndarray((C, B * S), g.dtype)
    _CHANNEL_MAJOR(g if g.flags.c_contiguous else xp.ascontiguousarray(g), np.int64(B), np.int64(C), np.int64(S),
                   out)
    return out
