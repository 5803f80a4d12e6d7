"""Pooling primitives: max pooling (regular and adaptive windows), average pooling and its
adjoint, and the per-channel gather/scatter pair behind max pooling's gradient and max_unpool.

Primitives, not compositions: pooling composed from slicing and ``maximum`` ops records a
node per kernel offset, splits the gradient between tied maxima (PyTorch gives it all to
the first) and pays a pass per node; a 2x2 max pool through reshape + max was 40x slower
than ``np.maximum`` over strided views. ``FlatGather``/``FlatScatter`` index with one flat
per-channel index (PyTorch's ``return_indices`` layout): ``np.add.at`` with one 1-D index is
~5x faster than the same scatter through ``core``'s multi-array ``ScatterAdd``.

Shapes: x (B, C, *S) -> (B, C, *O). Windows are described by ``PoolGeom`` (regular) or
``AdaptiveGeom`` (PyTorch's adaptive windows ``[floor(o*S/O), ceil((o+1)*S/O))``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...backend import index_add_at
from ...backend.graphs import current_capture
from ...core.dtypes import is_float_np
from ...core.function import Primitive
from ...core.tensor import Tensor
from . import _conv_cpu_pool as _cpu_pool

_ALL2 = (slice(None), slice(None))


@dataclass(frozen=True)
class PoolGeom:
    """Regular windows: kernel, stride, dilation, padding before, and the output size (ceil mode included)."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad: tuple[int, ...]
    out: tuple[int, ...]

    def padded(self, size: tuple[int, ...]) -> tuple[int, ...]:
        """Extent of the padded input that the windows need (right padding grows for ceil mode)."""
        return tuple(
            max(p + n, (o - 1) * s + d * (k - 1) + 1)
            for n, k, s, d, p, o in zip(size, self.kernel, self.stride, self.dilation, self.pad, self.out)
        )

    def offsets(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*[range(k) for k in self.kernel]))

    def slices(self) -> list[tuple[slice, ...]]:
        return [
            _ALL2 + tuple(slice(k * d, k * d + s * (o - 1) + 1, s)
                          for k, d, s, o in zip(off, self.dilation, self.stride, self.out))
            for off in self.offsets()
        ]

    def pad_input(self, xp: Any, x: Any, fill: Any) -> Any:
        """``x`` inside a (B, C, *padded) array filled with ``fill`` (``x`` itself when no padding is needed)."""
        size = tuple(x.shape[2:])
        ext = self.padded(size)
        if ext == size and not any(self.pad):
            return x
        buf = xp.full(tuple(x.shape[:2]) + ext, fill, x.dtype)
        buf[_ALL2 + tuple(slice(p, p + n) for p, n in zip(self.pad, size))] = x
        return buf

    def positions(self, size: tuple[int, ...]) -> list[np.ndarray]:
        """Per dim, the input position of (output o, kernel offset j) as an (O, k) table (may be outside)."""
        return [
            (np.arange(o)[:, None] * s - p + np.arange(k)[None, :] * d)
            for o, s, p, k, d in zip(self.out, self.stride, self.pad, self.kernel, self.dilation)
        ]


@dataclass(frozen=True)
class AdaptiveGeom:
    """Adaptive windows for input ``size`` and output ``out``."""

    size: tuple[int, ...]
    out: tuple[int, ...]

    def positions(self, size: tuple[int, ...]) -> list[np.ndarray]:
        """Per dim, an (O, kmax) table of input positions; short windows repeat their last element."""
        tables = []
        for n, o in zip(self.size, self.out):
            idx = np.arange(o)
            start, end = (idx * n) // o, -((-(idx + 1) * n) // o)
            kmax = int((end - start).max())
            tables.append(np.minimum(start[:, None] + np.arange(kmax)[None, :], end[:, None] - 1))
        return tables


_TABLES: dict[tuple[Any, ...], Any] = {}


def _cached_table(xp: Any, geom: Any, size: tuple[int, ...]) -> Any:
    """``_flat_table`` on the device, made once per geometry (an upload per backward would cost a host copy
    each step, and cannot happen inside a CUDA graph capture)."""
    key = (xp.__name__, xp.cuda.runtime.getDevice() if xp is not np else -1, geom, size)
    table = _TABLES.get(key)
    if table is None:
        if len(_TABLES) > 256:  # a bound for programs that sweep shapes
            _TABLES.clear()
        table = _TABLES[key] = _flat_table(xp, geom.positions(size), size)
    return table


def _flat_table(xp: Any, positions: list[np.ndarray], size: tuple[int, ...]) -> Any:
    """(K, prod(O)) flat per-channel input index of kernel offset k at output o (offsets in row-major order)."""
    strides = [math.prod(size[i + 1:]) for i in range(len(size))]
    n = len(positions)
    table = np.zeros(tuple(p.shape[1] for p in positions) + tuple(p.shape[0] for p in positions), np.int64)
    for d, (pos, st) in enumerate(zip(positions, strides)):
        # pos (O_d, k_d) -> broadcast as kernel dim d and output dim d
        shape = [1] * (2 * n)
        shape[d], shape[n + d] = pos.shape[1], pos.shape[0]
        table = table + (pos.T * st).reshape(shape)
    return xp.asarray(table.reshape(-1, math.prod(table.shape[n:])))


def _first_max(xp: Any, cands: list[Any], out: Any, valid: list[Any] | None) -> Any:
    """Index (in ``cands``) of the first candidate equal to the max ``out``; the last NaN where NaNs are.

    ``valid[k]`` (or None) masks padding. Uses max over ``(cand == out) * (K - k)``: three cheap
    passes per candidate, where a masked assignment per candidate was ~5x slower.
    """
    K = len(cands)
    it = np.int8 if K < 127 else np.int32
    acc = xp.zeros(out.shape, it)
    tmp = xp.empty(out.shape, it)
    for k, c in enumerate(cands):
        m = xp.equal(c, out)
        if valid is not None:
            m &= valid[k]
        xp.multiply(m, it(K - k), out=tmp)
        xp.maximum(acc, tmp, out=acc)
    kidx = (K - acc).astype(it)
    # (inside a CUDA graph capture the NaN test cannot be read back: the pass runs, a no-op without NaNs)
    if is_float_np(out.dtype) and (current_capture() is not None or bool(xp.isnan(out).any())):
        for k, c in enumerate(cands):  # PyTorch keeps the last NaN of a window
            kidx = xp.where(xp.isnan(c), it(k), kidx)
    return kidx


def _flat_index(xp: Any, kidx: Any, table: Any) -> Any:
    """Per-channel flat input indices (B, C, *O) from offsets ``kidx`` through ``table`` (K, prod(O))."""
    n_out = table.shape[1]
    k2 = kidx.reshape(math.prod(kidx.shape[:2]), n_out)
    return table[k2, xp.arange(n_out)].reshape(kidx.shape)


class MaxPool(Primitive):
    """Max over windows (``PoolGeom`` or ``AdaptiveGeom``); the gradient goes to the first maximum.

    ``box`` (a list or None) receives the per-channel flat indices, for ``return_indices``.
    """

    @staticmethod
    def forward(ctx: Any, x: Any, geom: Any, box: list[Any] | None) -> Any:
        xp = ctx.xp
        size = tuple(x.shape[2:])
        valid = None
        xpad = x
        lowest = -math.inf if is_float_np(x.dtype) else np.iinfo(x.dtype).min
        if isinstance(geom, PoolGeom):
            xpad = geom.pad_input(xp, x, lowest)
            cands = [xpad[sl] for sl in geom.slices()]  # strided views, no copies
        else:
            grids = geom.positions(size)
            cands = []
            for off in itertools.product(*[range(t.shape[1]) for t in grids]):
                ix = tuple(
                    xp.asarray(t[:, j]).reshape((-1,) + (1,) * (len(size) - 1 - d))
                    for d, (t, j) in enumerate(zip(grids, off))
                )
                cands.append(x[_ALL2 + ix])
        ctx.geom, ctx.size = geom, size
        if xp is np:  # CPU: a compiled 2x2 loop, or max and first argmax in one sweep
            jit = _cpu_pool.jit_2x2(geom, size, x.dtype) if isinstance(geom, PoolGeom) else None
            out, ctx.kidx = _cpu_pool.maxpool2x2(jit, x, geom) if jit is not None else _cpu_pool.running_max(cands)
            if xpad is not x and bool((out == lowest).any()):  # a window of -inf must not pick a padding position
                ctx.kidx = _first_max(xp, cands, out, _valid_masks(xp, geom, size))
            if box is not None:
                box.append(ctx.flat())
            return out
        out = cands[0].copy()
        for c in cands[1:]:
            xp.maximum(out, c, out=out)
        if xpad is not x and (current_capture() is not None or bool((out == lowest).any())):
            valid = _valid_masks(xp, geom, size)  # a window of -inf must not pick a padding position
        ctx.kidx = _first_max(xp, cands, out, valid)
        if box is not None:
            box.append(ctx.flat())
        return out

    def flat(self) -> Any:
        """The per-channel flat indices of the chosen maxima, (B, C, *O) int64 (computed once, when needed)."""
        idx = self.__dict__.get("_flat")
        if idx is None:
            idx = self._flat = _flat_index(self.xp, self.kidx, _cached_table(self.xp, self.geom, self.size))
        return idx

    def backward(self, grad: Tensor) -> tuple[Any, None, None]:  # type: ignore[override]
        if self.xp is np and isinstance(self.geom, PoolGeom) and _cpu_pool.disjoint(self.geom, self.size):
            return WindowScatter.apply(grad, self), None, None
        return FlatScatter.apply(grad, self.flat(), self.size, True), None, None

    def jvp(self, t: Tensor | None, *_: Any) -> Tensor | None:
        return None if t is None else FlatGather.apply(t, self.flat())


def _valid_masks(xp: Any, geom: PoolGeom, size: tuple[int, ...]) -> list[Any]:
    """Per kernel offset, a broadcastable (1, 1, *O) mask of windows whose element is inside the input."""
    pos = geom.positions(size)
    n = len(size)
    masks = []
    for off in geom.offsets():
        m = np.ones(geom.out, bool)
        for d, (p, j) in enumerate(zip(pos, off)):
            col = p[:, j]
            m = m & ((col >= 0) & (col < size[d])).reshape((-1,) + (1,) * (n - 1 - d))
        masks.append(xp.asarray(m[None, None]))
    return masks


def _global(xp: Any, idx: Any, per_channel: int) -> Any:
    """Per-channel flat indices (B, C, ...) as 1-D indices into the flattened (B, C, P) array."""
    n_rows = idx.shape[0] * idx.shape[1]
    rows = xp.arange(n_rows, dtype=idx.dtype) * per_channel
    return (idx.reshape(n_rows, math.prod(idx.shape[2:])) + rows[:, None]).reshape(-1)


class WindowScatter(Primitive):
    """Max pooling's gradient on the CPU for disjoint windows: g (B, C, *O) at each window's maximum, zeros elsewhere.

    Called as ``WindowScatter.apply(g, pool)`` with the ``MaxPool`` node. A primitive because its
    forward (``_conv_cpu_pool.window_scatter``) needs neither ``FlatScatter``'s flat index nor
    ``np.add.at``: 2-3x faster. Its adjoint is the gather at the same positions.
    """

    @staticmethod
    def forward(ctx: Any, g: Any, pool: Any) -> Any:
        ctx.pool = pool
        return _cpu_pool.window_scatter(g, pool.kidx, pool.geom, pool.size)

    def backward(self, grad: Tensor) -> tuple[Any, None]:  # type: ignore[override]
        return FlatGather.apply(grad, self.pool.flat()), None

    def jvp(self, t: Tensor | None, *_: Any) -> Tensor | None:
        return None if t is None else WindowScatter.apply(t, self.pool)


class FlatGather(Primitive):
    """``out[b, c, o] = x[b, c].flatten()[idx[b, c, o]]``: x (B, C, *S), idx (B, C, *O) int."""

    @staticmethod
    def forward(ctx: Any, x: Any, idx: Any) -> Any:
        ctx.idx = idx
        ctx.size = tuple(x.shape[2:])
        flat = x.reshape(-1)[_global(ctx.xp, idx, math.prod(ctx.size))]
        return flat.reshape(idx.shape)

    def backward(self, grad: Tensor) -> tuple[Any, None]:  # type: ignore[override]
        return FlatScatter.apply(grad, self.idx, self.size, True), None

    def jvp(self, t: Tensor | None, *_: Any) -> Tensor | None:
        return None if t is None else FlatGather.apply(t, self.idx)


class FlatScatter(Primitive):
    """The adjoint of ``FlatGather``: v (B, C, *O) placed at ``idx`` in zeros (B, C, *size).

    ``accumulate``: repeated indices add up (a gradient); else one of the values is written
    (``max_unpool``, as PyTorch). Both have ``FlatGather`` as backward, as in PyTorch.
    """

    @staticmethod
    def forward(ctx: Any, v: Any, idx: Any, size: tuple[int, ...], accumulate: bool) -> Any:
        xp = ctx.xp
        ctx.idx, ctx.size, ctx.accumulate = idx, size, accumulate
        b, c = v.shape[:2]
        out = xp.zeros(b * c * math.prod(size), v.dtype)
        where = _global(xp, idx, math.prod(size))
        if accumulate:
            index_add_at(xp, out, where, v.reshape(-1))
        else:
            out[where] = v.reshape(-1)
        return out.reshape((b, c, *size))

    def backward(self, grad: Tensor) -> tuple[Any, None, None, None]:  # type: ignore[override]
        return FlatGather.apply(grad, self.idx), None, None, None

    def jvp(self, t: Tensor | None, *_: Any) -> Tensor | None:
        return None if t is None else FlatScatter.apply(t, self.idx, self.size, self.accumulate)


class AvgPool(Primitive):
    """Window sums times ``scale`` (a number, or an array broadcasting against (B, C, *O))."""

    @staticmethod
    def forward(ctx: Any, x: Any, geom: PoolGeom, scale: Any) -> Any:
        xp = ctx.xp
        ctx.geom, ctx.scale, ctx.size = geom, scale, tuple(x.shape[2:])
        xpad = geom.pad_input(xp, x, 0.0)
        slices = geom.slices()
        out = xpad[slices[0]].copy()
        for sl in slices[1:]:
            out += xpad[sl]
        out *= scale
        return out

    def backward(self, grad: Tensor) -> tuple[Any, None, None]:  # type: ignore[override]
        return AvgPoolT.apply(grad, self.geom, self.scale, self.size), None, None

    def jvp(self, t: Tensor | None, *_: Any) -> Tensor | None:
        return None if t is None else AvgPool.apply(t, self.geom, self.scale)


class AvgPoolT(Primitive):
    """The adjoint of ``AvgPool``: each g * scale added back over its window, into (B, C, *size)."""

    @staticmethod
    def forward(ctx: Any, g: Any, geom: PoolGeom, scale: Any, size: tuple[int, ...]) -> Any:
        xp = ctx.xp
        ctx.geom, ctx.scale, ctx.size = geom, scale, size
        gs = g * scale
        if gs.dtype != g.dtype:
            gs = gs.astype(g.dtype)
        buf = xp.zeros(tuple(g.shape[:2]) + geom.padded(size), g.dtype)
        for sl in geom.slices():
            buf[sl] += gs
        inner = buf[_ALL2 + tuple(slice(p, p + n) for p, n in zip(geom.pad, size))]
        return xp.ascontiguousarray(inner)

    def backward(self, grad: Tensor) -> tuple[Any, None, None, None]:  # type: ignore[override]
        return AvgPool.apply(grad, self.geom, self.scale), None, None, None

    def jvp(self, t: Tensor | None, *_: Any) -> Tensor | None:
        return None if t is None else AvgPoolT.apply(t, self.geom, self.scale, self.size)
