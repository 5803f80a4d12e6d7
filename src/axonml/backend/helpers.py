"""Per-device helpers for the places where NumPy and CuPy differ."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _cublas, checks
from .device import CPU, Device, device_of_array
from .graphs import current_capture


def move_array(a: Any, device: Device) -> Any:
    """Copy array ``a`` to ``device`` (no copy when it is already there)."""
    src = device_of_array(a)
    if src is device:
        return a
    if device is CPU:
        host = a.get()
        checks.run_pending()  # the copy waited for the GPU: the values deferred checks read are there
        return host
    xp = device.xp
    with xp.cuda.Device(device.index):
        return xp.asarray(a)


def index_add_at(xp: Any, target: Any, index: Any, values: Any) -> None:
    """``target[index] += values`` with repeated indices accumulated (unbuffered)."""
    if xp is np:
        np.add.at(target, index, values)
    elif target.dtype.name == "bfloat16":  # CuPy's add.at has no bfloat16: accumulate in float32
        wide = target.astype(xp.float32)
        index_add_at(xp, wide, index, values.astype(xp.float32))
        target[...] = wide.astype(target.dtype)
    else:
        if hasattr(xp.add, "at"):  # CuPy >= 14; cupyx.scatter_add is deprecated there
            xp.add.at(target, index, values)
        else:
            import cupyx  # only reached with CuPy arrays

            cupyx.scatter_add(target, index, values)


def matmul(xp: Any, a: Any, b: Any, out: Any = None) -> Any:
    """``xp.matmul(a, b, out=out)``, with two CuPy cases handled here.

    Inside a CUDA graph capture the product goes through the capture-safe cuBLAS handle
    (CuPy refuses cuBLAS calls while capturing); outside one, float32/float64 products of one dtype call the
    same cuBLAS function through CuPy's handle (``_cublas.EagerBlas``): CuPy's matmul spends more host time than
    the GEMM itself (~90 us a batched or matrix-vector product inside a Transformer step, sampled). CuPy 14 has
    no batched bfloat16 GEMM (it fails with "data type 'E' not understood"): that product runs in float32 and is
    rounded back; float32 accumulation is also what a bfloat16 GEMM does, so only the rounding of the inputs'
    products to the output differs from a native kernel.
    """
    if xp is np:
        return np.matmul(a, b, out=out)
    capture = current_capture()
    if capture is not None:
        return capture.blas.matmul(a, b, out)
    if a.dtype == b.dtype and a.dtype.char in "fd":
        blas = _cublas.eager(xp)
        if (a.ndim == 2 and b.ndim == 2 and a.shape[1] == b.shape[0]
                and (out is None or (out.dtype == a.dtype and out.shape == (a.shape[0], b.shape[1])
                                     and out.flags.c_contiguous))):
            return blas.product(a, b, out)  # the commonest case, without the general logic
        if a.ndim and b.ndim:
            return blas.matmul(a, b, out)
    if a.dtype.name == "bfloat16" and max(a.ndim, b.ndim) > 2:
        c = xp.matmul(a.astype(xp.float32), b.astype(xp.float32)).astype(a.dtype)
        if out is None:
            return c
        out[...] = c
        return out
    return xp.matmul(a, b, out=out)


def batched_matmul(xp: Any, a: Any, b: Any, out: Any) -> Any:
    """``out[i] = a @ b[i]`` on CuPy arrays in one cuBLAS call: ``a`` (m, k), ``b`` (nb, k, n), ``out`` (nb, m, n)
    C-contiguous, one float dtype. A ``b`` whose matrices have evenly strided rows (column blocks of a wider
    matrix, a fixed stride apart) is read in place, where CuPy's matmul copies it first: convolutions write
    their output layout with it."""
    return blas(xp).batched(a, b, out)


def blas(xp: Any) -> _cublas.Blas:
    """The cuBLAS entry of the moment on CuPy: the capture's handle inside a CUDA graph capture, else the one
    through CuPy's own handle. Its ``gemm`` is the raw column-major call (``OP_N``/``OP_T`` of this module)."""
    capture = current_capture()
    return capture.blas if capture is not None else _cublas.eager(xp)


OP_N, OP_T = _cublas.OP_N, _cublas.OP_T


def value_range(xp: Any, a: Any) -> tuple[int, int]:
    """``(min, max)`` of a non-empty integer array as Python ints: on CUDA with one device-to-host copy (each
    copy waits for the GPU), where ``int(a.min()), int(a.max())`` makes two. For the range checks of indices."""
    if xp is np:
        return int(a.min()), int(a.max())
    lo, hi = xp.stack((a.min(), a.max())).get()
    return int(lo), int(hi)


def special_erf(xp: Any, x: Any) -> Any:
    """Elementwise error function."""
    if xp is np:
        from .special import erf

        return erf(x)
    import cupyx.scipy.special as cps

    return cps.erf(x)


def special_erfinv(xp: Any, x: Any) -> Any:
    """Elementwise inverse error function."""
    if xp is np:
        from .special import erfinv

        return erfinv(x)
    import cupyx.scipy.special as cps

    return cps.erfinv(x)


_BLEND_MIN_SIZE = 4096  # below this np.where's own loop is faster than six blend passes


def select(xp: Any, cond: Any, a: Any, b: Any) -> Any:
    """``where(cond, a, b)``.

    NumPy's ``where`` branches per element and costs ~5 ms per million elements
    on a random mask (a multiply costs 0.6 ms). For large same-dtype operands
    the CPU version blends bit patterns instead, which is exact for every value
    (NaN and infinities included) and branch-free.
    """
    if xp is not np:
        return xp.where(cond, a, b)
    # a Python number takes the other side's dtype, as NumPy's weak scalars do
    a_arr = np.asarray(a, dtype=b.dtype) if isinstance(a, int | float) and isinstance(b, np.ndarray) else np.asarray(a)
    b_arr = np.asarray(b, dtype=a_arr.dtype) if isinstance(b, int | float) and a_arr.ndim else np.asarray(b)
    dt = a_arr.dtype
    if b_arr.dtype != dt or dt.itemsize not in (2, 4, 8) or dt.kind == "b":
        return np.where(cond, a, b)
    shape = np.broadcast_shapes(np.shape(cond), a_arr.shape, b_arr.shape)
    if np.prod(shape) < _BLEND_MIN_SIZE:
        return np.where(cond, a, b)
    bits = np.dtype(f"u{dt.itemsize}")
    mask = np.broadcast_to(cond, shape).astype(bits)  # 1 where cond
    np.negative(mask, out=mask)  # all ones where cond, zero elsewhere
    out = np.empty(shape, dt)
    out_bits = out.view(bits)
    np.bitwise_and(a_arr.view(bits), mask, out=out_bits)
    np.invert(mask, out=mask)
    np.bitwise_and(b_arr.view(bits), mask, out=mask)
    np.bitwise_or(out_bits, mask, out=out_bits)
    return out
