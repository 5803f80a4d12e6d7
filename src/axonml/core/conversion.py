"""Tensor conversions: to other dtypes and devices, to NumPy, Python values and DLPack, to text.

``Tensor``'s class body (``tensor.py``) assigns these functions as its methods
(``to``, ``float``, ``numpy``, ``item``, ``__array__``, ``__repr__``, ...), so
they are ordinary methods with no extra call in between.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend import CPU, as_device, checks
from ..errors import AutogradError, DeviceError, ShapeError
from . import dtypes as _dt

if TYPE_CHECKING:
    from .tensor import Tensor


# ----- dtypes and devices --------------------------------------------------------------
def to(self: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    """``to(device)``, ``to(dtype)``, ``to(device, dtype)`` or ``to(other_tensor)``; differentiable."""
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    copy = kwargs.pop("copy", False)
    kwargs.pop("non_blocking", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, _tensor.Tensor):
            device, dtype = a._device, a.dtype
        elif isinstance(a, _dt.dtype) or a in (float, int, bool) or (
            isinstance(a, str) and a.removeprefix("torch.").removeprefix("axonml.") in _dt._BY_NAME
        ):
            dtype = a
        else:
            device = a
    out = self
    if dtype is not None:
        out = out._cast(_dt.as_dtype(dtype))
    if device is not None:
        dev = as_device(device)
        if dev is not out._device:
            from .prims.movement import ToDevice

            out = ToDevice.apply(out, dev)
    if copy and out is self:
        out = self.clone()
    return out


def cast(self: Tensor, d: _dt.dtype) -> Tensor:
    """``self`` as dtype ``d`` (itself when it already is): ``Tensor._cast``."""
    if self._data.dtype == d.np:
        return self
    from .prims.movement import Cast

    return Cast.apply(self, d.np)


def cast_method(name: str, d: _dt.dtype) -> Callable[[Tensor], Tensor]:
    """The method ``x.<name>()`` that casts to ``d``, as PyTorch's ``x.float()``, ``x.long()``, ..."""

    def method(self: Tensor) -> Tensor:
        return self._cast(d)

    method.__name__, method.__qualname__ = name, f"Tensor.{name}"
    method.__doc__ = f"This tensor as {d!r} (itself when it already is); differentiable."
    return method


def cpu(self: Tensor) -> Tensor:
    return self.to(CPU)


def cuda(self: Tensor, device: int | str | None = None) -> Tensor:
    if device is None:
        return self.to("cuda")
    return self.to(device if isinstance(device, str) else f"cuda:{device}")


def tensor_type(self: Tensor, dtype: Any = None) -> Any:
    """``x.type()``: the type name; ``x.type(dtype)``: ``x`` cast to ``dtype``."""
    if dtype is None:
        return f"axonml.{self.dtype.name}"
    return self._cast(_dt.as_dtype(dtype))


def type_as(self: Tensor, other: Tensor) -> Tensor:
    return self._cast(other.dtype)


# ----- NumPy, Python values, DLPack ----------------------------------------------------
def host(self: Tensor) -> np.ndarray:
    """The array on the host (``Tensor._host``): the array itself on the CPU, a copy from a GPU (after which the
    deferred checks of values computed before it run: the copy waited for them anyway)."""
    if self._device is CPU:
        return self._data  # type: ignore[no-any-return]
    a = self._data.get()
    checks.run_pending()
    return a  # type: ignore[no-any-return]


def numpy(self: Tensor, force: bool = False) -> np.ndarray:
    """The values as a NumPy array (shared memory on the CPU).

    A tensor that requires grad needs ``detach()`` first (or ``force=True``),
    as in PyTorch; a CUDA tensor needs ``force=True`` or ``.cpu()``.
    """
    if self._requires_grad and not force:
        raise AutogradError("can't call numpy() on a tensor that requires grad; use tensor.detach().numpy()")
    if self._device is not CPU:
        if not force:
            raise DeviceError(f"can't convert a {self._device} tensor to NumPy; use tensor.cpu() first")
        return host(self)
    return self._data  # type: ignore[no-any-return]


def item(self: Tensor) -> Any:
    """The value of a one-element tensor as a Python number."""
    if self._data.size != 1:
        raise ShapeError(f"item() needs a tensor with one element, this one has {self._data.size}")
    return self._host().reshape(()).item()


def tolist(self: Tensor) -> Any:
    return self._host().tolist()


def to_array(self: Tensor, dtype: Any = None, copy: Any = None) -> np.ndarray:
    """``__array__``: ``np.asarray(x)``."""
    a = self._host()
    return a if dtype is None else a.astype(dtype)


def dlpack(self: Tensor, *args: Any, **kwargs: Any) -> Any:
    """Export without a copy through DLPack (``np.from_dlpack(t)``, ``torch.from_dlpack(t)``)."""
    if self._requires_grad:
        raise BufferError("can't export a tensor that requires grad through DLPack; use tensor.detach()")
    if self._device is CPU and self._data.dtype == _dt._BF16_NP:
        raise BufferError("NumPy can't export bfloat16 through DLPack; convert with .float() first")
    return self._data.__dlpack__(*args, **kwargs)


def dlpack_device(self: Tensor) -> Any:
    return self._data.__dlpack_device__()


def truth(self: Tensor) -> bool:
    """``__bool__``: the truth value of a one-element tensor."""
    if self._data.size != 1:
        raise ValueError(
            f"the truth value of a tensor with {self._data.size} elements is ambiguous; use .any() or .all()"
        )
    return bool(self.item())


def to_float(self: Tensor) -> float:
    return float(self.item())


def to_int(self: Tensor) -> int:
    return int(self.item())


def to_index(self: Tensor) -> int:
    """``__index__``: a one-element integer tensor used as an index (``range(t)``, ``lst[t]``)."""
    if self._data.dtype.kind not in "iub" or self._data.size != 1:
        raise TypeError("only integer tensors of a single element can be converted to an index")
    return int(self.item())


# ----- text ----------------------------------------------------------------------------
def tensor_repr(self: Tensor) -> str:
    """``repr(x)``: the values (as NumPy prints them) and what differs from the defaults."""
    body = np.array2string(
        np.asarray(self._host(), dtype=np.float64) if self._data.dtype == _dt._BF16_NP else self._host(),
        separator=", ", precision=4, threshold=1000, edgeitems=3, prefix="tensor(",
    )
    extras = []
    d = self.dtype
    if d is not _dt.get_default_dtype() and d is not _dt.int64 and d is not _dt.bool_:
        extras.append(f"dtype={d!r}")
    if self._device is not CPU:
        extras.append(f"device='{self._device}'")
    if self._grad_fn is not None:
        extras.append(f"grad_fn={self._grad_fn!r}")
    elif self._requires_grad:
        extras.append("requires_grad=True")
    return "tensor(" + body + "".join(", " + e for e in extras) + ")"


# last: tensor.py imports this module while it defines Tensor, so Tensor is read at call time
from . import tensor as _tensor  # noqa: E402
