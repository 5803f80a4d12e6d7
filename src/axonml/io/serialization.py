"""``axonml.save`` / ``axonml.load``: tensors and nested containers, safely, with no pickle.

The file is an uncompressed zip. ``axonml.json`` holds the object's structure
as tagged JSON and a table of tensors (dtype, shape, device, kind); each
tensor's bytes (C order, little-endian) are the member ``data/<i>``, aligned
to 64 bytes so that ``load(..., mmap=True)`` can map them without reading.
Loading never runs code from the file: the JSON can only name the value types
below, so a checkpoint from a stranger is as safe to open as a picture.

Stored values: ``Tensor`` (and ``nn.Parameter``), NumPy arrays and scalars,
``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``,
axonml dtypes and devices, and ``dict`` (any hashable stored keys, e.g. the
int keys of an optimizer's state), ``OrderedDict`` (with attributes such as a
state dict's ``_metadata``), ``list``, ``tuple``, ``set``. A tensor appearing
twice comes back as one object; distinct tensors sharing memory come back
as separate copies.
"""

from __future__ import annotations

import base64
import importlib.metadata
import io
import json
import math
import sys
import zipfile
from collections import OrderedDict
from typing import IO, Any

import numpy as np

from ..backend import Device
from ..core import dtypes as _dt
from ..core.tensor import Tensor
from ..nn.parameter import Parameter
from ._common import (
    MapLocation,
    PathLike,
    SerializationError,
    aligned_zipinfo,
    c_order,
    host_array,
    mmap_member,
    open_for_write,
    open_zip,
    read_member_into,
    restore_location,
    wrap_array,
)

FORMAT = "axonml.save"
FORMAT_VERSION = 1
HEADER = "axonml.json"
_TAGS = frozenset(
    {"$tensor", "$ndarray", "$npscalar", "$tuple", "$items", "$odict", "$float", "$bytes", "$complex",
     "$set", "$frozenset", "$dtype", "$device"}
)


def axonml_version() -> str:
    """The running axonml's version (read without importing the root package, which sits above io)."""
    root = sys.modules.get("axonml")
    version = getattr(root, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version("axonml")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
    return str(version)


# ----- encoding ----------------------------------------------------------------------------------
class _Encoder:
    """Turns an object into tagged JSON plus a list of arrays; one instance per save."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.arrays: list[np.ndarray] = []
        self._seen: dict[int, int] = {}  # id(tensor) -> table index (keeps shared tensors shared)
        self._keep: list[Any] = []  # keeps encoded objects alive so their ids stay unique

    def _add(self, arr: np.ndarray, entry: dict[str, Any]) -> int:
        if arr.dtype.kind not in "biufc" and arr.dtype != _dt._BF16_NP:
            raise SerializationError(f"cannot store an array of dtype {arr.dtype} (only numeric and bool)")
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        entry["dtype"] = arr.dtype.name
        entry["shape"] = list(arr.shape)
        self.entries.append(entry)
        self.arrays.append(c_order(arr))
        return len(self.entries) - 1

    def encode(self, obj: Any, where: str) -> Any:
        if obj is None or type(obj) in (bool, int, str):
            return obj
        if type(obj) is float:
            return obj if math.isfinite(obj) else {"$float": repr(obj)}
        if isinstance(obj, Tensor):
            idx = self._seen.get(id(obj))
            if idx is None:
                kind = "parameter" if isinstance(obj, Parameter) else "tensor"
                entry = {"kind": kind, "device": str(obj._device), "requires_grad": bool(obj._requires_grad)}
                idx = self._add(host_array(obj), entry)
                self._seen[id(obj)] = idx
                self._keep.append(obj)
            return {"$tensor": idx}
        if isinstance(obj, np.ndarray):
            return {"$ndarray": self._add(obj, {"kind": "ndarray"})}
        if isinstance(obj, np.generic):
            return {"$npscalar": self._add(np.asarray(obj), {"kind": "npscalar"})}
        if isinstance(obj, str):  # str and int subclasses (enums) are stored as plain values
            return str(obj)
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return self.encode(float(obj), where)
        if isinstance(obj, complex):
            return {"$complex": [self.encode(obj.real, where), self.encode(obj.imag, where)]}
        if isinstance(obj, bytes | bytearray | memoryview):
            return {"$bytes": base64.b64encode(bytes(obj)).decode("ascii")}
        if isinstance(obj, _dt.dtype):
            return {"$dtype": obj.name}
        if isinstance(obj, Device):
            return {"$device": str(obj)}
        if isinstance(obj, tuple):
            return {"$tuple": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if isinstance(obj, set | frozenset):
            tag = "$frozenset" if isinstance(obj, frozenset) else "$set"
            return {tag: [self.encode(v, f"{where}{{...}}") for v in obj]}
        if isinstance(obj, OrderedDict):
            out: dict[str, Any] = {"$odict": self._items(obj, where)}
            attrs = getattr(obj, "__dict__", None)
            if attrs:
                out["attrs"] = self._plain_dict(attrs, f"{where}.__dict__")
            return out
        if isinstance(obj, dict):
            if all(isinstance(k, str) for k in obj):
                return self._plain_dict(obj, where)
            return {"$items": self._items(obj, where)}
        raise SerializationError(
            f"axonml.save cannot store a {type(obj).__module__}.{type(obj).__qualname__} (at {where}): "
            "the safe format holds tensors, arrays, numbers, strings, bytes, None, dtypes, devices and "
            "dicts/lists/tuples/sets of those (save a model's state_dict(), not the model)"
        )

    def _plain_dict(self, d: dict[str, Any], where: str) -> dict[str, Any]:
        # a user key that starts with "$" gets one more, so it can never read as a tag
        return {("$" + k if k.startswith("$") else k): self.encode(v, f"{where}[{k!r}]") for k, v in d.items()}

    def _items(self, d: dict[Any, Any], where: str) -> list[list[Any]]:
        return [[self.encode(k, f"{where} key"), self.encode(v, f"{where}[{k!r}]")] for k, v in d.items()]


class _Decoder:
    """Rebuilds the object from tagged JSON and a function giving each table entry's value."""

    def __init__(self, values: list[Any]) -> None:
        self.values = values

    def decode(self, x: Any) -> Any:
        if x is None or isinstance(x, bool | int | float | str):
            return x
        if isinstance(x, list):
            return [self.decode(v) for v in x]
        if not isinstance(x, dict):
            raise SerializationError(f"malformed structure: unexpected JSON value {x!r}")
        tag = next((k for k in x if k in _TAGS), None)
        if tag is None:
            return {(k[1:] if k.startswith("$") else k): self.decode(v) for k, v in x.items()}
        v = x[tag]
        if tag in ("$tensor", "$ndarray", "$npscalar"):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < len(self.values):
                raise SerializationError(f"malformed structure: bad tensor index {v!r}")
            return self.values[v]
        if tag == "$tuple":
            return tuple(self.decode(e) for e in v)
        if tag == "$items":
            return {self._key(k): self.decode(e) for k, e in v}
        if tag == "$odict":
            od: OrderedDict[Any, Any] = OrderedDict((self._key(k), self.decode(e)) for k, e in v)
            for name, val in self.decode(x.get("attrs", {})).items():
                if not isinstance(name, str) or name.startswith("__"):
                    raise SerializationError(f"malformed structure: bad OrderedDict attribute {name!r}")
                setattr(od, name, val)
            return od
        if tag == "$float":
            if v not in ("nan", "inf", "-inf"):
                raise SerializationError(f"malformed structure: bad float {v!r}")
            return float(v)
        if tag == "$bytes":
            return base64.b64decode(v)
        if tag == "$complex":
            return complex(self.decode(v[0]), self.decode(v[1]))
        if tag == "$set":
            return {self._key(e) for e in v}
        if tag == "$frozenset":
            return frozenset(self._key(e) for e in v)
        if tag == "$dtype":
            return _dt.as_dtype(v)
        return Device(v)  # "$device"

    def _key(self, k: Any) -> Any:
        key = self.decode(k)
        if isinstance(key, list | dict | set):
            raise SerializationError(f"malformed structure: unhashable key {key!r}")
        return key


# ----- save ----------------------------------------------------------------------------------------
def save(obj: Any, f: PathLike | IO[bytes], *, metadata: dict[str, Any] | None = None) -> None:
    """Save ``obj`` (a tensor, a state dict, an optimizer state, nested containers) to ``f``.

    ``f`` is a path (written atomically: a temp file, fsync, rename) or a
    binary file object. ``metadata``: JSON-able facts readable with
    :func:`read_metadata` without loading the tensors. Nothing is pickled: see
    the module docstring for what can be stored.
    """
    enc = _Encoder()
    structure = enc.encode(obj, "obj")
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "axonml_version": axonml_version(),
        "byteorder": "little",
        "metadata": metadata or {},
        "tensors": enc.entries,
        "object": structure,
    }
    try:
        text = json.dumps(header, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise SerializationError(f"axonml.save: metadata must be JSON (finite numbers, strings, lists): {e}") from e
    with open_for_write(f) as out, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr(aligned_zipinfo(zf, HEADER, len(text)), text)
        for i, arr in enumerate(enc.arrays):
            name = f"data/{i}"
            zf.writestr(aligned_zipinfo(zf, name, arr.nbytes), arr.reshape(-1).view(np.uint8).data)


def dumps(obj: Any, *, metadata: dict[str, Any] | None = None) -> bytes:
    """:func:`save` into bytes."""
    buf = io.BytesIO()
    save(obj, buf, metadata=metadata)
    return buf.getvalue()


# ----- load ----------------------------------------------------------------------------------------
def _read_header(zf: zipfile.ZipFile, what: str) -> dict[str, Any]:
    try:
        raw = zf.read(HEADER)
    except KeyError:
        raise SerializationError(f"{what}: not an axonml file (no {HEADER})") from None
    except (zipfile.BadZipFile, OSError) as e:
        raise SerializationError(f"{what}: corrupt header ({e})") from e
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise SerializationError(f"{what}: header is not valid JSON ({e})") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SerializationError(f"{what}: not an axonml.save file (format {header.get('format')!r})")
    if not isinstance(header.get("format_version"), int) or header["format_version"] > FORMAT_VERSION:
        raise SerializationError(
            f"{what}: format version {header.get('format_version')!r} is newer than this axonml reads "
            f"({FORMAT_VERSION}); upgrade axonml"
        )
    return header


def _entry_dtype(entry: dict[str, Any], what: str) -> np.dtype:
    name = entry.get("dtype")
    if name == "bfloat16":
        return _dt.bfloat16.np
    try:
        d = np.dtype(name)
    except TypeError:
        raise SerializationError(f"{what}: unknown dtype {name!r}") from None
    if d.kind not in "biufc":
        raise SerializationError(f"{what}: dtype {name!r} is not a numeric type")
    return d.newbyteorder("<")


def _load_zip(zf: zipfile.ZipFile, path: Any, map_location: MapLocation, mmap: bool, what: str) -> Any:
    header = _read_header(zf, what)
    entries = header.get("tensors")
    if not isinstance(entries, list):
        raise SerializationError(f"{what}: header has no tensor table")
    values: list[Any] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise SerializationError(f"{what}: bad tensor table entry {i}")
        dtype = _entry_dtype(entry, what)
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise SerializationError(f"{what}: tensor {i} has a bad shape {shape!r}")
        try:
            info = zf.getinfo(f"data/{i}")
        except KeyError:
            raise SerializationError(f"{what}: member data/{i} is missing (truncated file?)") from None
        count = math.prod(shape)
        if info.file_size != count * dtype.itemsize:
            raise SerializationError(
                f"{what}: data/{i} holds {info.file_size} bytes; shape {shape} of {dtype} needs "
                f"{count * dtype.itemsize}"
            )
        if mmap:
            flat = mmap_member(path, zf, info, dtype, what)
        else:
            flat = read_member_into(zf, info, dtype, what)
        arr = flat.reshape(tuple(shape))
        if dtype.byteorder == "<" and not dtype.isnative:  # a big-endian host
            arr = arr.astype(dtype.newbyteorder("="))
        kind = entry.get("kind", "tensor")
        if kind == "ndarray":
            values.append(arr)
        elif kind == "npscalar":
            values.append(arr[()])
        elif kind in ("tensor", "parameter"):
            t = restore_location(wrap_array(arr), str(entry.get("device", "cpu")), map_location)
            if kind == "parameter":
                t = Parameter(t, requires_grad=bool(entry.get("requires_grad", True)))
            elif entry.get("requires_grad"):
                t.requires_grad_(True)
            values.append(t)
        else:
            raise SerializationError(f"{what}: tensor {i} has an unknown kind {kind!r}")
    try:
        return _Decoder(values).decode(header.get("object"))
    except (RecursionError, TypeError, ValueError, IndexError, KeyError) as e:
        if isinstance(e, SerializationError):
            raise
        raise SerializationError(f"{what}: malformed structure ({type(e).__name__}: {e})") from e


def _sniff(head: bytes) -> str:
    """The format of a file from its first bytes: 'zip', 'torch-legacy', 'safetensors', 'pickle' or ''."""
    from .torch_format import LEGACY_PREFIX

    if head[:4] == b"PK\x03\x04" or head[:4] == b"PK\x05\x06":
        return "zip"
    if head.startswith(LEGACY_PREFIX):
        return "torch-legacy"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 30):
        return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    return ""


def load(f: PathLike | IO[bytes], map_location: MapLocation = None, *, mmap: bool = False,
         weights_only: bool | None = None) -> Any:
    """Load what :func:`save` wrote; PyTorch ``.pt/.pth/.bin`` and ``.safetensors`` files are read too.

    ``map_location``: where tensors go, as ``torch.load`` (``None``: the device
    they were saved from; ``'cpu'``; a dict; a callable ``f(tensor, location)``).
    ``mmap=True`` maps tensor data from the file instead of reading it (a path
    only; the arrays are copy-on-write). A PyTorch file is read with a restricted
    unpickler that runs no code; a SafeTensors file loads as a dict of tensors.
    Anything else raises :class:`SerializationError`. ``weights_only`` is
    accepted for ``torch.load`` compatibility: loading is always weights-only,
    so ``weights_only=False`` is refused.
    """
    if weights_only is False:
        raise ValueError("axonml.load never unpickles arbitrary objects: weights_only=False is not supported")
    what = f"load({f!s})" if isinstance(f, str | bytes) or hasattr(f, "__fspath__") else "load(<file>)"
    if hasattr(f, "read"):
        pos = f.tell()  # type: ignore[union-attr]
        head = f.read(64)  # type: ignore[union-attr]
        f.seek(pos)  # type: ignore[union-attr]
        if mmap:
            raise ValueError("load(mmap=True) needs a path, not a file object")
    else:
        with open(f, "rb") as fh:  # type: ignore[arg-type]
            head = fh.read(64)
    kind = _sniff(head)
    if kind == "zip":
        with open_zip(f, what) as zf:
            names = zf.namelist()
            if HEADER in names:
                return _load_zip(zf, f, map_location, mmap, what)
            if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
                from .torch_format import load_torch

                return load_torch(f, map_location=map_location, mmap=mmap)
            if "manifest.json" in names:
                raise SerializationError(f"{what}: this is an axonml model archive; use axonml.io.ModelArchive.load")
        raise SerializationError(f"{what}: a zip file, but neither an axonml file nor a PyTorch checkpoint")
    if kind == "torch-legacy":
        from .torch_format import load_torch

        return load_torch(f, map_location=map_location)
    if kind == "safetensors":
        from .safetensors_io import load as st_load
        from .safetensors_io import load_file

        out = st_load(f.read()) if hasattr(f, "read") else load_file(f)  # type: ignore[union-attr,arg-type]
        return {k: restore_location(v, "cpu", map_location) for k, v in out.items()}
    if kind == "pickle":
        raise SerializationError(
            f"{what}: a plain Python pickle; axonml does not unpickle arbitrary objects (it could run code)"
        )
    raise SerializationError(f"{what}: not an axonml file (nor a PyTorch checkpoint or a SafeTensors file)")


def loads(data: bytes, map_location: MapLocation = None) -> Any:
    """:func:`load` from bytes that :func:`dumps` returned."""
    return load(io.BytesIO(data), map_location=map_location)


def read_metadata(f: PathLike | IO[bytes]) -> dict[str, Any]:
    """The ``metadata`` given to :func:`save`, read from the header alone (no tensor is read)."""
    what = f"read_metadata({f!s})"
    with open_zip(f, what) as zf:
        meta = _read_header(zf, what).get("metadata", {})
    if not isinstance(meta, dict):
        raise SerializationError(f"{what}: metadata is not a JSON object")
    return meta


def verify(f: PathLike | IO[bytes]) -> None:
    """Check a file fully (header, every member's size and CRC-32); raise :class:`SerializationError` if not."""
    what = f"verify({f!s})"
    with open_zip(f, what) as zf:
        header = _read_header(zf, what)
        for i, entry in enumerate(header.get("tensors", [])):
            dtype = _entry_dtype(entry, what)
            try:
                info = zf.getinfo(f"data/{i}")
            except KeyError:
                raise SerializationError(f"{what}: member data/{i} is missing") from None
            if info.file_size != math.prod(entry.get("shape", [])) * dtype.itemsize:
                raise SerializationError(f"{what}: data/{i} has the wrong size")
        bad = zf.testzip()
    if bad is not None:
        raise SerializationError(f"{what}: member {bad!r} fails its CRC-32 check (corrupt file)")


__all__ = ["save", "load", "dumps", "loads", "read_metadata", "verify"]
