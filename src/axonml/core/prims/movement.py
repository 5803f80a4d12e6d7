"""Movement primitives: views (reshape, permute, expand, basic indexing), copies,
indexing with gathers and index-puts, concatenation, dtype casts and device moves.

GetItem and IndexPutAdd are each other's backward, so every order of
derivative stays inside this small set.
"""

from __future__ import annotations

from typing import Any

from ...backend import index_add_at, move_array
from ..function import Primitive
from ..tensor import Tensor


class Reshape(Primitive):
    is_view = True

    @staticmethod
    def forward(ctx: Any, x: Any, shape: tuple[int, ...]) -> Any:
        return x.reshape(shape)

    def backward(self, grad: Tensor) -> tuple[Tensor, None]:
        return grad.reshape(self.input_meta[0][0]), None

    def jvp(self, t: Tensor | None, _: Any) -> Tensor | None:
        return None if t is None else t.reshape(self._out[0].shape)


class Permute(Primitive):
    is_view = True

    @staticmethod
    def forward(ctx: Any, x: Any, dims: tuple[int, ...]) -> Any:
        ctx.dims = dims
        return x.transpose(dims)

    def _inverse(self) -> tuple[int, ...]:
        inv = [0] * len(self.dims)
        for i, d in enumerate(self.dims):
            inv[d] = i
        return tuple(inv)

    def backward(self, grad: Tensor) -> tuple[Tensor, None]:
        return grad.permute(self._inverse()), None

    def jvp(self, t: Tensor | None, _: Any) -> Tensor | None:
        return None if t is None else t.permute(self.dims)


class Expand(Primitive):
    """Broadcast to a larger shape without copying; backward is the engine's sum-to-shape."""

    is_view = True

    @staticmethod
    def forward(ctx: Any, x: Any, shape: tuple[int, ...]) -> Any:
        return ctx.xp.broadcast_to(x, shape)

    def backward(self, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None

    def jvp(self, t: Tensor | None, shape: Any) -> Tensor | None:
        return None if t is None else t.expand(self._out[0].shape)


class GetItem(Primitive):
    """``x[index]`` with a normalized index (ints, slices, None, Ellipsis, arrays)."""

    @staticmethod
    def forward(ctx: Any, x: Any, index: Any) -> Any:
        ctx.index = index
        return x[index]

    def backward(self, grad: Tensor) -> tuple[Tensor, None]:
        shape, dtype = self.input_meta[0]
        zeros = Tensor._make(self.xp.zeros(shape, dtype), self.device)
        return IndexPutAdd.apply(zeros, self.index, grad), None

    def jvp(self, t: Tensor | None, index: Any) -> Tensor | None:
        return None if t is None else GetItem.apply(t, index)


class GetItemView(GetItem):
    """Basic indexing (no arrays in the index): the result is a view."""

    is_view = True


def _is_basic(index: Any) -> bool:
    """Whether an index holds only ints, slices, None and Ellipsis (no arrays)."""
    items = index if isinstance(index, tuple) else (index,)
    return all(type(i) is int or type(i) is slice or i is None or i is Ellipsis for i in items)


class IndexPutAdd(Primitive):
    """Out of place ``out = base.copy(); out[index] += values`` (repeated indices add up)."""

    @staticmethod
    def forward(ctx: Any, base: Any, index: Any, values: Any) -> Any:
        ctx.index = index
        out = base.copy()
        if values.dtype != out.dtype:
            values = values.astype(out.dtype)
        if _is_basic(index):
            out[index] += values  # a basic index cannot repeat an element: no unbuffered add needed
        else:
            index_add_at(ctx.xp, out, index, values)
        return out

    def backward(self, grad: Tensor) -> tuple[Tensor, None, Tensor]:
        return grad, None, GetItem.apply(grad, self.index)

    def jvp(self, tb: Tensor | None, index: Any, tv: Tensor | None) -> Tensor | None:
        if tb is None and tv is None:
            return None
        base = tb if tb is not None else self._zeros_like_output()
        if tv is None:
            return base
        return IndexPutAdd.apply(base, self.index, tv)


class IndexPut(Primitive):
    """Out of place ``out = base.copy(); out[index] = values`` (the backward of ``x[i] = v``)."""

    @staticmethod
    def forward(ctx: Any, base: Any, index: Any, values: Any) -> Any:
        ctx.index = index
        out = base.copy()
        out[index] = values
        return out

    def backward(self, grad: Tensor) -> tuple[Any, None, Any]:
        gbase = IndexPut.apply(grad, self.index, 0.0) if self.next_edges[0] is not None else None
        gval = GetItem.apply(grad, self.index) if self.next_edges[2] is not None else None
        return gbase, None, gval

    def jvp(self, tb: Tensor | None, index: Any, tv: Any) -> Tensor | None:
        if tb is None and tv is None:
            return None
        base = tb if tb is not None else self._zeros_like_output()
        return IndexPut.apply(base, self.index, tv if tv is not None else 0.0)


class Cat(Primitive):
    """Concatenate along ``dim``; called as ``Cat.apply(dim, *tensors)`` with tensors of one dtype."""

    @staticmethod
    def forward(ctx: Any, dim: int, *arrays: Any) -> Any:
        ctx.dim = dim
        ctx.sizes = [a.shape[dim] for a in arrays]
        return ctx.xp.concatenate(arrays, axis=dim)

    def _split(self, t: Tensor) -> list[Tensor]:
        parts, start = [], 0
        for n in self.sizes:
            parts.append(t.narrow(self.dim, start, n))
            start += n
        return parts

    def backward(self, grad: Tensor) -> tuple[Any, ...]:
        return (None, *self._split(grad))

    def jvp(self, _: Any, *tangents: Tensor | None) -> Tensor | None:
        if all(t is None for t in tangents):
            return None
        parts = []
        for t, meta in zip(tangents, self._inputs[1:]):
            parts.append(t if t is not None else Tensor._make(self.xp.zeros_like(meta._data), self.device))
        return Cat.apply(self.dim, *parts)


class Flip(Primitive):
    @staticmethod
    def forward(ctx: Any, x: Any, dims: tuple[int, ...]) -> Any:
        ctx.dims = dims
        return ctx.xp.flip(x, dims).copy()

    def backward(self, grad: Tensor) -> tuple[Tensor, None]:
        return Flip.apply(grad, self.dims), None

    def jvp(self, t: Tensor | None, _: Any) -> Tensor | None:
        return None if t is None else Flip.apply(t, self.dims)


class Clone(Primitive):
    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        return x.copy()

    def backward(self, grad: Tensor) -> Tensor:
        return grad

    def jvp(self, t: Tensor | None) -> Tensor | None:
        return t


class Alias(Primitive):
    """A new tensor object over the same memory (``view_as``), still in the graph."""

    is_view = True

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        return x.view()

    def backward(self, grad: Tensor) -> Tensor:
        return grad

    def jvp(self, t: Tensor | None) -> Tensor | None:
        return t


class Cast(Primitive):
    """Change dtype; the gradient is cast back by the engine."""

    @staticmethod
    def forward(ctx: Any, x: Any, np_dtype: Any) -> Any:
        return x.astype(np_dtype)

    def backward(self, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None

    def jvp(self, t: Tensor | None, np_dtype: Any) -> Tensor | None:
        return None if t is None else Cast.apply(t, np_dtype)


class ToDevice(Primitive):
    """Copy to another device; the gradient is copied back."""

    changes_device = True

    @staticmethod
    def forward(ctx: Any, x: Any, device: Any) -> Any:
        ctx.out_device = device
        return move_array(x, device)

    def backward(self, grad: Tensor) -> tuple[Tensor, None]:
        return ToDevice.apply(grad, self.device), None

    def jvp(self, t: Tensor | None, device: Any) -> Tensor | None:
        return None if t is None else ToDevice.apply(t, device)
