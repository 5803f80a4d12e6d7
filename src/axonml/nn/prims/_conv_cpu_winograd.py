"""Winograd F(2x2, 3x3) for the CPU convolutions: 3x3, stride 1, dilation 1, one group, float32/64.

Why: on 2x2 output tiles a 3x3 convolution needs 16 GEMMs of (Co, C) @ (C, tiles), 2.25x fewer
multiplications than im2col's one (Co, 9 C) @ (9 C, pixels); its weight gradient likewise takes
16 GEMMs (Co, tiles) @ (tiles, C) (F(3x3, 2x2) over the output gradient's 2x2 tiles). The tile
transforms are the compiled loops of ``_conv_cpu_jit`` (numba), so without numba this path is
off and the convolutions keep im2col. The transforms only add, subtract and halve: the results
differ from im2col's by float rounding (~1e-15 relative in float64, ~5e-7 in float32).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._conv_cpu import copy_into, matmul, scratch, split
from ._conv_cpu_jit import kernels


def winograd_pays(x: Any, kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...],
                  groups: int, min_channels: int) -> Any:
    """The compiled loops when a convolution should run as Winograd, else None.

    The tile transforms are memory passes (~1 ns an element of the 4x-expanded tiles), so it pays
    from enough input channels (``min_channels``): ResNet-18's
    16x16 to 4x4 layers (C >= 128) went 22-27 -> 13-19 ms a call on one core; at 32x32 with C = 64
    the forward tied with the shift GEMMs (25 ms) while the weight gradient gained (37 -> 30 ms).
    """
    if (x.ndim != 4 or kernel != (3, 3) or stride != (1, 1) or dilation != (1, 1) or groups != 1
            or x.dtype.char not in "fd" or x.shape[1] < min_channels):
        return None
    return kernels()


def _components(slot: str, rows: int, cols: int, dtype: Any) -> Any:
    """A (4, 4, rows, cols) buffer whose 16 (rows, cols) components are not a power of two bytes apart.

    The transforms read or write all 16 components at once; 16 streams at the same address modulo
    4 KB share a cache set and evicted each other (the kernel transform of ResNet's 512-channel
    layer took 17.6 ms; 64 bytes of padding between components avoid that).
    """
    n = rows * cols
    buf = scratch(np, slot, (16, n + 64 // np.dtype(dtype).itemsize), dtype)
    return buf[:, :n].reshape(4, 4, rows, cols)


def winograd(jit: Any, x: Any, w: Any, lo: tuple[int, ...], out: tuple[int, ...]) -> Any:
    """``conv(x, w)`` (3x3, stride 1, zero padding ``lo`` before, output size ``out``) as (B, Co, *out).

    """
    nb, c = x.shape[:2]
    co = w.shape[0]
    oh, ow = out
    nty, ntx = (oh + 1) // 2, (ow + 1) // 2
    tiles = nb * nty * ntx
    v = _input_tiles(jit, x, lo, nty, ntx)
    wc = np.ascontiguousarray(w)
    u = _components("wino_u", co, c, x.dtype)  # G w G^T per (co, c)
    split(co, co * c * 64, lambda o0, o1: jit.wino_weight(wc, o0, o1, u))
    m = _components("wino_m", co, tiles, x.dtype)
    matmul(u.reshape(16, co, c), v.reshape(16, c, tiles), m.reshape(16, co, tiles))
    y = np.empty((nb, co, oh, ow), x.dtype)
    split(co, y.nbytes, lambda o0, o1: jit.wino_out(m, o0, o1, nty, ntx, y))
    return y


def _input_tiles(jit: Any, x: Any, lo: tuple[int, ...], nty: int, ntx: int) -> Any:
    """The F(2x2, 3x3) input tiles (4, 4, C, B * nty * ntx) of x zero-padded by ``lo`` before."""
    nb, c, h, wd = x.shape
    hp, wp = 2 * nty + 2, 2 * ntx + 2
    xp = scratch(np, "wino_pad", (c, nb, hp, wp), x.dtype)  # zero-padded, channel-major
    xp[...] = 0
    rh, rw = min(h, hp - lo[0]), min(wd, wp - lo[1])
    copy_into(np, xp[:, :, lo[0]: lo[0] + rh, lo[1]: lo[1] + rw], x[:, :, :rh, :rw].transpose(1, 0, 2, 3))
    v = _components("wino_v", c, nb * nty * ntx, x.dtype)
    split(c, v.size * v.itemsize, lambda c0, c1: jit.wino_in(xp, c0, c1, nty, ntx, v))
    return v


def winograd_weight(jit: Any, x: Any, g: Any, lo: tuple[int, ...]) -> Any:
    """The weight gradient (Co, C, 3, 3) of ``conv(x, w)`` (3x3, stride 1, padding ``lo`` before) for output
    gradient g (B, Co, OH, OW): Winograd F(3x3, 2x2) over g's 2x2 tiles, 16 GEMMs (Co, tiles) @ (tiles, C).

    The input tiles are the forward's (their last transform row's sign is folded into the output).
    """
    nb, c = x.shape[:2]
    co, oh, ow = g.shape[1:]
    nty, ntx = (oh + 1) // 2, (ow + 1) // 2
    tiles = nb * nty * ntx
    v = _input_tiles(jit, x, lo, nty, ntx)
    gc = np.ascontiguousarray(g)
    u = _components("wino_m", co, tiles, x.dtype)
    split(co, co * tiles * 64, lambda o0, o1: jit.wino_grad_in(gc, o0, o1, nty, ntx, u))
    m = _components("wino_u", co, c, x.dtype)
    matmul(u.reshape(16, co, tiles), v.reshape(16, c, tiles).transpose(0, 2, 1), m.reshape(16, co, c))
    dw = np.empty((co, c, 3, 3), x.dtype)
    split(co, co * c * 64, lambda o0, o1: jit.wino_grad_out(m, o0, o1, dw))
    return dw
