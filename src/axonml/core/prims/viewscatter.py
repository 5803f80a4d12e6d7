"""The history of a base tensor after an in-place write through one of its views."""

from __future__ import annotations

from typing import Any

from ..function import Primitive
from ..tensor import Tensor


class ViewScatter(Primitive):
    """``base`` with ``view_fn(base)`` replaced by ``value``; memory was already written.

    Backward: the base's old history gets the gradient outside the view, the
    written value gets the gradient inside it.
    """

    @staticmethod
    def forward(ctx: Any, base: Any, value: Any, view_fn: Any) -> Any:
        ctx.view_fn = view_fn
        return base

    def backward(self, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        shape, dtype = self.input_meta[0]
        keep = Tensor._make(self.xp.ones(shape, dtype), self.device)
        self.view_fn(keep)._data[...] = 0  # the view region receives no gradient
        return grad * keep, self.view_fn(grad), None

    def jvp(self, tb: Tensor | None, tv: Tensor | None, _: Any) -> Tensor | None:
        if tb is None and tv is None:
            return None
        shape, dtype = self._out[0].shape, self._out[0].dtype
        out = tb.clone() if tb is not None else Tensor._make(self.xp.zeros(shape, dtype), self.device)
        region = self.view_fn(out)
        region._data[...] = tv._data if tv is not None else 0
        return out
