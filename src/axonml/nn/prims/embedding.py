"""Embedding lookup: rows of a weight matrix picked by integer indices.

A primitive because its gradient is not the lookup's exact derivative when asked:
PyTorch's ``padding_idx`` row gets no gradient and ``scale_grad_by_freq`` divides
each row's gradient by its count in the batch, which a composition of the lookup
could only express with extra passes over the output. The backward is a scatter-add
(``IndexPutAdd``) in Tensor ops, so it is itself differentiable.
"""

from __future__ import annotations

from typing import Any

from ...core.function import Primitive
from ...core.prims.movement import IndexPutAdd
from ...core.tensor import Tensor


class Embedding(Primitive):
    """``weight[index]`` for weight (V, D) and an integer index of any shape: (*index.shape, D).

    Called as ``Embedding.apply(weight, index_array, padding_idx_or_None, scale_grad_by_freq)``;
    the index is a raw integer array of the weight's device, already range-checked.
    """

    @staticmethod
    def forward(ctx: Any, weight: Any, index: Any, padding_idx: int | None, scale_grad_by_freq: bool) -> Any:
        ctx.index, ctx.padding_idx, ctx.scale_grad_by_freq = index, padding_idx, scale_grad_by_freq
        return ctx.xp.take(weight, index, axis=0)

    def backward(self, grad: Tensor) -> tuple[Any, None, None, None]:  # type: ignore[override]
        xp = self.xp
        shape, dtype = self.input_meta[0]
        flat = self.index.reshape(-1)
        g = grad.reshape(flat.shape[0], shape[1])  # (M, D)
        weights = None
        if self.padding_idx is not None:
            weights = (flat != self.padding_idx).astype(dtype)
        if self.scale_grad_by_freq and flat.size:
            counts = xp.bincount(flat, minlength=shape[0])
            inv = (1.0 / counts[flat]).astype(dtype)
            weights = inv if weights is None else weights * inv
        if weights is not None:
            g = g * Tensor._make(weights[:, None], self.device)
        zeros = Tensor._make(xp.zeros(shape, dtype), self.device)
        return IndexPutAdd.apply(zeros, (flat,), g), None, None, None

    def jvp(self, t: Any, *_: Any) -> Any:
        return None if t is None else Embedding.apply(t, self.index, None, False)
