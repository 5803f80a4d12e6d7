"""Creating tensors: from data, constants, ranges.

``tensor(np_array)`` keeps the array's dtype (as ``torch.tensor``); Python
floats become the default dtype, Python ints int64, Python bools bool.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import CPU, Device, as_device, device_of_array, move_array
from . import dtypes as _dt
from .tensor import Tensor


def _infer_np_dtype(data: Any) -> Any:
    """NumPy dtype for Python data (nested lists of numbers or tensors), PyTorch style."""
    arr = np.asarray(data)
    if arr.dtype == np.float64 and not isinstance(data, np.ndarray | np.generic):
        return _dt.get_default_dtype().np
    if arr.dtype.kind in "iu" and not isinstance(data, np.ndarray | np.generic):
        return np.int64
    return arr.dtype


def _to_array(data: Any, dtype: Any, device: Any) -> tuple[Any, Device]:
    """An array (copied) and its device for ``tensor(data, dtype, device)``."""
    dev = as_device(device) if device is not None else None
    target = _dt.as_dtype(dtype).np if dtype is not None else None
    if isinstance(data, Tensor):
        arr, src = data._data, data._device
    elif isinstance(data, np.ndarray | np.generic):
        arr, src = np.array(data), CPU
    elif hasattr(data, "__cuda_array_interface__"):
        arr, src = data.copy(), device_of_array(data)
    elif isinstance(data, list | tuple) and any(isinstance(v, Tensor) for v in _flat(data)):
        arr = np.asarray([_host_value(v) for v in data]) if data else np.zeros(0)
        src = CPU
        if target is None:
            target = _infer_np_dtype(arr.tolist()) if arr.dtype == np.float64 else arr.dtype
    else:
        if isinstance(data, str | bytes) or data is None:
            raise TypeError(f"can't make a tensor from {type(data).__name__}")
        try:
            inferred = _infer_np_dtype(data)
            arr = np.array(data, dtype=inferred)
        except (ValueError, TypeError) as e:
            raise TypeError(f"can't make a tensor from this data: {e}") from None
        if arr.dtype == object:
            raise TypeError("can't make a tensor from ragged or non-numeric data")
        src = CPU
    dev = dev or src
    if target is not None and arr.dtype != target:
        arr = arr.astype(target)
    elif arr is getattr(data, "_data", None) or hasattr(data, "__cuda_array_interface__") and arr is data:
        arr = arr.copy()
    if dev is not src:
        arr = move_array(arr, dev)
    return arr, dev


def _flat(data: Any) -> Any:
    for v in data:
        if isinstance(v, list | tuple):
            yield from _flat(v)
        else:
            yield v


def _host_value(v: Any) -> Any:
    if isinstance(v, Tensor):
        return v._host()
    if isinstance(v, list | tuple):
        return [_host_value(x) for x in v]
    return v


def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (nested lists, NumPy arrays, scalars, tensors)."""
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """Like :func:`tensor`, but shares memory with a NumPy array or tensor when dtype and device match."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if dtype is not None or device is not None else data
    if isinstance(data, np.ndarray) and (dtype is None or _dt.as_dtype(dtype).np == data.dtype):
        if device is None or as_device(device) is CPU:
            _dt.from_numpy_dtype(data.dtype)
            return Tensor._make(data, CPU)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``array`` (no copy)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    _dt.from_numpy_dtype(array.dtype)
    return Tensor._make(array, CPU)


def from_dlpack(ext: Any) -> Tensor:
    """A tensor sharing memory with any DLPack-exporting object (NumPy, CuPy, PyTorch, ...)."""
    dev_type, dev_id = ext.__dlpack_device__()
    if int(dev_type) == 1:  # kDLCPU
        return from_numpy(np.from_dlpack(ext))
    device = Device("cuda", int(dev_id))
    return Tensor._make(device.xp.from_dlpack(ext), device)


def _factory_dtype(dtype: Any, default: Any = None) -> Any:
    if dtype is None:
        return (default or _dt.get_default_dtype()).np
    return _dt.as_dtype(dtype).np


def _make(fn: str, shape: tuple[int, ...], dtype: Any, device: Any, requires_grad: bool, *args: Any) -> Tensor:
    dev = as_device(device)
    arr = getattr(dev.xp, fn)(shape, *args, dtype=_factory_dtype(dtype))
    t = Tensor._make(arr, dev)
    return t.requires_grad_(True) if requires_grad else t


def _shape(size: Any) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], list | tuple):
        size = size[0]
    for s in size:
        if not isinstance(s, int | np.integer) or s < 0:
            raise ValueError(f"sizes must be non-negative integers, got {tuple(size)}")
    return tuple(int(s) for s in size)


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros."""
    return _make("zeros", _shape(size), dtype, device, requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones."""
    return _make("ones", _shape(size), dtype, device, requires_grad)


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """An uninitialized tensor."""
    return _make("empty", _shape(size), dtype, device, requires_grad)


def full(size: Any, fill_value: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor filled with ``fill_value`` (its dtype follows the value, as in PyTorch)."""
    if dtype is None:
        dtype = _dt.result_type(fill_value)
    dev = as_device(device)
    arr = dev.xp.full(_shape((size,) if isinstance(size, int) else tuple(size)), fill_value, dtype=_dt.as_dtype(dtype).np)
    t = Tensor._make(arr, dev)
    return t.requires_grad_(True) if requires_grad else t


def _like(x: Tensor, dtype: Any, device: Any) -> tuple[Any, Any]:
    return (dtype if dtype is not None else x.dtype), (device if device is not None else x.device)


def zeros_like(x: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    d, dev = _like(x, dtype, device)
    return zeros(x.shape, dtype=d, device=dev, requires_grad=requires_grad)


def ones_like(x: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    d, dev = _like(x, dtype, device)
    return ones(x.shape, dtype=d, device=dev, requires_grad=requires_grad)


def empty_like(x: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    d, dev = _like(x, dtype, device)
    return empty(x.shape, dtype=d, device=dev, requires_grad=requires_grad)


def full_like(x: Tensor, fill_value: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    d, dev = _like(x, dtype, device)
    return full(x.shape, fill_value, dtype=d, device=dev, requires_grad=requires_grad)


def arange(
    start: Any, end: Any = None, step: Any = 1, *, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    """Values from ``start`` up to (not including) ``end`` by ``step``; int64 unless a bound is a float."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be non-zero")
    if dtype is None:
        dtype = _dt.result_type(start, end, step)
    dev = as_device(device)
    np_dtype = _dt.as_dtype(dtype).np
    n = max(0, int(np.ceil((end - start) / step)))
    arr = (dev.xp.arange(n, dtype=np.float64) * step + start).astype(np_dtype)
    t = Tensor._make(arr, dev)
    return t.requires_grad_(True) if requires_grad else t


def linspace(
    start: float, end: float, steps: int, *, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive."""
    if steps < 0:
        raise ValueError("linspace: number of steps must be non-negative")
    dev = as_device(device)
    arr = dev.xp.linspace(start, end, steps, dtype=np.float64).astype(_factory_dtype(dtype))
    t = Tensor._make(arr, dev)
    return t.requires_grad_(True) if requires_grad else t


def logspace(start: float, end: float, steps: int, base: float = 10.0, *, dtype: Any = None, device: Any = None) -> Tensor:
    """``base ** linspace(start, end, steps)``."""
    dev = as_device(device)
    arr = dev.xp.logspace(start, end, steps, base=base, dtype=np.float64).astype(_factory_dtype(dtype))
    return Tensor._make(arr, dev)


def eye(n: int, m: int | None = None, *, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """The ``n`` x ``m`` identity matrix."""
    dev = as_device(device)
    t = Tensor._make(dev.xp.eye(n, m, dtype=_factory_dtype(dtype)), dev)
    return t.requires_grad_(True) if requires_grad else t


def scalar_tensor(value: Any, dtype: Any = None, device: Any = None) -> Tensor:
    return full((), value, dtype=dtype or _dt.get_default_dtype(), device=device)

