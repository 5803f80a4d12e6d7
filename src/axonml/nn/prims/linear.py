"""The affine map ``x @ weight^T + bias`` as one primitive.

A primitive because it is the hottest op of most models and composed it is three
nodes (transpose, matmul, add) with an extra pass and allocation for the bias; here
the bias is added in place, the bias gradient is a matrix-vector product, and any
leading dimensions of ``x`` fold into one GEMM.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...backend import matmul
from ...backend.fused import FUSED_DTYPES, elementwise
from ...core.function import Primitive
from ...core.tensor import Tensor
from ._fastpath import arrays_only, col_sum

# ``out += bias`` over the rows of a C-contiguous (rows, n) product in a raw launch (CuPy's broadcasting add spends
# several times its host time)
_ADD_BIAS = elementwise("axonml_add_bias", "raw T b, int64 n", "T y", "y = y + b[i % n];")


def _add_bias(xp: Any, out: Any, b: Any) -> None:
    """``out += b`` for a 2-D product ``out`` and a (n,) bias."""
    if (xp is not np and out.dtype in FUSED_DTYPES and b.dtype == out.dtype and out.flags.c_contiguous
            and b.flags.c_contiguous):
        _ADD_BIAS(b, np.int64(b.shape[0]), out)
    else:
        out += b


class Linear(Primitive):
    """``x @ weight^T + bias`` for x (..., in), weight (out, in), bias (out,) or None.

    Called as ``Linear.apply(x, weight, bias_or_None)`` with tensors of one dtype.
    """

    saves = "inputs"
    autocast_policy = "lower"

    @staticmethod
    def forward(ctx: Any, x: Any, w: Any, b: Any) -> Any:
        xp = ctx.xp
        if x.ndim == 2:
            out = x @ w.T if xp is np else matmul(xp, x, w.T)
        else:
            lead = x.shape[:-1]
            out = matmul(xp, x.reshape(math.prod(lead), x.shape[-1]), w.T)
        if out.dtype != x.dtype:  # NumPy returns bfloat16 products as float32; PyTorch keeps bfloat16
            out = out.astype(x.dtype)
        if b is not None:
            _add_bias(xp, out, b)
        return out if x.ndim == 2 else out.reshape(*lead, w.shape[0])

    def backward(self, grad: Tensor) -> tuple[Any, Any, Any]:  # type: ignore[override]
        x, w, b = self.inputs
        ex, ew, eb = self.next_edges
        if not arrays_only():
            n_in, n_out = w.shape[1], w.shape[0]
            g2 = grad.reshape(-1, n_out)
            gx = (grad @ w) if ex is not None else None
            gw = g2.mT @ x.reshape(-1, n_in) if ew is not None else None
            return gx, gw, (grad if eb is not None and b is not None else None)  # the engine sums grad to (out,)
        xp, dev = self.xp, self.device
        xd, wd, g2 = x._data, w._data, grad._data
        if xp is np and xd.ndim == 2 and g2.ndim == 2:  # the common case: no reshapes, no dispatch
            gx = Tensor._make(g2 @ wd, dev) if ex is not None else None
            gw = Tensor._make(g2.T @ xd, dev) if ew is not None else None
        else:
            g2 = g2.reshape(-1, wd.shape[0])
            gx = Tensor._make(matmul(xp, g2, wd).reshape(xd.shape), dev) if ex is not None else None
            gw = Tensor._make(matmul(xp, g2.T, xd.reshape(-1, wd.shape[1])), dev) if ew is not None else None
        gb = Tensor._make(col_sum(xp, g2), dev) if eb is not None and b is not None else None
        return gx, gw, gb

    def jvp(self, tx: Any, tw: Any, tb: Any) -> Any:
        x, w, _ = self.inputs
        out = None if tx is None else Linear.apply(tx, w, None)
        if tw is not None:
            term = Linear.apply(x, tw, None)
            out = term if out is None else out + term
        if tb is not None:
            out = tb.expand(self._out_shape(x, w)) if out is None else out + tb
        return out

    @staticmethod
    def _out_shape(x: Tensor, w: Tensor) -> tuple[int, ...]:
        return (*x.shape[:-1], w.shape[0])
