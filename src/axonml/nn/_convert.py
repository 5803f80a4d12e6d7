"""``Module``'s conversions: ``to``, ``cuda``/``cpu``, ``float``/``double``/``half``/``bfloat16``, ``type``.

Every parameter, gradient and buffer is converted in place: the Parameter and
Buffer objects stay the same (an optimizer holding them keeps working) and get
the converted array. ``Module``'s class body assigns these functions as methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..backend import as_device
from ..core import dtypes as _dt
from ..core.grad_mode import no_grad
from ..core.tensor import Tensor

if TYPE_CHECKING:
    from .module import Module


def _is_dtype(a: Any) -> bool:
    if isinstance(a, str):
        return a.removeprefix("torch.").removeprefix("axonml.") in _dt._BY_NAME
    return isinstance(a, _dt.dtype) or a in (float, int, bool)


def _parse_to(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """(device, dtype) from ``Module.to``'s arguments: a device, a dtype, both, or a tensor."""
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    kwargs.pop("non_blocking", None)
    kwargs.pop("memory_format", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif _is_dtype(a):
            dtype = a
        else:
            device = a
    if dtype is not None:
        dtype = _dt.as_dtype(dtype)
        if not dtype.is_floating_point:
            raise TypeError(f"nn.Module.to only accepts floating point dtypes, but got desired dtype={dtype}")
    return (as_device(device) if device is not None else None), dtype


def _swap(t: Tensor, new: Tensor) -> None:
    """Give ``t`` the array of ``new`` in place, so Parameter/Buffer objects (and optimizers) survive."""
    if new._data is t._data:
        return
    t._data, t._device = new._data, new._device
    t._version = [t._version[0] + 1]  # a fresh counter: the old views no longer share this memory


def apply_fn(self: Module, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Module:
    """Convert every parameter, gradient and buffer with ``fn``, in place (the objects stay the same)."""
    if recurse:
        for m in self.children():
            m._apply(fn)
    with no_grad():
        for store in (self._parameters, self._buffers):
            for t in store.values():
                if t is None:
                    continue
                _swap(t, fn(t))
                if t._grad is not None:
                    g = fn(t._grad)
                    t._grad = g if g is t._grad else g.detach()
    return self


def to(self: Module, *args: Any, **kwargs: Any) -> Module:
    """Move and/or cast in place: ``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(tensor)``.

    A dtype applies to floating point parameters and buffers only (integer
    buffers such as counters keep theirs), as in PyTorch.
    """
    device, dtype = _parse_to(args, dict(kwargs))

    def convert(t: Tensor) -> Tensor:
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        return t.to(device) if device is not None else t

    return self._apply(convert)


def cuda(self: Module, device: int | str | None = None) -> Module:
    """Move every parameter and buffer to a CUDA device."""
    if device is None:
        return self.to("cuda")
    return self.to(device if isinstance(device, str) else f"cuda:{device}")


def cpu(self: Module) -> Module:
    return self.to("cpu")


def _cast_floats(self: Module, d: _dt.dtype) -> Module:
    return self._apply(lambda t: t.to(d) if t.is_floating_point() else t)


def float_(self: Module) -> Module:
    """Cast floating point parameters and buffers to float32."""
    return self._cast_floats(_dt.float32)


def double_(self: Module) -> Module:
    """Cast floating point parameters and buffers to float64."""
    return self._cast_floats(_dt.float64)


def half_(self: Module) -> Module:
    """Cast floating point parameters and buffers to float16."""
    return self._cast_floats(_dt.float16)


def bfloat16_(self: Module) -> Module:
    """Cast floating point parameters and buffers to bfloat16."""
    return self._cast_floats(_dt.bfloat16)


def type_(self: Module, dst_type: Any) -> Module:
    """Cast every parameter and buffer (integers too) to ``dst_type``."""
    d = _dt.as_dtype(dst_type)
    return self._apply(lambda t: t.to(d))
