"""Direct calls into NumPy's own OpenBLAS: ``c = a @ b + beta * c`` on strided views, and its thread count.

Why not ``np.matmul``: it can neither accumulate into its output (BLAS ``beta = 1``) nor take a
matrix whose rows are a window of a longer row (leading dimension > width) without copying it
first. The CPU convolutions need both: a stride-1 convolution on the zero-padded grid is a sum
over kernel offsets of ``W_k @ x[:, shift_k : shift_k + M]``, each term a window of one padded
input, so it runs as one GEMM per offset with no im2col copy at all (ResNet's 64-channel 32x32
layer: 22 ms instead of 40 on one core).

The library is the one NumPy itself loaded (same threads, same ``OPENBLAS_NUM_THREADS``), found
by its file next to NumPy and its exported ``cblas_?gemm`` symbol; its integer width comes from
its build configuration. Where it cannot be found (another BLAS, another platform),
``available()`` is False and the callers keep their NumPy paths.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_LOCK = threading.Lock()
_THREADS_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}
_CPUS = os.cpu_count() or 1
ENABLED = os.environ.get("AXONML_DIRECT_BLAS", "1") != "0"  # tests switch it off to exercise the NumPy paths


def _candidates() -> list[str]:
    """Shared libraries that may be NumPy's OpenBLAS: its wheels bundle it next to the package."""
    base = os.path.dirname(np.__file__)
    found: list[str] = []
    for pattern in (os.path.join(base, os.pardir, "numpy.libs", "*openblas*"),
                    os.path.join(base, ".dylibs", "*openblas*")):
        found += sorted(glob.glob(pattern))
    try:  # Linux: also whatever OpenBLAS the process already mapped (a NumPy built against the system's)
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if "openblas" in os.path.basename(path) and path not in found:
                    found.append(path)
    except OSError:
        pass
    return found


def _bind(path: str) -> dict[str, Any] | None:
    """The gemm and thread-count entry points of one library, or None when it has no usable cblas."""
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for prefix, suffix in (("scipy_", "64_"), ("", "64_"), ("scipy_", ""), ("", "")):
        try:
            sgemm = getattr(lib, f"{prefix}cblas_sgemm{suffix}")
            dgemm = getattr(lib, f"{prefix}cblas_dgemm{suffix}")
            config = getattr(lib, f"{prefix}openblas_get_config{suffix}")
            threads = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}")
            set_threads = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}")
        except AttributeError:
            continue
        set_threads.restype = None
        set_threads.argtypes = [ctypes.c_int]
        config.restype = ctypes.c_char_p
        # the integer width of the interface: ILP64 builds say so in their configuration string
        blas_int = ctypes.c_int64 if b"USE64BITINT" in (config() or b"") else ctypes.c_int32
        threads.restype = ctypes.c_int
        threads.argtypes = []
        enum = ctypes.c_int
        for fn, scalar in ((sgemm, ctypes.c_float), (dgemm, ctypes.c_double)):
            fn.restype = None
            fn.argtypes = [enum, enum, enum, blas_int, blas_int, blas_int, scalar, ctypes.c_void_p, blas_int,
                           ctypes.c_void_p, blas_int, scalar, ctypes.c_void_p, blas_int]
        return {"gemm": {np.dtype(np.float32): sgemm, np.dtype(np.float64): dgemm}, "threads": threads,
                "set_threads": set_threads}
    return None


def _state() -> dict[str, Any]:
    if "gemm" not in _STATE:
        with _LOCK:
            if "gemm" not in _STATE:
                bound = None
                for path in _candidates():
                    bound = _bind(path)
                    if bound is not None:
                        break
                _STATE.update(bound or {"gemm": {}, "threads": None, "set_threads": None})
    return _STATE


def available(dtype: Any) -> bool:
    """Whether ``gemm`` runs on arrays of ``dtype`` (float32 / float64 with NumPy's OpenBLAS found)."""
    return ENABLED and np.dtype(dtype) in _state()["gemm"]


def num_threads() -> int:
    """The threads the CPU convolutions may use: OpenBLAS's count (``OPENBLAS_NUM_THREADS``), else the CPU count.

    Inside ``single_threaded`` it is the count from before the block.
    """
    if _DEPTH[0]:
        n = _BEFORE[0]
    else:
        fn = _state()["threads"] if ENABLED else None
        n = int(fn()) if fn is not None else _CPUS
    return max(1, min(n, _CPUS))


_DEPTH = [0]  # open single_threaded blocks, all threads together
_BEFORE = [1]  # OpenBLAS's thread count before the outermost one


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """OpenBLAS on one thread inside the block: the convolutions split their own work over threads.

    Why: OpenBLAS's idle threads spin for ~0.1 s after each call, so a copy on a second Python
    thread right after a GEMM shared its core with a spinning thread (ResNet's im2col halves ran
    1.75x slower than alone). With OpenBLAS on one thread nothing spins, and the GEMMs are split by
    the callers (over output columns, or over the reduction for small outputs: a 64 x 64 weight
    gradient summed over 37k positions ran at 96-118 GFLOP/s on OpenBLAS's 2 threads, 159-168 as
    two single-threaded halves). Switching costs ~1 us. The count is process-wide and restored when
    the last open block (of any thread) closes; other threads calling BLAS meanwhile get one thread.
    """
    state = _state()
    setter = state["set_threads"]
    if setter is None or not ENABLED:
        yield
        return
    with _THREADS_LOCK:
        if _DEPTH[0] == 0:
            _BEFORE[0] = int(state["threads"]())
            setter(1)
        _DEPTH[0] += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _DEPTH[0] -= 1
            if _DEPTH[0] == 0:
                setter(_BEFORE[0])


def _operand(a: Any) -> tuple[int, int]:
    """(transpose flag, leading dimension) of a 2-D view with one unit stride."""
    item = a.itemsize
    s0, s1 = a.strides
    if s1 == item and s0 % item == 0 and s0 // item >= max(a.shape[1], 1):
        return _NO_TRANS, s0 // item
    if s0 == item and s1 % item == 0 and s1 // item >= max(a.shape[0], 1):
        return _TRANS, s1 // item
    raise ValueError(f"gemm operand with strides {a.strides} and shape {a.shape} is not a BLAS matrix")


def _blas_ready(a: Any) -> Any:
    """``a`` itself when BLAS can read it in place, else a contiguous copy (rows of 1 element, odd strides)."""
    try:
        _operand(a)
        return a
    except ValueError:
        return np.ascontiguousarray(a)


def gemm(a: Any, b: Any, c: Any, beta: float = 0.0) -> None:
    """``c[...] = a @ b + beta * c`` for 2-D arrays of one dtype; ``c`` has unit column stride.

    ``a`` and ``b`` may be windows of longer rows or transposed views (no copy is made of them).
    """
    m, k = a.shape
    n = b.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        c *= beta
        return
    a, b = _blas_ready(a), _blas_ready(b)
    ta, lda = _operand(a)
    tb, ldb = _operand(b)
    if c.strides[1] != c.itemsize or c.strides[0] < n * c.itemsize:
        raise ValueError(f"gemm output with strides {c.strides} is not a row-major matrix")
    fn = _state()["gemm"][c.dtype]
    fn(_ROW_MAJOR, ta, tb, m, n, k, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb, beta, c.ctypes.data,
       c.strides[0] // c.itemsize)
