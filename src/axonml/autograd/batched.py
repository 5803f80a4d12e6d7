"""Batched backward rules: one backward pass for many grad-output vectors at once.

Used by ``jacobian(vectorize=True)`` and ``GradientTape.jacobian``: every grad
output carries a leading batch dimension ``B`` (one row of the Jacobian per
entry), and each node maps batched gradients of its output to batched
gradients of its inputs. The engine sums a result down to ``(B, *input_shape)``.

Only nodes listed here take part. A rule written for one example is reused
as is when it is elementwise in the gradient (``grad * f(inputs)``: a leading
batch dimension broadcasts through it). Rules that name dimensions or shapes
get a batched version below. Any other node makes the caller fall back to one
backward per row, so a result is never computed by a rule that was not
checked for batching.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.prims import binary as B
from ..core.prims import elementwise as E
from ..core.prims import matmul as M
from ..core.prims import movement as V
from ..core.prims import reduction as R
from ..core.tensor import Tensor

# Nodes whose own backward is elementwise in the incoming gradient (exact types: a subclass may differ).
_ELEMENTWISE = {
    B.Add, B.Sub, B.Mul, B.Div, B.Pow, B.Atan2, B.Maximum, B.Minimum, B.Where, B.Clamp, B.Remainder,
    B.FloorDivide, E.Neg, E.Round, V.Expand, V.Clone, V.Alias, V.Cast,
}


def _reshape(node: Any, grad: Tensor) -> tuple[Tensor, None]:
    return grad.reshape((grad.shape[0], *node.input_meta[0][0])), None


def _permute(node: Any, grad: Tensor) -> tuple[Tensor, None]:
    inverse = node._inverse()
    return grad.permute((0, *(d + 1 for d in inverse))), None


def _keepdim(shape: tuple[int, ...], dims: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 if i in dims else n for i, n in enumerate(shape))


def _sum(node: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
    shape = node.input_meta[0][0]
    g = grad.reshape((grad.shape[0], *_keepdim(shape, node.dims)))
    return g.expand((grad.shape[0], *shape)), None, None, None


def _extreme(node: Any, grad: Tensor) -> tuple[Tensor, None, None]:
    shape = node.input_meta[0][0]
    g = grad.reshape((grad.shape[0], *_keepdim(shape, node.dims)))
    return g * node._weights(), None, None


def _getitem_view(node: Any, grad: Tensor) -> tuple[Tensor, None]:
    shape, dtype = node.input_meta[0]
    zeros = Tensor._make(node.xp.zeros((grad.shape[0], *shape), dtype), node.device)
    # a basic index (ints, slices, None, Ellipsis) keeps its meaning behind a leading full slice
    return V.IndexPutAdd.apply(zeros, (slice(None), *node.index), grad), None


def _cat(node: Any, grad: Tensor) -> tuple[Any, ...]:
    parts, start = [], 0
    for n in node.sizes:
        parts.append(grad.narrow(node.dim + 1, start, n))
        start += n
    return (None, *parts)


def _flip(node: Any, grad: Tensor) -> tuple[Tensor, None]:
    return V.Flip.apply(grad, tuple(d + 1 for d in node.dims)), None


_RULES: dict[type, Callable[..., Any]] = {
    V.Reshape: _reshape, V.Permute: _permute, R.Sum: _sum, R.Amax: _extreme, R.Amin: _extreme,
    V.GetItemView: _getitem_view, V.Cat: _cat, V.Flip: _flip,
}


def batch_rule(node: Any) -> Callable[..., Any] | None:
    """The batched backward of ``node`` (called as ``rule(node, grad)``), or None if it has none."""
    cls = type(node)
    rule = _RULES.get(cls)
    if rule is not None:
        return rule
    if cls in _ELEMENTWISE:
        return cls.backward
    if isinstance(node, E._FloatUnary | E._Step) and cls.backward in (E._FloatUnary.backward, E._Step.backward):
        return cls.backward
    if cls is M.Matmul:
        # a dot product of two vectors turns its scalar gradient into grad * vector: not batchable
        a_shape, b_shape = node.input_meta[0][0], node.input_meta[1][0]
        return cls.backward if len(a_shape) > 1 or len(b_shape) > 1 else None
    return None
