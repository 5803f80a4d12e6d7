"""Where the im2col columns of one convolution live (``_Plan``), the moves between layouts, its cache, and
the geometry of a convolution (``ConvGeom``, re-exported by ``conv.py``).

Split from ``conv.py`` (the primitives), which keeps the switches that choose a layout
(``_grid_pays``, the shift GEMMs' limits) so that tests can change them there: ``plan`` takes
them as arguments and keys its cache on them.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from . import _conv_cpu as _cpu
from . import _conv_cpu_blas as _blas
from . import _conv_cpu_jit as _jit
from . import _conv_cuda

_ALL2 = (slice(None), slice(None))
# (grid_pays(ratio, cog), shift GEMMs' minimum input channels, their maximum grid ratio): see conv.py
Switches = tuple[Callable[[float, int], bool], int, float]


class ConvGeom(NamedTuple):
    """Stride, dilation, zero padding before/after (per spatial dim) and groups of a convolution.

    A named tuple: it keys the plan cache at every call, and a tuple hashes and compares in C (a frozen
    dataclass's ``__hash__`` and ``__eq__`` are Python calls)."""

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


def _channel_block(xp: Any, m: int, dtype: Any, channels: int) -> int:
    """Channels per block so that one block of ``m`` columns (~512 KB) stays in a CPU core's cache
    (~25% faster copies); on a GPU one launch per kernel offset is cheaper than many small ones."""
    if xp is not np:
        return max(channels, 1)
    return max(1, (1 << 19) // max(m * np.dtype(dtype).itemsize, 1))


class _Plan:
    """Where the columns of one convolution live, and the moves between layouts.

    ``x``: (B, C, *S) input; ``K``: kernel size; ``O``: output size (may be smaller than
    the natural one, for the adjoints of transposed convolutions with output padding).
    On a GPU (``xp`` is CuPy) the columns are the output positions, made by one kernel each way.
    ``shift``: on the CPU, the grid layout without columns (one GEMM per kernel offset).
    """

    def __init__(self, xp: Any, geom: ConvGeom, batch: int, size: tuple[int, ...], kernel: tuple[int, ...],
                 out: tuple[int, ...], cog: int, cin: int, dtype: Any, switches: Switches) -> None:
        self.B, self.S, self.K, self.O = batch, size, kernel, out
        self.geom = geom
        self._gpu_geometry: dict[tuple[int, int], Any] = {}
        self.lo = geom.pad_lo
        self.fused = xp is not np and len(size) <= 3
        # a 1x1 convolution with stride 1 and no padding: its columns are its input
        self.pointwise = (all(k == 1 for k in kernel) and all(s == 1 for s in geom.stride) and size == out
                          and not any(geom.pad_lo))
        self.nk = math.prod(kernel)
        dil = geom.dilation
        # padded extent: the input with its padding, and at least what the windows reach
        self.Sp = tuple(
            max(n + lo + hi, (o - 1) * s + d * (k - 1) + 1)
            for n, lo, hi, o, s, d, k in zip(size, geom.pad_lo, geom.pad_hi, out, geom.stride, dil, kernel)
        )
        ratio = math.prod(self.Sp) / max(math.prod(out), 1)
        grid_pays, shift_min_channels, shift_max_ratio = switches
        self.grid = not self.fused and all(s == 1 for s in geom.stride) and grid_pays(ratio, cog)
        self.shift = (self.grid and xp is np and geom.groups == 1 and cin >= shift_min_channels
                      and ratio <= shift_max_ratio and dtype is not None and _blas.available(dtype))
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

    def _geometry(self, xp: Any, channels: int) -> Any:
        """The CUDA kernels' geometry array for ``channels`` input channels on the current device, made once."""
        key = (xp.cuda.runtime.getDevice(), channels)
        g = self._gpu_geometry.get(key)
        if g is None:
            geom = self.geom
            g = self._gpu_geometry[key] = _conv_cuda.geometry(xp, self.B, channels, self.S, self.K, self.O,
                                                              geom.stride, geom.dilation, self.lo)
        return g

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
        if self.fused:
            return _conv_cuda.im2col(xp, x, self.K, self.O, self._geometry(xp, C))
        if xp is np and not keep:
            kept = _cpu.COLUMNS.get(self, x)
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
        if keep and xp is np and n * np.dtype(dtype).itemsize <= _cpu.COLUMNS.max_bytes:
            return _cpu.COLUMNS.buffer(self, n, np.dtype(dtype)), True
        return _cpu.scratch(xp, "col", (n,), dtype), False

    def _done(self, xp: Any, x: Any, col: Any, keep: bool) -> Any:
        col = col.reshape(x.shape[1] * self.nk, self.M)
        if keep:
            _cpu.COLUMNS.put(self, x, col)
        return col

    def gmat(self, xp: Any, g: Any) -> Any:
        """An output-shaped (B, Co, *O) array as a (Co, M) matrix in the columns' space (zeros off the outputs).

        Inside :func:`sharing_gmat` the matrix of one ``g`` is made once (read only after that).
        """
        shared = getattr(_SHARED, "gmats", None)
        if shared is None:
            return self._gmat(xp, g)
        key = (id(g), self.grid, self.Sp, self.M)
        hit = shared.get(key)
        if hit is None or hit[0] is not g:
            hit = shared[key] = (g, self._gmat(xp, g))
        return hit[1]

    def _gmat(self, xp: Any, g: Any) -> Any:
        Co = g.shape[1]
        if xp is not np and not self.grid:
            return _conv_cuda.channel_major(xp, g)
        gcm = g.transpose(1, 0, *range(2, g.ndim))
        if self.grid:
            buf = xp.zeros((Co, self.B, *self.Sp), g.dtype)
            _cpu.copy_into(xp, buf[self._head()], gcm)
            return buf.reshape(Co, self.M)
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
        if self.fused:
            return _conv_cuda.col2im(xp, dcol, self.B, C, self.S, self._geometry(xp, C))
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
                (sh, sw), (dh, dw), (ph, pw) = self.geom.stride, self.geom.dilation, self.lo
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


_SHARED = threading.local()


class sharing_gmat:  # noqa: N801 - used as a function: ``with sharing_gmat():``
    """Around a convolution's backward: its input and weight gradients both lay the output gradient out as a
    (Co, M) matrix, a copy (on a GPU a launch) each; inside, the second reuses the first's. Sound because
    nothing writes the gradient between the two, and the shared matrices go when the block ends.
    (A class, not a generator context manager: this runs at every convolution's backward.)"""

    def __enter__(self) -> None:
        self.before = getattr(_SHARED, "gmats", None)
        _SHARED.gmats = {}

    def __exit__(self, *exc: object) -> None:
        _SHARED.gmats = self.before


_PLANS: dict[tuple[Any, ...], _Plan] = {}


def plan(xp: Any, geom: ConvGeom, batch: int, size: tuple[int, ...], kernel: tuple[int, ...], out: tuple[int, ...],
         cog: int, cin: int, dtype: Any, switches: Switches) -> _Plan:
    """A ``_Plan``, made once per geometry (building one costs ~0.1 ms for 5x5 kernels: LeNet makes five a step).

    The key holds the layout switches too (``switches``, direct BLAS), which tests change.
    """
    key = (xp, geom, batch, size, kernel, out, cog, cin, None if dtype is None else np.dtype(dtype), switches,
           _blas.ENABLED)
    found = _PLANS.get(key)
    if found is None:
        if len(_PLANS) > 256:  # shapes that keep changing (varying batch sizes) must not grow it forever
            _PLANS.clear()
        found = _PLANS[key] = _Plan(xp, geom, batch, size, kernel, out, cog, cin, dtype, switches)
    return found
