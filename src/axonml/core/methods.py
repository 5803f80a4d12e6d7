"""Tensor methods and operators backed directly by primitives, and in-place ops.

Composed ops (mean, var, softmax, ...) are bound by ``axonml.ops``. In-place
ops compute out of place under autograd, write the result into the tensor's
memory, bump its version and rebase its history (and its base's, for a view).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import AutogradError, IndexingError, ShapeError
from . import forward_ad as _fwd
from .dtypes import from_numpy_dtype, get_default_dtype, is_float_np
from .grad_mode import GRAD_ENABLED
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


def setitem(x: Tensor, index: Any, value: Any) -> None:
    idx, basic = _normalize_index(x, index)
    split = None if basic else _ints_first(idx)
    if split is not None:
        try:
            view = V.GetItemView.apply(x, split[0])
        except IndexError as e:
            raise IndexingError(f"x[{index!r}] = ... failed for a tensor of shape {x.shape}: {e}") from None
        return setitem(view, split[1], value)
    if isinstance(value, Tensor) and value._device is not x._device:
        from ..errors import DeviceError

        raise DeviceError(f"assigning a {value._device} tensor into a {x._device} tensor")
    track = GRAD_ENABLED.get() and (x._requires_grad or (isinstance(value, Tensor) and value._requires_grad))
    if not track and not _dual(x, value):
        _check_writable(x, "__setitem__")
        try:
            x._data[idx] = value._data if isinstance(value, Tensor) else value
        except (IndexError, ValueError) as e:
            if "read-only" in str(e):
                raise _readonly_error("__setitem__") from None
            raise IndexingError(f"x[{index!r}] = ... failed for a tensor of shape {x.shape}: {e}") from None
        x._version[0] += 1
        return
    _check_writable(x, "__setitem__")
    if isinstance(value, Tensor) and value.dtype != x.dtype:
        value = value._cast(x.dtype)
    try:
        result = V.IndexPut.apply(_source(x), idx, value)
    except (IndexError, ValueError) as e:
        raise IndexingError(f"x[{index!r}] = ... failed for a tensor of shape {x.shape}: {e}") from None
    apply_inplace(x, result, "__setitem__")


# ----- in-place machinery ---------------------------------------------------------------
def _check_writable(x: Tensor, op: str) -> None:
    if GRAD_ENABLED.get() and x._requires_grad and x._grad_fn is None:
        raise AutogradError(
            f"{op}: a leaf tensor that requires grad cannot be modified in place; "
            "wrap the update in `with axonml.no_grad():`"
        )


def _can_cast_inplace(src: Any, dst: Any) -> bool:
    """PyTorch's rule for writing a result of NumPy dtype ``src`` into a tensor of dtype ``dst``.

    Floats don't go into integer or bool tensors and numbers don't go into bool
    tensors; any other cast (float64 into float16, int64 into uint8) is allowed.
    """
    if src == dst:
        return True
    if dst.kind == "b":
        return False
    return is_float_np(dst) or not is_float_np(src)


def _write(x: Tensor, value: Any, op: str) -> None:
    """``x[...] = value`` in x's memory (no version bump), with a clear error for read-only memory."""
    try:
        x._device.xp.copyto(x._data, value, casting="unsafe")
    except ValueError as e:
        if "read-only" in str(e):
            raise _readonly_error(op) from None
        raise


def _readonly_error(op: str) -> ShapeError:
    return ShapeError(
        f"{op}: can't write into this tensor: it is an expanded view (several elements share one memory "
        "location) or read-only memory; clone() it first"
    )


def _cast_error(op: str, result_dtype: Any, x: Tensor) -> Exception:
    from ..errors import DTypeError

    return DTypeError(f"{op}: result type {result_dtype} can't be cast to the tensor's dtype {x.dtype}")


def apply_inplace(x: Tensor, result: Tensor, op: str) -> Tensor:
    """Write ``result`` into ``x``'s memory and make ``result``'s history ``x``'s.

    Every check runs before the write, so a refused op leaves ``x`` untouched.
    """
    _check_writable(x, op)
    if result.shape != x.shape:
        raise ShapeError(f"{op}: result of shape {result.shape} cannot be written into a tensor of shape {x.shape}")
    if not _can_cast_inplace(result._data.dtype, x._data.dtype):
        raise _cast_error(op, result.dtype, x)
    grad_on = GRAD_ENABLED.get()
    if grad_on and x._requires_grad and not result._requires_grad:
        # a constant overwrites x (fill_, copy_ from a constant): x's old history gets a zero gradient
        result = V.IndexPut.apply(x, (Ellipsis,), result)
    record = grad_on and result._requires_grad
    base = x._base
    if record and base is not None and base._requires_grad:
        if base._grad_fn is None:
            raise AutogradError(f"{op}: a view of a leaf tensor that requires grad cannot be modified in place")
        if x._vfn is None:
            raise AutogradError(
                f"{op}: in-place write into a view of a tensor that requires grad, but the view was "
                "made without recording; make the view with grad enabled, or clone() it first"
            )
    # the base takes the write's history too (when the view knows how it was made from the base)
    through_view = record and base is not None and x._vfn is not None
    dual = result._tangent is not None or x._tangent is not None
    if dual and base is not None and x._vfn is None and base._tangent is not None:
        raise AutogradError(
            f"{op}: forward-mode AD through an in-place write into a view of a dual tensor needs the view "
            "made with grad recording (requires_grad=True); or clone() the base first"
        )
    _write(x, result._data, op)
    x._version[0] += 1
    if record:
        with _fwd.paused():  # the history's own ops carry no tangents; _set_tangent below does
            node_result = result if result._data.dtype == x._data.dtype else result._cast(x.dtype)
            if through_view:
                _rebase_view(x, base, node_result)  # type: ignore[arg-type]
            else:
                x._grad_fn, x._output_nr, x._requires_grad = node_result._grad_fn, node_result._output_nr, True
    if dual:
        _set_tangent(x, result, op)
    return x


def _dual(*ts: Any) -> bool:
    """Whether a forward-mode tangent is involved (then in-place ops go through the primitives)."""
    return any(isinstance(t, Tensor) and t._tangent is not None for t in ts)


def _source(x: Tensor) -> Tensor:
    """The input of an in-place op's out-of-place computation: a copy when autograd will save it."""
    if x._requires_grad and GRAD_ENABLED.get():
        return x.clone()
    d = x.detach()
    d._tangent = x._tangent
    return d


def _set_tangent(x: Tensor, result: Tensor, op: str) -> None:
    """Forward mode: after an in-place write, ``x`` (and the base it views) carry ``result``'s tangent."""
    t = result._tangent
    if t is not None and t._data.dtype != x._data.dtype:
        t = t._cast(x.dtype)
    base = x._base
    if base is None or x._vfn is None:  # apply_inplace refused the case of a base with a tangent
        x._tangent = t
        _fwd._record_duals(x)
        return
    from .grad_mode import no_grad

    with no_grad(), _fwd.paused():
        bt = base._tangent
        new_bt = bt.clone() if bt is not None else Tensor._make(base._device.xp.zeros_like(base._data), base._device)
        region = x._vfn(new_bt)  # the view's place in the base's tangent
        _write(region, t._data if t is not None else 0, op)
    base._tangent, x._tangent = new_bt, region
    _fwd._record_duals(base)
    _fwd._record_duals(x)


def _rebase_view(view_t: Tensor, base: Tensor, new_value: Tensor) -> None:
    """After an in-place write through a view, give the base the history of the write."""
    from .prims.viewscatter import ViewScatter

    new_base = ViewScatter.apply(_alias(base) if base._requires_grad else base.detach(), new_value, view_t._vfn)
    base._grad_fn, base._output_nr, base._requires_grad = new_base._grad_fn, 0, True
    regenerated = view_t._vfn(base)
    view_t._grad_fn, view_t._output_nr, view_t._requires_grad = regenerated._grad_fn, 0, True
    view_t._view_version = view_t._version[0]  # its history is current again


def _alias(t: Tensor) -> Tensor:
    a = Tensor._make(t._data, t._device)
    a._grad_fn, a._output_nr, a._requires_grad, a._version = t._grad_fn, t._output_nr, t._requires_grad, t._version
    return a


def inplace_binary(prim: Any, op: str) -> Any:
    ufunc = {"add_": "add", "sub_": "subtract", "mul_": "multiply", "div_": "true_divide"}.get(op)

    def method(self: Tensor, other: Any, *, alpha: Any = None) -> Tensor:
        if alpha is not None:
            other = other * alpha
        if isinstance(other, Tensor) and other._device is not self._device:
            if other.ndim > 0:
                from ..errors import DeviceError

                raise DeviceError(f"{op}: tensors on {self._device} and {other._device}")
            other = other.to(self._device)  # a 0-dim tensor counts as a scalar, as in PyTorch
        track = GRAD_ENABLED.get() and (self._requires_grad or (isinstance(other, Tensor) and other._requires_grad))
        if not track and ufunc is not None and not _dual(self, other):
            _fast_inplace(self, ufunc, other, op)
            return self
        return apply_inplace(self, prim.apply(_source(self), other), op)

    method.__name__ = op
    method.__doc__ = f"In-place ``{op[:-1]}``: writes the result into this tensor and returns it."
    return method


def _fast_inplace(x: Tensor, ufunc: str, other: Any, op: str) -> None:
    """One ufunc writing straight into ``x``'s memory, with PyTorch's casting rules."""
    xp = x._device.xp
    fn = getattr(xp, ufunc)
    o = other._data if isinstance(other, Tensor) else other
    try:
        try:
            fn(x._data, o, out=x._data, casting="same_kind")
        except OverflowError:
            # a Python int outside x's integer range wraps around, as in PyTorch
            fn(x._data, xp.asarray(o, dtype=np.int64).astype(x._data.dtype), out=x._data)
        except TypeError:
            # NumPy's same_kind is stricter than PyTorch (int64 into uint8 is allowed there)
            from .dtypes import result_type

            rt = result_type(x, other).np
            if ufunc == "true_divide" and not is_float_np(rt):
                rt = get_default_dtype().np
            if not _can_cast_inplace(rt, x._data.dtype):
                raise _cast_error(op, from_numpy_dtype(rt), x) from None
            fn(x._data, o, out=x._data, casting="unsafe")
    except ValueError as e:
        if "read-only" in str(e):
            raise _readonly_error(op) from None
        shape = getattr(other, "shape", ())
        raise ShapeError(
            f"{op}: a value of shape {tuple(shape)} cannot be written into shape {x.shape} ({e})"
        ) from None
    x._version[0] += 1


def inplace_unary(fn: Any, op: str) -> Any:
    def method(self: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return apply_inplace(self, fn(_source(self), *args, **kwargs), op)

    method.__name__ = op
    method.__doc__ = f"In-place ``{op[:-1]}``."
    return method


def zero_(x: Tensor) -> Tensor:
    """Fill with zeros in place."""
    return fill_(x, 0)


def fill_(x: Tensor, value: Any) -> Tensor:
    """Fill with ``value`` in place."""
    grad = GRAD_ENABLED.get() and (x._requires_grad or (isinstance(value, Tensor) and value._requires_grad))
    if grad or _dual(x, value):
        if isinstance(value, Tensor):
            v = value.expand(x.shape).clone()
        else:
            v = Tensor._make(x._device.xp.full(x.shape, value, dtype=x._data.dtype), x._device)
        return apply_inplace(x, v, "fill_")
    _write(x, value._data if isinstance(value, Tensor) else value, "fill_")
    x._version[0] += 1
    return x


def copy_(x: Tensor, src: Tensor) -> Tensor:
    """Copy ``src`` (broadcast, cast, moved to this device) into this tensor."""
    if not isinstance(src, Tensor):
        raise TypeError(f"copy_ needs a Tensor, got {type(src).__name__}")
    if src._device is not x._device:
        src = src.to(x._device)
    if src.dtype != x.dtype:
        src = src._cast(x.dtype)
    try:
        value = expand(src, x.shape)
    except ShapeError:
        raise ShapeError(f"copy_: source of shape {src.shape} does not broadcast to {x.shape}") from None
    if (GRAD_ENABLED.get() and (x._requires_grad or src._requires_grad)) or _dual(x, src):
        return apply_inplace(x, V.Clone.apply(value), "copy_")
    _write(x, value._data, "copy_")
    x._version[0] += 1
    return x


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
