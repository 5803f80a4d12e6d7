"""Tensor methods and operators backed directly by primitives.

Composed ops (mean, var, softmax, ...) are bound by ``axonml.ops``; in-place
ops (``add_``, ``copy_``, ``__setitem__``, ...) are in ``inplace.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import IndexingError, ShapeError
from .prims import binary as B
from .prims import elementwise as E
from .prims import matmul as M
from .prims import movement as V
from .prims import reduction as R
from .tensor import Tensor, _wrap_dim


# ----- argument normalization ------------------------------------------------------
def norm_dims(dim: Any, ndim: int) -> tuple[int, ...]:
    """``dim`` (None, int or sequence) as a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, int):
        return (_wrap_dim(dim, ndim),)
    dims = tuple(_wrap_dim(d, ndim) for d in dim)
    if len(set(dims)) != len(dims):
        raise ShapeError(f"dimension repeated in {tuple(dim)}")
    return tuple(sorted(dims))


def shape_arg(shape: Any) -> tuple[int, ...]:
    """Accept ``f(2, 3)``, ``f((2, 3))`` and ``f([2, 3])`` alike."""
    if len(shape) == 1 and not isinstance(shape[0], int):
        shape = shape[0]
    return tuple(int(s) for s in shape)


def _resolve_shape(shape: tuple[int, ...], numel: int, old: tuple[int, ...]) -> tuple[int, ...]:
    if shape.count(-1) > 1:
        raise ShapeError(f"only one dimension can be -1 in {shape}")
    known = 1
    for s in shape:
        if s != -1:
            known *= s
    if -1 in shape:
        if known == 0 or numel % known:
            raise ShapeError(f"shape {shape} is invalid for input of size {numel} (shape {old})")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise ShapeError(f"shape {shape} is invalid for input of size {numel} (shape {old})")
    return shape


# ----- movement ---------------------------------------------------------------------
def reshape(x: Tensor, *shape: Any) -> Tensor:
    """Same data, new shape (a view when the layout allows)."""
    if len(shape) == 1 and type(shape[0]) is not int:
        shape = tuple(shape[0])
    if shape == x._data.shape:
        return x
    try:  # NumPy resolves -1 and checks the size; its error is replaced by ours below
        return V.Reshape.apply(x, shape)
    except (ValueError, TypeError):
        _resolve_shape(shape_arg(shape), x._data.size, x._data.shape)  # raises the clear ShapeError
        raise


def view(x: Tensor, *shape: Any) -> Tensor:
    """Like reshape, but the tensor must be laid out so that no copy is needed."""
    if len(shape) == 1 and not isinstance(shape[0], int | tuple | list):
        from .dtypes import as_dtype

        return x._cast(as_dtype(shape[0]))
    new = _resolve_shape(shape_arg(shape), x._data.size, x._data.shape)
    out = V.Reshape.apply(x, new)
    if x._data.size and not x._device.xp.shares_memory(out._data, x._data):
        raise ShapeError(
            f"view size {new} is not compatible with the input's strides; use .reshape(...) instead"
        )
    return out


def permute(x: Tensor, *dims: Any) -> Tensor:
    d = tuple(_wrap_dim(i, x.ndim) for i in shape_arg(dims)) if dims else ()
    if sorted(d) != list(range(x.ndim)):
        raise ShapeError(f"permute: {shape_arg(dims)} is not a permutation of {x.ndim} dimensions")
    return V.Permute.apply(x, d)


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    n = x.ndim
    if n < 2 and dim0 in (0, -1) and dim1 in (0, -1):
        return x
    perm = list(range(n))
    a, b = _wrap_dim(dim0, n), _wrap_dim(dim1, n)
    perm[a], perm[b] = perm[b], perm[a]
    return V.Permute.apply(x, tuple(perm))


def expand(x: Tensor, *shape: Any) -> Tensor:
    """Broadcast to ``shape`` without copying (-1 keeps a dimension)."""
    target = shape_arg(shape)
    lead = len(target) - x.ndim
    if lead < 0:
        raise ShapeError(f"expand: target {target} has fewer dimensions than the tensor {x.shape}")
    full = []
    for i, s in enumerate(target):
        if s == -1:
            if i < lead:
                raise ShapeError("expand: -1 is not allowed for a new leading dimension")
            s = x.shape[i - lead]
        elif i >= lead and x.shape[i - lead] not in (1, s):
            raise ShapeError(f"expand: cannot expand shape {x.shape} to {target}")
        full.append(s)
    full_t = tuple(full)
    return x if full_t == x.shape else V.Expand.apply(x, full_t)


def squeeze(x: Tensor, dim: Any = None) -> Tensor:
    if dim is None:
        new = tuple(s for s in x.shape if s != 1)
    else:
        dims = norm_dims(dim, x.ndim)
        new = tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1))
    return reshape(x, new)


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    d = _wrap_dim(dim, x.ndim + 1)
    return V.Reshape.apply(x, (*x.shape[:d], 1, *x.shape[d:]))


def narrow(x: Tensor, dim: int, start: int, length: int) -> Tensor:
    d = _wrap_dim(dim, x.ndim)
    if start < 0:
        start += x.shape[d]
    if not 0 <= start <= start + length <= x.shape[d]:
        raise IndexingError(f"narrow: [{start}, {start + length}) is out of range for size {x.shape[d]}")
    index = (slice(None),) * d + (slice(start, start + length),)
    return V.GetItemView.apply(x, index)


# ----- indexing ------------------------------------------------------------------------
def _normalize_index(x: Tensor, index: Any) -> tuple[Any, bool]:
    """The index with Tensors turned into arrays on x's device, and whether it is basic."""
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    basic = True
    xp = x._device.xp
    for item in index:
        if isinstance(item, Tensor):
            if item._device is not x._device:
                from ..errors import DeviceError

                raise DeviceError(f"indexing a {x._device} tensor with a {item._device} index tensor")
            if item._data.dtype.kind not in "biu":
                raise IndexingError(f"tensors used as indices must be integer or bool, got {item.dtype}")
            item = item._data
            basic = False
        elif isinstance(item, list | tuple) or hasattr(item, "__array_interface__") or hasattr(
            item, "__cuda_array_interface__"
        ):
            item = xp.asarray(item)
            if item.size == 0:
                item = item.astype(xp.int64)
            basic = False
        elif isinstance(item, bool):
            basic = False
        out.append(item)
    return tuple(out), basic


def _ints_first(idx: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
    """A mixed index split as PyTorch reads it: (the integer selects as a basic index, the rest), or None."""
    if not any(isinstance(i, int) and not isinstance(i, bool) for i in idx):
        return None
    first: list[Any] = []
    rest: list[Any] = []
    for i in idx:
        if isinstance(i, int) and not isinstance(i, bool):
            first.append(i)
            continue
        rest.append(i)
        if i is Ellipsis:
            first.append(i)
        elif isinstance(i, slice):
            first.append(slice(None))
        elif hasattr(i, "dtype"):
            first.extend([slice(None)] * (i.ndim if i.dtype.kind == "b" else 1))
        # None and Python bools take no dimension of x
    if Ellipsis not in first:
        first.append(Ellipsis)  # a 0-d view, never a copied scalar
    return tuple(first), tuple(rest)


def getitem(x: Tensor, index: Any) -> Tensor:
    cls = type(index)
    if cls is int or cls is slice:  # the common case, without normalization
        try:
            return V.GetItemView.apply(x, (index, Ellipsis))
        except IndexError as e:
            raise IndexingError(f"index {index!r} is invalid for a tensor of shape {x.shape}: {e}") from None
    idx, basic = _normalize_index(x, index)
    if basic and not any(i is Ellipsis for i in idx):
        idx += (Ellipsis,)  # NumPy then gives a 0-d view, not a copied scalar, for x[i, j]
    split = None if basic else _ints_first(idx)
    try:
        if split is not None:
            return V.GetItem.apply(V.GetItemView.apply(x, split[0]), split[1])
        return (V.GetItemView if basic else V.GetItem).apply(x, idx)
    except IndexError as e:
        raise IndexingError(f"index {index!r} is invalid for a tensor of shape {x.shape}: {e}") from None


# ----- reductions -----------------------------------------------------------------------
def sum_(x: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    """Sum over ``dim`` (all dimensions by default)."""
    np_dtype = None
    if dtype is not None:
        from .dtypes import as_dtype

        np_dtype = as_dtype(dtype).np
    return R.Sum.apply(x, norm_dims(dim, x.ndim), keepdim, np_dtype)


def amax(x: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    """Largest value over ``dim`` (all dimensions by default); ties share the gradient."""
    return R.Amax.apply(x, norm_dims(None if dim == () else dim, x.ndim), keepdim)


def amin(x: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    """Smallest value over ``dim`` (all dimensions by default); ties share the gradient."""
    return R.Amin.apply(x, norm_dims(None if dim == () else dim, x.ndim), keepdim)


def where(cond: Any, a: Any, b: Any) -> Tensor:
    """Elements of ``a`` where ``cond`` is true, else of ``b`` (broadcast; scalars allowed)."""
    if isinstance(cond, Tensor) and cond._data.dtype.kind != "b":
        cond = cond.bool()
    from .dtypes import result_type

    target = result_type(a, b)
    if isinstance(a, Tensor) and a.dtype is not target:
        a = a._cast(target)
    if isinstance(b, Tensor) and b.dtype is not target:
        b = b._cast(target)
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        ref = cond
        a = _full_like_scalar(ref, a, target)
    return B.Where.apply(cond, a, b)


def _full_like_scalar(ref: Tensor, value: Any, d: Any) -> Tensor:
    return Tensor._make(ref._device.xp.asarray(value, dtype=d.np), ref._device)


def tensor_where(x: Tensor, cond: Any, other: Any) -> Tensor:
    """``x.where(cond, other)``: x where cond, else other."""
    return where(cond, x, other)


def clamp(x: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002 - PyTorch's names
    """Limit values to [min, max]; either bound may be None, a number or a tensor."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    return B.Clamp.apply(x, min, max)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with broadcasting over batch dimensions (NumPy's ``matmul`` rules)."""
    return M.Matmul.apply(a, b)


def round_(x: Tensor, decimals: int = 0) -> Tensor:
    return E.Round.apply(x, decimals)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate along an existing dimension."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    nd = tensors[0].ndim
    d = _wrap_dim(dim, nd)
    ref = tensors[0].shape
    for t in tensors[1:]:
        if t.ndim != nd or any(a != b for i, (a, b) in enumerate(zip(t.shape, ref)) if i != d):
            raise ShapeError(f"cat: shapes {ref} and {t.shape} differ outside dimension {dim}")
    from .dtypes import result_type

    # promoted here, not by Cat.apply: there the int ``dim`` would count as a Python scalar operand
    target = result_type(*tensors)
    return V.Cat.apply(d, *(t._cast(target) for t in tensors))


def flip(x: Tensor, *dims: Any) -> Tensor:
    return V.Flip.apply(x, norm_dims(shape_arg(dims) if dims else None, x.ndim))
