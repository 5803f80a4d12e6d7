"""Collation: a list of samples becomes one batch; conversion of NumPy data to tensors.

``default_collate`` follows ``torch.utils.data.default_collate`` type for type:
tensors are stacked along a new first dimension, NumPy arrays and NumPy
scalars become tensors of their dtype, Python floats a float64 tensor, Python
ints an int64 tensor (bools a bool tensor), strings and bytes stay as the
sequence given; mappings, namedtuples and sequences are collated field by field
(a tuple sample gives a list, as PyTorch). ``collate`` with a
``collate_fn_map`` lets a caller add or replace the rule for a type.
"""

from __future__ import annotations

import collections.abc as cabc
import copy
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..backend import CPU
from ..core.creation import as_tensor, tensor
from ..core.dtypes import float64
from ..core.grad_mode import is_grad_enabled
from ..core.tensor import Tensor
from ..errors import ShapeError
from ..ops.shape import stack

__all__ = ["collate", "default_collate", "default_convert", "default_collate_fn_map"]

_STR_OR_OBJECT = re.compile(r"[SaUO]")  # NumPy dtype codes of strings and Python objects: nothing to stack
_ERR = "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"

CollateFnMap = dict[type | tuple[type, ...], Callable[..., Any]]

# A worker process sets this to an allocator of output arrays in its shared-memory
# slot, so that stacking writes the batch straight where the main process reads it.
_out_allocator: list[Callable[[tuple[int, ...], np.dtype], np.ndarray | None] | None] = [None]


def _stack_arrays(arrays: Sequence[Any], device: Any) -> Any:
    """``xp.stack(arrays)`` (one shape, one dtype); on the CPU inside a worker, into shared memory when there is room.

    On the CPU one ``concatenate`` of the rows is about 2x faster than ``np.stack``
    (which makes a view per item), and 0-d items (labels) 15x faster as one array.
    """
    first = arrays[0]
    if device is not CPU:
        return device.xp.stack(arrays)
    alloc = _out_allocator[0]
    out = alloc((len(arrays), *first.shape), first.dtype) if alloc is not None else None
    if first.ndim == 0:
        if out is None:
            return np.array(arrays, dtype=first.dtype)
        out[...] = arrays
        return out
    if out is None:
        return np.concatenate(arrays).reshape(len(arrays), *first.shape)
    np.concatenate(arrays, out=out.reshape(-1, *first.shape[1:]))
    return out


def gather_rows(arr: Any, indices: list[int], device: Any) -> Any:
    """``arr[indices]`` for in-range int indices; on the CPU inside a worker, into shared memory when there is room."""
    if device is not CPU:
        return arr[device.xp.asarray(indices)]
    alloc = _out_allocator[0]
    out = alloc((len(indices), *arr.shape[1:]), arr.dtype) if alloc is not None else None
    if out is None:
        return arr[indices]
    return np.take(arr, indices, axis=0, out=out, mode="wrap")  # in range (checked): 'wrap' maps -1 to n-1, unbuffered


def _check_shapes(shapes: Sequence[tuple[int, ...]], what: str) -> None:
    first = shapes[0]
    if any(s != first for s in shapes):
        other = next(s for s in shapes if s != first)
        raise ShapeError(
            f"default_collate: {what} in a batch must have equal shapes to be stacked, got {first} and {other}"
        )


def collate_tensor_fn(batch: Sequence[Tensor], *, collate_fn_map: CollateFnMap | None = None) -> Tensor:
    """Stack tensors along a new first dimension."""
    elem = batch[0]
    dev = elem._device
    arrays = [t._data for t in batch]
    if (is_grad_enabled() and any(t._requires_grad for t in batch)) or any(t._device is not dev for t in batch) or (
        len({a.dtype for a in arrays}) > 1
    ):
        return stack(list(batch), 0)  # autograd, or mixed dtypes/devices: the op records, promotes, checks
    _check_shapes([a.shape for a in arrays], "tensors")
    return Tensor._make(_stack_arrays(arrays, dev), dev)


def collate_numpy_array_fn(batch: Sequence[np.ndarray], *, collate_fn_map: CollateFnMap | None = None) -> Tensor:
    """Stack NumPy arrays into one tensor of their dtype."""
    elem = batch[0]
    if _STR_OR_OBJECT.search(elem.dtype.str) is not None:
        raise TypeError(_ERR.format(elem.dtype))
    if len({b.dtype for b in batch}) > 1:
        return collate_tensor_fn([as_tensor(b) for b in batch])  # let stack promote as PyTorch does
    as_tensor(elem)  # a clear error for a dtype axonml has no tensor type for
    _check_shapes([b.shape for b in batch], "arrays")
    return Tensor._make(_stack_arrays(batch, CPU), CPU)


def collate_numpy_scalar_fn(batch: Sequence[Any], *, collate_fn_map: CollateFnMap | None = None) -> Tensor:
    """NumPy scalars become a 1-D tensor of their dtype."""
    return as_tensor(np.array(batch))


def collate_float_fn(batch: Sequence[float], *, collate_fn_map: CollateFnMap | None = None) -> Tensor:
    """Python floats become a float64 tensor (as PyTorch)."""
    return tensor(batch, dtype=float64)


def collate_int_fn(batch: Sequence[int], *, collate_fn_map: CollateFnMap | None = None) -> Tensor:
    """Python ints become an int64 tensor (bools a bool tensor)."""
    return tensor(batch)


def collate_str_fn(batch: Sequence[Any], *, collate_fn_map: CollateFnMap | None = None) -> Sequence[Any]:
    """Strings and bytes stay as they are."""
    return batch


def _rebuild_mapping(elem: Any, values: dict[Any, Any]) -> Any:
    """A mapping of ``elem``'s type holding ``values``; a plain dict when the type cannot be rebuilt."""
    try:
        if isinstance(elem, cabc.MutableMapping):
            clone = copy.copy(elem)
            clone.update(values)
            return clone
        return type(elem)(values)
    except TypeError:
        return values


def _rebuild_sequence(elem: Any, items: list[Any]) -> Any:
    """A sequence of ``elem``'s type holding ``items``; a list when the type cannot be rebuilt."""
    try:
        if isinstance(elem, cabc.MutableSequence):
            clone = copy.copy(elem)
            for i, v in enumerate(items):
                clone[i] = v
            return clone
        return type(elem)(items)
    except TypeError:
        return items


def collate(batch: Any, *, collate_fn_map: CollateFnMap | None = None) -> Any:
    """Collate ``batch`` (a sequence of samples of one structure), with per-type rules from ``collate_fn_map``.

    The rule of ``type(batch[0])`` wins; otherwise the first key of the map that
    the element is an instance of; otherwise mappings, namedtuples and
    sequences are collated field by field.
    """
    if len(batch) == 0:
        raise ValueError("collate: got an empty batch")
    elem = batch[0]
    elem_type = type(elem)
    if collate_fn_map is not None:
        fn = collate_fn_map.get(elem_type)
        if fn is not None:
            return fn(batch, collate_fn_map=collate_fn_map)
        for key, fn in collate_fn_map.items():
            if isinstance(elem, key):
                return fn(batch, collate_fn_map=collate_fn_map)
    if isinstance(elem, cabc.Mapping):
        return _rebuild_mapping(elem, {k: collate([d[k] for d in batch], collate_fn_map=collate_fn_map) for k in elem})
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return elem_type(*(collate(s, collate_fn_map=collate_fn_map) for s in zip(*batch)))
    if isinstance(elem, cabc.Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        columns = [collate(s, collate_fn_map=collate_fn_map) for s in zip(*batch)]
        if isinstance(elem, tuple):
            return columns  # a list, as PyTorch
        return _rebuild_sequence(elem, columns)
    raise TypeError(_ERR.format(elem_type))


default_collate_fn_map: CollateFnMap = {
    Tensor: collate_tensor_fn,
    np.ndarray: collate_numpy_array_fn,
    (np.bool_, np.number, np.object_): collate_numpy_scalar_fn,
    float: collate_float_fn,
    int: collate_int_fn,
    str: collate_str_fn,
    bytes: collate_str_fn,
}


def default_collate(batch: Any) -> Any:
    """Put a list of samples together into a batch, as ``torch.utils.data.default_collate``.

    ``[(x0, y0), (x1, y1)]`` -> ``[stack([x0, x1]), tensor([y0, y1])]``; see the
    module docstring for every type's rule.
    """
    return collate(batch, collate_fn_map=default_collate_fn_map)


def default_convert(data: Any) -> Any:
    """Turn NumPy arrays and scalars inside ``data`` into tensors and leave everything else as it is.

    The collate function of a DataLoader with ``batch_size=None`` (no batching);
    containers are walked as in :func:`default_collate` (a tuple gives a list).
    """
    if isinstance(data, Tensor):
        return data
    elem_type = type(data)
    if elem_type.__module__ == "numpy" and elem_type.__name__ not in ("str_", "bytes_", "string_"):
        if isinstance(data, np.ndarray) and _STR_OR_OBJECT.search(data.dtype.str) is not None:
            return data
        return as_tensor(data if isinstance(data, np.ndarray) else np.asarray(data))
    if isinstance(data, cabc.Mapping):
        return _rebuild_mapping(data, {k: default_convert(data[k]) for k in data})
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return elem_type(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, cabc.Sequence) and not isinstance(data, str | bytes):
        return _rebuild_sequence(data, [default_convert(d) for d in data])
    return data
