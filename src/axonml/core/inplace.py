"""In-place ops: ``__setitem__``, ``add_``/``exp_``/... , ``zero_``, ``fill_``, ``copy_``.

Without autograd (and forward mode) they write straight into the tensor's
memory. Under autograd they compute out of place, write the result into the
tensor's memory, bump its version and rebase its history (and its base's, for
a view), so the gradient flows through the write.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import AutogradError, DeviceError, DTypeError, IndexingError, ShapeError
from . import forward_ad as _fwd
from .dtypes import from_numpy_dtype, get_default_dtype, is_float_np, result_type
from .grad_mode import GRAD_ENABLED, no_grad
from .methods import _ints_first, _normalize_index, expand
from .prims import movement as V
from .prims.viewscatter import ViewScatter
from .tensor import Tensor


# ----- __setitem__ ---------------------------------------------------------------------
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


# ----- the write and its history ------------------------------------------------------
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
    new_base = ViewScatter.apply(_alias(base) if base._requires_grad else base.detach(), new_value, view_t._vfn)
    base._grad_fn, base._output_nr, base._requires_grad = new_base._grad_fn, 0, True
    regenerated = view_t._vfn(base)
    view_t._grad_fn, view_t._output_nr, view_t._requires_grad = regenerated._grad_fn, 0, True
    view_t._view_version = view_t._version[0]  # its history is current again


def _alias(t: Tensor) -> Tensor:
    a = Tensor._make(t._data, t._device)
    a._grad_fn, a._output_nr, a._requires_grad, a._version = t._grad_fn, t._output_nr, t._requires_grad, t._version
    return a


# ----- in-place methods ----------------------------------------------------------------
def inplace_binary(prim: Any, op: str) -> Any:
    ufunc = {"add_": "add", "sub_": "subtract", "mul_": "multiply", "div_": "true_divide"}.get(op)

    def method(self: Tensor, other: Any, *, alpha: Any = None) -> Tensor:
        if alpha is not None:
            other = other * alpha
        if isinstance(other, Tensor) and other._device is not self._device:
            if other.ndim > 0:
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
