"""PyTorch checkpoints (``.pt``, ``.pth``, ``.bin``) read and written without PyTorch.

Reading handles both layouts ``torch.save`` has used:

* the zip format (PyTorch >= 1.6): ``<prefix>/data.pkl`` is a pickle whose
  tensors are ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
  requires_grad, hooks)`` calls, each storage a persistent id ``('storage',
  torch.FloatStorage, key, location, numel)`` naming the raw little-endian
  bytes in ``<prefix>/data/<key>``;
* the legacy format: pickled magic number, protocol version and system info,
  the object pickle (persistent ids with a root key and an optional view),
  the pickled list of storage keys, then each storage as an int64 element
  count followed by its bytes.

Pickles go through :class:`~axonml.io.torch_pickle.RestrictedUnpickler` with
a whitelist of data types mapped to our own constructors, so a checkpoint can
never run code. Tensors come back as axonml tensors; views keep their offsets
and strides (and share memory, as in PyTorch).

Writing is in :mod:`axonml.io.torch_writer`.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from typing import IO, Any

import numpy as np

from ..core import dtypes as _dt
from ..core.tensor import Tensor
from ..nn.parameter import Parameter
from ._common import (
    MapLocation,
    PathLike,
    SerializationError,
    mmap_member,
    open_zip,
    read_member_into,
    restore_location,
    wrap_array,
)
from .pickle_globals import builtin_globals
from .torch_pickle import Global, RestrictedUnpickler

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
LEGACY_PREFIX = pickle.dumps(MAGIC_NUMBER, protocol=2)  # b"\x80\x02\x8a\x0a..."; what a legacy file starts with

# storage class name -> NumPy dtype of its elements
STORAGE_DTYPES: dict[str, Any] = {
    "FloatStorage": np.dtype(np.float32), "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16), "BFloat16Storage": _dt._BF16_NP,
    "LongStorage": np.dtype(np.int64), "IntStorage": np.dtype(np.int32), "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8), "ByteStorage": np.dtype(np.uint8), "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64), "ComplexDoubleStorage": np.dtype(np.complex128),
    "UntypedStorage": np.dtype(np.uint8),
}
# torch dtype name -> NumPy dtype (for _rebuild_tensor_v3 and bare dtype globals)
TORCH_DTYPES: dict[str, Any] = {
    "float32": np.dtype(np.float32), "float": np.dtype(np.float32), "float64": np.dtype(np.float64),
    "double": np.dtype(np.float64), "float16": np.dtype(np.float16), "half": np.dtype(np.float16),
    "bfloat16": _dt._BF16_NP, "int64": np.dtype(np.int64), "long": np.dtype(np.int64),
    "int32": np.dtype(np.int32), "int": np.dtype(np.int32), "int16": np.dtype(np.int16),
    "short": np.dtype(np.int16), "int8": np.dtype(np.int8), "uint8": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_), "uint16": np.dtype(np.uint16), "uint32": np.dtype(np.uint32),
    "uint64": np.dtype(np.uint64), "complex64": np.dtype(np.complex64), "complex128": np.dtype(np.complex128),
}
class _StorageType:
    """A whitelisted ``torch.<X>Storage`` class: only its element dtype matters here."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: Any) -> None:
        self.name, self.dtype = name, dtype


class _TorchDType:
    """A torch dtype global with no axonml equivalent (kept by name)."""

    __slots__ = ("name", "np")

    def __init__(self, name: str, np_dtype: Any) -> None:
        self.name, self.np = name, np_dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage:
    """A loaded storage: a flat array of its elements, and where it was saved from."""

    __slots__ = ("array", "location")

    def __init__(self, array: np.ndarray | None, location: str) -> None:
        self.array, self.location = array, location


class _Reader:
    """One load: the whitelist, the storages read so far, and where tensors go."""

    def __init__(self, map_location: MapLocation, what: str) -> None:
        self.map_location = map_location
        self.what = what
        self.dry = False  # legacy pass 1: parse only, storages are not read yet

    # ----- the tensor constructors the whitelist maps to -----------------------------------
    def rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       hooks: Any = None, metadata: Any = None, dtype: Any = None) -> Any:
        if self.dry:
            return None
        if not isinstance(storage, _Storage) or storage.array is None:
            raise SerializationError(f"{self.what}: a tensor without a storage")
        flat = storage.array
        if dtype is not None:  # _rebuild_tensor_v3: an untyped (byte) storage viewed as dtype
            np_dtype = dtype.np if isinstance(dtype, _dt.dtype | _TorchDType) else None
            if np_dtype is None:
                raise SerializationError(f"{self.what}: unknown tensor dtype {dtype!r}")
            usable = flat.size - flat.size % np_dtype.itemsize
            flat = flat[:usable].view(np_dtype)
        arr = _strided(flat, offset, size, stride, self.what)
        if arr.dtype not in _dt._FROM_NP:
            raise SerializationError(
                f"{self.what}: a tensor of dtype {arr.dtype} (shape {tuple(arr.shape)}), which axonml cannot hold"
            )
        t = restore_location(wrap_array(arr), storage.location, self.map_location)
        if requires_grad and _dt.is_float_np(arr.dtype):
            t.requires_grad_(True)
        return t

    def rebuild_tensor_v3(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                          hooks: Any, dtype: Any, metadata: Any = None) -> Any:
        return self.rebuild_tensor(storage, offset, size, stride, requires_grad, hooks, metadata, dtype=dtype)

    def rebuild_parameter(self, data: Any, requires_grad: Any = True, hooks: Any = None, state: Any = None) -> Any:
        if self.dry:
            return None
        if not isinstance(data, Tensor):
            raise SerializationError(f"{self.what}: a Parameter whose data is not a tensor")
        return Parameter(data, requires_grad=bool(requires_grad))

    def rebuild_from_type(self, func: Any, new_type: Any, args: Any, state: Any = None) -> Any:
        if not isinstance(func, Global) or func.call is None or not isinstance(args, tuple):
            raise SerializationError(f"{self.what}: unexpected _rebuild_from_type_v2 arguments")
        value = func.call(*args)
        if isinstance(new_type, Global) and new_type.name == "Parameter" and isinstance(value, Tensor):
            return Parameter(value, requires_grad=value.requires_grad)
        return value

    def unsupported(self, kind: str) -> Any:
        def refuse(*args: Any) -> Any:
            raise SerializationError(f"{self.what}: {kind} tensors are not supported by axonml")
        return refuse

    def allowed(self) -> dict[tuple[str, str], Any]:
        """The whitelist: (module, name) -> a safe constructor or a data value."""
        table = builtin_globals()
        for name, np_dtype in STORAGE_DTYPES.items():
            for module in ("torch", "torch.cuda", "torch.storage"):
                table[(module, name)] = _StorageType(name, np_dtype)
        for name, np_dtype in TORCH_DTYPES.items():
            ours = _dt._FROM_NP.get(np_dtype) if np_dtype is not None else None
            table[("torch", name)] = ours if ours is not None else _TorchDType(name, np_dtype)
        u = "torch._utils"
        table[(u, "_rebuild_tensor")] = Global(u, "_rebuild_tensor", self.rebuild_tensor)
        table[(u, "_rebuild_tensor_v2")] = Global(u, "_rebuild_tensor_v2", self.rebuild_tensor)
        table[(u, "_rebuild_tensor_v3")] = Global(u, "_rebuild_tensor_v3", self.rebuild_tensor_v3)
        table[(u, "_rebuild_parameter")] = Global(u, "_rebuild_parameter", self.rebuild_parameter)
        table[(u, "_rebuild_parameter_with_state")] = Global(u, "_rebuild_parameter_with_state",
                                                             self.rebuild_parameter)
        for name, kind in (("_rebuild_qtensor", "quantized"), ("_rebuild_sparse_tensor", "sparse"),
                           ("_rebuild_sparse_csr", "sparse"), ("_rebuild_nested_tensor", "nested"),
                           ("_rebuild_meta_tensor_no_storage", "meta"), ("_rebuild_wrapper_subclass", "subclass")):
            table[(u, name)] = Global(u, name, self.unsupported(kind))
        table[("torch._tensor", "_rebuild_from_type_v2")] = Global("torch._tensor", "_rebuild_from_type_v2",
                                                                   self.rebuild_from_type)
        for module, name in (("torch", "Tensor"), ("torch._tensor", "Tensor"),
                             ("torch.nn.parameter", "Parameter")):
            table[(module, name)] = Global(module, name)
        table[("torch", "Size")] = Global("torch", "Size", lambda dims=(): tuple(int(d) for d in dims))
        table[("torch", "device")] = Global("torch", "device", _torch_device)
        table[("torch.serialization", "_get_layout")] = Global("torch.serialization", "_get_layout", str)
        return table


def _torch_device(kind: Any, index: Any = None) -> str:
    if not isinstance(kind, str) or (index is not None and not isinstance(index, int)):
        raise SerializationError("unexpected torch.device arguments")
    return kind if index is None else f"{kind}:{index}"


def _strided(flat: np.ndarray, offset: Any, size: Any, stride: Any, what: str) -> np.ndarray:
    """The view ``(offset, size, stride)`` (in elements) of a flat storage, bounds-checked."""
    if not isinstance(offset, int) or not isinstance(size, tuple) or not isinstance(stride, tuple):
        raise SerializationError(f"{what}: bad tensor geometry (offset {offset!r}, size {size!r}, stride {stride!r})")
    if len(size) != len(stride) or not all(isinstance(v, int) and v >= 0 for v in (*size, *stride)) or offset < 0:
        raise SerializationError(f"{what}: bad tensor geometry (offset {offset}, size {size}, stride {stride})")
    if any(s == 0 for s in size):
        return np.empty(size, dtype=flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
        raise SerializationError(
            f"{what}: tensor of size {size}, stride {stride} at offset {offset} reaches past its storage "
            f"of {flat.size} elements (corrupt file?)"
        )
    item = flat.dtype.itemsize
    return np.lib.stride_tricks.as_strided(flat[offset:], shape=size, strides=tuple(s * item for s in stride))


def _describe(f: Any) -> str:
    return f"load_torch({f!s})" if isinstance(f, str) or hasattr(f, "__fspath__") else "load_torch(<file>)"


def load_torch(f: PathLike | IO[bytes], map_location: MapLocation = None, *, mmap: bool = False,
               encoding: str = "utf-8") -> Any:
    """Read a PyTorch checkpoint (zip or legacy format) into axonml tensors, without PyTorch.

    ``map_location`` as in :func:`axonml.load`. ``mmap=True`` (zip format, a
    path) maps storages copy-on-write instead of reading them. ``encoding``
    decodes Python 2 strings of old legacy files. Whole pickled ``nn.Module``
    objects, custom classes and anything that would run code are refused.
    """
    what = _describe(f)
    if hasattr(f, "read"):
        pos = f.tell()  # type: ignore[union-attr]
        head = f.read(len(LEGACY_PREFIX))  # type: ignore[union-attr]
        f.seek(pos)  # type: ignore[union-attr]
    else:
        with open(f, "rb") as fh:  # type: ignore[arg-type]
            head = fh.read(len(LEGACY_PREFIX))
    if head[:2] == b"PK":
        return _load_zip(f, map_location, mmap, encoding, what)
    if head == LEGACY_PREFIX:
        if hasattr(f, "read"):
            return _load_legacy(f, map_location, encoding, what)  # type: ignore[arg-type]
        with open(f, "rb") as fh:  # type: ignore[arg-type]
            return _load_legacy(fh, map_location, encoding, what)
    raise SerializationError(f"{what}: not a PyTorch checkpoint (neither the zip nor the legacy format)")


def _load_zip(f: Any, map_location: MapLocation, mmap: bool, encoding: str, what: str) -> Any:
    if mmap and hasattr(f, "read"):
        raise ValueError("load_torch(mmap=True) needs a path, not a file object")
    with open_zip(f, what) as zf:
        pkl = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
        if not pkl:
            raise SerializationError(f"{what}: a zip file without data.pkl (a TorchScript archive?)")
        prefix = min(pkl, key=len)[: -len("data.pkl")]
        big_endian = False
        if prefix + "byteorder" in zf.namelist():
            big_endian = zf.read(prefix + "byteorder").strip() == b"big"
        reader = _Reader(map_location, what)
        storages: dict[str, _Storage] = {}

        def persistent_load(pid: Any) -> _Storage:
            if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] not in ("storage", b"storage"):
                raise SerializationError(f"{what}: unexpected persistent id {pid!r}")
            _, stype, key, location, numel = pid
            if not isinstance(stype, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
                raise SerializationError(f"{what}: unexpected storage reference {pid!r}")
            if key in storages:
                return storages[key]
            dtype = stype.dtype
            if dtype is None:
                raise SerializationError(f"{what}: bfloat16 storages need the ml_dtypes package")
            try:
                info = zf.getinfo(f"{prefix}data/{key}")
            except KeyError:
                raise SerializationError(f"{what}: storage data/{key} is missing (truncated file?)") from None
            if info.file_size < numel * dtype.itemsize:
                raise SerializationError(
                    f"{what}: storage data/{key} holds {info.file_size} bytes, {numel} x {dtype} needs more"
                )
            if mmap:
                flat = mmap_member(f, zf, info, np.dtype(np.uint8), what)
            else:
                flat = read_member_into(zf, info, np.dtype(np.uint8), what)
            flat = flat[: numel * dtype.itemsize].view(dtype.newbyteorder(">") if big_endian else dtype)
            if big_endian:
                flat = flat.astype(dtype)
            loc = location.decode("ascii") if isinstance(location, bytes) else str(location)
            storages[key] = _Storage(flat, loc)
            return storages[key]

        try:
            data = zf.read(prefix + "data.pkl")
        except (zipfile.BadZipFile, OSError) as e:
            raise SerializationError(f"{what}: data.pkl is corrupt ({e})") from e
        return RestrictedUnpickler(data, reader.allowed(), persistent_load=persistent_load,
                                   encoding=encoding).load()


def _load_legacy(fh: IO[bytes], map_location: MapLocation, encoding: str, what: str) -> Any:
    reader = _Reader(map_location, what)
    allowed = reader.allowed()

    def plain() -> Any:
        return RestrictedUnpickler(fh, allowed, encoding=encoding).load()

    if plain() != MAGIC_NUMBER:
        raise SerializationError(f"{what}: bad magic number")
    if plain() != PROTOCOL_VERSION:
        raise SerializationError(f"{what}: unsupported legacy protocol version")
    sys_info = plain()
    little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
    roots: dict[str, tuple[Any, str, int]] = {}  # root key -> (dtype, location, numel)
    storages: dict[str, _Storage] = {}

    def persistent_load(pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise SerializationError(f"{what}: unexpected persistent id {pid!r}")
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module":
            raise SerializationError(
                f"{what}: the file holds a whole pickled nn.Module, which needs its code to load; "
                "save its state_dict() instead"
            )
        if kind != "storage" or len(pid) != 6:
            raise SerializationError(f"{what}: unexpected persistent id {pid!r}")
        _, stype, root_key, location, numel, view = pid
        if not isinstance(stype, _StorageType) or not isinstance(numel, int):
            raise SerializationError(f"{what}: unexpected storage reference {pid!r}")
        root_key = root_key.decode("ascii") if isinstance(root_key, bytes) else str(root_key)
        loc = location.decode("ascii") if isinstance(location, bytes) else str(location)
        roots.setdefault(root_key, (stype.dtype, loc, numel))
        if reader.dry:
            return _Storage(None, loc)
        root = storages[root_key]
        if view is None:
            return root
        view_key, offset, size = view
        view_key = view_key.decode("ascii") if isinstance(view_key, bytes) else str(view_key)
        if view_key not in storages:
            assert root.array is not None
            storages[view_key] = _Storage(root.array[offset:offset + size], loc)
        return storages[view_key]

    start = fh.tell()
    reader.dry = True  # pass 1: learn every storage's dtype, then read the storages that follow the pickle
    RestrictedUnpickler(fh, allowed, persistent_load=persistent_load, encoding=encoding).load()
    keys = plain()
    if not isinstance(keys, list):
        raise SerializationError(f"{what}: bad storage key list")
    order = "<" if little else ">"
    for key in keys:
        key = key.decode("ascii") if isinstance(key, bytes) else str(key)
        if key not in roots:
            raise SerializationError(f"{what}: storage {key} is not referenced by the pickle")
        dtype, loc, _numel = roots[key]
        raw = fh.read(8)
        if len(raw) != 8:
            raise SerializationError(f"{what}: truncated before storage {key}")
        count = struct.unpack(order + "q", raw)[0]
        if count < 0:
            raise SerializationError(f"{what}: storage {key} has a negative size")
        flat = np.empty(count, dtype=dtype.newbyteorder(order) if dtype.itemsize > 1 else dtype)
        got = fh.readinto(flat.view(np.uint8).data) if count else 0  # type: ignore[attr-defined]
        if got != flat.nbytes:
            raise SerializationError(f"{what}: storage {key} is truncated")
        storages[key] = _Storage(flat.astype(dtype, copy=False), loc)
    end = fh.tell()
    fh.seek(start)
    reader.dry = False  # pass 2: the same pickle, now building tensors over the storages
    result = RestrictedUnpickler(fh, allowed, persistent_load=persistent_load, encoding=encoding).load()
    fh.seek(end)
    return result
