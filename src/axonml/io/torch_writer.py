"""PyTorch checkpoints written without PyTorch: the zip format ``torch.load(weights_only=True)`` reads.

The archive holds ``archive/data.pkl`` (a protocol-2 pickle whose only
globals are ``torch._utils._rebuild_tensor_v2``/``_rebuild_parameter``, the
``torch.<X>Storage`` types, ``collections.OrderedDict``, ``_codecs.encode``
and torch dtypes, all on PyTorch's weights-only whitelist), the storages as
``archive/data/<key>`` (raw little-endian bytes, 64-byte aligned), and the
``byteorder``, ``version``, ``.format_version`` and ``.storage_alignment``
records.
"""

from __future__ import annotations

import io
import zipfile
from collections import OrderedDict
from typing import IO, Any

import numpy as np

from ..backend import CPU, Device
from ..core import dtypes as _dt
from ..core.tensor import Tensor
from ..nn.parameter import Parameter
from ._common import PathLike, SerializationError, aligned_zipinfo, c_order, host_array, open_for_write, wrap_array
from .pickle_writer import GlobalRef, Persistent, Pickler2, Reduce

# NumPy dtype -> the PyTorch storage class name (without "Storage")
_NAME_OF_NP = {np.dtype(np.float32): "Float", np.dtype(np.float64): "Double", np.dtype(np.float16): "Half",
               np.dtype(np.int64): "Long", np.dtype(np.int32): "Int", np.dtype(np.int16): "Short",
               np.dtype(np.int8): "Char", np.dtype(np.uint8): "Byte", np.dtype(np.bool_): "Bool"}
if _dt._BF16_NP is not None:
    _NAME_OF_NP[_dt._BF16_NP] = "BFloat16"


class _Writer:
    """Turns axonml objects into pickle nodes and collects the storages to write."""

    def __init__(self) -> None:
        self.storages: list[np.ndarray] = []
        self._by_root: dict[tuple[int, str], tuple[str, np.ndarray]] = {}
        self._keep: list[Any] = []

    def _storage(self, arr: np.ndarray) -> tuple[str, int, tuple[int, ...], tuple[int, ...]]:
        """(key, element offset, size, element strides), sharing the storage of views of one array."""
        root = arr
        while isinstance(root.base, np.ndarray):
            root = root.base
        item = arr.dtype.itemsize
        shareable = (
            root.dtype == arr.dtype and root.flags.c_contiguous and arr.size > 0
            and all(s >= 0 and s % item == 0 for s in arr.strides)
        )
        if shareable:
            delta = arr.__array_interface__["data"][0] - root.__array_interface__["data"][0]
            shareable = delta >= 0 and delta % item == 0
        if not shareable:
            arr = c_order(arr)
            root, delta = arr, 0
        ident = (id(root), arr.dtype.str)
        found = self._by_root.get(ident)
        if found is None:
            found = (str(len(self.storages)), root)
            self._by_root[ident] = found
            self.storages.append(root.reshape(-1))
            self._keep.append(root)
        strides = tuple(s // item for s in arr.strides) if arr.size else _contiguous_strides(arr.shape)
        return found[0], delta // item, tuple(arr.shape), strides

    def tensor_node(self, t: Tensor) -> Reduce:
        arr = t._data if t._device is CPU else host_array(t)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        name = _NAME_OF_NP.get(arr.dtype)
        if name is None:
            raise SerializationError(f"save_torch: no PyTorch storage type for dtype {arr.dtype}")
        key, offset, size, stride = self._storage(arr)
        numel = self.storages[int(key)].size
        pid = Persistent(("storage", GlobalRef("torch", f"{name}Storage"), key, "cpu", numel))
        node = Reduce("torch._utils", "_rebuild_tensor_v2",
                      (pid, offset, size, stride, bool(t._requires_grad), OrderedDict()))
        if isinstance(t, Parameter):
            return Reduce("torch._utils", "_rebuild_parameter", (node, bool(t._requires_grad), OrderedDict()))
        return node

    def hook(self, obj: Any) -> Any:
        if isinstance(obj, Tensor):
            return self.tensor_node(obj)
        if isinstance(obj, np.ndarray):
            return self.tensor_node(wrap_array(obj))
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, _dt.dtype):
            return GlobalRef("torch", obj.name)
        if isinstance(obj, Device):
            return Reduce("torch", "device", (str(obj),))
        for plain in (bool, int, float, str):  # subclasses (enums...) as their plain values
            if isinstance(obj, plain):
                return plain(obj)
        if isinstance(obj, bytes | bytearray):
            return bytes(obj)
        if isinstance(obj, dict):
            return dict(obj)
        if isinstance(obj, list | tuple):
            return list(obj) if isinstance(obj, list) else tuple(obj)
        if isinstance(obj, set | frozenset):
            return Reduce("builtins", "set", (list(obj),))
        raise SerializationError(
            f"save_torch cannot store a {type(obj).__module__}.{type(obj).__qualname__}: only tensors, numbers, "
            "strings, bytes, None, dtypes and dicts/lists/tuples of those (torch.load(weights_only=True)'s types)"
        )


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(out))


def save_torch(obj: Any, f: PathLike | IO[bytes]) -> None:
    """Write ``obj`` (a state dict, nested containers of tensors) as a PyTorch zip checkpoint.

    ``torch.load(f, weights_only=True)`` reads it. Tensors are written as CPU
    tensors; views of one array share one storage (with their offsets and
    strides), as ``torch.save`` does. A path is written atomically.
    """
    writer = _Writer()
    data = Pickler2(writer.hook).dumps(obj)
    prefix = "archive/"
    with open_for_write(f) as out, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        records: list[tuple[str, bytes | memoryview]] = [
            ("data.pkl", data), (".format_version", b"1"), (".storage_alignment", b"64"), ("byteorder", b"little"),
        ]
        records += [(f"data/{i}", s.view(np.uint8).data) for i, s in enumerate(writer.storages)]
        records += [("version", b"3\n")]
        for name, payload in records:
            zf.writestr(aligned_zipinfo(zf, prefix + name, len(payload) if isinstance(payload, bytes)
                                        else payload.nbytes), payload)


def dumps_torch(obj: Any) -> bytes:
    """:func:`save_torch` into bytes."""
    buf = io.BytesIO()
    save_torch(obj, buf)
    return buf.getvalue()
