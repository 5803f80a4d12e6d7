"""The IDX format of MNIST and its kin, gzipped or not, read straight into one NumPy array.

An IDX file is 4 magic bytes (two zeros, a type byte, the number of dimensions),
one big-endian uint32 per dimension, then the values in C order, big-endian.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ._base import DatasetFileError

__all__ = ["read_idx"]

# IDX type byte -> NumPy dtype of the stored (big-endian) values
_IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_into(f: io.BufferedIOBase, buf: memoryview) -> int:
    """Fill ``buf`` from ``f`` as far as the file goes; the number of bytes read."""
    got = 0
    while got < len(buf):
        n = f.readinto(buf[got:])
        if not n:
            break
        got += n
    return got


def _parse(f: io.BufferedIOBase, path: Path, raw_size: int | None) -> np.ndarray:
    head = f.read(4)
    if len(head) < 4 or head[0] or head[1] or head[2] not in _IDX_TYPES or head[3] == 0:
        raise DatasetFileError(f"{path} is not an IDX file (it starts with bytes {head.hex() or 'nothing'})")
    ndim = head[3]
    dims_bytes = f.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise DatasetFileError(f"{path} is truncated: its header ends after {4 + len(dims_bytes)} bytes")
    shape = struct.unpack(f">{ndim}I", dims_bytes)
    dtype = np.dtype(_IDX_TYPES[head[2]])
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if raw_size is not None and raw_size - 4 - 4 * ndim != need:
        have = raw_size - 4 - 4 * ndim
        kind = "truncated" if have < need else "longer than its header says (corrupt)"
        raise DatasetFileError(f"{path} is {kind}: the header gives shape {shape} = {need} bytes of data, "
                               f"the file holds {have}")
    try:
        out = np.empty(shape, dtype)
    except (MemoryError, ValueError) as e:
        raise DatasetFileError(f"{path} has an implausible header shape {shape} (corrupt?)") from e
    got = _read_into(f, out.reshape(-1).view(np.uint8).data)
    if got < need:
        raise DatasetFileError(f"{path} is truncated: the header gives shape {shape} = {need} bytes of data, "
                               f"the file holds {got}")
    if f.read(1):
        raise DatasetFileError(f"{path} is longer than its header's shape {shape} says (corrupt)")
    return out if dtype.isnative else out.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array stored in an IDX file (gzipped or not: told by its first bytes), in native byte order.

    A truncated, corrupt or non-IDX file raises :class:`DatasetFileError` naming the file.
    """
    path = Path(path)
    with open(path, "rb") as probe:  # a missing file raises FileNotFoundError here, as open() does
        gz = probe.read(2) == _GZIP_MAGIC
    try:
        if gz:
            with gzip.open(path, "rb") as f:
                return _parse(f, path, None)
        with open(path, "rb") as f:
            return _parse(f, path, os.fstat(f.fileno()).st_size)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DatasetFileError(f"{path} is truncated or corrupt (gzip: {e})") from e
