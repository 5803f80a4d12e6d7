"""Devices: the one place that maps a device to its array module (NumPy or CuPy).

CuPy is imported only when a CUDA device is first used, so a CPU-only install
never touches it.
"""

from __future__ import annotations

import importlib
import re
import threading
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from ..errors import DeviceError

_DEVICE_RE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


class Device:
    """A compute device: ``Device("cpu")``, ``Device("cuda")``, ``Device("cuda:1")``, ``Device("cuda", 1)``.

    Instances are interned, so ``Device("cuda:0") is Device("cuda:0")`` and
    comparisons are cheap. A string is accepted everywhere a Device is.
    """

    __slots__ = ("type", "index", "_xp")
    _cache: ClassVar[dict[tuple[str, int | None], Device]] = {}

    type: str
    index: int | None
    _xp: ModuleType | None

    def __new__(cls, spec: str | Device, index: int | None = None) -> Device:
        if isinstance(spec, Device):
            return spec
        if isinstance(spec, int) and not isinstance(spec, bool):
            spec, index = "cuda", spec  # a bare index means a CUDA device, as in PyTorch
        if not isinstance(spec, str):
            raise DeviceError(f"a device is a string like 'cpu' or 'cuda:0', got {spec!r}")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
            raise DeviceError(f"a device index must be a non-negative integer, got {index!r}")
        m = _DEVICE_RE.match(spec.strip().lower())
        if m is None:
            raise DeviceError(f"unknown device {spec!r}: expected 'cpu', 'cuda' or 'cuda:N'")
        kind = m.group(1)
        if m.group(2) is not None:
            if index is not None:
                raise DeviceError(f"device {spec!r} already names an index; got index={index} too")
            index = int(m.group(2))
        if kind == "cpu":
            index = None
        elif index is None:
            index = 0
        key = (kind, index)
        dev = cls._cache.get(key)
        if dev is None:
            dev = object.__new__(cls)
            dev.type, dev.index, dev._xp = kind, index, None
            cls._cache[key] = dev
        return dev

    @property
    def xp(self) -> ModuleType:
        """The array module of this device (``numpy`` or ``cupy``)."""
        xp = self._xp
        if xp is None:
            xp = np if self.type == "cpu" else _load_cupy(self)
            self._xp = xp
        return xp

    def __repr__(self) -> str:
        if self.index is None:
            return f"device(type='{self.type}')"
        return f"device(type='{self.type}', index={self.index})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = Device(other)
            except DeviceError:
                return False
        return self is other

    # identity, as ``__eq__`` (devices are interned): a C-level hash, since devices key per-step dictionaries
    __hash__ = object.__hash__

    def __reduce__(self) -> tuple[Any, ...]:
        return (Device, (str(self),))

    def __enter__(self) -> Device:
        """``with Device("cuda:1"):`` makes that GPU CuPy's current device inside the block."""
        ctx = self.xp.cuda.Device(self.index) if self.type == "cuda" else None
        if ctx is not None:
            ctx.__enter__()
        _context_stack().append(ctx)
        return self

    def __exit__(self, *exc: Any) -> None:
        ctx = _context_stack().pop()
        if ctx is not None:
            ctx.__exit__(*exc)


_LOCAL = threading.local()


def _context_stack() -> list[Any]:
    """Per-thread stack of entered device contexts (devices are shared objects, so not on them)."""
    stack = getattr(_LOCAL, "stack", None)
    if stack is None:
        stack = _LOCAL.stack = []
    return stack  # type: ignore[no-any-return]


def _load_cupy(dev: Device) -> ModuleType:
    try:
        cp = importlib.import_module("cupy")
    except ImportError as e:
        raise DeviceError(
            f"device {dev} needs CuPy, which is not installed: pip install 'axonml[cuda]'"
        ) from e
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as e:  # the CUDA runtime raises its own error types
        raise DeviceError(f"device {dev}: CUDA is not available ({e})") from e
    if dev.index is not None and dev.index >= count:
        raise DeviceError(f"device {dev} does not exist: {count} CUDA device(s) visible")
    return cp


CPU = Device("cpu")


def as_device(spec: str | Device | None) -> Device:
    """Normalize ``spec`` to a Device (``None`` means the CPU)."""
    if spec is None:
        return CPU
    return Device(spec)


def device_of_array(a: Any) -> Device:
    """The Device holding array ``a``."""
    if isinstance(a, np.ndarray | np.generic):
        return CPU
    dev = getattr(a, "device", None)
    if dev is not None and hasattr(dev, "id"):
        return Device("cuda", dev.id)
    raise DeviceError(f"not an array axonml knows: {type(a).__name__}")
