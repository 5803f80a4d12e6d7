"""Launching a compiled CUDA kernel with less host time than CuPy's ``Function.__call__``.

CuPy turns every argument into a C struct at each call (an array becomes a ``CArray`` holding its
shape and strides, even for a kernel that takes a bare pointer), through four levels of calls: in a
ResNet-18 training step on an H100 host that wrapper took about as much host time as the driver's
launch itself (py-spy, native stacks). A :class:`Launcher` packs the arguments into one parameter
buffer with ``struct`` and calls the driver's ``cuLaunchKernel`` through CuPy's binding, on CuPy's
current stream (so launches inside a CUDA graph capture are captured, as CuPy's are).

Arguments are CuPy arrays (``cupy.ndarray`` itself, not a subclass), passed as their device address
(a ``T*`` parameter), and NumPy scalars, passed by value at their own width (``np.int32`` for an
``int`` parameter, ``np.float32`` for a ``float``, ``np.uint64(0)`` for a null pointer). A Python
number has no C width: it is refused with a TypeError rather than guessed.
"""

from __future__ import annotations

import ctypes
import struct
import sys
import threading
from typing import Any, NamedTuple

import numpy as np

_THREAD = threading.local()  # ``scratch``: this thread's parameter buffer (see ``_thread_scratch``)
_SLOT = 8  # bytes per argument: every parameter type here is at most 8 bytes wide and 8-byte alignment suits all
_MAX_ARGS = 32
_CODES: dict[type, str] = {np.int8: "b", np.uint8: "B", np.int16: "h", np.uint16: "H", np.int32: "i", np.uint32: "I",
          np.int64: "q", np.uint64: "Q", np.float32: "f", np.float64: "d"}


def _layout(types: tuple[type, ...], ndarray: type) -> struct.Struct:
    """The packing of one argument signature: each argument in its own 8-byte slot."""
    if len(types) > _MAX_ARGS:
        raise TypeError(f"a kernel launch takes at most {_MAX_ARGS} arguments, got {len(types)}")
    fmt = ["="]
    for t in types:
        code = "Q" if t is ndarray else _CODES.get(t)
        if code is None:
            raise TypeError(f"a kernel argument must be a CuPy array or a NumPy scalar of a fixed width, got "
                            f"{t.__name__}")
        fmt.append(code + f"{_SLOT - struct.calcsize(code)}x")
    return struct.Struct("".join(fmt))


class Launcher:
    """Calls one CUDA kernel (a ``cupy.RawKernel``): ``launcher(grid, block, args)``.

    ``grid`` and ``block`` are tuples of 1 to 3 sizes; ``shared_mem`` is the dynamic shared memory in bytes.
    The kernel runs on the current device, loaded there at its first launch (as CuPy's ``RawKernel`` does).
    """

    __slots__ = ("kernel", "_functions", "_layouts")

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self._functions: dict[int, int] = {}  # device id -> the loaded function's handle
        self._layouts: dict[tuple[type, ...], struct.Struct] = {}

    def __call__(self, grid: tuple[int, ...], block: tuple[int, ...], args: tuple[Any, ...],
                 shared_mem: int = 0) -> None:
        cuda = _CUDA or _bind()
        scratch = getattr(_THREAD, "scratch", None)
        if scratch is None:
            scratch = _thread_scratch(cuda)
        device = cuda.get_device()
        function = self._functions.get(device)
        if function is None:
            function = self._functions[device] = self.kernel.kernel.ptr  # loads it on the current device
        ndarray = cuda.ndarray
        key = tuple([type(a) for a in args])
        layout = self._layouts.get(key)
        if layout is None:
            layout = self._layouts[key] = _layout(key, ndarray)
        buffer, params, _ = scratch
        layout.pack_into(buffer, 0, *[a.data.ptr if type(a) is ndarray else a for a in args])
        gx, gy, gz = grid if len(grid) == 3 else (*grid, 1, 1)[:3]
        bx, by, bz = block if len(block) == 3 else (*block, 1, 1)[:3]
        cuda.launch(function, gx, gy, gz, bx, by, bz, shared_mem, cuda.current_stream().ptr, params, 0)


def _thread_scratch(cuda: _Cuda) -> tuple[Any, int, Any]:
    """This thread's parameter buffer, the address of its array of argument addresses, and that array (kept
    alive with it). The driver copies the arguments at the launch, so every kernel can pack into one buffer per
    thread (no lock). Made at the thread's first launch, which also makes a CUDA context current (the driver
    API needs one; the runtime makes it)."""
    cuda.runtime.free(0)
    buffer = ctypes.create_string_buffer(_SLOT * _MAX_ARGS)
    base = ctypes.addressof(buffer)
    params = (ctypes.c_void_p * _MAX_ARGS)(*[base + _SLOT * i for i in range(_MAX_ARGS)])
    _THREAD.scratch = scratch = (buffer, ctypes.addressof(params), params)
    return scratch


class _Cuda(NamedTuple):
    """CuPy's functions a launch calls, looked up once (each attribute chain costs host time per launch)."""

    ndarray: Any
    runtime: Any
    get_device: Any
    current_stream: Any
    launch: Any


_CUDA: _Cuda | None = None


def _bind() -> _Cuda:
    global _CUDA
    cp = sys.modules["cupy"]  # arguments are CuPy arrays: CuPy is loaded
    _CUDA = _Cuda(cp.ndarray, cp.cuda.runtime, cp.cuda.runtime.getDevice, cp.cuda.get_current_stream,
                  cp.cuda.driver.launchKernel)
    return _CUDA
