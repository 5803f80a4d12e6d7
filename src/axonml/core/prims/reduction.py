"""Reduction primitives: sum and amax/amin. Everything else (mean, var, norm,
logsumexp, max with indices, ...) is composed from these in ``ops``.

``dims`` is a normalized tuple of non-negative axes.
"""

from __future__ import annotations

from typing import Any

from ..function import Primitive
from ..tensor import Tensor


def _keepdim_shape(shape: tuple[int, ...], dims: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 if i in dims else n for i, n in enumerate(shape))


class Sum(Primitive):
    """Sum over ``dims``; bool and integer inputs sum to int64, as in PyTorch."""

    @staticmethod
    def forward(ctx: Any, x: Any, dims: tuple[int, ...], keepdim: bool, np_dtype: Any = None) -> Any:
        ctx.dims, ctx.keepdim = dims, keepdim
        if np_dtype is None and x.dtype.kind in "biu":
            np_dtype = ctx.xp.int64
        # the array method skips NumPy's Python-level np.sum wrapper (~2 us on tiny arrays)
        return x.sum(axis=dims, keepdims=keepdim, dtype=np_dtype)

    def _spread(self, g: Tensor) -> Tensor:
        shape = self.input_meta[0][0] if self.input_meta else self._inputs[0].shape
        if not self.keepdim:
            g = g.reshape(_keepdim_shape(shape, self.dims))
        return g.expand(shape)

    def backward(self, grad: Tensor) -> tuple[Tensor, None, None, None]:
        return self._spread(grad), None, None, None

    def jvp(self, t: Tensor | None, *_: Any) -> Tensor | None:
        return None if t is None else Sum.apply(t, self.dims, self.keepdim)


class _Extreme(Primitive):
    """amax/amin: the gradient is shared evenly between tied extremes, as in PyTorch."""

    saves = "both"
    fn = ""
    method = ""  # the array method that computes it

    @classmethod
    def forward(cls, ctx: Any, x: Any, dims: tuple[int, ...], keepdim: bool) -> Any:  # type: ignore[override]
        if x.size == 0 and any(x.shape[d] == 0 for d in dims):
            from ...errors import ShapeError

            raise ShapeError(f"{cls.__name__.lower()}: cannot reduce over a zero-size dimension")
        ctx.dims, ctx.keepdim = dims, keepdim
        return getattr(x, cls.method)(axis=dims, keepdims=keepdim)

    def _weights(self) -> Tensor:
        x = self.inputs[0]
        out = self.output
        if not self.keepdim:
            out = out.reshape(_keepdim_shape(x.shape, self.dims))
        mask = (x == out).to(out.dtype)
        return mask / mask.sum(dim=self.dims, keepdim=True)

    def _expand(self, g: Tensor) -> Tensor:
        if not self.keepdim:
            g = g.reshape(_keepdim_shape(self._inputs[0].shape, self.dims))
        return g

    def backward(self, grad: Tensor) -> tuple[Tensor, None, None]:
        return self._expand(grad) * self._weights(), None, None

    def jvp(self, t: Tensor | None, *_: Any) -> Tensor | None:
        if t is None:
            return None
        return Sum.apply(t * self._weights(), self.dims, self.keepdim)


class Amax(_Extreme):
    fn = "amax"
    method = "max"


class Amin(_Extreme):
    fn = "amin"
    method = "min"
