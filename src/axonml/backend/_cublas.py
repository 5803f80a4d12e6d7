"""Matrix products through cuBLAS directly (ctypes), for use inside a CUDA graph capture.

CuPy 14 refuses every cuBLAS call while a stream is capturing ("calling cuBLAS API
during stream capture is currently unsupported"), because its shared handle would
allocate its workspace mid-capture. cuBLAS itself captures fine when the handle has
a fixed workspace and is bound to the capturing stream before the capture starts,
which is what :class:`Blas` does: one handle and one 32 MiB workspace per device,
calling the same ``cublasGemmStridedBatchedEx`` with the same compute type as CuPy
(so a captured product equals the eager one).

Row-major ``C = A @ B`` is column-major ``C^T = B^T A^T``: the operands swap places,
and a transposed view (``w.T``) becomes a transpose flag instead of a copy.
"""

from __future__ import annotations

import ctypes
import functools
import math
from typing import Any

import numpy as np

_WORKSPACE_BYTES = 32 << 20
# cudaDataType and cublasComputeType_t values (cuBLAS API, stable since CUDA 11)
_DTYPES = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 14}
_CODES = {"f": 0, "d": 1, "e": 2, "E": 14}  # the same by dtype.char (``dtype.name`` is computed in Python)
_COMPUTE_32F, _COMPUTE_64F = 68, 70
OP_N, OP_T = 0, 1  # cublasOperation_t: as stored, transposed
_GEMM_DEFAULT = -1


def _library() -> ctypes.CDLL:
    """The libcublas that CuPy loaded (found in this process's memory map after a first CuPy GEMM)."""
    cp = __import__("cupy")
    a = cp.ones((2, 2), cp.float32)
    (a @ a).sum()  # makes CuPy load cuBLAS
    with open("/proc/self/maps") as f:
        paths = sorted({line.split()[-1] for line in f if "libcublas.so" in line and "Lt" not in line})
    if not paths:
        raise RuntimeError("cuBLAS is not loaded in this process: CuPy's GEMM did not load libcublas")
    lib = ctypes.CDLL(paths[0])
    p, i, s = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong
    lib.cublasGemmStridedBatchedEx.argtypes = [
        p, i, i, i, i, i, p, p, i, i, s, p, i, i, s, p, p, i, i, s, i, i, i,
    ]
    return lib


class Blas:
    """A cuBLAS handle with a fixed workspace on one device, bound to one stream."""

    _lib: ctypes.CDLL | None = None

    def __init__(self, cp: Any) -> None:
        if Blas._lib is None:
            Blas._lib = _library()
        self.cp = cp
        self.handle = ctypes.c_void_p()
        _check(Blas._lib.cublasCreate_v2(ctypes.byref(self.handle)), "cublasCreate")
        self.workspace = cp.empty(_WORKSPACE_BYTES, cp.uint8)
        _check(Blas._lib.cublasSetWorkspace_v2(self.handle, ctypes.c_void_p(self.workspace.data.ptr),
                                               ctypes.c_size_t(_WORKSPACE_BYTES)), "cublasSetWorkspace")

    def bind(self, stream_ptr: int) -> None:
        """Queue this handle's work on the stream ``stream_ptr`` (call before a capture begins)."""
        assert Blas._lib is not None
        _check(Blas._lib.cublasSetStream_v2(self.handle, ctypes.c_void_p(stream_ptr)), "cublasSetStream")

    def batched(self, a: Any, b: Any, out: Any) -> Any:
        """``out[i] = a @ b[i]`` for a (m, k) matrix ``a``, (nb, k, n) ``b`` and C-contiguous (nb, m, n) ``out``
        of one float dtype: ``matmul``'s case of a convolution, without its general shape and dtype logic (the
        host time of those NumPy helpers matched the GEMM's own)."""
        nb, m, n = out.shape
        k = a.shape[1]
        a3, op_a, ld_a, _ = _operand(self.cp, a, ())
        b3, op_b, ld_b, st_b = _operand(self.cp, b, (nb,))
        self.gemm(out.dtype, op_b, op_a, n, m, k, b3, ld_b, st_b, a3, ld_a, 0, out, nb)
        return out

    def product(self, a: Any, b: Any, out: Any = None) -> Any:
        """``a @ b`` for 2-D arrays of one float dtype with aligned shapes, ``out`` None or C-contiguous (m, n) of
        that dtype: ``matmul``'s commonest case, without its general logic."""
        m, k = a.shape
        n = b.shape[1]
        c = self.cp.ndarray((m, n), a.dtype) if out is None else out
        if k == 0:
            c.fill(0)
        elif m and n:
            a2, op_a, ld_a, _ = _operand(self.cp, a, ())
            b2, op_b, ld_b, _ = _operand(self.cp, b, ())
            self.gemm(a.dtype, op_b, op_a, n, m, k, b2, ld_b, 0, a2, ld_a, 0, c, 1)
        return c

    def matmul(self, a: Any, b: Any, out: Any = None) -> Any:
        """``a @ b`` with NumPy's matmul broadcasting, for float16/bfloat16/float32/float64 CuPy arrays."""
        cp = self.cp
        dt = a.dtype if a.dtype == b.dtype else np.result_type(a.dtype, b.dtype)
        if dt.char not in _CODES and dt.name not in _DTYPES:
            if out is None:
                return cp.matmul(a, b)  # integer and complex products: CuPy's own kernels, not cuBLAS
            return cp.matmul(a, b, out=out)
        if a.dtype != dt:
            a = a.astype(dt)
        if b.dtype != dt:
            b = b.astype(dt)
        vec_a, vec_b = a.ndim == 1, b.ndim == 1
        if vec_a:
            a = a[None, :]
        if vec_b:
            b = b[:, None]
        m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
        if b.shape[-2] != k:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align ({k} != {b.shape[-2]})")
        # the batch shape; np.broadcast_shapes (a few microseconds) only when the two really differ
        if a.ndim == 2 or a.shape[:-2] == b.shape[:-2]:
            batch = b.shape[:-2]
        elif b.ndim == 2:
            batch = a.shape[:-2]
        else:
            batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        nb = math.prod(batch)
        shape = (*batch, m, n)
        direct = (out is not None and not (vec_a or vec_b) and out.shape == shape and out.dtype == dt
                  and out.flags.c_contiguous)
        c = out if direct else cp.empty(shape, dt)  # write straight into ``out`` when its layout allows
        if c.size and k == 0:
            c.fill(0)
        elif c.size:
            a3, op_a, ld_a, st_a = _operand(cp, a, batch)
            b3, op_b, ld_b, st_b = _operand(cp, b, batch)
            self.gemm(dt, op_b, op_a, n, m, k, b3, ld_b, st_b, a3, ld_a, st_a, c, nb)
        if vec_a:
            c = c[..., 0, :]
        if vec_b:
            c = c[..., 0]
        if out is not None and not direct:
            out[...] = c
            return out
        return c

    def gemm(self, dt: Any, op1: int, op2: int, m: int, n: int, k: int, x: Any, ldx: int, sx: int,
              y: Any, ldy: int, sy: int, c: Any, nb: int) -> None:
        """Column-major ``c = op1(x) @ op2(y)`` over ``nb`` strided batches: ``c`` (m, n) with leading dim ``m``
        and batch stride ``m * n``; ``x``, ``y`` arrays with leading dims ``ldx``, ``ldy`` and batch strides ``sx``,
        ``sy`` (elements; 0 shares one matrix), ``op1``/``op2`` :data:`OP_N` or :data:`OP_T`, ``dt`` their
        float dtype. The raw call, for callers that work out their operands' layouts once."""
        assert Blas._lib is not None
        scalar: type[ctypes.c_double] | type[ctypes.c_float] = ctypes.c_double if dt == np.float64 else ctypes.c_float
        one, zero = scalar(1.0), scalar(0.0)
        compute = _COMPUTE_64F if dt == np.float64 else _COMPUTE_32F
        code = _code(dt)
        _check(Blas._lib.cublasGemmStridedBatchedEx(
            self.handle, op1, op2, m, n, k, ctypes.byref(one),
            x.data.ptr, code, ldx, sx, y.data.ptr, code, ldy, sy,
            ctypes.byref(zero), c.data.ptr, code, m, m * n, nb, compute, _GEMM_DEFAULT,
        ), "cublasGemmStridedBatchedEx")


def _operand(cp: Any, x: Any, batch: tuple[int, ...]) -> tuple[Any, int, int, int]:
    """``x`` as (array, column-major op, leading dim, batch stride in elements) for the swapped GEMM.

    A row-major contiguous matrix is its own transpose in column-major (op N); a transposed
    view of one is op T. Anything else (other strides, broadcast batch dims that are not a
    single stride-0 batch) is copied to contiguous first.
    """
    if x.ndim == 2 and x.flags.c_contiguous and x.data.ptr % x.itemsize == 0:  # the commonest case, at once
        return x, OP_N, max(x.shape[1], 1), 0
    r, c = x.shape[-2], x.shape[-1]
    item = x.itemsize
    layout = _layout(x, r, c, item)
    if layout is None:
        x = cp.ascontiguousarray(x)
        layout = _layout(x, r, c, item)
        assert layout is not None
    op, ld = layout
    if x.ndim == 2:
        return x, op, ld, 0  # one matrix shared by every batch
    if x.shape[:-2] != batch:
        x = cp.ascontiguousarray(cp.broadcast_to(x, (*batch, r, c)))
        op, ld = OP_N, c
    bstrides = x.strides[:-2]
    step = bstrides[-1] if bstrides else r * c * item
    # the batch dims must fold into one stride: contiguous among themselves
    expect = step
    for size, st in zip(reversed(x.shape[:-2]), reversed(bstrides)):
        if size != 1 and st != expect:
            x = cp.ascontiguousarray(x)
            return x, OP_N, c, r * c
        expect = st * size
    return x, op, ld, step // item


def _layout(x: Any, r: int, c: int, item: int) -> tuple[int, int] | None:
    """(op, leading dim) when the last two dims are row-major or transposed-row-major with evenly strided rows
    (columns) at least a row (column) apart, else None: a column block of a wider matrix is read in place."""
    s_r, s_c = x.strides[-2], x.strides[-1]
    if x.data.ptr % item:
        return None
    if (s_c == item or c == 1) and (r == 1 or (s_r >= c * item and s_r % item == 0)):
        return OP_N, max(c if r == 1 else s_r // item, 1)
    if (s_r == item or r == 1) and (c == 1 or (s_c >= r * item and s_c % item == 0)):
        return OP_T, max(r if c == 1 else s_c // item, 1)
    return None


class EagerBlas(Blas):
    """``Blas``'s products outside a capture, through CuPy's own per-thread handle (bound to the current stream
    at each call by CuPy's binding) and CuPy's Cython binding of the same ``cublasGemmStridedBatchedEx``:
    a ctypes call converts its 23 arguments in Python (~57 us inside a ResNet step on an H200 host, line profile)."""

    def __init__(self, cp: Any) -> None:
        from cupy_backends.cuda.libs import cublas

        self.cp = cp
        self._call = cublas.gemmStridedBatchedEx
        self._handle = cp.cuda.device.get_cublas_handle
        # alpha = 1, beta = 0 as host values: float32 serves every compute type but float64's
        self._scalars = {dt: (np.ones(1, dt), np.zeros(1, dt)) for dt in (np.float32, np.float64)}
        self._pointers = {dt: (one.ctypes.data, zero.ctypes.data) for dt, (one, zero) in self._scalars.items()}

    def bind(self, stream_ptr: int) -> None:  # pragma: no cover - CuPy binds its handle itself
        raise RuntimeError("EagerBlas uses CuPy's handle, which CuPy binds to the current stream")

    def gemm(self, dt: Any, op1: int, op2: int, m: int, n: int, k: int, x: Any, ldx: int, sx: int,
              y: Any, ldy: int, sy: int, c: Any, nb: int) -> None:
        wide = dt == np.float64
        one, zero = self._pointers[np.float64 if wide else np.float32]
        code = _code(dt)
        self._call(self._handle(), op1, op2, m, n, k, one, x.data.ptr, code, ldx, sx, y.data.ptr, code, ldy, sy,
                   zero, c.data.ptr, code, m, m * n, nb, _COMPUTE_64F if wide else _COMPUTE_32F, _GEMM_DEFAULT)


@functools.cache
def eager(cp: Any) -> EagerBlas:
    """The products' entry outside a capture (one for the process: CuPy's handles are per thread and device)."""
    return EagerBlas(cp)


def _code(dt: Any) -> int:
    """cuBLAS's cudaDataType of a NumPy/CuPy float dtype."""
    code = _CODES.get(dt.char)
    return _DTYPES[dt.name] if code is None else code


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what} failed with cuBLAS status {status}")
