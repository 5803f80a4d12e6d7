"""Shared memory for DataLoader batches: named segments, per-slot arenas, packing and unpacking.

A worker owns one :class:`Arena` per slot (``prefetch_factor`` slots). It
collates a batch straight into its arena (see ``collate._out_allocator``),
copies any other array leaf in, and sends the main process only the
structure with every array replaced by a small :class:`ArrayRef` (offset,
shape, dtype). The main process maps the segment once and copies each array
out (so a batch never pins the slot, and the slot is free for the worker's
next batch the moment the message is read). Segments are plain POSIX shared
memory (``_posixshmem``, what ``multiprocessing.shared_memory`` uses) without
Python's resource tracker: the DataLoader unlinks them itself, also after a
worker was killed (names are deterministic: prefix, worker, slot, generation).
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import copy
import mmap
import os
import pickle
from typing import Any

import numpy as np

from ..backend import CPU
from ..core.tensor import Tensor

try:  # POSIX: shm_open/shm_unlink; Windows falls back to SharedMemory (no tracker there)
    import _posixshmem
except ImportError:  # pragma: no cover - Windows
    _posixshmem = None

_ALIGN = 64
_INLINE_MAX = 1 << 14  # bytes of pickled structure sent through the pipe; more goes in shared memory
_PAGE = mmap.PAGESIZE


def _align(n: int) -> int:
    return (n + _ALIGN - 1) & ~(_ALIGN - 1)


class Segment:
    """One named shared-memory segment mapped into this process."""

    def __init__(self, name: str, size: int = 0, create: bool = False) -> None:
        self.name = name
        self._win: Any = None
        if _posixshmem is None:  # pragma: no cover - Windows
            from multiprocessing.shared_memory import SharedMemory

            self._win = SharedMemory(name.lstrip("/"), create=create, size=size)
            self.mm: Any = self._win.buf
            self.size = self._win.size
        else:
            flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
            fd = _posixshmem.shm_open(name, flags, mode=0o600)
            try:
                if create:
                    os.ftruncate(fd, size)
                    if hasattr(os, "posix_fallocate"):
                        # reserve the pages now: a full /dev/shm is an error here, not a SIGBUS later
                        try:
                            os.posix_fallocate(fd, 0, size)
                        except OSError as e:
                            _posixshmem.shm_unlink(name)
                            raise RuntimeError(
                                f"DataLoader: cannot allocate {size} bytes of shared memory for a batch ({e}); "
                                "/dev/shm may be too small (e.g. docker's --shm-size)"
                            ) from None
                self.size = os.fstat(fd).st_size
                self.mm = mmap.mmap(fd, self.size)
            finally:
                os.close(fd)
        self.base = np.frombuffer(self.mm, dtype=np.uint8)  # (size,) bytes
        self.address = self.base.__array_interface__["data"][0] if self.size else 0

    def close(self) -> bool:
        """Unmap; False when arrays still view it (it is then left for the garbage collector)."""
        self.base = None  # type: ignore[assignment]
        try:
            if self._win is not None:  # pragma: no cover - Windows
                self._win.close()
            else:
                self.mm.close()
        except BufferError:
            return False
        return True


def unlink(name: str) -> None:
    """Remove a segment's name (the memory goes when the last mapping closes); missing names are fine."""
    if _posixshmem is None:  # pragma: no cover - Windows frees a segment with its last handle
        return
    with contextlib.suppress(FileNotFoundError):
        _posixshmem.shm_unlink(name)


def segment_name(prefix: str, worker: int, slot: int, gen: int) -> str:
    """The deterministic name of generation ``gen`` of a worker's slot (short: macOS allows 31 characters)."""
    return f"{prefix}_{worker}_{slot}_{gen}"


class ArrayRef:
    """An array leaf of a batch, as sent to the main process: where it lies in the slot and what it is."""

    __slots__ = ("offset", "shape", "dtype", "tensor", "requires_grad", "device")

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, tensor: bool, requires_grad: bool, device: str) -> None:
        self.offset = -1
        self.shape = shape
        self.dtype = dtype
        self.tensor = tensor
        self.requires_grad = requires_grad
        self.device = device

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.offset, self.shape, self.dtype, self.tensor, self.requires_grad, self.device)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.offset, self.shape, self.dtype, self.tensor, self.requires_grad, self.device = state


def _strip(obj: Any, leaves: list[tuple[Any, ArrayRef]]) -> Any:
    """``obj`` with each tensor and numeric array replaced by an ArrayRef (appended to ``leaves``)."""
    if isinstance(obj, Tensor):
        arr = obj._data if obj._device is CPU else obj._host()
        ref = ArrayRef(arr.shape, arr.dtype, True, obj._requires_grad, str(obj._device))
        leaves.append((arr, ref))
        return ref
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "biufc":
        ref = ArrayRef(obj.shape, obj.dtype, False, False, "cpu")
        leaves.append((obj, ref))
        return ref
    return _walk(obj, lambda v: _strip(v, leaves))


def _walk(obj: Any, fn: Any) -> Any:
    """``obj`` with ``fn`` applied to the items of its lists, tuples, namedtuples and mappings (else ``obj``)."""
    t = type(obj)
    if t is list:
        return [fn(v) for v in obj]
    if t is tuple:
        return tuple(fn(v) for v in obj)
    if t is dict:
        return {k: fn(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return t(*(fn(v) for v in obj))
    if isinstance(obj, cabc.MutableMapping | cabc.MutableSequence) and not isinstance(obj, str | bytes | bytearray):
        try:
            clone = copy.copy(obj)
            items = obj.items() if isinstance(obj, cabc.Mapping) else enumerate(obj)
            for k, v in list(items):
                clone[k] = fn(v)
            return clone
        except Exception:  # a container we cannot rebuild travels pickled, as it is
            return obj
    return obj


class MetaBlob:
    """A batch structure too big for the pipe: its pickle lies in the slot at ``offset``."""

    __slots__ = ("offset", "size")

    def __init__(self, offset: int, size: int) -> None:
        self.offset, self.size = offset, size

    def __getstate__(self) -> tuple[int, int]:
        return (self.offset, self.size)

    def __setstate__(self, state: tuple[int, int]) -> None:
        self.offset, self.size = state


def load(meta: Any, base: np.ndarray) -> Any:
    """The batch a worker packed: its structure (from the slot if it was big), with every array copied out."""
    if isinstance(meta, MetaBlob):
        meta = pickle.loads(base.data[meta.offset: meta.offset + meta.size])
    return unpack(meta, base)


def unpack(meta: Any, base: np.ndarray) -> Any:
    """The batch of ``meta``: every ArrayRef becomes a tensor or array copied out of the slot's bytes ``base``."""
    if isinstance(meta, ArrayRef):
        n = int(np.prod(meta.shape)) * meta.dtype.itemsize
        arr = base[meta.offset: meta.offset + n].view(meta.dtype).reshape(meta.shape).copy()
        if not meta.tensor:
            return arr
        t = Tensor._make(arr, CPU)
        if meta.device != "cpu":
            t = t.to(meta.device)
        if meta.requires_grad:
            t.requires_grad_(True)
        return t
    return _walk(meta, lambda v: unpack(v, base))


class Arena:
    """A worker's slot: a segment that grows when a batch needs more room, used from the start each batch."""

    def __init__(self, prefix: str, worker: int, slot: int) -> None:
        self.prefix, self.worker, self.slot = prefix, worker, slot
        self.gen = -1
        self.seg: Segment | None = None
        self.used = 0
        self._retired: list[Segment] = []

    def reset(self) -> None:
        """Start a new batch (the main process has copied the last one out)."""
        self.used = 0
        self._retired = [s for s in self._retired if not s.close()]

    def alloc(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
        """An array in the segment, or None when it does not fit (the caller makes a private one)."""
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        start = _align(self.used)
        if self.seg is None or start + n > self.seg.size:
            return None
        self.used = start + n
        return self.seg.base[start: start + n].view(dtype).reshape(shape)

    def _offset_of(self, arr: np.ndarray) -> int | None:
        """The offset of ``arr`` in the segment when it is a C-contiguous array inside it."""
        seg = self.seg
        if seg is None or not arr.flags.c_contiguous:
            return None
        off = arr.__array_interface__["data"][0] - seg.address
        return off if off >= 0 and off + arr.nbytes <= self.used else None

    def _grow(self, need: int) -> None:
        """Replace the segment by a bigger one (a new generation; the old name is unlinked now)."""
        old = self.seg
        size = max(need, 2 * old.size if old is not None else 0)
        size = max(_PAGE, (size + _PAGE - 1) // _PAGE * _PAGE)
        self.gen += 1
        self.seg = Segment(segment_name(self.prefix, self.worker, self.slot, self.gen), size, create=True)
        self.used = 0
        if old is not None:
            unlink(old.name)
            self._retired.append(old)  # closed once no array of this batch views it

    def _place(self, leaves: list[tuple[Any, ArrayRef]], reuse: bool) -> None:
        """Give every leaf an offset, copying in those not already collated into the segment."""
        offsets = [self._offset_of(arr) if reuse else None for arr, _ in leaves]
        extra = sum(_align(arr.nbytes) for (arr, _), off in zip(leaves, offsets) if off is None)
        if self.seg is None or _align(self.used) + extra > self.seg.size:
            # start over in a bigger segment with every leaf (the old one stays mapped until then)
            self._grow(sum(_align(arr.nbytes) for arr, _ in leaves))
            offsets = [None] * len(leaves)
        assert self.seg is not None
        for (arr, ref), off in zip(leaves, offsets):
            if off is None:
                off = _align(self.used)
                self.used = off + arr.nbytes
                dst = self.seg.base[off: off + arr.nbytes].view(arr.dtype).reshape(arr.shape)
                dst[...] = arr
            ref.offset = off

    def pack(self, batch: Any) -> tuple[Any, str | None]:
        """Put ``batch`` in the segment; returns the metadata to send and the segment's name (None: nothing there).

        Arrays go in as bytes; the rest of the structure travels in the message,
        unless it pickles to more than ``_INLINE_MAX`` bytes (thousands of strings,
        say): then it goes in the segment too and the message holds a :class:`MetaBlob`.
        Messages stay small, so a worker never blocks on a full pipe.
        """
        leaves: list[tuple[Any, ArrayRef]] = []
        meta = _strip(batch, leaves)
        if leaves:
            self._place(leaves, reuse=True)
        blob = pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL)
        if len(blob) <= _INLINE_MAX:
            return meta, (self.seg.name if leaves and self.seg is not None else None)
        start = _align(self.used)
        if self.seg is None or start + len(blob) > self.seg.size:
            self._grow(sum(_align(arr.nbytes) for arr, _ in leaves) + _align(len(blob)) + _PAGE)
            if leaves:
                self._place(leaves, reuse=False)
            blob = pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL)  # the offsets changed
            start = _align(self.used)
        assert self.seg is not None
        self.seg.base[start: start + len(blob)] = np.frombuffer(blob, dtype=np.uint8)
        self.used = start + len(blob)
        return MetaBlob(start, len(blob)), self.seg.name

    def destroy(self) -> None:
        """Unlink and unmap everything this arena made."""
        if self.seg is not None:
            unlink(self.seg.name)
            self.seg.close()
            self.seg = None
        for s in self._retired:
            s.close()
        self._retired = []
