"""Composed ops (indexing): built from primitives, no backward code of their own.

gather / scatter_add use the Gather / ScatterAdd pair; index_select, index_add,
index_fill, scatter and masked_select go through GetItem / IndexPutAdd /
IndexPut with an advanced-index tuple. Values of sort and topk are a gather of
the input at the computed indices, so they are differentiable to any order.
Index tensors are checked up front: out-of-range indices raise IndexingError
(negative indices are errors, as in PyTorch).
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from ..backend import value_range
from ..backend.graphs import current_capture
from ..core import methods as _m
from ..core.inplace import inplace_unary
from ..core.prims import indexing as _P
from ..core.prims import movement as V
from ..core.tensor import Tensor, _wrap_dim
from ..errors import DTypeError, IndexingError, ShapeError

__all__: list[str] = [
    "argsort", "argwhere", "gather", "index_add", "index_fill", "index_select", "masked_fill", "masked_select",
    "nonzero", "one_hot", "scatter", "scatter_add", "sort", "take_along_dim", "topk", "tril", "triu", "unique",
]

sort_result = namedtuple("sort", ["values", "indices"])  # type: ignore[name-match]  # as torch.return_types.sort
topk_result = namedtuple("topk", ["values", "indices"])  # type: ignore[name-match]  # as torch.return_types.topk


# ----- checks --------------------------------------------------------------------------
def _index_tensor(op: str, index: Any, ref: Tensor) -> Tensor:
    if not isinstance(index, Tensor):
        index = Tensor._make(ref._device.xp.asarray(index, dtype="int64"), ref._device)
    if index._data.dtype.kind not in "iu":
        raise DTypeError(f"{op}: index must be an integer tensor, got {index.dtype}")
    if index._device is not ref._device:
        from ..errors import DeviceError

        raise DeviceError(f"{op}: index on {index._device}, tensor on {ref._device}")
    return index


def _check_range(op: str, index: Tensor, size: int, dim: int) -> None:
    a = index._data
    if not a.size or current_capture() is not None:  # a CUDA graph capture cannot read values back to check them
        return
    lo, hi = value_range(index._device.xp, a)
    if lo < 0 or hi >= size:
        bad = lo if lo < 0 else hi
        raise IndexingError(f"{op}: index {bad} is out of bounds for dimension {dim} with size {size}")


def _same_dtype(op: str, x: Tensor, src: Tensor) -> None:
    if src.dtype is not x.dtype:
        raise DTypeError(f"{op}: self ({x.dtype}) and source ({src.dtype}) must have the same dtype")


def _check_index_shape(op: str, x: Tensor, dim: int, index: Tensor, src: Tensor | None = None) -> None:
    if index.ndim != x.ndim or (src is not None and src.ndim != x.ndim):
        extra = f" and the source {src.ndim}" if src is not None else ""
        raise ShapeError(f"{op}: index has {index.ndim} dimensions, the tensor has {x.ndim}{extra}")
    for i, n in enumerate(index.shape):
        if (i != dim and n > x.shape[i]) or (src is not None and n > src.shape[i]):
            extra = f" and source {src.shape}" if src is not None else ""
            raise ShapeError(f"{op}: index {index.shape} is larger than the tensor {x.shape}{extra} at dim {i}")


def _corner(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """The leading ``shape`` block of ``t`` (a view; ``t`` itself when it already fits)."""
    if t.shape == shape:
        return t
    return V.GetItemView.apply(t, tuple(slice(0, n) for n in shape))


def _dim_index(dim: int, index: Tensor) -> tuple[Any, ...]:
    return (slice(None),) * dim + (index._data.reshape(-1),)


# ----- gather / scatter ----------------------------------------------------------------
def gather(input: Tensor, dim: int, index: Tensor, *, sparse_grad: bool = False) -> Tensor:  # noqa: A002
    """``out[i][j] = input[index[i][j]][j]`` for ``dim=0``; ``index`` may be smaller outside ``dim``.

    ``sparse_grad`` is accepted for PyTorch compatibility; the gradient is always dense.
    """
    index = _index_tensor("gather", index, input)
    d = _wrap_dim(dim, input.ndim)
    if input.ndim == 0:
        return gather(input.reshape(1), 0, index.reshape(1)).reshape(())
    _check_index_shape("gather", input, d, index)
    _check_range("gather", index, input.shape[d], dim)
    return _P.Gather.apply(input, d, index)


def scatter_add(input: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:  # noqa: A002
    """``out = input.clone(); out[index[i][j]][j] += src[i][j]`` for ``dim=0`` (repeats add up)."""
    index = _index_tensor("scatter_add", index, input)
    _same_dtype("scatter_add", input, src)
    if input.ndim == 0:
        return scatter_add(input.reshape(1), 0, index.reshape(1), src.reshape(1)).reshape(())
    d = _wrap_dim(dim, input.ndim)
    _check_index_shape("scatter_add", input, d, index, src)
    _check_range("scatter_add", index, input.shape[d], dim)
    return _P.ScatterAdd.apply(input, d, index, _corner(src, index.shape))


def scatter(input: Tensor, dim: int, index: Tensor, src: Any = None, *, value: Any = None) -> Tensor:  # noqa: A002
    """``out = input.clone(); out[index[i][j]][j] = src[i][j]`` (``src`` a tensor, or a scalar ``value``).

    With repeated indices one of the written values wins, as in PyTorch (undefined which).
    """
    if src is None and value is None:
        raise TypeError("scatter: pass src (a tensor) or value (a scalar)")
    src = value if src is None else src
    index = _index_tensor("scatter", index, input)
    if input.ndim == 0:
        s = src.reshape(1) if isinstance(src, Tensor) else src
        return scatter(input.reshape(1), 0, index.reshape(1), s).reshape(())
    d = _wrap_dim(dim, input.ndim)
    if isinstance(src, Tensor):
        _same_dtype("scatter", input, src)
        _check_index_shape("scatter", input, d, index, src)
        src = _corner(src, index.shape)
    else:
        _check_index_shape("scatter", input, d, index)
    _check_range("scatter", index, input.shape[d], dim)
    where = _P.along_index(input._device.xp, index._data, d)
    return V.IndexPut.apply(input, where, src)


def take_along_dim(input: Tensor, indices: Tensor, dim: int | None = None) -> Tensor:  # noqa: A002
    """Gather along ``dim`` with ``input`` and ``indices`` broadcast outside it (flattened when ``dim`` is None)."""
    indices = _index_tensor("take_along_dim", indices, input)
    if dim is None:
        return gather(input.reshape(-1), 0, indices.reshape(-1))
    d = _wrap_dim(dim, input.ndim)
    if indices.ndim != input.ndim:
        raise ShapeError(f"take_along_dim: indices have {indices.ndim} dimensions, the input has {input.ndim}")
    from .shape import broadcast_shapes

    # every dimension but dim broadcasts: (..., n, ...) and (..., k, ...) meet at (..., *, ...)
    outer = broadcast_shapes(
        (*input.shape[:d], 1, *input.shape[d + 1 :]), (*indices.shape[:d], 1, *indices.shape[d + 1 :])
    )
    x = input.expand((*outer[:d], input.shape[d], *outer[d + 1:]))
    idx = indices.expand((*outer[:d], indices.shape[d], *outer[d + 1:]))
    return gather(x, d, idx)


# ----- along one dimension with a 1-d index ----------------------------------------------
def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:  # noqa: A002
    """The slices at ``index`` (1-d, repeats allowed) along ``dim``."""
    index = _index_tensor("index_select", index, input)
    if index.ndim > 1:
        raise ShapeError(f"index_select: index must be 1-d, got shape {index.shape}")
    d = _wrap_dim(dim, input.ndim)
    if input.ndim == 0:
        if index.numel() != 1:
            raise ShapeError(f"index_select: a 0-d tensor takes an index of one value, got {index.numel()}")
        return index_select(input.reshape(1), 0, index.reshape(1)).reshape(())
    _check_range("index_select", index, input.shape[d], dim)
    return V.GetItem.apply(input, _dim_index(d, index))


def index_add(input: Tensor, dim: int, index: Tensor, source: Tensor, *, alpha: Any = 1) -> Tensor:  # noqa: A002
    """``out = input.clone(); out.select(dim, index[k]) += alpha * source.select(dim, k)`` (repeats add up)."""
    index = _index_tensor("index_add", index, input)
    _same_dtype("index_add", input, source)
    if index.ndim > 1:
        raise ShapeError(f"index_add: index must be 1-d, got shape {index.shape}")
    if input.ndim == 0:
        if index.numel() != 1 or source.ndim != 0:
            raise ShapeError(f"index_add: a 0-d tensor takes a 0-d source and one index, got {source.shape}")
        return index_add(input.reshape(1), 0, index.reshape(1), source.reshape(1), alpha=alpha).reshape(())
    d = _wrap_dim(dim, input.ndim)
    expected = (*input.shape[:d], index.numel(), *input.shape[d + 1:])
    if source.shape != expected:
        raise ShapeError(f"index_add: source of shape {source.shape}, expected {expected}")
    _check_range("index_add", index, input.shape[d], dim)
    if alpha != 1:
        source = source * alpha
    return V.IndexPutAdd.apply(input, _dim_index(d, index), source)


def index_fill(input: Tensor, dim: int, index: Tensor, value: Any) -> Tensor:  # noqa: A002
    """``input`` with the slices at ``index`` along ``dim`` set to ``value`` (a scalar or 0-d tensor)."""
    index = _index_tensor("index_fill", index, input)
    value = _fill_value("index_fill", input, value)
    if input.ndim == 0:
        return index_fill(input.reshape(1), 0, index.reshape(-1), value).reshape(())
    d = _wrap_dim(dim, input.ndim)
    _check_range("index_fill", index, input.shape[d], dim)
    return V.IndexPut.apply(input, _dim_index(d, index), value)


# ----- masks ---------------------------------------------------------------------------
def _fill_value(op: str, x: Tensor, value: Any) -> Any:
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise ShapeError(f"{op}: value must be a scalar or a 0-d tensor, got shape {value.shape}")
        return value._cast(x.dtype)
    return Tensor._make(x._device.xp.asarray(value).astype(x._data.dtype), x._device)


def _bool_mask(op: str, mask: Any) -> Tensor:
    if not isinstance(mask, Tensor) or mask._data.dtype.kind != "b":
        raise DTypeError(f"{op}: mask must be a bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
    return mask


def masked_fill(input: Tensor, mask: Tensor, value: Any) -> Tensor:  # noqa: A002
    """``value`` where ``mask`` is true, else ``input`` (broadcast; keeps ``input``'s dtype)."""
    mask = _bool_mask("masked_fill", mask)
    return _m.where(mask, _fill_value("masked_fill", input, value), input)


def masked_select(input: Tensor, mask: Tensor) -> Tensor:  # noqa: A002
    """The elements where ``mask`` (broadcast with ``input``) is true, as a 1-d tensor."""
    mask = _bool_mask("masked_select", mask)
    from .shape import broadcast_tensors

    x, m = broadcast_tensors(input, mask)
    return V.GetItem.apply(x, (m._data,))


def tril(input: Tensor, diagonal: int = 0) -> Tensor:  # noqa: A002
    """The lower triangle of the last two dimensions (elements above ``diagonal`` zeroed)."""
    return _triangle(input, diagonal, lower=True)


def triu(input: Tensor, diagonal: int = 0) -> Tensor:  # noqa: A002
    """The upper triangle of the last two dimensions (elements below ``diagonal`` zeroed)."""
    return _triangle(input, diagonal, lower=False)


def _triangle(x: Tensor, k: int, lower: bool) -> Tensor:
    if x.ndim < 2:
        raise ShapeError(f"{'tril' if lower else 'triu'}: input must have at least 2 dimensions, got {x.shape}")
    xp = x._device.xp
    m, n = x.shape[-2:]
    keep = xp.tri(m, n, k, dtype=bool) if lower else ~xp.tri(m, n, k - 1, dtype=bool)
    zero = Tensor._make(xp.zeros((), x._data.dtype), x._device)
    return _m.where(Tensor._make(keep, x._device), x, zero)


# ----- sorting -------------------------------------------------------------------------
def _argsort(x: Tensor, dim: int, descending: bool) -> Any:
    """Stable sort indices along ``dim``; NaN sorts as the largest value, as in PyTorch."""
    xp = x._device.xp
    a = x._data
    if not descending:
        return xp.argsort(a, axis=dim, kind="stable")
    # descending and stable: sort the reversed array ascending, then reverse the order
    n = a.shape[dim]
    rev = xp.flip(xp.argsort(xp.flip(a, dim), axis=dim, kind="stable"), dim)
    return (n - 1) - rev


def sort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:  # noqa: A002
    """Sorted values and their indices along ``dim``; the values are differentiable (a gather of ``input``).

    The sort is always stable, which also satisfies ``stable=False``.
    """
    if input.ndim == 0:
        return sort_result(input.clone(), Tensor._make(input._device.xp.zeros((), "int64"), input._device))
    d = _wrap_dim(dim, input.ndim)
    idx = Tensor._make(_argsort(input, d, descending).astype("int64"), input._device)
    return sort_result(_P.Gather.apply(input, d, idx), idx)


def argsort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:  # noqa: A002
    """The indices that sort ``input`` along ``dim``."""
    return sort(input, dim, descending, stable).indices


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:  # noqa: A002
    """The ``k`` largest (or smallest) values along ``dim`` and their indices; values are differentiable."""
    d = _wrap_dim(dim, input.ndim)
    n = input.shape[d] if input.ndim else 1
    if not 0 <= k <= n:
        raise IndexingError(f"topk: k={k} is out of range for dimension {dim} of size {n}")
    if input.ndim == 0:
        return topk_result(*sort(input))  # PyTorch returns the element itself for k=0 and k=1
    idx_all = _argsort(input, d, descending=largest)
    idx = Tensor._make(idx_all[(slice(None),) * d + (slice(0, k),)].astype("int64"), input._device)
    return topk_result(_P.Gather.apply(input, d, idx), idx)


# ----- integer results -----------------------------------------------------------------
def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """``(..., num_classes)`` int64 tensor with a 1 at each value of ``tensor`` (as ``F.one_hot``)."""
    if not isinstance(tensor, Tensor) or tensor._data.dtype.kind not in "iu":
        raise DTypeError(f"one_hot: needs an integer tensor of class indices, got {getattr(tensor, 'dtype', None)}")
    xp = tensor._device.xp
    a = tensor._data
    if num_classes == -1:
        if a.size == 0:
            raise ShapeError("one_hot: cannot infer num_classes from an empty tensor; pass num_classes")
        num_classes = int(a.max()) + 1
    lo, hi = value_range(xp, a) if a.size else (0, -1)
    if lo < 0:
        raise IndexingError("one_hot: class values must be non-negative")
    if hi >= num_classes:
        raise IndexingError(f"one_hot: class value {hi} is not smaller than num_classes={num_classes}")
    out = (a[..., None] == xp.arange(num_classes)).astype("int64")
    return Tensor._make(out, tensor._device)


def nonzero(input: Tensor, *, as_tuple: bool = False) -> Any:  # noqa: A002
    """Indices of the non-zero elements: an ``(n, ndim)`` int64 tensor, or one 1-d tensor per dimension."""
    xp, dev = input._device.xp, input._device
    a = input._data
    if as_tuple:
        return tuple(Tensor._make(i.astype("int64"), dev) for i in xp.nonzero(a.reshape(-1) if a.ndim == 0 else a))
    if a.ndim == 0:
        return Tensor._make(xp.zeros((int(a != 0), 0), "int64"), dev)
    return Tensor._make(xp.stack(xp.nonzero(a), axis=1).astype("int64"), dev)


def argwhere(input: Tensor) -> Tensor:  # noqa: A002
    """Same as ``nonzero(input)``: an ``(n, ndim)`` tensor of the non-zero positions."""
    return nonzero(input)


def unique(
    input: Tensor,  # noqa: A002
    sorted: bool = True,  # noqa: A002
    return_inverse: bool = False,
    return_counts: bool = False,
    dim: int | None = None,
) -> Any:
    """The distinct values (or slices along ``dim``), in ascending order.

    Optionally also the inverse (where each element went, input-shaped; or one
    entry per slice with ``dim``) and the counts, both int64. The result is
    always sorted, which also satisfies ``sorted=False``. Not differentiable.
    """
    xp, dev = input._device.xp, input._device
    a = input._data
    axis = None if dim is None else _wrap_dim(dim, input.ndim)
    vals, inv, counts = xp.unique(a, return_inverse=True, return_counts=True, axis=axis)
    out = [Tensor._make(vals, dev)]
    if return_inverse:
        out.append(Tensor._make(inv.reshape(a.shape if axis is None else -1).astype("int64"), dev))
    if return_counts:
        out.append(Tensor._make(counts.astype("int64"), dev))
    return out[0] if len(out) == 1 else tuple(out)


# Tensor methods bound by axonml.ops: name -> function taking the tensor first.
METHODS: dict[str, Any] = {
    name: globals()[name]
    for name in __all__
    if name not in ("one_hot",)
}
for _name in ("scatter", "scatter_add", "index_add", "index_fill", "masked_fill"):
    METHODS[_name + "_"] = inplace_unary(globals()[_name], _name + "_")
