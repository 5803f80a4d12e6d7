"""Compiled loops (numba, optional) of the direct CPU convolutions of ``_conv_cpu_direct``.

Layout: batch-last. An input is packed as ``X (C, Hp, Wp, B)``, zero-padded, so that for stride 1
along the width one output row of one channel, ``(OW, B)``, is one contiguous run of ``n = OW * B``
values, and the input it reads through kernel tap ``(c, a, e)`` is another contiguous run of
``X[c, row]`` shifted by ``e * dw * B``. Every loop below is then a long unit-stride loop that LLVM
vectorizes (at any batch size, even 1), with no im2col columns. The forward skips the taps that
fall on rows of padding (an input gradient's are wide); the weight gradient reads them (zeros).

Register blocking (measured on the 2-core Emerald Rapids VM, float32, one thread, LeNet's layers):
the forward accumulates 2 output channels from 8 taps per pass over a row (8 row loads and 2
accumulator loads and stores per 16 multiply-adds): 58-69 GFLOP/s, where 4 taps a pass ran at
42-51 and one output position a pass (rows of B values) at ~30: the accumulator's loads and stores
were the bound. The weight gradient reduces 2 output channels x 4 taps per pass (8 vector sums in
registers), its taps in fours across kernel rows: 0.60 -> 0.45 ms on LeNet's second layer, where
fours within a kernel row of 5 left one tap a row at a third of the speed. Both run near the
~80 GFLOP/s of LLVM's 256-bit vectors here (512-bit ones, forced, gained ~8%). The output is
written as (B, Co, OH, OW) straight from the finished rows (no transposition pass).

Rules kept as in ``_conv_cpu_jit``: numba is imported and the loops compiled on first use, never
at import; compiled code is cached on disk; the loops are serial and release the GIL, callers
split rows or channels over ``_conv_cpu.split``'s threads. Sums run in the input's dtype, in an
order ``fastmath``'s reassociation may change (float rounding only; NaN and inf semantics kept).
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from . import _conv_cpu_jit as _jit


def _build(jit: Any) -> Any:
    @jit
    def pack(x: Any, xt: Any, top: int, left: int, c0: int, c1: int) -> None:  # pragma: no cover - compiled
        """xt (C, Hp, Wp, B)[c0:c1] = x (B, C, H, W) batch-last at rows top .. top + H, columns left .. left + W;
        zeros around it."""
        nb, _, h, w = x.shape
        hp, wp = xt.shape[1], xt.shape[2]
        for c in range(c0, c1):
            for y in range(hp):
                if y < top or y >= top + h:
                    xt[c, y] = 0
                    continue
                for j in range(left):
                    xt[c, y, j] = 0
                for j in range(left + w, wp):
                    xt[c, y, j] = 0
                for j in range(w):
                    d = xt[c, y, left + j]
                    for b in range(nb):
                        d[b] = x[b, c, y - top, j]

    @jit
    def conv_rows(xt: Any, wf: Any, kh: int, kw: int, top: int, h: int, bias: Any, out: Any, y0: int, y1: int,
                  sh: int, dh: int, dw: int) -> None:  # pragma: no cover - compiled
        """out (B, Co, OH, OW)[:, :, y0:y1] = bias + sum over taps (c, a, e) of wf[o, (c kh + a) kw + e] *
        xt[c, y sh + a dh, x + e dw, b] for the zero-padded xt (C, Hp, Wp, B); taps on its rows of
        padding (outside top .. top + h) are skipped."""
        c_in, hp, wp, nb = xt.shape
        co, ow = out.shape[1], out.shape[3]
        n = ow * nb
        xtf = xt.reshape(c_in * hp, wp * nb)
        ntap = c_in * kh * kw
        trow = np.empty(ntap, np.int64)
        tcol = np.empty(ntap, np.int64)
        tw = np.empty(ntap, np.int64)
        rows = np.empty((2, n), out.dtype)
        r0 = rows[0]
        r1 = rows[1]
        for y in range(y0, y1):
            m = 0  # the taps of this output row that read input rows
            for c in range(c_in):
                for a in range(kh):
                    yy = y * sh + a * dh
                    if yy < top or yy >= top + h:
                        continue
                    for e in range(kw):
                        trow[m] = c * hp + yy
                        tcol[m] = e * dw * nb
                        tw[m] = (c * kh + a) * kw + e
                        m += 1
            for o in range(0, co, 2):
                o2 = min(o + 1, co - 1)  # an odd last channel is computed twice, written once
                w0 = wf[o]
                w1 = wf[o2]
                b0 = bias[o]
                b1 = bias[o2]
                for q in range(n):
                    r0[q] = b0
                    r1[q] = b1
                t = 0
                while t + 8 <= m:
                    x0 = xtf[trow[t], tcol[t]: tcol[t] + n]
                    x1 = xtf[trow[t + 1], tcol[t + 1]: tcol[t + 1] + n]
                    x2 = xtf[trow[t + 2], tcol[t + 2]: tcol[t + 2] + n]
                    x3 = xtf[trow[t + 3], tcol[t + 3]: tcol[t + 3] + n]
                    x4 = xtf[trow[t + 4], tcol[t + 4]: tcol[t + 4] + n]
                    x5 = xtf[trow[t + 5], tcol[t + 5]: tcol[t + 5] + n]
                    x6 = xtf[trow[t + 6], tcol[t + 6]: tcol[t + 6] + n]
                    x7 = xtf[trow[t + 7], tcol[t + 7]: tcol[t + 7] + n]
                    a0, a1, a2, a3 = w0[tw[t]], w0[tw[t + 1]], w0[tw[t + 2]], w0[tw[t + 3]]
                    a4, a5, a6, a7 = w0[tw[t + 4]], w0[tw[t + 5]], w0[tw[t + 6]], w0[tw[t + 7]]
                    c0, c1, c2, c3 = w1[tw[t]], w1[tw[t + 1]], w1[tw[t + 2]], w1[tw[t + 3]]
                    c4, c5, c6, c7 = w1[tw[t + 4]], w1[tw[t + 5]], w1[tw[t + 6]], w1[tw[t + 7]]
                    for q in range(n):
                        v0, v1, v2, v3, v4, v5, v6, v7 = x0[q], x1[q], x2[q], x3[q], x4[q], x5[q], x6[q], x7[q]
                        r0[q] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3 + a4 * v4 + a5 * v5 + a6 * v6 + a7 * v7
                        r1[q] += c0 * v0 + c1 * v1 + c2 * v2 + c3 * v3 + c4 * v4 + c5 * v5 + c6 * v6 + c7 * v7
                    t += 8
                while t + 4 <= m:
                    x0 = xtf[trow[t], tcol[t]: tcol[t] + n]
                    x1 = xtf[trow[t + 1], tcol[t + 1]: tcol[t + 1] + n]
                    x2 = xtf[trow[t + 2], tcol[t + 2]: tcol[t + 2] + n]
                    x3 = xtf[trow[t + 3], tcol[t + 3]: tcol[t + 3] + n]
                    a0, a1, a2, a3 = w0[tw[t]], w0[tw[t + 1]], w0[tw[t + 2]], w0[tw[t + 3]]
                    c0, c1, c2, c3 = w1[tw[t]], w1[tw[t + 1]], w1[tw[t + 2]], w1[tw[t + 3]]
                    for q in range(n):
                        v0, v1, v2, v3 = x0[q], x1[q], x2[q], x3[q]
                        r0[q] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
                        r1[q] += c0 * v0 + c1 * v1 + c2 * v2 + c3 * v3
                    t += 4
                while t < m:
                    x0 = xtf[trow[t], tcol[t]: tcol[t] + n]
                    a0 = w0[tw[t]]
                    c0 = w1[tw[t]]
                    for q in range(n):
                        v0 = x0[q]
                        r0[q] += a0 * v0
                        r1[q] += c0 * v0
                    t += 1
                for b in range(nb):  # the finished rows, transposed into (B, Co, OH, OW)
                    d = out[b, o, y]
                    for j in range(ow):
                        d[j] = r0[j * nb + b]
                if o2 != o:
                    for b in range(nb):
                        d = out[b, o2, y]
                        for j in range(ow):
                            d[j] = r1[j * nb + b]

    @jit
    def weight_rows(xt: Any, gt: Any, gx0: int, ow: int, dwt: Any, o0: int, o1: int, y0: int, y1: int, sh: int,
                    dh: int, dw: int) -> None:  # pragma: no cover - compiled
        """dwt (Co, C, kh, kw)[o0:o1] = sum over output rows y0 <= y < y1, columns x < ow and batch b of
        gt[o, y, gx0 + x, b] * xt[c, y sh + a dh, x + e dw, b]; xt (C, Hp, Wp, B) zero-padded, gt (Co, OH, OWp, B).

        Taps (c, a, e) in fours, each reading whole rows (its padding rows hold zeros), so that a
        kernel width of 5 leaves no remainder per row (a remainder tap ran at a third of the speed).
        """
        c_in, hp, wp, nb = xt.shape
        co, oh, owp, _ = gt.shape
        kh, kw = dwt.shape[2], dwt.shape[3]
        n = ow * nb
        xtf = xt.reshape(c_in * hp, wp * nb)
        gtf = gt.reshape(co * oh, owp * nb)
        g0 = gx0 * nb
        z = np.zeros(1, dwt.dtype)[0]
        ntap = c_in * kh * kw
        dflat = dwt.reshape(co, ntap)
        base = np.empty(ntap, np.int64)  # tap t reads row base[t] + y sh from column col[t]
        col = np.empty(ntap, np.int64)
        for t in range(ntap):
            base[t] = (t // (kh * kw)) * hp + ((t // kw) % kh) * dh
            col[t] = (t % kw) * dw * nb
        for o in range(o0, o1, 2):
            o2 = min(o + 1, o1 - 1)
            t = 0
            while t + 4 <= ntap:
                s00, s01, s02, s03, s10, s11, s12, s13 = z, z, z, z, z, z, z, z
                b0, b1, b2, b3 = base[t], base[t + 1], base[t + 2], base[t + 3]
                c0, c1, c2, c3 = col[t], col[t + 1], col[t + 2], col[t + 3]
                for y in range(y0, y1):
                    ga = gtf[o * oh + y, g0: g0 + n]
                    gb = gtf[o2 * oh + y, g0: g0 + n]
                    ys = y * sh
                    x0 = xtf[b0 + ys, c0: c0 + n]
                    x1 = xtf[b1 + ys, c1: c1 + n]
                    x2 = xtf[b2 + ys, c2: c2 + n]
                    x3 = xtf[b3 + ys, c3: c3 + n]
                    for q in range(n):
                        u, v = ga[q], gb[q]
                        v0, v1, v2, v3 = x0[q], x1[q], x2[q], x3[q]
                        s00 += u * v0
                        s01 += u * v1
                        s02 += u * v2
                        s03 += u * v3
                        s10 += v * v0
                        s11 += v * v1
                        s12 += v * v2
                        s13 += v * v3
                dflat[o, t], dflat[o, t + 1], dflat[o, t + 2], dflat[o, t + 3] = s00, s01, s02, s03
                if o2 != o:
                    dflat[o2, t], dflat[o2, t + 1], dflat[o2, t + 2], dflat[o2, t + 3] = s10, s11, s12, s13
                t += 4
            while t < ntap:
                s00, s10 = z, z
                for y in range(y0, y1):
                    ga = gtf[o * oh + y, g0: g0 + n]
                    gb = gtf[o2 * oh + y, g0: g0 + n]
                    x0 = xtf[base[t] + y * sh, col[t]: col[t] + n]
                    for q in range(n):
                        v0 = x0[q]
                        s00 += ga[q] * v0
                        s10 += gb[q] * v0
                dflat[o, t] = s00
                if o2 != o:
                    dflat[o2, t] = s10
                t += 1

    return types.SimpleNamespace(pack=pack, conv_rows=conv_rows, weight_rows=weight_rows)


kernels = _jit.compiled(_build)  # packing, output rows and weight rows of the direct convolution
