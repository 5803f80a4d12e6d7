"""Direct CPU convolutions for layers whose GEMM is skinny: no im2col columns, no GEMM.

Why: im2col + GEMM turns LeNet's layers into GEMMs with 6 or 16 rows, which OpenBLAS runs at
~30 GFLOP/s, around copies (columns, crops, transposes, col2im) that cost as much again:
LeNet's first layer took 1.33 ms forward (PyTorch 0.30), the second's input gradient 1.7 ms
(col2im). Here each of the three primitives is one compiled loop over a batch-last copy of its
input (``_conv_cpu_direct_jit``, numba): the forward and the stride-1 input gradient (a
convolution with the flipped kernel) accumulate output rows from 8 taps a pass; the weight
gradient reduces rows of the input against rows of the output gradient.

Scope: 2-D convolutions on the CPU, float32/64, one group, stride 1 along the width (any along
the height), any dilation and padding; NumPy arrays of any strides. ``pays`` decides per layer.
Threads: a small convolution (``_conv_cpu.scope``: LeNet's) runs on the calling thread, a large
one splits output rows (forward), output channels (weight gradient) and channels (packing).
LeNet-5's training step (batch 64, 2 threads): 9.3-9.8 ms -> 5.2-6.1 (PyTorch 4.7-5.3).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...core.grad_mode import GRAD_ENABLED
from ._conv_cpu import Kept, scratch, split
from ._conv_cpu_direct_jit import kernels

Ints = tuple[int, ...]

# Where the direct loops win (``pays``). They run at ~60-70 GFLOP/s on one core whatever the channel
# counts, while im2col + GEMM nears OpenBLAS's 100-150 once the GEMM has enough rows (m: output
# channels of the loop) and a deep enough reduction (r = input channels x kh x kw), and its copies
# (columns, crops, col2im) cost as much as a skinny GEMM. Measured one call each, direct vs im2col,
# 2 threads, float32, batch 32-64 (ratios > 1: direct faster), forward / weight / input gradient:
#   LeNet 1->6 5x5 at 28x28 2.8 / 2.7 / 1.9, 6->16 at 14x14 2.0 / 1.7 / 2.8 (float64: 1.3-2.8);
#   3->16 5x5 at 32x32 2.2 / 2.6 / 1.2; 16->16 3x3 2.3 / 2.3 / 2.2; 8->8 2.0 / 2.4 / 1.7; stems
#   3->64 3x3 1.35 / 1.1 / (1.0), 1->32 1.6 / 1.5 / (0.9); 32->16 at 16x16 1.15 / 1.0 / 1.0;
#   16->32 at 28x28 1.0 / 1.1 / 0.7-1.2; 32->32 at 16x16 0.7 / 1.0 / 0.7; 64->64 at 32x32 (ResNet)
#   0.7 / 0.3 / 1.0. The loops of output rows (forward, input gradient) lose once they stream many
# long input rows per output row (r large on a large input: 16->32 at 28x28, 0.7): hence the size
# cap. Rows must be long enough to vectorize: LeNet's second layer at batch 1 (rows of 14) ran
# 0.6-0.95x, at batch 4 0.95-1.3x.
_ROWS_MAX_CHANNELS = 16  # m <= this, with r <= _ROWS_MAX_REDUCTION and input <= _ROWS_MAX_BYTES
_ROWS_MAX_REDUCTION = 400
_ROWS_MAX_BYTES = 5 << 19
_WEIGHT_MAX_CHANNELS = 16  # the weight gradient: m <= this with r <= _WEIGHT_MAX_REDUCTION (m = 32: 0.9-1.1)
_WEIGHT_MAX_REDUCTION = 600
_SHALLOW = (64, 32)  # any path: m <= 64 with r <= 32 (stems on RGB or greyscale images)
_MIN_ROW = 32  # batch x width


def pays(x: Any, m: int, kernel: Ints, dtype: Any, stride: Ints, pad_lo: Ints, groups: int, weight: bool) -> Any:
    """The compiled loops when a convolution should run directly, else None.

    ``x`` (B, C, H, W) is the input the loop packs (for an input gradient: the output gradient), ``m``
    the channels it makes (for a weight gradient: the output channels), ``kernel`` of ``dtype``. Rule
    (see ``_ROWS_*``, ``_WEIGHT_*``): a 2-D NumPy convolution with one group, stride 1 along the width,
    float32/64, few channels made (m) over a shallow reduction (r = C kh kw), or any m to 64 over r <= 32.
    """
    if (not isinstance(x, np.ndarray) or x.ndim != 4 or len(kernel) != 2 or groups != 1 or stride[1] != 1
            or x.dtype != dtype or x.dtype.char not in "fd" or min(pad_lo) < 0 or 0 in x.shape or m == 0
            or x.shape[0] * x.shape[3] < _MIN_ROW):
        return None
    r = x.shape[1] * math.prod(kernel)
    if m <= _SHALLOW[0] and r <= _SHALLOW[1]:
        return kernels()
    if weight:
        fits = m <= _WEIGHT_MAX_CHANNELS and r <= _WEIGHT_MAX_REDUCTION
    else:
        fits = m <= _ROWS_MAX_CHANNELS and r <= _ROWS_MAX_REDUCTION and x.nbytes <= _ROWS_MAX_BYTES
    return kernels() if fits else None


def _pack(jit: Any, x: Any, pad: Ints, padded: Ints, slot: str = "") -> Any:
    """x (B, C, H, W) as a batch-last (C, *padded, B) array, zero-padded by ``pad`` (top, left) and up to
    ``padded`` (Hp, Wp): a new array, or the scratch buffer ``slot`` for a temporary one."""
    nb, c = x.shape[:2]
    shape = (c, *padded, nb)
    xt = scratch(np, slot, shape, x.dtype) if slot else np.empty(shape, x.dtype)
    split(c, xt.nbytes, lambda c0, c1: jit.pack(x, xt, pad[0], pad[1], c0, c1))
    return xt


def _padded(x: Any, kernel: Ints, stride: Ints, dilation: Ints, pad_lo: Ints, out: Ints) -> Ints:
    """(Hp, Wp): the input with its padding before, and at least what the windows of ``out`` outputs reach."""
    return tuple(max(p + n, (o - 1) * s + d * (k - 1) + 1)
                 for p, n, o, s, d, k in zip(pad_lo, x.shape[2:], out, stride, dilation, kernel))


# A forward's packed input, kept for the weight gradient (which would pack it again), as the columns are.
PACKS = Kept()


def forward(jit: Any, x: Any, w: Any, b: Any, stride: Ints, dilation: Ints, pad_lo: Ints, out: Ints,
            keep: bool = True) -> Any:
    """``conv(x, w) + b`` (B, Co, *out) for x (B, C, H, W), w (Co, C, kh, kw), b (Co,) or None; ``keep``: keep
    the packed input for a weight gradient (``_keep``), else pack into scratch."""
    nb, _, h, _ = x.shape
    co, _, kh, kw = w.shape
    padded = _padded(x, (kh, kw), stride, dilation, pad_lo, out)
    keep = keep and GRAD_ENABLED.get()
    xt = _pack(jit, x, pad_lo, padded, "" if keep else "direct_in")
    if keep:
        PACKS.put((pad_lo, padded), x, xt)
    wf = np.ascontiguousarray(w).reshape(co, -1)
    bias = np.zeros(co, x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    y = np.empty((nb, co, *out), x.dtype)
    split(out[0], y.nbytes, lambda y0, y1: jit.conv_rows(xt, wf, kh, kw, pad_lo[0], h, bias, y, y0, y1, stride[0],
                                                          dilation[0], dilation[1]))
    return y


def transposed(jit: Any, g: Any, w: Any, b: Any, dilation: Ints, pad_lo: Ints, size: Ints) -> Any:
    """``convT(g, w) + b`` (B, Ci, *size) of a stride-1 convolution: g (B, Co, OH, OW), w (Co, Ci, kh, kw).

    It is the convolution of g, padded by ``d (k - 1) - p`` before, with the kernel flipped and its
    channel axes swapped (a gather, where col2im would accumulate); None where that padding is negative.
    """
    kernel = w.shape[2:]
    lo = tuple(d * (k - 1) - p for d, k, p in zip(dilation, kernel, pad_lo))
    if min(lo) < 0:
        return None
    wf = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    return forward(jit, g, wf, b, (1, 1), dilation, lo, size, keep=False)  # no weight gradient reads g's pack


def weight(jit: Any, x: Any, g: Any, stride: Ints, dilation: Ints, pad_lo: Ints, kernel: Ints) -> Any:
    """The weight gradient (Co, C, *kernel) of ``conv(x, w)`` for output gradient g (B, Co, OH, OW)."""
    c = x.shape[1]
    co, oh, ow = g.shape[1:]
    padded = _padded(x, kernel, stride, dilation, pad_lo, (oh, ow))
    xt = PACKS.get((pad_lo, padded), x)
    if xt is None:
        xt = _pack(jit, x, pad_lo, padded)
    gt = _pack(jit, g, (0, 0), (oh, ow), "direct_g")
    dw = np.empty((co, c, *kernel), x.dtype)
    split(co, xt.nbytes + gt.nbytes, lambda o0, o1: jit.weight_rows(xt, gt, 0, ow, dw, o0, o1, 0, oh, stride[0],
                                                                      dilation[0], dilation[1]))
    return dw
