"""Compiled CPU loops (numba, optional) for the passes NumPy cannot fuse: batch-norm statistics and
output, 2x2 max pooling with its argmax, col2im, and the tile transforms of Winograd convolution.

Why: each NumPy call is one pass over memory. Batch norm took 5 passes forward and 8 backward
(ResNet-18, batch 32: ~100 ms of a ~1.4 s step on one core, now ~32); here it takes 3 and 2. A
2x2 max pool with its argmax took ~10 NumPy passes; here it reads the input once (2x faster).

Rules kept here: numba is imported and the loops compiled on first use, never at import
(``import numba`` alone costs ~0.4 s); compiled code is cached on disk (``cache=True``); every
loop is serial and releases the GIL (``nogil``), and callers split channels over the threads of
``_conv_cpu.split``: numba's own parallel loops thrash against OpenBLAS's spinning threads
(PERF-NOTES). ``kernels()`` returns None without numba, or with ``AXONML_NUMBA=0``, and callers
then keep their NumPy paths, which give the same values up to float rounding.
Sums are accumulated in float64 (``fastmath`` only reassociates them so that they vectorize).
"""

from __future__ import annotations

import os
import threading
import types
from collections.abc import Callable
from typing import Any

import numpy as np

ENABLED = os.environ.get("AXONML_NUMBA", "1") != "0"  # tests switch it off to exercise the NumPy paths
_FLAGS = {"reassoc", "contract"}  # vectorized sums and fused multiply-adds; NaN and inf semantics kept


def compiled(build: Callable[[Any], Any]) -> Callable[[], Any]:
    """A ``kernels()`` function for a set of numba loops: ``build(jit)`` defines them with the ``jit``
    decorator and returns them as a namespace, on the first call (numba imports and compiles in seconds:
    never at import time). ``kernels()`` is None when numba is missing or switched off (``AXONML_NUMBA=0``)."""
    cache: dict[str, Any] = {}
    lock = threading.Lock()

    def kernels() -> Any:
        if not ENABLED:
            return None
        if "ns" not in cache:
            with lock:
                if "ns" not in cache:
                    try:
                        import numba
                    except ImportError:
                        cache["ns"] = None
                    else:
                        cache["ns"] = build(numba.njit(cache=True, nogil=True, fastmath=_FLAGS))
        return cache["ns"]

    return kernels


def _build(jit: Any) -> Any:

    @jit
    def bn_stats(x3: Any, c0: int, c1: int, mean: Any, var: Any) -> None:  # pragma: no cover - compiled
        """mean[c], biased var[c] of x3 (N, C, L) for channels c0 <= c < c1 (two passes: no cancellation)."""
        n, _, length = x3.shape
        inv = 1.0 / (n * length)
        for c in range(c0, c1):
            s = 0.0
            for i in range(n):
                for j in range(length):
                    s += x3[i, c, j]
            m = s * inv
            q = 0.0
            for i in range(n):
                for j in range(length):
                    d = x3[i, c, j] - m
                    q += d * d
            mean[c] = m
            var[c] = q * inv

    @jit
    def bn_apply(x3: Any, c0: int, c1: int, mean: Any, scale: Any, shift: Any, y: Any) -> None:  # pragma: no cover
        """y = (x - mean) * scale + shift per channel."""
        n, _, length = x3.shape
        for i in range(n):
            for c in range(c0, c1):
                m = mean[c]
                a = scale[c]
                b = shift[c]
                for j in range(length):
                    y[i, c, j] = (x3[i, c, j] - m) * a + b

    @jit
    def bn_grad_stats(g3: Any, x3: Any, c0: int, c1: int, mean: Any, rstd: Any, sum_g: Any,
                      sum_gx: Any) -> None:  # pragma: no cover - compiled
        """sum_g[c] = sum(g), sum_gx[c] = sum(g * x_hat) with x_hat = (x - mean) * rstd."""
        n, _, length = x3.shape
        for c in range(c0, c1):
            m = mean[c]
            sg = 0.0
            sgx = 0.0
            for i in range(n):
                for j in range(length):
                    gv = g3[i, c, j]
                    sg += gv
                    sgx += gv * (x3[i, c, j] - m)
            sum_g[c] = sg
            sum_gx[c] = sgx * rstd[c]

    @jit
    def bn_grad_x(g3: Any, x3: Any, c0: int, c1: int, mean: Any, rstd: Any, scale: Any, mean_g: Any,
                  mean_gx: Any, dx: Any) -> None:  # pragma: no cover - compiled
        """dx = scale * (g - mean_g - x_hat * mean_gx)."""
        n, _, length = x3.shape
        for i in range(n):
            for c in range(c0, c1):
                m = mean[c]
                r = rstd[c]
                a = scale[c]
                mg = mean_g[c]
                k = mean_gx[c] * r
                for j in range(length):
                    dx[i, c, j] = a * (g3[i, c, j] - mg - (x3[i, c, j] - m) * k)

    @jit
    def maxpool2x2(x: Any, r0: int, r1: int, out: Any, kidx: Any) -> None:  # pragma: no cover - compiled
        """2x2 windows, stride 2, of x (R, H, W) rows r0 <= r < r1: the max and the offset of its first occurrence.

        Branch-free (a branch per comparison mispredicts half the time on real data): 1.7 ms where
        a loop over the window took 4-5 ms and NumPy 3.4, on (2048, 32, 32). A NaN wins its window
        and the last NaN's offset is kept, as PyTorch does.
        """
        _, oh, ow = out.shape
        for r in range(r0, r1):
            for i in range(oh):
                for j in range(ow):
                    a = x[r, 2 * i, 2 * j]
                    b = x[r, 2 * i, 2 * j + 1]
                    c = x[r, 2 * i + 1, 2 * j]
                    d = x[r, 2 * i + 1, 2 * j + 1]
                    g1 = (b > a) | (b != b)
                    m01 = b if g1 else a
                    g2 = (d > c) | (d != d)
                    m23 = d if g2 else c
                    g3 = (m23 > m01) | (m23 != m23)
                    out[r, i, j] = m23 if g3 else m01
                    kidx[r, i, j] = (2 + g2) if g3 else g1

    @jit
    def maxpool2x2_grad(g: Any, kidx: Any, r0: int, r1: int, dx: Any) -> None:  # pragma: no cover - compiled
        """dx (R, H, W) of a 2x2 stride-2 max pool: g at each window's max, zeros elsewhere, written once."""
        _, oh, ow = g.shape
        _, h, w = dx.shape
        for r in range(r0, r1):
            for i in range(oh):
                for j in range(ow):
                    k = kidx[r, i, j]
                    v = g[r, i, j]
                    z = v - v  # a zero of g's type
                    dx[r, 2 * i, 2 * j] = v if k == 0 else z
                    dx[r, 2 * i, 2 * j + 1] = v if k == 1 else z
                    dx[r, 2 * i + 1, 2 * j] = v if k == 2 else z
                    dx[r, 2 * i + 1, 2 * j + 1] = v if k == 3 else z
            if h > 2 * oh:  # an odd last row or column lies in no window
                dx[r, 2 * oh:] = 0
            if w > 2 * ow:
                dx[r, :, 2 * ow:] = 0

    @jit
    def col2im2d(col: Any, c0: int, c1: int, sh: int, sw: int, dh: int, dw: int, ph: int, pw: int,
                 x: Any) -> None:  # pragma: no cover - compiled
        """col2im: x (B, C, H, W)[:, c] = the sum of the entries of col (C, kh, kw, B, OH, OW) that read each
        element, col[c, a, e, b, i, j] reading x[b, c, i * sh + a * dh - ph, j * sw + e * dw - pw] (zero outside).
        """
        b_, _, h, w = x.shape
        kh, kw, oh, ow = col.shape[1], col.shape[2], col.shape[4], col.shape[5]
        for b in range(b_):
            for c in range(c0, c1):
                x[b, c] = 0
        for c in range(c0, c1):
            for a in range(kh):
                for e in range(kw):
                    off = e * dw - pw
                    lo = min(max(0, (-off + sw - 1) // sw), ow)
                    hi = max(min(ow, (w - 1 - off) // sw + 1), lo)
                    for b in range(b_):
                        for i in range(oh):
                            y = i * sh + a * dh - ph
                            if y < 0 or y >= h:
                                continue
                            for j in range(lo, hi):
                                x[b, c, y, j * sw + off] += col[c, a, e, b, i, j]

    @jit
    def wino_in(xp: Any, c0: int, c1: int, nty: int, ntx: int, v: Any) -> None:  # pragma: no cover - compiled
        """Winograd F(2x2, 3x3) input tiles: v (4, 4, C, B * nty * ntx) = B^T d B for each 4x4 tile d of the
        zero-padded, channel-major xp (C, B, Hp, Wp) at (2 ty, 2 tx); channels c0 <= c < c1.

        Rows first into a small buffer, then columns: 1 ns an element of v, where one loop over the
        16 products per tile took 4 (its 16 scattered stores do not vectorize).
        """
        nb, wp = xp.shape[1], xp.shape[3]
        a = np.empty((4, wp), xp.dtype)
        for c in range(c0, c1):
            for b in range(nb):
                for ty in range(nty):
                    t0 = (b * nty + ty) * ntx
                    r0, r1, r2, r3 = xp[c, b, 2 * ty], xp[c, b, 2 * ty + 1], xp[c, b, 2 * ty + 2], xp[c, b, 2 * ty + 3]
                    for q in range(wp):  # B^T d
                        a[0, q] = r0[q] - r2[q]
                        a[1, q] = r1[q] + r2[q]
                        a[2, q] = r2[q] - r1[q]
                        a[3, q] = r1[q] - r3[q]
                    for i in range(4):  # (B^T d) B
                        ai = a[i]
                        o0, o1 = v[i, 0, c, t0:t0 + ntx], v[i, 1, c, t0:t0 + ntx]
                        o2, o3 = v[i, 2, c, t0:t0 + ntx], v[i, 3, c, t0:t0 + ntx]
                        for tx in range(ntx):
                            q = 2 * tx
                            o0[tx] = ai[q] - ai[q + 2]
                            o1[tx] = ai[q + 1] + ai[q + 2]
                            o2[tx] = ai[q + 2] - ai[q + 1]
                            o3[tx] = ai[q + 1] - ai[q + 3]

    @jit
    def wino_weight(w: Any, o0: int, o1: int, u: Any) -> None:  # pragma: no cover - compiled
        """Winograd F(2x2, 3x3) kernels: u (4, 4, Co, C) = G g G^T of each 3x3 kernel g of w (Co, C, 3, 3),
        G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]."""
        nc = w.shape[1]
        for o in range(o0, o1):
            for c in range(nc):
                # columns of G g: (g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2), one per kernel column
                b0, b1, b2 = w[o, c, 0, 0], w[o, c, 1, 0], w[o, c, 2, 0]
                s0, d0 = 0.5 * (b0 + b2), 0.5 * b1
                c00, c10, c20, c30 = b0, s0 + d0, s0 - d0, b2
                b0, b1, b2 = w[o, c, 0, 1], w[o, c, 1, 1], w[o, c, 2, 1]
                s0, d0 = 0.5 * (b0 + b2), 0.5 * b1
                c01, c11, c21, c31 = b0, s0 + d0, s0 - d0, b2
                b0, b1, b2 = w[o, c, 0, 2], w[o, c, 1, 2], w[o, c, 2, 2]
                s0, d0 = 0.5 * (b0 + b2), 0.5 * b1
                c02, c12, c22, c32 = b0, s0 + d0, s0 - d0, b2
                # rows of (G g) G^T
                s0, d0 = 0.5 * (c00 + c02), 0.5 * c01
                u[0, 0, o, c], u[0, 1, o, c], u[0, 2, o, c], u[0, 3, o, c] = c00, s0 + d0, s0 - d0, c02
                s0, d0 = 0.5 * (c10 + c12), 0.5 * c11
                u[1, 0, o, c], u[1, 1, o, c], u[1, 2, o, c], u[1, 3, o, c] = c10, s0 + d0, s0 - d0, c12
                s0, d0 = 0.5 * (c20 + c22), 0.5 * c21
                u[2, 0, o, c], u[2, 1, o, c], u[2, 2, o, c], u[2, 3, o, c] = c20, s0 + d0, s0 - d0, c22
                s0, d0 = 0.5 * (c30 + c32), 0.5 * c31
                u[3, 0, o, c], u[3, 1, o, c], u[3, 2, o, c], u[3, 3, o, c] = c30, s0 + d0, s0 - d0, c32

    @jit
    def wino_out(m: Any, o0: int, o1: int, nty: int, ntx: int, y: Any) -> None:  # pragma: no cover - compiled
        """Winograd F(2x2, 3x3) output: y (B, Co, OH, OW) 2x2 tiles = A^T M A of m (4, 4, Co, B * nty * ntx)."""
        nb, _, oh, ow = y.shape
        for o in range(o0, o1):
            for b in range(nb):
                for ty in range(nty):
                    t0 = (b * nty + ty) * ntx
                    yy = 2 * ty
                    for tx in range(ntx):
                        t = t0 + tx
                        # columns of M A, row by row: (e_r0, e_r1) = (m_r0 + m_r1 + m_r2, m_r1 - m_r2 - m_r3)
                        e00 = m[0, 0, o, t] + m[0, 1, o, t] + m[0, 2, o, t]
                        e01 = m[0, 1, o, t] - m[0, 2, o, t] - m[0, 3, o, t]
                        e10 = m[1, 0, o, t] + m[1, 1, o, t] + m[1, 2, o, t]
                        e11 = m[1, 1, o, t] - m[1, 2, o, t] - m[1, 3, o, t]
                        e20 = m[2, 0, o, t] + m[2, 1, o, t] + m[2, 2, o, t]
                        e21 = m[2, 1, o, t] - m[2, 2, o, t] - m[2, 3, o, t]
                        e30 = m[3, 0, o, t] + m[3, 1, o, t] + m[3, 2, o, t]
                        e31 = m[3, 1, o, t] - m[3, 2, o, t] - m[3, 3, o, t]
                        xx = 2 * tx
                        y[b, o, yy, xx] = e00 + e10 + e20
                        if xx + 1 < ow:
                            y[b, o, yy, xx + 1] = e01 + e11 + e21
                        if yy + 1 < oh:
                            y[b, o, yy + 1, xx] = e10 - e20 - e30
                            if xx + 1 < ow:
                                y[b, o, yy + 1, xx + 1] = e11 - e21 - e31

    @jit
    def wino_grad_in(g: Any, o0: int, o1: int, nty: int, ntx: int, u: Any) -> None:  # pragma: no cover - compiled
        """Winograd F(3x3, 2x2) gradient tiles: u (4, 4, Co, B * nty * ntx) = G' t G'^T for each 2x2 tile t of
        g (B, Co, OH, OW) at (2 ty, 2 tx), zero outside g; G' = [[1, 0], [1/2, 1/2], [1/2, -1/2], [0, 1]]."""
        nb, _, oh, ow = g.shape
        for o in range(o0, o1):
            for b in range(nb):
                for ty in range(nty):
                    t0 = (b * nty + ty) * ntx
                    y0 = 2 * ty
                    has1 = y0 + 1 < oh
                    for tx in range(ntx):
                        x0 = 2 * tx
                        has2 = x0 + 1 < ow
                        g00 = 1.0 * g[b, o, y0, x0]
                        g01 = 1.0 * g[b, o, y0, x0 + 1] if has2 else 0.0
                        g10 = 1.0 * g[b, o, y0 + 1, x0] if has1 else 0.0
                        g11 = 1.0 * g[b, o, y0 + 1, x0 + 1] if has1 and has2 else 0.0
                        t = t0 + tx
                        # G' along x: (g0, (g0 + g1) / 2, (g0 - g1) / 2, g1) per row; then G' along y
                        for j in range(4):
                            if j == 0:
                                a, c_ = g00, g10
                            elif j == 1:
                                a, c_ = 0.5 * (g00 + g01), 0.5 * (g10 + g11)
                            elif j == 2:
                                a, c_ = 0.5 * (g00 - g01), 0.5 * (g10 - g11)
                            else:
                                a, c_ = g01, g11
                            u[0, j, o, t] = a
                            u[1, j, o, t] = 0.5 * (a + c_)
                            u[2, j, o, t] = 0.5 * (a - c_)
                            u[3, j, o, t] = c_

    @jit
    def wino_grad_out(m: Any, o0: int, o1: int, dw: Any) -> None:  # pragma: no cover - compiled
        """Winograd F(3x3, 2x2) output: dw (Co, C, 3, 3) = A M A^T of m (4, 4, Co, C) per (co, c), where
        A = [[1, 1, 1, 0], [0, 1, -1, 0], [0, 1, 1, -1]] (the input tiles are F(2x2, 3x3)'s, whose last
        row has the opposite sign: folded in here)."""
        nc = dw.shape[1]
        for o in range(o0, o1):
            for c in range(nc):
                for r in range(4):  # M A^T along columns
                    e0 = m[r, 0, o, c] + m[r, 1, o, c] + m[r, 2, o, c]
                    e1 = m[r, 1, o, c] - m[r, 2, o, c]
                    e2 = m[r, 1, o, c] + m[r, 2, o, c] - m[r, 3, o, c]
                    if r == 0:
                        a00, a01, a02 = e0, e1, e2
                    elif r == 1:
                        a10, a11, a12 = e0, e1, e2
                    elif r == 2:
                        a20, a21, a22 = e0, e1, e2
                    else:
                        a30, a31, a32 = e0, e1, e2
                dw[o, c, 0, 0] = a00 + a10 + a20
                dw[o, c, 0, 1] = a01 + a11 + a21
                dw[o, c, 0, 2] = a02 + a12 + a22
                dw[o, c, 1, 0] = a10 - a20
                dw[o, c, 1, 1] = a11 - a21
                dw[o, c, 1, 2] = a12 - a22
                dw[o, c, 2, 0] = a10 + a20 - a30
                dw[o, c, 2, 1] = a11 + a21 - a31
                dw[o, c, 2, 2] = a12 + a22 - a32

    return types.SimpleNamespace(bn_stats=bn_stats, bn_apply=bn_apply, bn_grad_stats=bn_grad_stats,
                                 bn_grad_x=bn_grad_x, maxpool2x2=maxpool2x2, maxpool2x2_grad=maxpool2x2_grad,
                                 col2im2d=col2im2d, wino_in=wino_in, wino_weight=wino_weight,
                                 wino_out=wino_out, wino_grad_in=wino_grad_in, wino_grad_out=wino_grad_out)


kernels = compiled(_build)  # batch norm, 2x2 max pool and col2im
