"""Matrix product with NumPy/PyTorch semantics: 1-D operands, batching, broadcasting."""

from __future__ import annotations

from typing import Any

from ...backend import matmul
from ...errors import ShapeError
from ..function import Primitive, arrays_only
from ..tensor import Tensor


class Matmul(Primitive):
    promote = True
    autocast_policy = "lower"
    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        if a.ndim == 0 or b.ndim == 0:
            raise ShapeError("matmul: both arguments need at least one dimension")
        ka = a.shape[-1]
        kb = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if ka != kb:
            raise ShapeError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not align ({ka} != {kb})")
        out = matmul(ctx.xp, a, b)
        # NumPy computes bfloat16 products in float32 and returns that; PyTorch keeps bfloat16
        return out if out.dtype == a.dtype else out.astype(a.dtype)

    def backward(self, grad: Tensor) -> tuple[Any, Any]:
        a, b = self.inputs
        need_a, need_b = self.next_edges[0] is not None, self.next_edges[1] is not None
        if a.ndim >= 2 and b.ndim >= 2 and arrays_only():
            # first order: two GEMMs on the arrays, without the transposed views as graph ops
            xp, g = self.xp, grad._data
            ga_arr = matmul(xp, g, xp.swapaxes(b._data, -1, -2)) if need_a else None
            gb_arr = matmul(xp, xp.swapaxes(a._data, -1, -2), g) if need_b else None
            return (None if ga_arr is None else Tensor._make(ga_arr, self.device),
                    None if gb_arr is None else Tensor._make(gb_arr, self.device))
        ga = gb = None
        if a.ndim == 1 and b.ndim == 1:  # dot product: grad is a scalar
            ga = grad * b if need_a else None
            gb = grad * a if need_b else None
        elif a.ndim == 1:  # (k) @ (..., k, n) -> (..., n)
            ga = (grad.unsqueeze(-2) @ b.mT).squeeze(-2) if need_a else None
            gb = a.unsqueeze(-1) * grad.unsqueeze(-2) if need_b else None
        elif b.ndim == 1:  # (..., m, k) @ (k) -> (..., m)
            ga = grad.unsqueeze(-1) * b if need_a else None
            gb = (a.mT @ grad.unsqueeze(-1)).squeeze(-1) if need_b else None
        else:
            ga = grad @ b.mT if need_a else None
            gb = a.mT @ grad if need_b else None
        return ga, gb

    def jvp(self, ta: Tensor | None, tb: Tensor | None) -> Tensor | None:
        a, b = self.inputs
        out = None if ta is None else ta @ b
        if tb is not None:
            out = a @ tb if out is None else out + a @ tb
        return out
