"""The affine map ``x @ weight^T + bias`` as one primitive.

A primitive because it is the hottest op of most models and composed it is three
nodes (transpose, matmul, add) with an extra pass and allocation for the bias; here
the bias is added in place, the bias gradient is a matrix-vector product, and any
leading dimensions of ``x`` fold into one GEMM.
"""

from __future__ import annotations

import math
from typing import Any

from ...backend import matmul
from ...core.function import Primitive
from ...core.tensor import Tensor
from ._fastpath import arrays_only, col_sum


class Linear(Primitive):
    """``x @ weight^T + bias`` for x (..., in), weight (out, in), bias (out,) or None.

    Called as ``Linear.apply(x, weight, bias_or_None)`` with tensors of one dtype.
    """

    saves = "inputs"
    autocast_policy = "lower"

    @staticmethod
    def forward(ctx: Any, x: Any, w: Any, b: Any) -> Any:
        lead = x.shape[:-1]
        x2 = x.reshape(math.prod(lead), x.shape[-1]) if x.ndim != 2 else x
        out = matmul(ctx.xp, x2, w.T)
        if out.dtype != x.dtype:  # NumPy returns bfloat16 products as float32; PyTorch keeps bfloat16
            out = out.astype(x.dtype)
        if b is not None:
            out += b
        return out.reshape(*lead, w.shape[0]) if x.ndim != 2 else out

    def backward(self, grad: Tensor) -> tuple[Any, Any, Any]:  # type: ignore[override]
        x, w, b = self.inputs
        need_x, need_w, need_b = (e is not None for e in self.next_edges)
        n_in, n_out = w.shape[1], w.shape[0]
        if not arrays_only():
            g2 = grad.reshape(-1, n_out)
            gx = (grad @ w) if need_x else None
            gw = g2.mT @ x.reshape(-1, n_in) if need_w else None
            return gx, gw, (grad if need_b and b is not None else None)  # the engine sums grad to (out,)
        g2 = grad._data.reshape(-1, n_out)
        dev = self.device
        xp = self.xp
        gx = Tensor._make(matmul(xp, g2, w._data).reshape(x.shape), dev) if need_x else None
        gw = Tensor._make(matmul(xp, g2.T, x._data.reshape(-1, n_in)), dev) if need_w else None
        gb = Tensor._make(col_sum(self.xp, g2), dev) if need_b and b is not None else None
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
