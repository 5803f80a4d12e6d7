"""CUDA queries and memory statistics, through CuPy when it is installed.

Nothing here imports CuPy at module import time; every function imports it on
first call and answers "not available" when it cannot.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

from ..errors import DeviceError
from . import checks


def _cupy() -> ModuleType | None:
    try:
        return importlib.import_module("cupy")
    except ImportError:
        return None


def is_available() -> bool:
    """True when CuPy is installed and at least one CUDA device is visible."""
    return device_count() > 0


def device_count() -> int:
    """Number of visible CUDA devices (0 without CuPy or a driver)."""
    cp = _cupy()
    if cp is None:
        return 0
    try:
        return int(cp.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device: CuPy raises its own runtime errors
        return 0


def _require() -> ModuleType:
    cp = _cupy()
    if cp is None or device_count() == 0:
        raise DeviceError(
            "CUDA is not available: install CuPy (pip install 'axonml[cuda]') on a machine with an NVIDIA GPU"
        )
    return cp


def synchronize(device: int | None = None) -> None:
    """Wait for every kernel queued on ``device`` (default: the current one)."""
    cp = _require()
    if device is None:
        cp.cuda.runtime.deviceSynchronize()
    else:
        with cp.cuda.Device(device):
            cp.cuda.runtime.deviceSynchronize()
    checks.run_pending()


def get_device_name(device: int = 0) -> str:
    """The marketing name of CUDA device ``device``."""
    cp = _require()
    props = cp.cuda.runtime.getDeviceProperties(device)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


_peak_bytes = 0
_tracking = False


def install_peak_tracker(cp: ModuleType) -> None:
    """Route CuPy allocations through a wrapper that records the peak pool usage.

    CuPy's pool does not track a peak itself. The wrapper costs a Python call per allocation (about a
    sixth of a CIFAR ResNet-18 step's host time), so it is installed on demand: by
    :func:`reset_peak_memory_stats`, or by the first :func:`max_memory_allocated`.
    """
    global _tracking
    if _tracking:
        return
    pool = cp.get_default_memory_pool()

    def malloc(size: int):  # type: ignore[no-untyped-def]
        global _peak_bytes
        mem = pool.malloc(size)
        used = pool.used_bytes()
        if used > _peak_bytes:
            _peak_bytes = used
        return mem

    cp.cuda.set_allocator(malloc)
    _tracking = True


def memory_allocated() -> int:
    """Bytes held by live arrays in CuPy's memory pool."""
    return int(_require().get_default_memory_pool().used_bytes())


def memory_reserved() -> int:
    """Bytes CuPy's pool holds from the driver (used plus cached)."""
    return int(_require().get_default_memory_pool().total_bytes())


def max_memory_allocated() -> int:
    """Largest :func:`memory_allocated` since the last :func:`reset_peak_memory_stats`.

    Unlike PyTorch, the peak is tracked only from the first :func:`reset_peak_memory_stats` on (tracking
    costs host time at every allocation). Called before any reset, this starts tracking, warns that the
    peak before now is unknown, and returns the current usage.
    """
    cp = _require()
    if not _tracking:
        warnings.warn("max_memory_allocated(): peak tracking starts now (call reset_peak_memory_stats() before "
                      "the code to measure); the peak before this call is unknown", stacklevel=2)
        install_peak_tracker(cp)
    return max(_peak_bytes, memory_allocated())


def reset_peak_memory_stats() -> None:
    """Start (or restart) peak tracking from the current usage."""
    global _peak_bytes
    install_peak_tracker(_require())
    _peak_bytes = memory_allocated()


def empty_cache() -> None:
    """Return the pool's cached, unused blocks to the driver."""
    cp = _require()
    cp.get_default_memory_pool().free_all_blocks()
    cp.get_default_pinned_memory_pool().free_all_blocks()
