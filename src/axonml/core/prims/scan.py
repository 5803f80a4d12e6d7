"""Scan primitives: inclusive prefix sums along one dimension.

``Cumsum`` is a primitive because the composed alternative (log2(n) shifted
adds) costs O(n log n) work and memory against NumPy's single O(n) pass.
``cumprod`` stays a composition in ``ops`` (its exact gradient with zeros in
the input falls out of plain multiplications).
"""

from __future__ import annotations

from typing import Any

from ..function import Primitive
from ..tensor import Tensor
from .movement import Flip


class Cumsum(Primitive):
    """``out[..., i, ...] = sum(x[..., :i+1, ...])`` along ``dim``; bool and integer inputs give int64."""

    @staticmethod
    def forward(ctx: Any, x: Any, dim: int) -> Any:
        ctx.dim = dim
        return ctx.xp.cumsum(x, axis=dim, dtype=ctx.xp.int64 if x.dtype.kind in "biu" else None)

    def backward(self, grad: Tensor) -> tuple[Tensor, None]:
        # d out_k / d x_i = [i <= k], so the gradient is a reversed prefix sum
        dims = (self.dim,)
        return Flip.apply(Cumsum.apply(Flip.apply(grad, dims), self.dim), dims), None

    def jvp(self, t: Tensor | None, _: Any) -> Tensor | None:
        return None if t is None else Cumsum.apply(t, self.dim)
