"""Convolution primitives: ``Conv`` (cross-correlation), ``ConvTranspose`` (its adjoint in the input)
and ``ConvWeight`` (its adjoint in the weight).

Primitives, not compositions: a convolution composed from slicing and matmul ops records
one node per kernel offset and pays an extra pass over memory for each; here the forward
is one im2col copy plus one GEMM. The three are bilinear and each one's derivatives are
the other two (``<y', conv(x, w)> = <convT(y', w), x> = <convw(x, y'), w>``), so every
order of derivative stays inside this set, and each jvp is ``f(t_a, b) + f(a, t_b)``.

Layout: columns are channel-major, ``(C * prod(K), M)``, so the GEMM sees plain 2-D (or
per-group 3-D) matrices. With stride 1 the columns may live on the zero-padded input grid
(``M = B * prod(padded spatial)``): each kernel offset is then one contiguous shift of the
flattened padded input, a memcpy per channel instead of a strided gather (about 2x faster
on this CPU), at the price of computing discarded border columns; it is chosen when those
cost less than the copies they speed up (large images, few output channels). Otherwise the
columns are the output positions themselves (``M = B * prod(O)``) and each kernel offset is
one strided slice. col2im accumulates over kernel offsets with slices, never ``np.add.at``.

On the CPU (``_conv_cpu*``; a GPU keeps the paths above): work is split over OpenBLAS's thread
count with OpenBLAS itself on one thread; a stride-1 transposed convolution runs as a
convolution with the flipped kernel (gathers instead of accumulating); stride-1 layers with
many channels on a large grid skip im2col (one GEMM per kernel offset on the padded input,
``_Plan.shift``); 3x3 stride-1 layers with many channels use Winograd F(2x2, 3x3) when numba
is installed; the remaining 2-D col2im is a compiled loop.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...backend import matmul
from ...core.function import Primitive
from ...core.tensor import Tensor
from . import _conv_cpu as _cpu
from . import _conv_cpu_blas as _blas
from . import _conv_cpu_jit as _jit
from . import _conv_cpu_winograd as _wino
from . import _conv_cuda

_ALL2 = (slice(None), slice(None))


@dataclass(frozen=True)
class ConvGeom:
    """Stride, dilation, zero padding before/after (per spatial dim) and groups of a convolution."""

    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad_lo: tuple[int, ...]
    pad_hi: tuple[int, ...]
    groups: int

    def out_size(self, size: tuple[int, ...], kernel: tuple[int, ...]) -> tuple[int, ...]:
        """The natural output size of a convolution of spatial ``size`` with ``kernel``."""
        return tuple(
            (n + lo + hi - d * (k - 1) - 1) // s + 1
            for n, k, s, d, lo, hi in zip(size, kernel, self.stride, self.dilation, self.pad_lo, self.pad_hi)
        )


# ----- im2col / col2im ---------------------------------------------------------------------------
def _channel_block(xp: Any, m: int, dtype: Any, channels: int) -> int:
    """Channels per block so that one block of ``m`` columns (~512 KB) stays in a CPU core's cache
    (~25% faster copies); on a GPU one launch per kernel offset is cheaper than many small ones."""
    if xp is not np:
        return max(channels, 1)
    return max(1, (1 << 19) // max(m * np.dtype(dtype).itemsize, 1))


def _grid_pays(ratio: float, cog: int) -> bool:
    """Whether stride-1 columns should live on the padded grid (``ratio`` = grid / output positions).

    Per column and kernel offset, a strided copy costs ~2x a contiguous one and the GEMM ~cog / 30
    contiguous copies (measured on the 2-core CI machine): the grid wins while its extra columns
    cost less than the copies it makes contiguous.
    """
    return ratio * (1 + cog / 30) < 2 + cog / 30


# Shift GEMMs (``_conv_cpu``) replace im2col on the grid when each offset's GEMM is wide enough
# (K = input channels) and the discarded border columns are few: ResNet's 64-channel 32x32 layers
# (grid ratio 1.13) ran at 111 GFLOP/s against 84 for the im2col GEMM, plus the 10 ms copy saved;
# at 16x16 (ratio 1.27) the two tie, below it im2col wins (one core, OpenBLAS 0.3.31).
_SHIFT_MIN_CHANNELS = 32
_SHIFT_MAX_RATIO = 1.2
# Winograd (``_conv_cpu_winograd``) for 3x3 stride-1 convolutions from these input channels
_WINOGRAD_MIN_CHANNELS = 96
_WINOGRAD_MIN_CHANNELS_WEIGHT = 64


class _Plan:
    """Where the columns of one convolution live, and the moves between layouts.

    ``x``: (B, C, *S) input; ``K``: kernel size; ``O``: output size (may be smaller than
    the natural one, for the adjoints of transposed convolutions with output padding).
    On a GPU (``xp`` is CuPy) the columns are the output positions, made by one kernel each way.
    ``shift``: on the CPU, the grid layout without columns (one GEMM per kernel offset).
    """

    def __init__(self, xp: Any, geom: ConvGeom, batch: int, size: tuple[int, ...], kernel: tuple[int, ...],
                 out: tuple[int, ...], cog: int, cin: int = 0, dtype: Any = None) -> None:
        self.B, self.S, self.K, self.O = batch, size, kernel, out
        self.geom = geom
        self.lo = geom.pad_lo
        self.fused = xp is not np and len(size) <= 3
        self.nk = math.prod(kernel)
        dil = geom.dilation
        # padded extent: the input with its padding, and at least what the windows reach
        self.Sp = tuple(
            max(n + lo + hi, (o - 1) * s + d * (k - 1) + 1)
            for n, lo, hi, o, s, d, k in zip(size, geom.pad_lo, geom.pad_hi, out, geom.stride, dil, kernel)
        )
        ratio = math.prod(self.Sp) / max(math.prod(out), 1)
        self.grid = not self.fused and all(s == 1 for s in geom.stride) and _grid_pays(ratio, cog)
        self.shift = (self.grid and xp is np and geom.groups == 1 and cin >= _SHIFT_MIN_CHANNELS
                      and ratio <= _SHIFT_MAX_RATIO and dtype is not None and _blas.available(dtype))
        offsets = list(itertools.product(*[range(k) for k in kernel]))
        if self.grid:
            gstride = [math.prod(self.Sp[i + 1:]) for i in range(len(size))]
            self.shifts = [sum(k * d * g for k, d, g in zip(off, dil, gstride)) for off in offsets]
            self.tail = self.shifts[-1] if self.shifts else 0
            self.M = batch * math.prod(self.Sp)
        else:
            self.slices = [
                _ALL2 + tuple(slice(k * d, k * d + s * (o - 1) + 1, s)
                              for k, d, s, o in zip(off, dil, geom.stride, out))
                for off in offsets
            ]
            self.M = batch * math.prod(out)

    def _jit(self, xp: Any, dtype: Any) -> Any:
        """The compiled col2im loop for 2-D output columns on the CPU (float32/64), else None.

        It accumulates straight into the (B, C, H, W) result: ResNet's 4x4 layer 11 -> 3.4 ms, its
        stride-2 layer 9.4 -> 5.5, LeNet's second 1.4 -> 1.25 (one core). The matching im2col loop
        was slower than NumPy's strided copies, which stay.
        """
        if xp is not np or self.grid or len(self.S) != 2 or np.dtype(dtype).char not in "fd":
            return None
        return _jit.kernels()

    def _interior(self) -> tuple[slice, ...]:
        return _ALL2 + tuple(slice(lo, lo + n) for lo, n in zip(self.lo, self.S))

    def _head(self) -> tuple[slice, ...]:
        return _ALL2 + tuple(slice(0, o) for o in self.O)

    def _padded_cm(self, xp: Any, x: Any, extra: int = 0) -> Any:
        """Zero-padded channel-major copy of ``x``: (C, B, *Sp), flat as (C, B*prod(Sp) + extra) in the grid layout."""
        C = x.shape[1]
        cm = x.transpose(1, 0, *range(2, x.ndim))  # (C, B, *S), a view
        if not self.grid and self.Sp == self.S:
            return cm
        buf = xp.zeros((C, self.B * math.prod(self.Sp) + extra), x.dtype)
        padded = buf[:, : buf.shape[1] - extra].reshape((C, self.B, *self.Sp))
        _cpu.copy_into(xp, padded[self._interior()], cm)
        return buf if self.grid else padded

    def cols(self, xp: Any, x: Any, keep: bool = False) -> Any:
        """im2col: (C * prod(K), M), rows ordered (channel, kernel offset).

        On the CPU a forward (``keep``) leaves small columns for its weight gradient to reuse.
        """
        C = x.shape[1]
        M = self.M
        g = self.geom
        if self.fused:
            return _conv_cuda.im2col(xp, x, self.K, self.O, g.stride, g.dilation, self.lo)
        if xp is np and not keep:
            kept = _cpu.kept_cols(self, x)
            if kept is not None:
                return kept
        col, keep = self._col_buffer(xp, x.dtype, C, keep)
        if self.grid:
            buf = self._padded_cm(xp, x, self.tail)
            if self.nk == 1:
                return buf[:, :M]
            col = col.reshape(C, self.nk, M)
            step = _channel_block(xp, M, x.dtype, C)

            def grid_part(lo: int, hi: int) -> None:
                for c in range(lo * step, min(hi * step, C), step):  # a block of channels stays in cache
                    for k, sh in enumerate(self.shifts):
                        col[c: c + step, k] = buf[c: c + step, sh: sh + M]

            _cpu.run(xp, -(-C // step), col.nbytes, grid_part)
            return self._done(xp, x, col, keep)
        xpad = self._padded_cm(xp, x)
        col = col.reshape(C, self.nk, self.B, *self.O)

        def slice_part(lo: int, hi: int) -> None:
            for k, sl in enumerate(self.slices):
                col[lo:hi, k] = xpad[lo:hi][sl]

        _cpu.run(xp, C, col.nbytes, slice_part)
        return self._done(xp, x, col, keep)

    def _col_buffer(self, xp: Any, dtype: Any, channels: int, keep: bool) -> tuple[Any, bool]:
        """Flat room for the columns, and whether they will be kept: a fresh buffer for small ones on the CPU
        (``keep``), else the scratch buffer."""
        n = channels * self.nk * self.M
        if keep and xp is np and n * np.dtype(dtype).itemsize <= _cpu._KEEP_MAX_BYTES:
            return _cpu.keep_buffer(self, n, np.dtype(dtype)), True
        return _cpu.scratch(xp, "col", (n,), dtype), False

    def _done(self, xp: Any, x: Any, col: Any, keep: bool) -> Any:
        col = col.reshape(x.shape[1] * self.nk, self.M)
        if keep:
            _cpu.keep_cols(self, x, col)
        return col

    def gmat(self, xp: Any, g: Any) -> Any:
        """An output-shaped (B, Co, *O) array as a (Co, M) matrix in the columns' space (zeros off the outputs)."""
        Co = g.shape[1]
        gcm = g.transpose(1, 0, *range(2, g.ndim))
        if self.grid:
            buf = xp.zeros((Co, self.B, *self.Sp), g.dtype)
            _cpu.copy_into(xp, buf[self._head()], gcm)
            return buf.reshape(Co, self.M)
        if xp is not np:
            return xp.ascontiguousarray(gcm).reshape(Co, self.M)
        out = np.empty(gcm.shape, g.dtype)
        _cpu.copy_into(xp, out, gcm)
        return out.reshape(Co, self.M)

    def from_gmat(self, xp: Any, y: Any, bias: Any = None) -> Any:
        """A (Co, M) matrix (maybe scratch) as a new contiguous (B, Co, *O) array, plus ``bias`` per channel."""
        Co = y.shape[0]
        full = (Co, self.B) + (self.Sp if self.grid else self.O)
        view = y.reshape(full)
        if self.grid:
            view = view[self._head()]
        view = view.transpose(1, 0, *range(2, view.ndim))
        out = xp.empty((self.B, Co, *self.O), y.dtype)
        if bias is None:
            _cpu.copy_into(xp, out, view, axis=1)
            return out
        b = bias.reshape((1, Co) + (1,) * len(self.O))

        def part(lo: int, hi: int) -> None:
            xp.add(view[:, lo:hi], b[:, lo:hi], out=out[:, lo:hi])

        _cpu.run(xp, Co, out.nbytes, part)
        return out

    def col2im(self, xp: Any, dcol: Any, channels: int) -> Any:
        """The adjoint of ``cols``: (C * prod(K), M) summed back into a new (B, C, *S) array."""
        C, M = channels, self.M
        g = self.geom
        if self.fused:
            return _conv_cuda.col2im(xp, dcol, self.B, C, self.S, self.K, self.O, g.stride, g.dilation, self.lo)
        if self.grid:
            flat = xp.zeros((C, M + self.tail), dcol.dtype)
            d3 = dcol.reshape(C, self.nk, M)
            step = _channel_block(xp, M, dcol.dtype, C)

            def grid_part(lo: int, hi: int) -> None:
                for c in range(lo * step, min(hi * step, C), step):
                    for k, sh in enumerate(self.shifts):
                        flat[c: c + step, sh: sh + M] += d3[c: c + step, k]

            _cpu.run(xp, -(-C // step), dcol.nbytes, grid_part)
            padded = flat[:, :M].reshape((C, self.B, *self.Sp))
        else:
            jit = self._jit(xp, dcol.dtype)
            if jit is not None:
                out = np.empty((self.B, C, *self.S), dcol.dtype)
                c6 = dcol.reshape(C, *self.K, self.B, *self.O)
                (sh, sw), (dh, dw), (ph, pw) = g.stride, g.dilation, self.lo
                _cpu.split(C, dcol.nbytes, lambda c0, c1: jit.col2im2d(c6, c0, c1, sh, sw, dh, dw, ph, pw, out))
                return out
            padded = xp.zeros((C, self.B, *self.Sp), dcol.dtype)
            d3 = dcol.reshape((C, self.nk, self.B, *self.O))

            def slice_part(lo: int, hi: int) -> None:
                for k, sl in enumerate(self.slices):
                    padded[lo:hi][sl] += d3[lo:hi, k]

            _cpu.run(xp, C, dcol.nbytes, slice_part)
        return self.unpad(xp, padded)

    def unpad(self, xp: Any, padded: Any) -> Any:
        """The input region of a channel-major (C, B, *Sp) array as a new (B, C, *S) array."""
        inner = padded[self._interior()]
        out = xp.empty((self.B, padded.shape[0], *self.S), padded.dtype)
        _cpu.copy_into(xp, out, inner.transpose(1, 0, *range(2, inner.ndim)), axis=1)
        return out


_PLANS: dict[tuple[Any, ...], _Plan] = {}


def _plan(xp: Any, geom: ConvGeom, batch: int, size: tuple[int, ...], kernel: tuple[int, ...], out: tuple[int, ...],
          cog: int, cin: int = 0, dtype: Any = None) -> _Plan:
    """A ``_Plan``, made once per geometry (building one costs ~0.1 ms for 5x5 kernels: LeNet makes five a step).

    The key holds the layout switches too (``_grid_pays``, direct BLAS, the shift limits), which tests change.
    """
    key = (xp, geom, batch, size, kernel, out, cog, cin, None if dtype is None else np.dtype(dtype), _grid_pays,
           _blas.ENABLED, _SHIFT_MIN_CHANNELS, _SHIFT_MAX_RATIO)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) > 256:  # shapes that keep changing (varying batch sizes) must not grow it forever
            _PLANS.clear()
        plan = _PLANS[key] = _Plan(xp, geom, batch, size, kernel, out, cog, cin, dtype)
    return plan


_CHUNK = 4096


def _mm(xp: Any, a: Any, b: Any, out: Any) -> None:
    """``out = a @ b``: split over threads on the CPU (``_conv_cpu.matmul``), one call on a GPU."""
    if xp is np:
        _cpu.matmul(a, b, out)
    else:
        matmul(xp, a, b, out=out)


def _long_matmul(xp: Any, a: Any, b: Any) -> Any:
    """``a @ b`` for a long reduction (..., m, K) @ (..., K, n): a small result is summed over K in pieces.

    OpenBLAS ran (6, 50176) @ (50176, 25) 7x faster in 4096-long pieces (the pieces stay in cache);
    large results (64 x 576) gain nothing, so they take one call. 2-D float32/64 on the CPU:
    ``_conv_cpu.weight_matmul``.
    """
    if xp is np and a.ndim == 2 and a.dtype == b.dtype and a.dtype.char in "fd":
        return _cpu.weight_matmul(a, b)
    k = a.shape[-1]
    if k <= 2 * _CHUNK or a.shape[-2] * b.shape[-1] > 4096:
        return matmul(xp, a, b)
    out = matmul(xp, a[..., :_CHUNK], b[..., :_CHUNK, :])
    for s in range(_CHUNK, k, _CHUNK):
        out += matmul(xp, a[..., s: s + _CHUNK], b[..., s: s + _CHUNK, :])
    return out


def _grouped(a: Any, groups: int) -> Any:
    """A (R, M) matrix as (G, R / G, M), or itself for one group."""
    return a if groups == 1 else a.reshape(groups, a.shape[0] // groups, a.shape[1])


def _channel_view(b: Tensor, ndim: int) -> Tensor:
    """A per-channel (C,) tensor shaped to broadcast against (B, C, *spatial)."""
    return b.reshape((1, b.shape[0]) + (1,) * (ndim - 2))


def _spatial_sum(g: Tensor) -> Tensor:
    """The gradient of a per-channel bias: sum over everything but dim 1."""
    return g.sum((0, *range(2, g.ndim)))


def _add(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None:
        return b
    return a if b is None else a + b


def _conv_forward(xp: Any, x: Any, w: Any, b: Any, geom: ConvGeom, osize: tuple[int, ...] | None) -> Any:
    """``conv(x, w) + b`` on arrays: one GEMM over the columns, or one per kernel offset (``_Plan.shift``)."""
    kernel = tuple(w.shape[2:])
    out = osize or geom.out_size(tuple(x.shape[2:]), kernel)
    Co = w.shape[0]
    plan = _plan(xp, geom, x.shape[0], tuple(x.shape[2:]), kernel, out, Co // geom.groups, x.shape[1], x.dtype)
    wino = None if xp is not np or plan.shift else _wino.winograd_pays(x, kernel, geom.stride, geom.dilation,
                                                                          geom.groups, _WINOGRAD_MIN_CHANNELS)
    if wino is not None:
        y = _wino.winograd(wino, x, w, geom.pad_lo, out)
        if b is not None:
            y += b.reshape((1, Co, 1, 1))
        return y
    if plan.shift:
        buf = plan._padded_cm(xp, x, plan.tail)
        wk = np.ascontiguousarray(w.reshape(Co, w.shape[1], plan.nk).transpose(2, 0, 1))  # (prod(K), Co, C)
        y = _cpu.scratch(xp, "gemm", (Co, plan.M), x.dtype)
        _cpu.shift_conv(buf, wk, plan.shifts, plan.M, y)
        return plan.from_gmat(xp, y, b)
    col = _grouped(plan.cols(xp, x, keep=True), geom.groups)
    wm = w.reshape(geom.groups, Co // geom.groups, -1) if geom.groups > 1 else w.reshape(Co, -1)
    y = _cpu.scratch(xp, "gemm", (*wm.shape[:-1], plan.M), x.dtype)
    _mm(xp, wm, col, y)
    return plan.from_gmat(xp, y.reshape(Co, plan.M), b)


# ----- the primitives -------------------------------------------------------------------------------
class Conv(Primitive):
    """``y = conv(x, w) + b``: x (B, Ci, *S), w (Co, Ci / G, *K), b (Co,) or None -> y (B, Co, *O).

    ``osize`` is the output size (the natural one when None).
    """

    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, x: Any, w: Any, b: Any, geom: ConvGeom, osize: tuple[int, ...] | None) -> Any:
        with _cpu.scope(ctx.xp, 2.0 * x.size * w.size / max(x.shape[1], 1)):
            return _conv_forward(ctx.xp, x, w, b, geom, osize)

    def backward(self, grad: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        x, w, b, geom, _ = self.inputs
        need_x, need_w, need_b = (e is not None for e in self.next_edges[:3])
        gx = ConvTranspose.apply(grad, w, None, geom, tuple(x.shape[2:])) if need_x else None
        gw = ConvWeight.apply(x, grad, geom, tuple(w.shape[2:])) if need_w else None
        gb = _spatial_sum(grad) if b is not None and need_b else None
        return gx, gw, gb, None, None

    def jvp(self, tx: Tensor | None, tw: Tensor | None, tb: Tensor | None, *_: Any) -> Tensor | None:
        x, w, _, geom, osize = self.inputs
        out = None if tx is None else Conv.apply(tx, w, None, geom, osize)
        out = _add(out, None if tw is None else Conv.apply(x, tw, None, geom, osize))
        return _add(out, None if tb is None else _channel_view(tb, x.ndim))


class ConvTranspose(Primitive):
    """``z = convT(g, w) + b``, the adjoint of ``conv(., w)`` for inputs of spatial size ``size``.

    g (B, Co, *O), w (Co, Ci / G, *K) (a transposed convolution's weight layout), b (Ci,) or
    None -> z (B, Ci, *size).
    """

    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, g: Any, w: Any, b: Any, geom: ConvGeom, size: tuple[int, ...]) -> Any:
        with _cpu.scope(ctx.xp, 2.0 * g.size * w.size / max(g.shape[1], 1)):
            return ConvTranspose._forward(ctx.xp, g, w, b, geom, size)

    @staticmethod
    def _forward(xp: Any, g: Any, w: Any, b: Any, geom: ConvGeom, size: tuple[int, ...]) -> Any:
        flipped = None if xp is not np else _cpu.flip_transposed(w, geom.stride, geom.dilation, geom.pad_lo,
                                                                   geom.groups, tuple(g.shape[2:]), size)
        if flipped is not None:  # as a convolution: gathers where col2im accumulates
            wf, lo, hi = flipped
            return _conv_forward(xp, g, wf, b, ConvGeom((1,) * len(size), geom.dilation, lo, hi, geom.groups), size)
        kernel = tuple(w.shape[2:])
        G = geom.groups
        plan = _plan(xp, geom, g.shape[0], size, kernel, tuple(g.shape[2:]), w.shape[0] // G)
        gm = _grouped(plan.gmat(xp, g), G)
        if G > 1:
            wm = w.reshape(G, w.shape[0] // G, -1).transpose(0, 2, 1)
        else:
            wm = w.reshape(w.shape[0], -1).T
        C = w.shape[1] * G
        dcol = _cpu.scratch(xp, "gemm", (*wm.shape[:-1], plan.M), g.dtype)
        _mm(xp, wm, gm, dcol)
        z = plan.col2im(xp, dcol, C)
        if b is not None:
            z += b.reshape((1, C) + (1,) * len(size))
        return z

    def backward(self, grad: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        g, w, b, geom, _ = self.inputs
        need_g, need_w, need_b = (e is not None for e in self.next_edges[:3])
        gg = Conv.apply(grad, w, None, geom, tuple(g.shape[2:])) if need_g else None
        gw = ConvWeight.apply(grad, g, geom, tuple(w.shape[2:])) if need_w else None
        gb = _spatial_sum(grad) if b is not None and need_b else None
        return gg, gw, gb, None, None

    def jvp(self, tg: Tensor | None, tw: Tensor | None, tb: Tensor | None, *_: Any) -> Tensor | None:
        g, w, _, geom, size = self.inputs
        out = None if tg is None else ConvTranspose.apply(tg, w, None, geom, size)
        out = _add(out, None if tw is None else ConvTranspose.apply(g, tw, None, geom, size))
        return _add(out, None if tb is None else _channel_view(tb, g.ndim))


class ConvWeight(Primitive):
    """``v = convw(x, g)``, the adjoint of ``conv(x, .)``: x (B, Ci, *S), g (B, Co, *O) -> v (Co, Ci / G, *kernel)."""

    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, x: Any, g: Any, geom: ConvGeom, kernel: tuple[int, ...]) -> Any:
        with _cpu.scope(ctx.xp, 2.0 * x.size * g.shape[1] * math.prod(kernel) / geom.groups):
            return ConvWeight._forward(ctx.xp, x, g, geom, kernel)

    @staticmethod
    def _forward(xp: Any, x: Any, g: Any, geom: ConvGeom, kernel: tuple[int, ...]) -> Any:
        G = geom.groups
        Co, C = g.shape[1], x.shape[1]
        plan = _plan(xp, geom, x.shape[0], tuple(x.shape[2:]), kernel, tuple(g.shape[2:]), Co // G, C, x.dtype)
        wino = None if xp is not np else _wino.winograd_pays(x, kernel, geom.stride, geom.dilation, G,
                                                             _WINOGRAD_MIN_CHANNELS_WEIGHT)
        if wino is not None and g.dtype == x.dtype:
            return _wino.winograd_weight(wino, x, g, geom.pad_lo)
        if plan.shift:
            dw = np.empty((plan.nk, Co, C), x.dtype)
            _cpu.shift_weight(plan.gmat(xp, g), plan._padded_cm(xp, x, plan.tail), plan.shifts, plan.M, dw)
            return np.ascontiguousarray(dw.transpose(1, 2, 0)).reshape((Co, C, *kernel))
        col = _grouped(plan.cols(xp, x), G)
        gm = _grouped(plan.gmat(xp, g), G)
        colT = col.transpose(0, 2, 1) if G > 1 else col.T
        v = _long_matmul(xp, gm, colT)  # (G, Co / G, Ci / G * prod(K))
        if v.dtype != x.dtype:  # NumPy's matmul widens bfloat16 to float32
            v = v.astype(x.dtype)
        return v.reshape((g.shape[1], x.shape[1] // G, *kernel))

    def backward(self, grad: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        x, g, geom, _ = self.inputs
        need_x, need_g = (e is not None for e in self.next_edges[:2])
        gx = ConvTranspose.apply(g, grad, None, geom, tuple(x.shape[2:])) if need_x else None
        gg = Conv.apply(x, grad, None, geom, tuple(g.shape[2:])) if need_g else None
        return gx, gg, None, None

    def jvp(self, tx: Tensor | None, tg: Tensor | None, *_: Any) -> Tensor | None:
        x, g, geom, kernel = self.inputs
        out = None if tx is None else ConvWeight.apply(tx, g, geom, kernel)
        return _add(out, None if tg is None else ConvWeight.apply(x, tg, geom, kernel))
