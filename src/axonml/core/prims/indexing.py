"""Gather and scatter-add along one dimension (``torch.gather`` / ``scatter_add``).

They are each other's backward, so every order of derivative stays inside
this pair. They are primitives (not ``GetItem`` with an index grid) so that
the graph IR sees one named op (ONNX GatherElements / ScatterElements).

Shapes: ``index`` has ``x``'s rank and is no larger than ``x`` outside ``dim``;
ScatterAdd's ``src`` has exactly ``index``'s shape (callers slice it first).
"""

from __future__ import annotations

from typing import Any

from ...backend import index_add_at
from ..function import Primitive
from ..tensor import Tensor


def along_index(xp: Any, index: Any, dim: int) -> tuple[Any, ...]:
    """The advanced-index tuple that picks ``index`` along ``dim``: open grids elsewhere."""
    nd = index.ndim
    out = []
    for i in range(nd):
        if i == dim:
            out.append(index)
        else:
            shape = [1] * nd
            shape[i] = index.shape[i]
            out.append(xp.arange(index.shape[i]).reshape(shape))
    return tuple(out)


def _zeros(shape: tuple[int, ...], dtype: Any, ctx: Any) -> Tensor:
    return Tensor._make(ctx.xp.zeros(shape, dtype), ctx.device)


class Gather(Primitive):
    """``out[i][j] = x[index[i][j]][j]`` for ``dim=0`` (and likewise for other dims)."""

    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, x: Any, dim: int, index: Any) -> Any:
        ctx.dim = dim
        # index may be smaller than x outside dim: take the matching corner of x
        corner = tuple(slice(None) if i == dim else slice(0, n) for i, n in enumerate(index.shape))
        return ctx.xp.take_along_axis(x[corner], index, axis=dim)

    def backward(self, grad: Tensor) -> tuple[Any, None, None]:
        shape, dtype = self.input_meta[0]
        return ScatterAdd.apply(_zeros(shape, dtype, self), self.dim, self.input(2), grad), None, None

    def jvp(self, t: Tensor | None, _: Any, __: Any) -> Tensor | None:
        return None if t is None else Gather.apply(t, self.dim, self._inputs[2])


class ScatterAdd(Primitive):
    """Out of place ``out = base.copy(); out[index[i][j]][j] += src[i][j]`` for ``dim=0``."""

    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, base: Any, dim: int, index: Any, src: Any) -> Any:
        ctx.dim = dim
        out = base.copy()
        if src.dtype != out.dtype:
            src = src.astype(out.dtype)
        index_add_at(ctx.xp, out, along_index(ctx.xp, index, dim), src)
        return out

    def backward(self, grad: Tensor) -> tuple[Any, None, None, Any]:
        gsrc = Gather.apply(grad, self.dim, self.input(2)) if self.next_edges[3] is not None else None
        return grad, None, None, gsrc

    def jvp(self, tb: Tensor | None, _: Any, __: Any, ts: Tensor | None) -> Tensor | None:
        if tb is None and ts is None:
            return None
        out = self._out[0]
        base = tb if tb is not None else _zeros(out.shape, out.dtype, self)
        if ts is None:
            return base
        return ScatterAdd.apply(base, self.dim, self._inputs[2], ts)
