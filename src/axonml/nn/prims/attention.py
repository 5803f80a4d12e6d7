"""The fused attention-probabilities primitive: ``softmax(q @ k^T * scale + bias)`` over the last axis.

A primitive because composed it is slow: the softmax chain (max, subtract, exp, sum,
divide, each with its backward node) makes ~12 passes over the (L, S) score matrix;
here the forward makes 5 in place, and the backward 3. Rows that are entirely masked
(-inf) give zero probabilities, as PyTorch's scaled_dot_product_attention, instead of NaN.
On CUDA (float32/float64) the softmax and its backward are one fused kernel each
(``_attention_cuda.py``): there every CuPy call is a launch costing ~10 us of CPU time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...backend import matmul
from ...backend.fused import FUSED_DTYPES
from ...core.function import Primitive
from ...core.tensor import Tensor
from . import _attention_cuda as _cuda
from ._fastpath import arrays_only, row_dot, row_sum

# Scores within +-_NO_SHIFT need no max subtraction: exp neither overflows (nor does a row's sum, up to
# ~1e12 keys) nor underflows to a zero row. NumPy takes ~1 ns an element for the row maxima of short rows
# (S=128: 1.1 ms for (16, 4, 128, 128)) plus a pass to subtract them; the whole array's max and min
# are vectorized reductions (0.2 ms each). Same softmax up to float rounding.
_NO_SHIFT = 60.0


def _softmax_rows_(xp: Any, s: Any) -> Any:
    """Softmax over the last axis of ``s`` in place (``s`` is a fresh buffer); all -inf rows give 0."""
    if xp is not np and _cuda.supports(xp, s):
        return _cuda.softmax_(xp, s, 1.0)
    if (xp is np and s.size and s.dtype.kind == "f" and s.dtype.itemsize >= 4 and s.shape[-1]
            and s.min() > -_NO_SHIFT and s.max() < _NO_SHIFT):  # NaN or -inf (a mask) fail this: the general path
        np.exp(s, out=s)
        s /= row_sum(xp, s.reshape(-1, s.shape[-1])).reshape(*s.shape[:-1], 1)
        return s
    m = s.max(-1, keepdims=True)  # (..., L, 1)
    # -inf - (-inf) would be NaN: shift such rows by 0 instead (exp(-inf) = 0); no host sync on a GPU
    m = xp.where(xp.isfinite(m), m, 0.0)
    s -= m
    xp.exp(s, out=s)
    z = row_sum(xp, s.reshape(-1, s.shape[-1])).reshape(m.shape)
    s /= xp.where(z == 0, 1.0, z)  # an all-masked row stays zero
    return s


class AttentionProbs(Primitive):
    """``softmax(q @ k^T * scale + bias, -1)`` for q (..., L, E), k (..., S, E), bias broadcastable to (..., L, S).

    Called as ``AttentionProbs.apply(q, k, bias_or_None, scale)``. A float bias (an additive
    mask, -inf where attention is not allowed) gets a gradient too.
    """

    saves = "both"

    @staticmethod
    def forward(ctx: Any, q: Any, k: Any, bias: Any, scale: float) -> Any:
        xp = ctx.xp
        ctx.scale = scale
        if bias is None and xp is not np and q.dtype in FUSED_DTYPES and k.dtype == q.dtype:
            # one kernel scales the scores and takes their softmax: no launch to scale q
            s = xp.ascontiguousarray(matmul(xp, q, xp.swapaxes(k, -1, -2)))  # (..., L, S), a fresh buffer
            return _cuda.softmax_(xp, s, scale) if s.size else s
        if q.shape[-1] <= k.shape[-2]:  # scale the smaller operand
            s = matmul(xp, q * q.dtype.type(scale), xp.swapaxes(k, -1, -2))
        else:
            s = matmul(xp, q, xp.swapaxes(k, -1, -2))
            s *= scale
        if s.dtype != q.dtype:  # NumPy returns bfloat16 products as float32; keep the inputs' dtype
            s = s.astype(q.dtype)
        if bias is not None:
            if bias.dtype != s.dtype:
                bias = bias.astype(s.dtype)
            if bias.ndim > s.ndim or any(b != 1 and b != n for b, n in zip(bias.shape[::-1], s.shape[::-1])):
                s = s + bias  # the mask widens the batch dimensions: a new buffer of the full shape
            else:
                s += bias
        return _softmax_rows_(xp, s)

    def backward(self, grad: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        q, k, bias = self.inputs[:3]
        need_q, need_k, need_b = (e is not None for e in self.next_edges[:3])
        scale = self.scale
        if not arrays_only():
            p = self.output
            ds = p * (grad - (grad * p).sum(-1, keepdim=True))
            gq = ds @ k * scale if need_q else None
            gk = ds.mT @ q * scale if need_k else None
            return gq, gk, ds if need_b else None, None
        xp = self.xp
        p = self._out[0]
        g = grad._data
        folded = False  # ds already multiplied by scale
        if xp is not np and _cuda.supports(xp, p, g):
            folded = not (need_b and bias is not None)  # the mask's gradient is ds itself, unscaled
            ds = _cuda.softmax_backward(xp, g, p, scale if folded else 1.0)
        else:
            ds = xp.subtract(g, row_dot(xp, g, p)[..., None])  # (..., L, S)
            ds *= p
        gq = gk = None
        if need_q:
            gq = matmul(xp, ds, k._data)
            if not folded:
                gq *= scale
            gq = Tensor._make(gq.astype(q._data.dtype, copy=False), self.device)
        if need_k:
            gk = matmul(xp, xp.swapaxes(ds, -1, -2), q._data)
            if not folded:
                gk *= scale
            gk = Tensor._make(gk.astype(k._data.dtype, copy=False), self.device)
        gb = Tensor._make(ds, self.device) if need_b and bias is not None else None
        return gq, gk, gb, None

    def jvp(self, tq: Any, tk: Any, tb: Any, _: Any) -> Any:
        q, k = self.inputs[:2]
        ds = None
        if tq is not None:
            ds = tq @ k.mT * self.scale
        if tk is not None:
            term = q @ tk.mT * self.scale
            ds = term if ds is None else ds + term
        if tb is not None:
            ds = tb if ds is None else ds + tb
        if ds is None:
            return None
        p = self.output
        return p * (ds - (ds * p).sum(-1, keepdim=True))
