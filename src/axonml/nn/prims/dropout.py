"""Dropout on CUDA as one primitive: the mask and the product in one launch.

Composed, a dropout is a mask draw and a multiplication (two launches forward, each ~10 us of
host time); a Transformer layer makes four. The mask is the one ``keep_mask`` would draw from
the same stream (same seed, same numbers), and the product rounds as the multiplication did.
"""

from __future__ import annotations

from typing import Any

from ...core.function import Primitive
from ...core.tensor import Tensor
from ._fastpath import arrays_only


class DropoutMask(Primitive):
    """``DropoutMask.apply(x, stream, p, scale)``: x times a mask of ``scale`` (kept) and 0 (dropped), drawn
    from the CUDA random ``stream`` with drop probability ``p``."""

    @staticmethod
    def forward(ctx: Any, x: Any, stream: Any, p: float, scale: float) -> Any:
        y, ctx.mask = stream.dropout(x, p, scale)
        return y

    def release(self) -> None:
        super().release()
        self.__dict__.pop("mask", None)

    def backward(self, grad: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        if arrays_only():
            return Tensor._make(self.xp.multiply(grad._data, self.mask), self.device), None, None, None
        return grad * Tensor._make(self.mask, self.device), None, None, None

    def jvp(self, t: Tensor | None, *_: Any) -> Tensor | None:
        return None if t is None else t * Tensor._make(self.mask, self.device)
