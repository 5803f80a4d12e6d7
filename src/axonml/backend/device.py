"""Devices: the one place that maps a device to its array module (NumPy or CuPy).

CuPy is imported only when a CUDA device is first used, so a CPU-only install
never touches it.
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import DeviceError

_DEVICE_RE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


class Device:
    """A compute device: ``Device("cpu")``, ``Device("cuda")``, ``Device("cuda:1")``.

    Instances are interned, so ``Device("cuda:0") is Device("cuda:0")`` and
    comparisons are cheap. A string is accepted everywhere a Device is.
    """

    __slots__ = ("type", "index", "_xp")
    _cache: dict[tuple[str, int | None], Device] = {}

    type: str
    index: int | None
    _xp: ModuleType | None

    def __new__(cls, spec: str | Device, index: int | None = None) -> Device:
        if isinstance(spec, Device):
            return spec
        if not isinstance(spec, str):
            raise DeviceError(f"a device is a string like 'cpu' or 'cuda:0', got {spec!r}")
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
        return f"device(type='{self.type}')" if self.index is None else f"device(type='{self.type}', index={self.index})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = Device(other)
            except DeviceError:
                return False
        return self is other

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Device, (str(self),))

    def __enter__(self) -> Device:
        if self.type == "cuda":
            self._ctx = self.xp.cuda.Device(self.index)  # type: ignore[attr-defined]
            self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        ctx = getattr(self, "_ctx", None)
        if ctx is not None:
            ctx.__exit__(*exc)


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
    from .cuda import install_peak_tracker

    install_peak_tracker(cp)
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
