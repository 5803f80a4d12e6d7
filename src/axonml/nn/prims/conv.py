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

On the CPU (``_conv_cpu*``; a GPU keeps the paths above): 2-D layers with few channels or a
shallow reduction (LeNet's, RGB stems) run as direct compiled loops with no columns at all when
numba is installed (``_conv_cpu_direct``, its ``pays`` rule); otherwise work is split over
OpenBLAS's thread count with OpenBLAS itself on one thread; a stride-1 transposed convolution
runs as a convolution with the flipped kernel (gathers instead of accumulating); stride-1 layers
with many channels on a large grid skip im2col (one GEMM per kernel offset on the padded input,
``_Plan.shift``); 3x3 stride-1 layers with many channels use Winograd F(2x2, 3x3) when numba
is installed; the remaining 2-D col2im is a compiled loop. ``_conv_plan`` holds the column
layouts (``_Plan``) and their cache; the switches that choose them stay here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...backend import batched_matmul, matmul
from ...core.function import Primitive, arrays_only
from ...core.tensor import Tensor
from . import _conv_cpu as _cpu
from . import _conv_cpu_direct as _direct
from . import _conv_cpu_winograd as _wino
from . import _conv_plan
from ._conv_cuda_recipe import Recipe
from ._conv_plan import ConvGeom, _Plan, sharing_gmat

__all__ = ["Conv", "ConvGeom", "ConvTranspose", "ConvWeight"]

# ----- im2col / col2im ---------------------------------------------------------------------------
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


def _plan(xp: Any, geom: ConvGeom, batch: int, size: tuple[int, ...], kernel: tuple[int, ...], out: tuple[int, ...],
          cog: int, cin: int = 0, dtype: Any = None) -> _Plan:
    """The cached ``_Plan`` of a geometry, under this module's layout switches."""
    return _conv_plan.plan(xp, geom, batch, size, kernel, out, cog, cin, dtype,
                           (_grid_pays, _SHIFT_MIN_CHANNELS, _SHIFT_MAX_RATIO))


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
    ``_conv_cpu.weight_matmul``. On a GPU one call (cuBLAS splits K itself; pieces cost ~5 launches each).
    """
    if xp is np and a.ndim == 2 and a.dtype == b.dtype and a.dtype.char in "fd":
        return _cpu.weight_matmul(a, b)
    k = a.shape[-1]
    if xp is not np or k <= 2 * _CHUNK or a.shape[-2] * b.shape[-1] > 4096:
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
    direct = (None if xp is not np else
              _direct.pays(x, Co, kernel, w.dtype, geom.stride, geom.pad_lo, geom.groups, weight=False))
    if direct is not None:
        return _direct.forward(direct, x, w, b, geom.stride, geom.dilation, geom.pad_lo, out)
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
    if plan.fused and geom.groups == 1:
        return _conv_forward_cuda(xp, x, w, b, plan, geom, out)
    col = _grouped(plan.cols(xp, x, keep=True), geom.groups)
    wm = w.reshape(geom.groups, Co // geom.groups, -1) if geom.groups > 1 else w.reshape(Co, -1)
    y = _cpu.scratch(xp, "gemm", (*wm.shape[:-1], plan.M), x.dtype)
    _mm(xp, wm, col, y)
    return plan.from_gmat(xp, y.reshape(Co, plan.M), b)


def _pointwise_transposed_cuda(xp: Any, g: Any, w: Any, b: Any) -> Any:
    """``convT(g, w) + b`` of a 1x1, stride-1 convolution on CUDA: ``z[i] = W^T @ g[i]`` per sample, one batched
    GEMM writing (B, Ci, *S) in place (no columns, no col2im)."""
    B, Co, C = g.shape[0], w.shape[0], w.shape[1]
    z = xp.ndarray((B, C, *g.shape[2:]), g.dtype)
    batched_matmul(xp, w.reshape(Co, C).T, xp.ascontiguousarray(g).reshape(B, Co, -1), z.reshape(B, C, -1))
    if b is not None:
        z += b.reshape((1, C) + (1,) * (g.ndim - 2))
    return z


def _conv_forward_cuda(xp: Any, x: Any, w: Any, b: Any, plan: _Plan, geom: ConvGeom, out: tuple[int, ...]) -> Any:
    """``conv(x, w) + b`` on CUDA (one group) as one GEMM per sample, ``y[i] = W @ columns[i]``, batched in one
    cuBLAS call that writes the (B, Co, *O) output in place: no transposing copy of a (Co, B * prod(O)) product.

    A 1x1 convolution with stride 1 and no padding reads the input itself as its columns (no im2col).
    """
    B, Co = x.shape[0], w.shape[0]
    L = math.prod(out)
    if plan.pointwise:
        cols = xp.ascontiguousarray(x).reshape(B, x.shape[1], L)
    else:
        cols = plan.cols(xp, x).reshape(-1, B, L).transpose(1, 0, 2)  # (B, C * prod(K), L), a view
    y = xp.ndarray((B, Co, *out), x.dtype)
    batched_matmul(xp, w.reshape(Co, -1), cols, y.reshape(B, Co, L))
    if b is not None:
        y += b.reshape((1, Co) + (1,) * len(out))
    return y


# (device, geometry, input and weight shapes and dtypes, output size) -> the call's Recipe, or None where the
# general path runs (groups, dtypes, empty or 4-D-or-more shapes)
_RECIPES: dict[tuple[Any, ...], Recipe | None] = {}


def _cuda_recipe(xp: Any, x: Any, w: Any, geom: ConvGeom, osize: tuple[int, ...] | None) -> Recipe | None:
    """The cached :class:`Recipe` of a CUDA convolution call, or None when the general path is to run it."""
    key = (xp.cuda.runtime.getDevice(), geom, x.shape, w.shape, x.dtype, w.dtype, osize)
    try:
        return _RECIPES[key]
    except KeyError:
        pass
    found = None
    kernel = tuple(w.shape[2:])
    if (geom.groups == 1 and 1 <= len(kernel) <= 3 and x.dtype == w.dtype and x.dtype.char in "fd"
            and x.size and w.size):
        out = osize or geom.out_size(tuple(x.shape[2:]), kernel)
        if all(o > 0 for o in out):
            plan = _plan(xp, geom, x.shape[0], tuple(x.shape[2:]), kernel, out, w.shape[0], x.shape[1], x.dtype)
            found = Recipe(xp, plan, x.shape[1], w.shape[0], x.dtype)
    if len(_RECIPES) > 256:  # shapes that keep changing (varying batch sizes) must not grow it forever
        _RECIPES.clear()
    _RECIPES[key] = found
    return found


def _on_threads(xp: Any, flops: float, fn: Any, *args: Any) -> Any:
    """``fn(xp, *args)``, inside the CPU's thread scope for a convolution of ``flops`` (``_conv_cpu.scope``); on a
    GPU directly (the scope is a generator context manager: host time at every call for nothing)."""
    if xp is not np:
        return fn(xp, *args)
    with _cpu.scope(flops):
        return fn(xp, *args)


# ----- the primitives -------------------------------------------------------------------------------
class Conv(Primitive):
    """``y = conv(x, w) + b``: x (B, Ci, *S), w (Co, Ci / G, *K), b (Co,) or None -> y (B, Co, *O).

    ``osize`` is the output size (the natural one when None).
    """

    saves = "inputs"
    recipe: Recipe | None = None  # set by a CUDA forward that has one: its backward follows it

    @staticmethod
    def forward(ctx: Any, x: Any, w: Any, b: Any, geom: ConvGeom, osize: tuple[int, ...] | None) -> Any:
        xp = ctx.xp
        if xp is not np:
            recipe = _cuda_recipe(xp, x, w, geom, osize)
            if recipe is not None:
                ctx.recipe = recipe
                return recipe.forward(x, w, b)
        return _on_threads(xp, 2.0 * x.size * w.size / max(x.shape[1], 1), _conv_forward, x, w, b, geom, osize)

    def backward(self, grad: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        x, w, b, geom, _ = self.inputs
        ex, ew, eb = self.next_edges[:3]
        size, kernel = x._data.shape[2:], w._data.shape[2:]
        gx = gw = None
        recipe = self.recipe
        if recipe is not None and grad._data.dtype == recipe.dtype and arrays_only():  # the forward's CUDA recipe
            dev = self.device
            gx_data, gw_data = recipe.backward(grad._data, x._data, w._data, ex is not None, ew is not None)
            gx = None if gx_data is None else Tensor._make(gx_data, dev)
            gw = None if gw_data is None else Tensor._make(gw_data, dev)
        else:
            with sharing_gmat():  # both gradients read ``grad`` as the same (Co, M) matrix
                if arrays_only():  # nothing recorded: the adjoints' array code, without a graph node each
                    g, dev = grad._data, self.device
                    if ex is not None:
                        gx = Tensor._make(ConvTranspose.forward(self, g, w._data, None, geom, size), dev)
                    if ew is not None:
                        gw = Tensor._make(ConvWeight.forward(self, x._data, g, geom, kernel), dev)
                else:
                    gx = ConvTranspose.apply(grad, w, None, geom, size) if ex is not None else None
                    gw = ConvWeight.apply(x, grad, geom, kernel) if ew is not None else None
        gb = _spatial_sum(grad) if b is not None and eb is not None else None
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
        return _on_threads(ctx.xp, 2.0 * g.size * w.size / max(g.shape[1], 1), ConvTranspose._forward, g, w, b, geom,
                           size)

    @staticmethod
    def _forward(xp: Any, g: Any, w: Any, b: Any, geom: ConvGeom, size: tuple[int, ...]) -> Any:
        direct = None
        if xp is np and all(s == 1 for s in geom.stride):  # as a convolution of g: Co -> Ci channels
            direct = _direct.pays(g, w.shape[1] * geom.groups, tuple(w.shape[2:]), w.dtype, geom.stride,
                                  geom.pad_lo, geom.groups, weight=False)
        z = None if direct is None else _direct.transposed(direct, g, w, b, geom.dilation, geom.pad_lo, size)
        if z is not None:
            return z
        flipped = None if xp is not np else _cpu.flip_transposed(w, geom.stride, geom.dilation, geom.pad_lo,
                                                                   geom.groups, tuple(g.shape[2:]), size)
        if flipped is not None:  # as a convolution: gathers where col2im accumulates
            wf, lo, hi = flipped
            return _conv_forward(xp, g, wf, b, ConvGeom((1,) * len(size), geom.dilation, lo, hi, geom.groups), size)
        kernel = tuple(w.shape[2:])
        G = geom.groups
        plan = _plan(xp, geom, g.shape[0], size, kernel, tuple(g.shape[2:]), w.shape[0] // G)
        if xp is not np and G == 1 and plan.pointwise:
            return _pointwise_transposed_cuda(xp, g, w, b)
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
        return _on_threads(ctx.xp, 2.0 * x.size * g.shape[1] * math.prod(kernel) / geom.groups, ConvWeight._forward,
                           x, g, geom, kernel)

    @staticmethod
    def _forward(xp: Any, x: Any, g: Any, geom: ConvGeom, kernel: tuple[int, ...]) -> Any:
        G = geom.groups
        Co, C = g.shape[1], x.shape[1]
        direct = None if xp is not np else _direct.pays(x, Co, kernel, g.dtype, geom.stride, geom.pad_lo, G, True)
        if direct is not None:
            return _direct.weight(direct, x, g, geom.stride, geom.dilation, geom.pad_lo, kernel)
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
