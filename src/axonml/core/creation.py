"""Creating tensors: from data, constants, ranges.

``tensor(np_array)`` keeps the array's dtype (as ``torch.tensor``); Python
floats become the default dtype, Python ints int64, Python bools bool.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import CPU, Device, as_device, device_of_array, move_array
from ..errors import DeviceError
from . import dtypes as _dt
from .tensor import Tensor


def _leaf_types(data: Any) -> set[type]:
    """The types of the non-sequence items in nested lists and tuples.

    One ``set(map(type, ...))`` per list runs at C speed, so scanning big lists
    of numbers costs a fraction of NumPy's own conversion.
    """
    types = set(map(type, data))
    if list in types or tuple in types:
        types.discard(list)
        types.discard(tuple)
        for v in data:
            if isinstance(v, list | tuple):
                types |= _leaf_types(v)
    return types


def _check_int64(v: int) -> None:
    if not -(2**63) <= v < 2**63:
        raise OverflowError(f"can't make a tensor: the integer {v} is out of the int64 range")


def _from_python(data: Any, types: set[type], target: Any = None) -> Any:
    """A NumPy array of Python data (numbers, nested sequences of numbers), or a clear error.

    Python floats give the default dtype and Python ints int64; NumPy scalars keep
    their dtype (``[np.int32(1)]`` is int32, ``[np.float64(1.0)]`` float64), as in PyTorch.
    """
    if isinstance(data, str | bytes) or data is None or isinstance(data, dict | set):
        raise TypeError(f"can't make a tensor from {type(data).__name__}: expected numbers or nested sequences of them")
    try:
        arr = np.asarray(data)
    except ValueError as e:
        if "inhomogeneous" in str(e) or "sequence" in str(e):
            raise TypeError(
                "can't make a tensor from a ragged nested sequence: every list at one depth must have the same length"
            ) from None
        raise TypeError(f"can't make a tensor from this data: {e}") from None
    kind = arr.dtype.kind
    if kind == "O" or (kind == "u" and arr.dtype.itemsize == 8) or (kind == "f" and float not in types and not any(
        issubclass(t, np.floating) for t in types
    )):
        # NumPy turns ints beyond int64 into uint64, objects or (mixed with small ints) float64
        for v in (_flat(data) if isinstance(data, list | tuple) else [data]):
            if isinstance(v, int):
                _check_int64(v)
    if kind == "O":
        bad = next((t for t in types if not issubclass(t, int | float | np.generic)), object)
        raise TypeError(f"can't make a tensor from an element of type {bad.__name__}: expected numbers")
    if kind in "USV" and arr.dtype != _dt._BF16_NP:
        raise TypeError(f"can't make a tensor from strings or bytes (NumPy dtype {arr.dtype})")
    if arr.dtype == np.float64 and np.float64 not in types and target is None:
        # the floats were Python floats; with a target dtype they convert straight to it
        arr = arr.astype(_dt.get_default_dtype().np)
    return arr


def _check_dtype(arr: Any) -> None:
    """A clear error for arrays of a dtype axonml has no tensor type for."""
    if arr.dtype not in _dt._FROM_NP:
        if arr.dtype.kind in "USO":
            raise TypeError(f"can't make a tensor from an array of NumPy dtype {arr.dtype}: expected numbers")
        raise _dt.DTypeError(
            f"can't make a tensor of NumPy dtype {arr.dtype}; axonml has "
            + ", ".join(d.name for d in _dt.ALL_DTYPES)
        )


def _to_array(data: Any, dtype: Any, device: Any) -> tuple[Any, Device]:
    """An array (copied) and its device for ``tensor(data, dtype, device)``."""
    dev = as_device(device) if device is not None else None
    target = _dt.as_dtype(dtype).np if dtype is not None else None
    arr: Any
    if isinstance(data, Tensor):
        arr, src = data._data, data._device
    elif isinstance(data, np.ndarray | np.generic):
        arr, src = np.array(data), CPU
        if not arr.dtype.isnative:  # big-endian data from a file: store it in native order
            arr = arr.astype(arr.dtype.newbyteorder("="))
    elif hasattr(data, "__cuda_array_interface__"):
        arr, src = data.copy(), device_of_array(data)
    else:
        types = _leaf_types(data) if isinstance(data, list | tuple) else {type(data)}
        if any(issubclass(t, Tensor) for t in types):
            arr = _from_tensors(data, target)
        else:
            arr = _from_python(data, types, target)
        src = CPU
    _check_dtype(arr)
    dev = dev or src
    if target is not None and arr.dtype != target:
        arr = arr.astype(target)
    elif isinstance(data, Tensor) and arr is data._data:
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


def _from_tensors(data: Any, target: Any) -> Any:
    """A NumPy array of a nested list that holds tensors (each copied to the host)."""
    try:
        arr = np.asarray(_host_value(data))
    except ValueError:
        arr = np.empty(0, dtype=object)
    if arr.dtype == object:
        raise TypeError("can't make a tensor from a ragged nested sequence of tensors")
    # float64 came from Python floats unless a float64 tensor was among the items
    if (target is None and arr.dtype == np.float64
            and not any(isinstance(v, Tensor) and v._data.dtype == np.float64 for v in _flat(data))):
        arr = arr.astype(_dt.get_default_dtype().np)
    return arr


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
    """Like :func:`tensor`, but shares memory with a NumPy or CuPy array or a tensor when dtype and device match."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if dtype is not None or device is not None else data
    is_np = isinstance(data, np.ndarray)
    if (is_np or hasattr(data, "__cuda_array_interface__")) and data.dtype in _dt._FROM_NP:
        src = CPU if is_np else device_of_array(data)
        if (dtype is None or _dt.as_dtype(dtype).np == data.dtype) and (device is None or as_device(device) is src):
            return Tensor._make(data, src)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``array`` (no copy): writing one changes the other."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    if not array.dtype.isnative:
        raise _dt.DTypeError(f"from_numpy: NumPy dtype {array.dtype} is not in native byte order; use tensor() to copy")
    _check_dtype(array)
    return Tensor._make(array, CPU)


def from_dlpack(ext: Any) -> Tensor:
    """A tensor sharing memory with any DLPack-exporting object (NumPy, CuPy, PyTorch, ...)."""
    if not hasattr(ext, "__dlpack_device__") or not hasattr(ext, "__dlpack__"):
        raise TypeError(f"from_dlpack expects an object with __dlpack__ and __dlpack_device__: {type(ext).__name__}")
    dev_type, dev_id = ext.__dlpack_device__()
    try:
        if int(dev_type) == 1:  # kDLCPU
            return from_numpy(np.from_dlpack(ext))
        if int(dev_type) not in (2, 3):  # kDLCUDA, kDLCUDAHost
            raise _dt.DTypeError(f"DLPack device type {int(dev_type)} is not supported (only CPU and CUDA)")
        device = Device("cuda", int(dev_id))
        return Tensor._make(device.xp.from_dlpack(ext), device)
    except (RuntimeError, BufferError) as e:  # NumPy raises either, depending on its version
        if isinstance(e, DeviceError) or "dtype" not in str(e):
            raise
        # NumPy's DLPack import knows no bfloat16 (nor complex types axonml lacks)
        raise _dt.DTypeError(f"from_dlpack: unsupported dtype in this {type(ext).__name__} ({e})") from None


def _factory_dtype(dtype: Any, default: Any = None) -> Any:
    if dtype is None:
        return (default or _dt.get_default_dtype()).np
    return _dt.as_dtype(dtype).np


def _finish(arr: Any, dev: Device, requires_grad: bool) -> Tensor:
    t = Tensor._make(arr, dev)
    return t.requires_grad_(True) if requires_grad else t


def _make(fn: str, shape: tuple[int, ...], dtype: Any, device: Any, requires_grad: bool, *args: Any) -> Tensor:
    dev = as_device(device)
    return _finish(getattr(dev.xp, fn)(shape, *args, dtype=_factory_dtype(dtype)), dev, requires_grad)


def _shape(size: Any) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], list | tuple):
        size = size[0]
    for s in size:
        if not isinstance(s, int | np.integer) or isinstance(s, bool) or s < 0:
            raise ValueError(f"sizes must be non-negative integers, got {tuple(size)}")
    return tuple(int(s) for s in size)


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros: ``zeros(2, 3)`` or ``zeros((2, 3))``."""
    return _make("zeros", _shape(size), dtype, device, requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones: ``ones(2, 3)`` or ``ones((2, 3))``."""
    return _make("ones", _shape(size), dtype, device, requires_grad)


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """An uninitialized tensor: ``empty(2, 3)`` or ``empty((2, 3))``."""
    return _make("empty", _shape(size), dtype, device, requires_grad)


def full(size: Any, fill_value: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor filled with ``fill_value`` (its dtype follows the value, as in PyTorch)."""
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    if dtype is None:
        dtype = _dt.result_type(fill_value)
    dev = as_device(device)
    shape = _shape((size,) if isinstance(size, int | np.integer) else tuple(size))
    return _finish(dev.xp.full(shape, fill_value, dtype=_dt.as_dtype(dtype).np), dev, requires_grad)


def _like(x: Tensor, dtype: Any, device: Any) -> tuple[Any, Any]:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a Tensor, got {type(x).__name__}")
    return (dtype if dtype is not None else x.dtype), (device if device is not None else x.device)


def zeros_like(x: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros of ``x``'s shape (and dtype and device unless given)."""
    d, dev = _like(x, dtype, device)
    return zeros(x.shape, dtype=d, device=dev, requires_grad=requires_grad)


def ones_like(x: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones of ``x``'s shape (and dtype and device unless given)."""
    d, dev = _like(x, dtype, device)
    return ones(x.shape, dtype=d, device=dev, requires_grad=requires_grad)


def empty_like(x: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """An uninitialized tensor of ``x``'s shape (and dtype and device unless given)."""
    d, dev = _like(x, dtype, device)
    return empty(x.shape, dtype=d, device=dev, requires_grad=requires_grad)


def full_like(x: Tensor, fill_value: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """``fill_value`` at every element of ``x``'s shape, in ``x``'s dtype and device unless given."""
    d, dev = _like(x, dtype, device)
    return full(x.shape, fill_value, dtype=d, device=dev, requires_grad=requires_grad)


def _number(v: Any, name: str, fn: str) -> Any:
    if isinstance(v, Tensor):
        return v.item()
    if not isinstance(v, int | float | np.integer | np.floating):
        raise TypeError(f"{fn}: {name} must be a number, got {type(v).__name__}")
    return v


def _steps(steps: Any, fn: str) -> int:
    if isinstance(steps, Tensor):
        steps = steps.item()
    if not isinstance(steps, int | np.integer) or isinstance(steps, bool):
        raise TypeError(f"{fn}: steps must be an integer, got {type(steps).__name__}")
    if steps < 0:
        raise ValueError(f"{fn}: number of steps must be non-negative, got {steps}")
    return int(steps)


def arange(
    start: Any, end: Any = None, step: Any = 1, *, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    """Values from ``start`` up to (not including) ``end`` by ``step``; int64 unless a bound is a float."""
    if end is None:
        start, end = 0, start
    start, end, step = _number(start, "start", "arange"), _number(end, "end", "arange"), _number(step, "step", "arange")
    if step == 0:
        raise ValueError("arange: step must be non-zero")
    if not np.isfinite(start) or not np.isfinite(end):
        raise ValueError(f"arange: bounds must be finite, got start={start}, end={end}")
    if dtype is None:
        dtype = _dt.result_type(start, end, step)
    dev = as_device(device)
    np_dtype = _dt.as_dtype(dtype).np
    if all(isinstance(v, int | np.integer) for v in (start, end, step)):
        # exact integer ranges (float64 would round values beyond 2**53)
        arr = dev.xp.arange(start, end, step, dtype=np.int64).astype(np_dtype, copy=False)
    else:
        n = max(0, int(np.ceil((end - start) / step)))
        arr = (dev.xp.arange(n, dtype=np.float64) * step + start).astype(np_dtype)
    return _finish(arr, dev, requires_grad)


def linspace(
    start: Any, end: Any, steps: int, *, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive."""
    start, end = _number(start, "start", "linspace"), _number(end, "end", "linspace")
    n = _steps(steps, "linspace")
    dev = as_device(device)
    arr = dev.xp.linspace(start, end, n, dtype=np.float64).astype(_factory_dtype(dtype))
    return _finish(arr, dev, requires_grad)


def logspace(
    start: Any, end: Any, steps: int, base: float = 10.0, *, dtype: Any = None, device: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    """``base ** linspace(start, end, steps)``."""
    start, end = _number(start, "start", "logspace"), _number(end, "end", "logspace")
    n = _steps(steps, "logspace")
    dev = as_device(device)
    arr = dev.xp.logspace(start, end, n, base=base, dtype=np.float64).astype(_factory_dtype(dtype))
    return _finish(arr, dev, requires_grad)


def eye(n: int, m: int | None = None, *, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """The ``n`` x ``m`` identity matrix (square when ``m`` is None)."""
    shape = _shape((n,) if m is None else (n, m))
    dev = as_device(device)
    return _finish(dev.xp.eye(shape[0], shape[-1], dtype=_factory_dtype(dtype)), dev, requires_grad)


def scalar_tensor(value: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A 0-dim tensor holding ``value``, in the default dtype unless ``dtype`` is given (as in PyTorch)."""
    return full((), value, dtype=dtype or _dt.get_default_dtype(), device=device, requires_grad=requires_grad)
