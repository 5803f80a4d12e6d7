"""SafeTensors files through the ``safetensors`` library: whole files, single tensors, slices, modules.

SafeTensors is a JSON header (names, dtypes, shapes, byte ranges, a
``__metadata__`` dict of strings) followed by raw little-endian tensor bytes:
nothing in it can run code. :class:`safe_open` reads one tensor (or one
slice of it) at a time from a memory-mapped file, so a single weight of a
large checkpoint costs only its own bytes. Every axonml dtype is stored,
bfloat16 included (through ``ml_dtypes``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..backend import CPU, Device, as_device
from ..core import dtypes as _dt
from ..core.tensor import Tensor
from ..nn.module import Module
from ._common import (
    PathLike,
    SerializationError,
    atomic_path,
    c_order,
    check_axonml_dtype,
    host_array,
    restore_location,
)

_DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": _dt._BF16_NP,
           "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
           "U8": np.dtype("u1"), "BOOL": np.dtype("?")}


def _lib() -> Any:
    try:
        import safetensors
        import safetensors.numpy
    except ImportError as e:  # an optional extra
        raise ImportError("SafeTensors support needs the safetensors package: pip install 'axonml[io]'") from e
    return safetensors


def _arrays(tensors: Mapping[str, Any], what: str) -> dict[str, np.ndarray]:
    if not isinstance(tensors, Mapping):
        raise TypeError(f"{what}: expected a mapping of names to tensors, got {type(tensors).__name__}")
    out: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"{what}: tensor names must be strings, got {name!r}")
        if isinstance(value, Tensor):
            arr = host_array(value)
        elif isinstance(value, np.ndarray):
            arr = c_order(value)
        else:
            raise TypeError(f"{what}: {name!r} is a {type(value).__name__}, not a Tensor or NumPy array")
        check_axonml_dtype(arr, f"{what}: {name!r}")
        out[name] = arr
    return out


def _metadata(metadata: Mapping[str, Any] | None, what: str) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError(f"{what}: SafeTensors metadata maps strings to strings (json.dumps other values)")
    return dict(metadata)


def _to_tensor(arr: np.ndarray, device: Any, what: str) -> Tensor:
    if arr.dtype not in _dt._FROM_NP:
        raise SerializationError(f"{what}: dtype {arr.dtype} has no axonml equivalent")
    if not arr.flags.writeable:
        arr = arr.copy()
    return restore_location(Tensor._make(arr, CPU), "cpu", device)


def save(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> bytes:
    """The SafeTensors bytes of ``{name: tensor}`` (tensors or NumPy arrays), with string ``metadata``."""
    lib = _lib()
    return bytes(lib.numpy.save(_arrays(tensors, "safetensors.save"), metadata=_metadata(metadata, "save")))


def load(data: bytes, device: Any = "cpu") -> dict[str, Tensor]:
    """``{name: tensor}`` from SafeTensors bytes."""
    lib = _lib()
    try:
        views = lib.deserialize(bytes(data))
    except Exception as e:  # the Rust core raises its own SafetensorError
        raise SerializationError(f"safetensors.load: invalid SafeTensors data ({e})") from e
    out = {}
    for name, view in views:  # safetensors.numpy.load knows no BF16, so the dtype codes are mapped here
        np_dtype = _DTYPES.get(view["dtype"])
        if np_dtype is None:
            raise SerializationError(f"safetensors.load: {name!r} has dtype {view['dtype']}, which axonml cannot hold")
        arr = np.frombuffer(view["data"], dtype=np_dtype).reshape(tuple(view["shape"]))
        out[name] = _to_tensor(arr, device, "safetensors.load")
    return out


def save_file(tensors: Mapping[str, Any], filename: PathLike, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``{name: tensor}`` to ``filename`` atomically (temp file, fsync, rename)."""
    lib = _lib()
    arrays, meta = _arrays(tensors, "save_file"), _metadata(metadata, "save_file")
    with atomic_path(filename) as tmp:  # the library writes the file itself: no second copy in memory
        lib.numpy.save_file(arrays, str(tmp), metadata=meta)


def load_file(filename: PathLike, device: Any = "cpu") -> dict[str, Tensor]:
    """Every tensor of a SafeTensors file, as ``{name: tensor}`` on ``device``."""
    with safe_open(filename, device=device) as f:
        return {k: f.get_tensor(k) for k in f}


def load_metadata(filename: PathLike) -> dict[str, str]:
    """The ``__metadata__`` strings of a SafeTensors file (no tensor is read)."""
    with safe_open(filename) as f:
        return f.metadata()


class _Slice:
    """``f.get_slice(name)``: ``shape``/``dtype`` without reading, and ``[...]`` reading only that part."""

    def __init__(self, inner: Any, name: str, device: Any, what: str) -> None:
        self._inner, self.name, self._device, self._what = inner, name, device, what

    def get_shape(self) -> list[int]:
        return list(self._inner.get_shape())

    def get_dtype(self) -> str:
        """The SafeTensors dtype code ("F32", "BF16", ...)."""
        return str(self._inner.get_dtype())

    def __getitem__(self, index: Any) -> Tensor:
        try:
            arr = np.asarray(self._inner[index])
        except Exception as e:
            raise SerializationError(f"{self._what}: cannot read {self.name}[{index!r}] ({e})") from e
        return _to_tensor(arr, self._device, self._what)


class safe_open:  # noqa: N801 - the safetensors library's name
    """Open a SafeTensors file lazily: ``with axonml.io.safe_open(path) as f: f.get_tensor("w")``.

    ``keys()``, ``metadata()``, ``get_tensor(name)`` (one tensor read from the
    memory-mapped file), ``get_slice(name)[rows]`` (part of one), ``__iter__``,
    ``__contains__`` and ``__len__``. ``device``: where returned tensors go.
    ``framework`` is accepted for the library's signature (``"np"``,
    ``"numpy"`` or ``"axonml"``: tensors are axonml tensors either way).
    """

    def __init__(self, filename: PathLike, framework: str = "axonml", device: str | Device = "cpu") -> None:
        if framework not in ("axonml", "np", "numpy", "pt"):
            raise ValueError(f"safe_open: framework must be 'axonml' or 'np', got {framework!r}")
        lib = _lib()
        self._what = f"safe_open({os.fspath(filename)})"
        self._device = as_device(device)
        try:
            self._f = lib.safe_open(os.fspath(filename), framework="np")
        except FileNotFoundError:
            raise
        except Exception as e:
            if not os.path.exists(filename):
                raise FileNotFoundError(f"{self._what}: no such file") from e
            raise SerializationError(f"{self._what}: not a valid SafeTensors file ({e})") from e
        self._keys: list[str] = list(self._f.keys())

    def __enter__(self) -> safe_open:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release the file (also done by leaving the ``with`` block)."""
        inner = getattr(self._f, "__exit__", None)
        if inner is not None:
            inner(None, None, None)

    def keys(self) -> list[str]:
        """The tensor names, in file order."""
        return list(self._keys)

    def metadata(self) -> dict[str, str]:
        """The file's ``__metadata__`` (empty when it has none)."""
        return dict(self._f.metadata() or {})

    def _check(self, name: str) -> None:
        if name not in self._keys:
            raise KeyError(f"{self._what}: no tensor named {name!r} (the file has {len(self._keys)})")

    def get_tensor(self, name: str) -> Tensor:
        """One tensor, read from the file on demand."""
        self._check(name)
        try:
            arr = self._f.get_tensor(name)
        except Exception as e:
            raise SerializationError(f"{self._what}: cannot read {name!r} ({e})") from e
        return _to_tensor(arr, self._device, self._what)

    def get_slice(self, name: str) -> _Slice:
        """A lazy handle on one tensor: index it to read only those elements."""
        self._check(name)
        return _Slice(self._f.get_slice(name), name, self._device, self._what)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __contains__(self, name: object) -> bool:
        return name in self._keys

    def __len__(self) -> int:
        return len(self._keys)


def save_model(model: Module, filename: PathLike, metadata: Mapping[str, str] | None = None) -> None:
    """Write a module's ``state_dict()`` (parameters and persistent buffers) as SafeTensors.

    The metadata gets ``{"format": "pt"}`` (the tensors use PyTorch's layout
    and names, so Hugging Face loaders accept the file) unless given otherwise.
    """
    if not isinstance(model, Module):
        raise TypeError(f"save_model expects an nn.Module, got {type(model).__name__}")
    tensors = {k: v for k, v in model.state_dict().items() if isinstance(v, Tensor)}
    save_file(tensors, filename, {"format": "pt", **(metadata or {})})


def load_model(model: Module, filename: PathLike, strict: bool = True, device: Any = None) -> Any:
    """Load a SafeTensors file into ``model`` (``load_state_dict``); returns its missing/unexpected keys.

    Tensors are copied into the module's own parameters and buffers (on their
    devices); ``device`` only says where the file's tensors are staged.
    """
    if not isinstance(model, Module):
        raise TypeError(f"load_model expects an nn.Module, got {type(model).__name__}")
    state = load_file(filename, device=device or "cpu")
    return model.load_state_dict(state, strict=strict)
