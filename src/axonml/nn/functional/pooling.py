"""Pooling, as ``torch.nn.functional``: max/avg pooling (1-3 D), adaptive pooling and max_unpool.

Inputs may be batched (B, C, *S) or unbatched (C, *S). Indices (``return_indices``) are
PyTorch's: the flat position in each channel's (unpadded) input, int64. The work is done
by the primitives of ``nn/prims/pool.py``; adaptive average pooling is a composition
(a mean, or one matmul per pooled dimension with an averaging matrix).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...backend import value_range
from ...core.tensor import Tensor
from ...errors import DTypeError, IndexingError, ShapeError
from ..prims.pool import AdaptiveGeom, AvgPool, FlatScatter, MaxPool, PoolGeom
from .conv import ntuple

__all__ = [
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "max_pool1d", "max_pool2d", "max_pool3d",
    "max_unpool1d", "max_unpool2d", "max_unpool3d",
]

IntOrSeq = int | Sequence[int]


# ----- shared checks --------------------------------------------------------------------
def _batched(op: str, x: Tensor, n: int) -> tuple[Tensor, bool]:
    """(the input with a batch dimension, whether one was added)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor input, got {type(x).__name__}")
    if x.ndim == n + 2:
        return x, False
    if x.ndim == n + 1:
        return x.unsqueeze(0), True
    raise ShapeError(f"{op}: expected a {n + 1}-D (unbatched) or {n + 2}-D (batched) input, got shape {tuple(x.shape)}")


def _numeric(op: str, x: Tensor, float_only: bool) -> None:
    if x.dtype.name == "bool" or (float_only and not x.is_floating_point()):
        raise DTypeError(f"{op}: not implemented for {x.dtype} inputs")


def _unbatch(t: Tensor, unbatched: bool) -> Tensor:
    return t.squeeze(0) if unbatched else t


def _out_size(op: str, size: tuple[int, ...], k: tuple[int, ...], s: tuple[int, ...], p: tuple[int, ...],
              d: tuple[int, ...], ceil_mode: bool) -> tuple[int, ...]:
    """PyTorch's pooling output size; in ceil mode the last window must start inside the input or left padding."""
    out = []
    for n, kk, ss, pp, dd in zip(size, k, s, p, d):
        span = n + 2 * pp - dd * (kk - 1) - 1
        o = (-(-span // ss) if ceil_mode else span // ss) + 1
        if ceil_mode and (o - 1) * ss >= n + pp:
            o -= 1
        out.append(o)
    if any(o < 1 for o in out):
        raise ShapeError(f"{op}: input size {size} gives output size {tuple(out)}: the output is too small")
    return tuple(out)


def _geom(op: str, n: int, size: tuple[int, ...], kernel_size: Any, stride: Any, padding: Any, dilation: Any,
          ceil_mode: bool) -> PoolGeom:
    k = ntuple(kernel_size, n, op, "kernel_size")
    s = k if stride is None or (not isinstance(stride, int) and len(stride) == 0) else ntuple(stride, n, op, "stride")
    p, d = ntuple(padding, n, op, "padding"), ntuple(dilation, n, op, "dilation")
    for name, vals, low in (("kernel_size", k, 1), ("stride", s, 1), ("dilation", d, 1), ("padding", p, 0)):
        if any(v < low for v in vals):
            raise ValueError(f"{op}: {name} must be >= {low}, got {vals}")
    if any(pp > kk // 2 for pp, kk in zip(p, k)):
        raise ValueError(f"{op}: padding {p} should be at most half of the kernel size {k}")
    return PoolGeom(k, s, d, p, _out_size(op, size, k, s, p, d, ceil_mode))


# ----- max pooling ------------------------------------------------------------------------
def _max_pool(op: str, n: int, x: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
              ceil_mode: bool, return_indices: bool) -> Any:
    x, unbatched = _batched(op, x, n)
    _numeric(op, x, float_only=False)
    geom = _geom(op, n, tuple(x.shape[2:]), kernel_size, stride, padding, dilation, ceil_mode)
    return _run_max(x, geom, return_indices, unbatched)


def _run_max(x: Tensor, geom: Any, return_indices: bool, unbatched: bool) -> Any:
    box: list[Any] | None = [] if return_indices else None
    out = _unbatch(MaxPool.apply(x, geom, box), unbatched)
    if box is None:
        return out
    return out, _unbatch(Tensor._make(box[0], x._device), unbatched)


def max_pool1d(input: Tensor, kernel_size: IntOrSeq, stride: IntOrSeq | None = None,  # noqa: A002
               padding: IntOrSeq = 0, dilation: IntOrSeq = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Any:
    """Max over windows of (B, C, L); with ``return_indices``, also the int64 positions of the maxima."""
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(input: Tensor, kernel_size: IntOrSeq, stride: IntOrSeq | None = None,  # noqa: A002
               padding: IntOrSeq = 0, dilation: IntOrSeq = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Any:
    """Max over windows of (B, C, H, W) (stride defaults to the kernel size; padding counts as -inf).

    With ``return_indices`` returns ``(values, indices)``, indices being ``h * W + w`` of each maximum.
    """
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool3d(input: Tensor, kernel_size: IntOrSeq, stride: IntOrSeq | None = None,  # noqa: A002
               padding: IntOrSeq = 0, dilation: IntOrSeq = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> Any:
    """Max over windows of (B, C, D, H, W)."""
    return _max_pool("max_pool3d", 3, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


# ----- average pooling ----------------------------------------------------------------------
def _avg_scale(x: Tensor, geom: PoolGeom, count_include_pad: bool, divisor_override: int | None) -> Any:
    """1 / divisor: a number when all windows share it, else an array broadcasting against (B, C, *O)."""
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError("avg_pool: divisor_override must be non-zero")
        return 1.0 / divisor_override
    size = tuple(x.shape[2:])
    div = np.ones((), np.float64)
    for nn, k, s, p, o in zip(size, geom.kernel, geom.stride, geom.pad, geom.out):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, nn + p)
        count = (end - start) if count_include_pad else (np.minimum(end, nn) - np.maximum(start, 0))
        div = np.multiply.outer(div, count)
    if np.all(div == div.flat[0]):
        return 1.0 / float(div.flat[0])
    return x._device.xp.asarray((1.0 / div)[None, None].astype(x._data.dtype))


def _avg_pool(op: str, n: int, x: Tensor, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,
              count_include_pad: bool, divisor_override: int | None) -> Tensor:
    x, unbatched = _batched(op, x, n)
    _numeric(op, x, float_only=True)
    geom = _geom(op, n, tuple(x.shape[2:]), kernel_size, stride, padding, 1, ceil_mode)
    scale = _avg_scale(x, geom, count_include_pad, divisor_override)
    return _unbatch(AvgPool.apply(x, geom, scale), unbatched)


def avg_pool1d(input: Tensor, kernel_size: IntOrSeq, stride: IntOrSeq | None = None,  # noqa: A002
               padding: IntOrSeq = 0, ceil_mode: bool = False, count_include_pad: bool = True) -> Tensor:
    """Mean over windows of (B, C, L)."""
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(input: Tensor, kernel_size: IntOrSeq, stride: IntOrSeq | None = None,  # noqa: A002
               padding: IntOrSeq = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    """Mean over windows of (B, C, H, W).

    ``count_include_pad`` counts zero padding in the divisor; windows that ceil mode extends
    past the padding never count the overhang; ``divisor_override`` replaces the divisor.
    """
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def avg_pool3d(input: Tensor, kernel_size: IntOrSeq, stride: IntOrSeq | None = None,  # noqa: A002
               padding: IntOrSeq = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    """Mean over windows of (B, C, D, H, W)."""
    return _avg_pool("avg_pool3d", 3, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


# ----- adaptive pooling ----------------------------------------------------------------------
def _adaptive_size(op: str, output_size: Any, size: tuple[int, ...]) -> tuple[int, ...]:
    n = len(size)
    if output_size is None or isinstance(output_size, int):
        vals: list[Any] = [output_size] * n
    else:
        vals = list(output_size)
        if len(vals) == 1:
            vals = vals * n
        if len(vals) != n:
            raise ShapeError(f"{op}: output_size must have {n} values, got {output_size!r}")
    out = tuple(s if v is None else int(v) for v, s in zip(vals, size))
    if any(o < 1 for o in out) or any(s < 1 for s in size):
        raise ShapeError(f"{op}: output size {out} and input size {size} must be positive")
    return out


def _averaging_matrix(n: int, o: int) -> np.ndarray:
    """(o, n): row i averages PyTorch's adaptive window [floor(i*n/o), ceil((i+1)*n/o))."""
    i = np.arange(o)
    start, end = (i * n) // o, -((-(i + 1) * n) // o)
    cols = np.arange(n)
    inside = (cols[None, :] >= start[:, None]) & (cols[None, :] < end[:, None])
    return inside / (end - start)[:, None]


def _adaptive_avg(op: str, n: int, x: Tensor, output_size: Any) -> Tensor:
    x, unbatched = _batched(op, x, n)
    _numeric(op, x, float_only=True)
    size, dtype = tuple(x.shape[2:]), x.dtype
    out = _adaptive_size(op, output_size, size)
    if all(o == 1 for o in out):  # global average pooling
        return _unbatch(x.mean(tuple(range(2, n + 2)), keepdim=True), unbatched)
    for d, (s, o) in enumerate(zip(size, out)):
        if s == o:
            continue
        axis = 2 + d
        a = Tensor._make(x._device.xp.asarray(_averaging_matrix(s, o).T.astype(x._data.dtype)), x._device)
        x = (x.movedim(axis, -1) @ a).movedim(-1, axis)  # (..., s) @ (s, o)
    return _unbatch(x.contiguous()._cast(dtype), unbatched)  # NumPy's matmul widens bfloat16


def adaptive_avg_pool1d(input: Tensor, output_size: Any) -> Tensor:  # noqa: A002
    """Average pooling of (B, C, L) to length ``output_size`` with PyTorch's adaptive windows."""
    return _adaptive_avg("adaptive_avg_pool1d", 1, input, output_size)


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:  # noqa: A002
    """Average pooling of (B, C, H, W) to ``output_size`` (an int, a pair, None entries keep the input size)."""
    return _adaptive_avg("adaptive_avg_pool2d", 2, input, output_size)


def adaptive_avg_pool3d(input: Tensor, output_size: Any) -> Tensor:  # noqa: A002
    """Average pooling of (B, C, D, H, W) to ``output_size``."""
    return _adaptive_avg("adaptive_avg_pool3d", 3, input, output_size)


def _adaptive_max(op: str, n: int, x: Tensor, output_size: Any, return_indices: bool) -> Any:
    x, unbatched = _batched(op, x, n)
    _numeric(op, x, float_only=True)
    size = tuple(x.shape[2:])
    return _run_max(x, AdaptiveGeom(size, _adaptive_size(op, output_size, size)), return_indices, unbatched)


def adaptive_max_pool1d(input: Tensor, output_size: Any, return_indices: bool = False) -> Any:  # noqa: A002
    """Max pooling of (B, C, L) to length ``output_size`` with PyTorch's adaptive windows."""
    return _adaptive_max("adaptive_max_pool1d", 1, input, output_size, return_indices)


def adaptive_max_pool2d(input: Tensor, output_size: Any, return_indices: bool = False) -> Any:  # noqa: A002
    """Max pooling of (B, C, H, W) to ``output_size``; with ``return_indices`` also the int64 flat positions."""
    return _adaptive_max("adaptive_max_pool2d", 2, input, output_size, return_indices)


def adaptive_max_pool3d(input: Tensor, output_size: Any, return_indices: bool = False) -> Any:  # noqa: A002
    """Max pooling of (B, C, D, H, W) to ``output_size``."""
    return _adaptive_max("adaptive_max_pool3d", 3, input, output_size, return_indices)


# ----- max_unpool ------------------------------------------------------------------------------
def _max_unpool(op: str, n: int, x: Tensor, indices: Tensor, kernel_size: Any, stride: Any, padding: Any,
                output_size: Any) -> Tensor:
    x, unbatched = _batched(op, x, n)
    if not isinstance(indices, Tensor) or indices._data.dtype.kind not in "iu":
        raise DTypeError(f"{op}: indices must be an integer tensor")
    idx = indices.unsqueeze(0) if unbatched else indices
    if tuple(idx.shape) != tuple(x.shape):
        raise ShapeError(f"{op}: indices of shape {tuple(indices.shape)} for an input of shape {tuple(x.shape)}")
    k = ntuple(kernel_size, n, op, "kernel_size")
    s = k if stride is None else ntuple(stride, n, op, "stride")
    p = ntuple(padding, n, op, "padding")
    if output_size is None:
        size = tuple((i - 1) * ss - 2 * pp + kk for i, ss, pp, kk in zip(x.shape[2:], s, p, k))
    else:
        given = tuple(int(v) for v in output_size)
        if len(given) not in (n, n + 1, n + 2):
            raise ShapeError(f"{op}: output_size must have {n} (or {n + 2}) values, got {output_size!r}")
        size = given[-n:]
    if any(v < 1 for v in size):
        raise ShapeError(f"{op}: output size {size} is invalid for input {tuple(x.shape)}")
    a = idx._data
    lo, hi = value_range(x.device.xp, a) if a.size else (0, -1)
    if lo < 0 or hi >= math.prod(size):
        bad = lo if lo < 0 else hi
        raise IndexingError(f"{op}: found an invalid max index {bad} (output volumes are of size {size})")
    if a.dtype != np.int64:
        a = a.astype(np.int64)
    return _unbatch(FlatScatter.apply(x, a, size, False), unbatched)


def max_unpool1d(input: Tensor, indices: Tensor, kernel_size: IntOrSeq,  # noqa: A002
                 stride: IntOrSeq | None = None, padding: IntOrSeq = 0, output_size: Any = None) -> Tensor:
    """The partial inverse of max_pool1d: values placed at ``indices``, zeros elsewhere."""
    return _max_unpool("max_unpool1d", 1, input, indices, kernel_size, stride, padding, output_size)


def max_unpool2d(input: Tensor, indices: Tensor, kernel_size: IntOrSeq,  # noqa: A002
                 stride: IntOrSeq | None = None, padding: IntOrSeq = 0, output_size: Any = None) -> Tensor:
    """The partial inverse of max_pool2d: each value placed at its index (from ``return_indices``), zeros elsewhere.

    The output size defaults to ``(H - 1) * stride - 2 * padding + kernel_size``; ``output_size`` overrides it.
    """
    return _max_unpool("max_unpool2d", 2, input, indices, kernel_size, stride, padding, output_size)


def max_unpool3d(input: Tensor, indices: Tensor, kernel_size: IntOrSeq,  # noqa: A002
                 stride: IntOrSeq | None = None, padding: IntOrSeq = 0, output_size: Any = None) -> Tensor:
    """The partial inverse of max_pool3d."""
    return _max_unpool("max_unpool3d", 3, input, indices, kernel_size, stride, padding, output_size)
