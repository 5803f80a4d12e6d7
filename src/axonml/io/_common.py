"""What every axonml.io format shares: its errors, atomic writes, host arrays, device mapping.

An atomic write goes to a temporary file in the target's own folder (same file
system, so the final ``os.replace`` is atomic), is flushed and fsynced, then
renamed over the target, and the folder is fsynced so the rename itself
survives a crash. A writer killed at any point leaves either the old file or
the new one, plus at worst a stray ``.<name>.<pid>.<random>.tmp`` file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import struct
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..backend import CPU, Device, as_device
from ..backend.helpers import move_array
from ..core import dtypes as _dt
from ..core.tensor import Tensor
from ..errors import AxonmlError, DeviceError

PathLike = str | os.PathLike[str]
TMP_SUFFIX = ".tmp"


class SerializationError(AxonmlError, ValueError):
    """A file that is not in the expected format, is truncated, or holds something a format cannot store."""


class UnsafePickleError(SerializationError):
    """A pickle that asks for a global (a callable or class) outside the reader's whitelist."""


class IntegrityError(SerializationError):
    """A file whose content does not match the checksum recorded for it (tampered or corrupt)."""


# ----- atomic writes ---------------------------------------------------------------------------
def temp_path_for(path: Path) -> Path:
    """A fresh temporary name beside ``path``: hidden, with the writer's pid (to spot stale ones)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: PathLike) -> Iterator[IO[bytes]]:
    """``with atomic_write(path) as f: f.write(...)``: ``path`` appears complete or not at all."""
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {target}: folder {folder} does not exist")
    tmp = temp_path_for(target)
    # os.open with mode 0o666 honours the umask, as a plain open() would (mkstemp would force 0600)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Like :func:`atomic_write`, for writers that take a file name: write the yielded temp path."""
    target = Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(f"cannot write {target}: folder {target.parent} does not exist")
    tmp = temp_path_for(target)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


@contextlib.contextmanager
def open_for_write(f: PathLike | IO[bytes]) -> Iterator[IO[bytes]]:
    """A path is written atomically; an open binary file object is written as is."""
    if isinstance(f, str | os.PathLike):
        with atomic_write(f) as out:
            yield out
    else:
        yield f


def is_stale_temp(path: Path) -> bool:
    """Whether ``path`` is a temporary file of :func:`atomic_write` whose writer process is gone."""
    parts = path.name.split(".")
    if not (path.name.startswith(".") and path.name.endswith(TMP_SUFFIX) and len(parts) >= 4):
        return False
    try:
        pid = int(parts[-3])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):
        return False
    return False


# ----- arrays and tensors ----------------------------------------------------------------------
def c_order(arr: Any) -> np.ndarray:
    """``arr`` as a C-contiguous NumPy array, copied only if needed (0-d stays 0-d, unlike ascontiguousarray)."""
    arr = np.asarray(arr)
    return arr if arr.flags.c_contiguous else np.array(arr, order="C")


def host_array(t: Tensor) -> np.ndarray:
    """A tensor's values as a C-contiguous little-endian NumPy array (copied from a GPU)."""
    arr = t._host() if t._device is not CPU else t._data
    arr = c_order(arr)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr


def check_axonml_dtype(arr: np.ndarray, what: str) -> None:
    """Raise a clear error when ``arr``'s dtype has no axonml equivalent."""
    if arr.dtype not in _dt._FROM_NP:
        raise SerializationError(f"{what}: dtype {arr.dtype} has no axonml equivalent")


MapLocation = None | str | Device | dict[str, str] | Callable[[Tensor, str], Any]


def restore_location(t: Tensor, saved: str, map_location: MapLocation) -> Tensor:
    """Move a tensor loaded on the CPU to where ``map_location`` says (PyTorch's rules).

    ``None``: the device it was saved from; a device (or its name): that device;
    a dict: ``{saved_name: new_name}``; a callable ``f(tensor, saved_name)``
    returning a tensor (or ``None`` for the default).
    """
    if callable(map_location) and not isinstance(map_location, Device | str | dict):
        out = map_location(t, saved)
        if out is not None:
            if not isinstance(out, Tensor):
                raise TypeError(f"map_location returned {type(out).__name__}, expected a Tensor or None")
            return out
        target: Any = saved
    elif map_location is None:
        target = saved
    elif isinstance(map_location, dict):
        target = map_location.get(saved, saved)
    else:
        target = map_location
    try:
        dev = as_device(target)
        if dev is CPU:
            return t
        moved = Tensor._make(move_array(t._data, dev), dev)
    except DeviceError as e:
        raise DeviceError(
            f"cannot restore a tensor saved on {saved!r} to {target!s} ({e}); "
            "pass map_location='cpu' to load it on the CPU"
        ) from e
    moved._requires_grad = t._requires_grad
    return moved


def wrap_array(arr: np.ndarray) -> Tensor:
    """A CPU tensor over ``arr`` (no copy)."""
    return Tensor._make(arr, CPU)


# ----- zip helpers -----------------------------------------------------------------------------
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # the 30-byte local file header of a zip member
_PAD_ID = 0x4158  # "XA": an extra-field id of our own, holding zero bytes that align member data


def aligned_zipinfo(zf: zipfile.ZipFile, name: str, size: int, align: int = 64) -> zipfile.ZipInfo:
    """A stored (uncompressed) member whose data will start at a multiple of ``align`` in the file.

    Aligned raw data can be memory-mapped straight into an array. Alignment
    needs a seekable output; elsewhere the member is written unaligned.
    """
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed date: same content, same bytes
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    try:
        offset = zf.fp.tell()  # type: ignore[union-attr]
    except (AttributeError, OSError):
        return info
    header = _LOCAL_HEADER.size + len(name.encode("utf-8")) + (20 if size > zipfile.ZIP64_LIMIT else 0)
    pad = (-(offset + header + 4)) % align
    info.extra = struct.pack("<HH", _PAD_ID, pad) + bytes(pad)
    return info


def member_data_offset(path: PathLike, info: zipfile.ZipInfo) -> int:
    """Where a stored member's raw bytes start in the file (for memory mapping)."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        raw = f.read(_LOCAL_HEADER.size)
    if len(raw) != _LOCAL_HEADER.size or raw[:4] != b"PK\x03\x04":
        raise SerializationError(f"{path}: bad local header for zip member {info.filename!r}")
    fields = _LOCAL_HEADER.unpack(raw)
    name_len, extra_len = fields[-2], fields[-1]
    return int(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)


def read_member_into(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dtype: np.dtype, what: str) -> np.ndarray:
    """A zip member's bytes as a fresh, writable 1-D array of ``dtype`` (the zip's CRC is checked)."""
    if info.file_size % dtype.itemsize:
        raise SerializationError(f"{what}: {info.file_size} bytes is not a whole number of {dtype} items")
    out = np.empty(info.file_size // dtype.itemsize, dtype=dtype)
    view = out.view(np.uint8).data
    try:
        with zf.open(info) as src:
            got = 0
            while got < info.file_size:
                n = src.readinto(view[got:])  # type: ignore[attr-defined]
                if not n:
                    break
                got += n
            if got != info.file_size:
                raise SerializationError(f"{what}: member {info.filename!r} is truncated")
            src.read(1)  # reaching the end makes zipfile check the CRC-32
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise SerializationError(f"{what}: member {info.filename!r} is corrupt ({e})") from e
    return out


def mmap_member(path: PathLike, zf: zipfile.ZipFile, info: zipfile.ZipInfo, dtype: np.dtype, what: str) -> np.ndarray:
    """A stored zip member mapped copy-on-write as a 1-D array of ``dtype`` (nothing read until used)."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise SerializationError(f"{what}: member {info.filename!r} is compressed and cannot be memory-mapped")
    if info.file_size % dtype.itemsize:
        raise SerializationError(f"{what}: {info.file_size} bytes is not a whole number of {dtype} items")
    n = info.file_size // dtype.itemsize
    if n == 0:
        return np.empty(0, dtype=dtype)
    offset = member_data_offset(path, info)
    return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=(n,))


def open_zip(path: PathLike | IO[bytes], what: str) -> zipfile.ZipFile:
    """Open a zip for reading, turning zipfile's errors into one clear message."""
    try:
        return zipfile.ZipFile(path, "r")
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise SerializationError(f"{what}: not a valid zip archive (truncated or corrupt?): {e}") from e
