"""Fused normalization primitives: layer norm and batch norm with batch statistics.

Primitives, not compositions, because they are measurably slow composed: layer norm
forward+backward on (8, 128, 768) float32 took ~10x PyTorch's time as a chain of
Tensor ops (every op is one more pass over memory and one more allocation). Here the
forward makes ~5 passes with in-place array calls and BLAS reductions, and the
backward ~8. The backward formula is written twice with the same values: on raw
arrays when no graph is recorded, and in Tensor ops under ``create_graph=True`` (or
with forward-mode tangents), so higher derivatives work.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...core import dtypes as D
from ...core.function import Primitive
from ...core.tensor import Tensor
from . import _conv_cpu as _cpu
from . import _conv_cpu_jit as _jit
from . import _layernorm_cuda, _norm_cuda
from ._fastpath import arrays_only, as_compute, col_sum, compute_dtype, row_dot, row_sum, wrap


# ----- the normalization formula in Tensor ops (higher derivatives, forward mode) ---------------
def _normalized(x: Tensor, dims: tuple[int, ...], eps: float) -> tuple[Tensor, Tensor]:
    """(x_hat, rstd) over ``dims`` with the biased variance, as Tensor ops that record a graph."""
    ct = compute_dtype(x._data.dtype)
    xc = x if x._data.dtype == ct else x._cast(D.from_numpy_dtype(ct))
    mu = xc.mean(dims, keepdim=True)
    d = xc - mu
    rstd = ((d * d).mean(dims, keepdim=True) + eps).rsqrt()
    return d * rstd, rstd


def _dx(g: Tensor, xhat: Tensor, rstd: Tensor, dims: tuple[int, ...]) -> Tensor:
    """d(x_hat)^T g: ``rstd * (g - mean(g) - x_hat * mean(g * x_hat))`` over ``dims``."""
    return rstd * (g - g.mean(dims, keepdim=True) - xhat * (g * xhat).mean(dims, keepdim=True))


def _affine_view(w: Tensor, x_ndim: int, channel_dim: int | None) -> Tensor:
    """``w`` shaped to broadcast against the input: trailing (layer norm) or along dim 1 (batch norm)."""
    if channel_dim is None:
        return w
    return w.reshape((w.shape[0],) + (1,) * (x_ndim - 2))


def _composed_backward(node: Any, grad: Tensor, dims: tuple[int, ...], channel_dim: int | None) -> tuple[Any, ...]:
    x, w, b = node.inputs[:3]
    xhat, rstd = _normalized(x, dims, node.eps)
    wv = None if w is None else _affine_view(w, x.ndim, channel_dim)
    gx = _dx(grad * wv if wv is not None else grad, xhat, rstd, dims) if node.next_edges[0] is not None else None
    gw = grad * xhat if w is not None and node.next_edges[1] is not None else None  # the engine sums to w's shape
    gb = grad if b is not None and node.next_edges[2] is not None else None
    if channel_dim is not None:  # batch norm: reduce to (C,) here, the engine only undoes leading broadcasts
        red = tuple(i for i in range(x.ndim) if i != 1)
        gw = None if gw is None else gw.sum(red)
        gb = None if gb is None else gb.sum(red)
    return gx, gw, gb


def _composed_jvp(node: Any, tx: Any, tw: Any, tb: Any, dims: tuple[int, ...], channel_dim: int | None) -> Any:
    x, w, _ = node.inputs[:3]
    xhat, rstd = _normalized(x, dims, node.eps)
    out = None
    if tx is not None:
        out = _dx(tx, xhat, rstd, dims)
        if w is not None:
            out = out * _affine_view(w, x.ndim, channel_dim)
    if tw is not None:
        term = xhat * _affine_view(tw, x.ndim, channel_dim)
        out = term if out is None else out + term
    if tb is not None:
        tbv = _affine_view(tb, x.ndim, channel_dim)
        out = tbv.expand(x.shape) if out is None else out + tbv
    return None if out is None else out.to(x.dtype)


# ----- layer norm ------------------------------------------------------------------------------
class LayerNorm(Primitive):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over the last ``n_dims`` dimensions.

    Called as ``LayerNorm.apply(x, weight_or_None, bias_or_None, n_dims, eps)``; weight and
    bias have the normalized shape. Half-precision inputs are computed in float32. On CUDA the
    forward is one fused kernel and the backward two launches (``_layernorm_cuda.py``): there
    each array call is a launch costing ~10 us of CPU time.
    """

    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, x: Any, weight: Any, bias: Any, n_dims: int, eps: float) -> Any:
        xp = ctx.xp
        ctx.eps = eps
        ct = compute_dtype(x.dtype)
        d = math.prod(x.shape[x.ndim - n_dims:])
        m = math.prod(x.shape[: x.ndim - n_dims])
        x2 = as_compute(x.reshape(m, d), ct)
        if xp is not np and _layernorm_cuda.supports(xp, x2):  # one launch where the calls below make ~9
            w_c = None if weight is None else as_compute(weight.reshape(d), ct)
            b_c = None if bias is None else as_compute(bias.reshape(d), ct)
            y, ctx.mean, ctx.rstd = _layernorm_cuda.forward(xp, x2, w_c, b_c, eps)
            ctx.m, ctx.d, ctx.n_dims = m, d, n_dims
            return y.reshape(x.shape).astype(x.dtype, copy=False)
        mean = row_sum(xp, x2) * (1.0 / d) if d else xp.zeros(m, ct)
        y = xp.subtract(x2, mean[:, None])  # (M, D), the output buffer from here on
        var = row_dot(xp, y, y) * (1.0 / d) if d else xp.zeros(m, ct)
        rstd = 1.0 / xp.sqrt(var + eps)
        y *= rstd[:, None]
        if weight is not None:
            y *= as_compute(weight.reshape(d), ct)
        if bias is not None:
            y += as_compute(bias.reshape(d), ct)
        ctx.mean, ctx.rstd, ctx.m, ctx.d, ctx.n_dims = mean, rstd, m, d, n_dims
        return y.reshape(x.shape).astype(x.dtype, copy=False)

    def _dims(self) -> tuple[int, ...]:
        nd = self._inputs[0].ndim
        return tuple(range(nd - self.n_dims, nd))

    def backward(self, grad: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        if not arrays_only():
            return (*_composed_backward(self, grad, self._dims(), None), None, None)
        x, w, b = self.inputs[:3]
        xp, m, d = self.xp, self.m, self.d
        need_x, need_w, need_b = (e is not None for e in self.next_edges[:3])
        ct = compute_dtype(x._data.dtype)
        g = as_compute(grad._data.reshape(m, d), ct)
        if xp is not np and _layernorm_cuda.supports(xp, g):  # two launches where the calls below make ~12
            w_c = None if w is None else as_compute(w._data.reshape(d), ct)
            gx, gw, gb = _layernorm_cuda.backward(xp, g, as_compute(x._data.reshape(m, d), ct), self.mean,
                                                  self.rstd, w_c, need_x, w is not None and need_w,
                                                  b is not None and need_b)
            return (None if gx is None else wrap(gx, self.input_meta[0], self.device),
                    None if gw is None else wrap(gw, self.input_meta[1], self.device),
                    None if gb is None else wrap(gb, self.input_meta[2], self.device), None, None)
        xhat = xp.subtract(as_compute(x._data.reshape(m, d), ct), self.mean[:, None])
        xhat *= self.rstd[:, None]
        gw = wrap(col_sum(xp, g * xhat), self.input_meta[1], self.device) if w is not None and need_w else None
        gb = wrap(col_sum(xp, g), self.input_meta[2], self.device) if b is not None and need_b else None
        gx = None
        if need_x:
            gy = g * as_compute(w._data.reshape(d), ct) if w is not None else g.copy()  # (M, D), becomes dx
            a = row_dot(xp, gy, xhat) * (1.0 / d)
            c = row_sum(xp, gy) * (1.0 / d)
            xhat *= a[:, None]
            gy -= xhat
            gy -= c[:, None]
            gy *= self.rstd[:, None]
            gx = wrap(gy, self.input_meta[0], self.device)
        return gx, gw, gb, None, None

    def jvp(self, tx: Any, tw: Any, tb: Any, *_: Any) -> Any:
        return _composed_jvp(self, tx, tw, tb, self._dims(), None)


# ----- batch norm (training: statistics of the batch) ----------------------------------------------
def _channels(x: Any) -> Any:
    """``x`` of shape (N, C, *spatial) as (N, C, L)."""
    return x.reshape(x.shape[0], x.shape[1], -1) if x.ndim != 3 else x


def channel_sum(xp: Any, a3: Any) -> Any:
    """(C,) sums of an (N, C, L) array."""
    n, c, length = a3.shape
    if length == 1:
        return a3[:, :, 0].sum(0)
    return row_sum(xp, a3.reshape(n * c, length)).reshape(n, c).sum(0)


def channel_dot(xp: Any, a3: Any, b3: Any) -> Any:
    """(C,) sums of ``a3 * b3`` for (N, C, L) arrays, without the temporary product."""
    n, c, length = a3.shape
    if length == 1:
        return xp.einsum("nc,nc->c", a3[:, :, 0], b3[:, :, 0])
    return row_dot(xp, a3.reshape(n * c, length), b3.reshape(n * c, length)).reshape(n, c).sum(0)


def _bn_forward_jit(jit: Any, x3: Any, weight: Any, bias: Any, eps: float, ct: Any) -> tuple[Any, ...]:
    """(y, mean, biased var, rstd) of an (N, C, L) NumPy array by the compiled loops, channels split over threads."""
    x3 = np.ascontiguousarray(x3)
    c = x3.shape[1]
    mean, var = np.empty(c, ct), np.empty(c, ct)
    _cpu.split(c, x3.nbytes, lambda c0, c1: jit.bn_stats(x3, c0, c1, mean, var))
    rstd = 1.0 / np.sqrt(var + eps)
    scale = rstd if weight is None else rstd * as_compute(weight, ct)
    shift = np.zeros(c, ct) if bias is None else np.ascontiguousarray(as_compute(bias, ct))
    y = np.empty_like(x3)
    _cpu.split(c, x3.nbytes, lambda c0, c1: jit.bn_apply(x3, c0, c1, mean, scale, shift, y))
    return y, mean, var, rstd


def _bn_backward_jit(jit: Any, g3: Any, x3: Any, mean: Any, rstd: Any, w: Any, n: int,
                     need_x: bool) -> tuple[Any, Any, Any]:
    """(sum g, sum g * x_hat, dx or None) per channel of (N, C, L) NumPy arrays through the compiled loops."""
    g3, x3 = np.ascontiguousarray(g3), np.ascontiguousarray(x3)
    c = x3.shape[1]
    sum_g, sum_gx = np.empty(c, mean.dtype), np.empty(c, mean.dtype)
    _cpu.split(c, x3.nbytes, lambda c0, c1: jit.bn_grad_stats(g3, x3, c0, c1, mean, rstd, sum_g, sum_gx))
    if not need_x:
        return sum_g, sum_gx, None
    scale = rstd if w is None else rstd * w
    mean_g, mean_gx = sum_g * (1.0 / n), sum_gx * (1.0 / n)
    dx = np.empty_like(g3)
    _cpu.split(c, x3.nbytes, lambda c0, c1: jit.bn_grad_x(g3, x3, c0, c1, mean, rstd, scale, mean_g, mean_gx, dx))
    return sum_g, sum_gx, dx


class BatchNorm(Primitive):
    """Batch norm with the batch's own statistics over every dimension but 1 (channels).

    Called as ``BatchNorm.apply(x, weight_or_None, bias_or_None, eps, stats, running)``; ``stats`` is
    an empty list that receives ``(mean, biased_var)`` arrays of shape (C,), for the caller's
    running-statistics update; or, on CUDA only, ``running`` (a ``_norm_cuda.Running``, else None)
    asks the statistics launch to make that update itself.
    """

    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, x: Any, weight: Any, bias: Any, eps: float, stats: list[Any],
                running: _norm_cuda.Running | None) -> Any:
        xp = ctx.xp
        ctx.eps = eps
        ct = compute_dtype(x.dtype)
        if xp is not np:  # the kernels read (N, C, *S) as (N, C, L) themselves
            ctx.n = x.size // x.shape[1]
            w_c = None if weight is None else as_compute(weight, ct)
            b_c = None if bias is None else as_compute(bias, ct)
            y, mean, var, rstd = _norm_cuda.forward(xp, as_compute(x, ct), w_c, b_c, eps, running)
            ctx.mean, ctx.rstd = mean, rstd
            stats.extend((mean, var))
            return y if y.dtype == x.dtype else y.astype(x.dtype)
        x3 = as_compute(_channels(x), ct)
        n = x3.shape[0] * x3.shape[2]
        jit = _jit.kernels() if x3.dtype.char in "fd" else None
        if jit is not None:  # 3 fused passes where the NumPy calls below make 5
            y, mean, var, rstd = _bn_forward_jit(jit, x3, weight, bias, eps, ct)
            ctx.mean, ctx.rstd, ctx.n = mean, rstd, n
            stats.extend((mean, var))
            return y.reshape(x.shape).astype(x.dtype, copy=False)
        mean = channel_sum(xp, x3) * (1.0 / n)
        y = xp.subtract(x3, mean[:, None])  # (N, C, L), the output buffer from here on
        var = channel_dot(xp, y, y) * (1.0 / n)
        rstd = 1.0 / xp.sqrt(var + eps)
        scale = rstd if weight is None else rstd * as_compute(weight, ct)
        y *= scale[:, None]
        if bias is not None:
            y += as_compute(bias, ct)[:, None]
        ctx.mean, ctx.rstd, ctx.n = mean, rstd, n
        stats.extend((mean, var))
        return y.reshape(x.shape).astype(x.dtype, copy=False)

    def _dims(self) -> tuple[int, ...]:
        return tuple(i for i in range(self._inputs[0].ndim) if i != 1)

    def backward(self, grad: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        if not arrays_only():
            return (*_composed_backward(self, grad, self._dims(), 1), None, None, None)
        x, w, b = self.inputs[:3]
        xp = self.xp
        ex, ew, eb = self.next_edges[:3]
        need_x, need_w, need_b = ex is not None, ew is not None, eb is not None
        ct = compute_dtype(x._data.dtype)
        if xp is not np:  # (N, C, *S) arrays as they are
            w_c = None if w is None else as_compute(w._data, ct)
            sum_g, sum_gx, dx = _norm_cuda.backward(xp, as_compute(grad._data, ct), as_compute(x._data, ct),
                                                    self.mean, self.rstd, w_c, self.n, need_x)
            return self._wrapped(w, b, need_w, need_b, sum_g, sum_gx, dx)
        g = as_compute(_channels(grad._data), ct)
        x3 = as_compute(_channels(x._data), ct)
        jit = _jit.kernels() if g.dtype.char in "fd" else None
        if jit is not None:  # 2 fused passes where the NumPy calls below make 8
            w_c = None if w is None or not need_x else as_compute(w._data, ct)
            sum_g, sum_gx, dx = _bn_backward_jit(jit, g, x3, self.mean, self.rstd, w_c, self.n, need_x)
        else:
            sum_g, sum_gx, dx = self._backward_arrays(xp, g, x3, None if w is None else as_compute(w._data, ct), need_x)
        return self._wrapped(w, b, need_w, need_b, sum_g, sum_gx, dx)

    def _wrapped(self, w: Tensor | None, b: Tensor | None, need_w: bool, need_b: bool, sum_g: Any, sum_gx: Any,
                 dx: Any) -> tuple[Any, ...]:
        """The gradients as Tensors of the inputs' shapes and dtypes: dx, dweight (sum of g * xhat), dbias."""
        return (None if dx is None else wrap(dx, self.input_meta[0], self.device),
                wrap(sum_gx, self.input_meta[1], self.device) if w is not None and need_w else None,
                wrap(sum_g, self.input_meta[2], self.device) if b is not None and need_b else None, None, None, None)

    def _backward_arrays(self, xp: Any, g: Any, x3: Any, w: Any, need_x: bool) -> tuple[Any, Any, Any]:
        """(sum of g, sum of g * xhat, dx or None) per channel by NumPy-style calls."""
        xhat = xp.subtract(x3, self.mean[:, None])
        xhat *= self.rstd[:, None]
        sum_g = channel_sum(xp, g)
        sum_gx = channel_dot(xp, g, xhat)
        if not need_x:
            return sum_g, sum_gx, None
        scale = self.rstd if w is None else self.rstd * w
        xhat *= (sum_gx * (1.0 / self.n))[:, None]
        xp.subtract(g, xhat, out=xhat)  # xhat's buffer becomes dx
        xhat -= (sum_g * (1.0 / self.n))[:, None]
        xhat *= scale[:, None]
        return sum_g, sum_gx, xhat

    def jvp(self, tx: Any, tw: Any, tb: Any, *_: Any) -> Any:
        return _composed_jvp(self, tx, tw, tb, self._dims(), 1)
