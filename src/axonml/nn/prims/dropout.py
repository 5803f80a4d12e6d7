"""Dropout on CUDA as one primitive: the mask and the product in one launch.

Composed, a dropout is a mask draw and a multiplication (two launches forward, each ~10 us of
host time); a Transformer layer makes four. The mask is the one ``keep_mask`` would draw from
the same stream (same seed, same numbers), and the product rounds as the multiplication did.
"""

from __future__ import annotations

from typing import Any

from ...backend.fused import elementwise, fusable
from ...core.function import Primitive
from ...core.tensor import Tensor
from ._fastpath import arrays_only

# the gradient ``g * mask`` in a raw launch (CuPy's multiply spends several times its host time)
_TIMES_MASK = elementwise("axonml_times_mask", "T g, T mask", "T dx", "dx = g * mask;")


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
            g, mask = grad._data, self.mask
            if fusable(self.device, g, mask):
                dx = self.xp.ndarray(g.shape, g.dtype)
                _TIMES_MASK.over(g, mask, dx)
            else:
                dx = self.xp.multiply(g, mask)
            return Tensor._make(dx, self.device), None, None, None
        return grad * Tensor._make(self.mask, self.device), None, None, None

    def jvp(self, t: Tensor | None, *_: Any) -> Tensor | None:
        return None if t is None else t * Tensor._make(self.mask, self.device)
