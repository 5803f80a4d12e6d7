"""Backpropagation through time for :class:`RecurrentScan`, on raw arrays.

Walks the steps in reverse order of the forward pass, carrying ``dh`` (and ``dc`` for
LSTM); each step writes the pre-activation gradient of its gates into ``dxw[t]`` and
makes one GEMM for the hidden state's gradient. The hidden weights' gradient is one
GEMM over all steps at the end, and so is the LSTM projection's.

On CUDA (float16/32/64) each step's elementwise work is one fused kernel of
:mod:`._rnn_cuda`; elsewhere it is a short chain of in-place array calls into
preallocated buffers. The LSTM on NumPy has its own feature-major walk
(:func:`_lstm_backward_fm`), matching its forward.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...backend import matmul
from ...core.tensor import Tensor
from . import _rnn_cpu_jit, _rnn_cuda
from ._fastpath import col_sum, row_sum
from .rnn import GATES, reused_empty, work_empty


def _lstm_step_grad(xp: Any, d: Any, dht: Any, dc: Any, a: Any, tc: Any, c_prev: Any, hidden: int, t1: Any,
                    t2: Any) -> None:
    """Fill ``d`` (N, 4H) with the gates' pre-activation gradients; update ``dc`` in place to dc_prev.

    ``dht`` is the step's hidden gradient (before any projection), ``tc`` = tanh(c_t); ``t1``
    and ``t2`` are (N, H) scratch arrays: products go through them, contiguous, rather than
    through the strided gate slices (measured ~15% faster than slice-to-slice passes).
    """
    h = hidden
    i, f, g, o = a[:, :h], a[:, h:2 * h], a[:, 2 * h:3 * h], a[:, 3 * h:]
    xp.multiply(dht, tc, out=t1)  # d_o = dh * tanh(c) * o'
    xp.multiply(o, o, out=t2)
    xp.subtract(o, t2, out=t2)  # sigmoid' = s - s^2
    xp.multiply(t1, t2, out=d[:, 3 * h:])
    xp.multiply(tc, tc, out=t1)  # the cell state's share dh * o * (1 - tanh(c)^2)
    xp.subtract(1.0, t1, out=t1)
    t1 *= o
    t1 *= dht
    dc += t1
    xp.multiply(i, i, out=t2)  # d_i = dc * g * i'
    xp.subtract(i, t2, out=t2)
    t2 *= g
    xp.multiply(t2, dc, out=d[:, :h])
    xp.multiply(f, f, out=t2)  # d_f = dc * c_prev * f'
    xp.subtract(f, t2, out=t2)
    t2 *= c_prev
    xp.multiply(t2, dc, out=d[:, h:2 * h])
    xp.multiply(g, g, out=t2)  # d_g = dc * i * (1 - g^2)
    xp.subtract(1.0, t2, out=t2)
    t2 *= i
    xp.multiply(t2, dc, out=d[:, 2 * h:3 * h])
    dc *= f


def _gru_step_grad(xp: Any, d: Any, dgh: Any, dht: Any, a: Any, ghn: Any, h_prev: Any, hidden: int, t1: Any,
                   t2: Any, direct: Any) -> None:
    """Fill ``d`` (N, 3H, input side) and ``dgh`` (N, 3H, hidden side); ``direct`` (N, H) = dh's direct share.

    ``t1`` and ``t2`` are (N, H) scratch arrays (see :func:`_lstm_step_grad`).
    """
    h = hidden
    r, z, new = a[:, :h], a[:, h:2 * h], a[:, 2 * h:]
    xp.multiply(z, z, out=t1)  # d_z = dh * (h_prev - n) * z'
    xp.subtract(z, t1, out=t1)
    xp.subtract(h_prev, new, out=t2)
    t2 *= dht
    xp.multiply(t2, t1, out=d[:, h:2 * h])
    xp.multiply(new, new, out=t1)  # d_n = dh * (1 - z) * (1 - n^2), kept in t2
    xp.subtract(1.0, t1, out=t1)
    xp.subtract(1.0, z, out=t2)
    t2 *= dht
    t2 *= t1
    d[:, 2 * h:] = t2
    xp.multiply(t2, r, out=dgh[:, 2 * h:])  # the hidden side sees the new gate through r
    xp.multiply(r, r, out=t1)  # d_r = d_n * ghn * r'
    xp.subtract(r, t1, out=t1)
    t1 *= ghn
    xp.multiply(t1, t2, out=d[:, :h])
    dgh[:, :2 * h] = d[:, :2 * h]
    xp.multiply(dht, z, out=direct)


def _lstm_backward_fm(node: Any, grad: Tensor) -> tuple[Any, ...]:
    """The LSTM's backward on NumPy, feature-major like its forward (``rnn._lstm_forward_fm``).

    The gates' gradients of every step go to one (4H, T, N) array: step t's (4H, N) block
    feeds the step's GEMM W_hh^T @ d as it is (a row stride of T * N suits BLAS), the
    weight gradients are single GEMMs over all steps, and the (T, N, 4H) gradient of ``xw``
    is a transposed view of it, with no copy. A step is 17 array calls around its GEMM.
    """
    xw, h0, c0, w_hh, b_hh, w_hr = node.inputs[:6]
    need = [e is not None for e in node.next_edges[:6]]
    steps, n, width = xw.shape
    hidden, h_out, dt = width // 4, h0.shape[-1], xw._data.dtype
    split = steps * n * h_out
    g = grad._data if grad._data.dtype == dt else grad._data.astype(dt)
    gouts = g[:split].reshape(steps, n, h_out)
    outs = node._out[0][:split].reshape(steps, n, h_out)
    acts, cells, hraw = node.acts, node.cells, node.hraw
    h0a, whr = h0._data, None if w_hr is None else w_hr._data
    dc = np.ascontiguousarray(g[split:].reshape(n, hidden).T)  # (H, N), updated in place to dc_{t-1}
    c_first = np.ascontiguousarray(c0._data.T)
    w_t = w_hh._data.T  # (H_out, 4H); a contiguous copy costs as much as it saves (2 threads) or more (1)
    dgates = reused_empty((width, steps, n), dt)  # row: gate and unit; column: step and sample
    dh, dht = np.zeros((h_out, n), dt), np.empty((h_out, n), dt)  # the GEMM's share of dh; dh in full
    sq, fac = np.empty((4, hidden, n), dt), np.empty((3, hidden, n), dt)
    t1, tc = np.empty((hidden, n), dt), np.empty((hidden, n), dt)
    one = np.ones((), dt)
    dh_all: Any = None
    dhp: Any = None
    if whr is not None:  # the output's gradient per step, for the projection's one GEMM at the end
        dh_all, dhp = reused_empty((h_out, steps if need[5] else 1, n), dt), np.empty((hidden, n), dt)
    jit = _rnn_cpu_jit.kernels() if dt.char in "fd" else None  # the step's arithmetic around tanh in one pass
    back = range(steps) if node.reverse else range(steps - 1, -1, -1)
    first, prev = back[-1], (1 if node.reverse else -1)  # the forward's first step; t's predecessor - t
    for t in back:
        c_prev = c_first if t == first else cells[t + prev]
        if whr is None:
            np.add(dh, gouts[t].T, out=dht)
            dh_t = dht
        else:
            dh_out = dh_all[:, t if need[5] else 0]
            np.add(dh, gouts[t].T, out=dh_out)
            np.matmul(whr.T, dh_out, out=dhp)  # (H, N): the gradient before the projection
            dh_t = dhp
        a, d = acts[t], dgates[:, t]
        d4 = d.reshape(4, hidden, n)
        np.tanh(cells[t], out=tc)
        if jit is not None:
            jit.cell_backward(a, tc, c_prev, dh_t, dc, d4, dt.type(1))
        else:
            np.multiply(a, a, out=sq)  # activation derivatives: s - s^2 (i, f, o), 1 - g^2
            np.subtract(a[:2], sq[:2], out=sq[:2])
            np.subtract(a[3], sq[3], out=sq[3])
            np.subtract(one, sq[2], out=sq[2])
            np.multiply(sq[0:3:2], a[2::-2], out=fac[0:3:2])  # dc's factors: i' * g, g' * i
            np.multiply(sq[1], c_prev, out=fac[1])  # f' * c_prev
            np.multiply(sq[3], tc, out=t1)  # d_o = dh * tanh(c) * o'
            np.multiply(t1, dh_t, out=d4[3])
            np.multiply(tc, tc, out=t1)  # the cell state's share dh * o * (1 - tanh(c)^2)
            np.subtract(one, t1, out=t1)
            t1 *= a[3]
            t1 *= dh_t
            dc += t1
            np.multiply(fac, dc, out=d4[:3])  # d_i, d_f, d_g
            dc *= a[1]
        if t != first or need[1]:
            np.matmul(w_t, d, out=dh)
    dev = node.device
    out: list[Any] = [None] * 8
    flat = dgates.reshape(width, steps * n)
    out[0] = Tensor._make(flat.T.reshape(steps, n, width), dev) if need[0] else None
    out[1] = Tensor._make(np.ascontiguousarray(dh.T), dev) if need[1] else None
    out[2] = Tensor._make(np.ascontiguousarray(dc.T), dev) if need[2] else None
    if need[3]:  # every step's h_prev is the previous output, the first step's is h0
        later = (flat[:, : -n], outs[1:]) if node.reverse else (flat[:, n:], outs[:-1])
        dw = later[0] @ later[1].reshape(-1, h_out)
        if h0a.any():
            dw += flat[:, first * n: (first + 1) * n] @ h0a
        out[3] = Tensor._make(dw, dev)
    if b_hh is not None and need[4]:
        out[4] = Tensor._make(row_sum(np, flat), dev)
    if dh_all is not None and need[5]:
        out[5] = Tensor._make(dh_all.reshape(h_out, -1) @ hraw.reshape(-1, hidden), dev)
    return tuple(out)


def scan_backward(node: Any, grad: Tensor) -> tuple[Any, ...]:
    """Gradients of (xw, h0, c0, w_hh, b_hh, w_hr) for the packed output's gradient ``grad``."""
    if node.feature_major:
        return _lstm_backward_fm(node, grad)
    xw, h0, c0, w_hh, b_hh, w_hr = node.inputs[:6]
    mode, reverse, xp = node.mode, node.reverse, node.xp
    steps, n, width = xw.shape
    hidden = width // GATES[mode]
    h_out = h0.shape[-1]
    split = steps * n * h_out
    outs = node._out[0][:split].reshape(steps, n, h_out)
    dtype = xw._data.dtype
    g = grad._data if grad._data.dtype == dtype else grad._data.astype(dtype)
    gouts = g[:split].reshape(steps, n, h_out)
    dxw = work_empty(xp, (steps, n, width), dtype)
    dgh_all = work_empty(xp, (steps, n, width), dtype) if mode == "GRU" else dxw  # the hidden GEMM's share
    need = [e is not None for e in node.next_edges[:6]]
    fused = _rnn_cuda.fusable(xp, dtype)
    first = steps - 1 if reverse else 0
    walk = _Walk(xp, node, fused, dtype, range(steps) if reverse else range(steps - 1, -1, -1), first,
                 1 if reverse else -1, w_hh._data, h0._data)
    dc = dw_hr = None
    if mode == "LSTM":
        dc = g[split:].reshape(n, hidden).astype(dtype, copy=True)
        dh, dw_hr = walk.lstm(dxw, gouts, dc, c0._data, None if w_hr is None else w_hr._data, need[5])
    elif mode == "GRU":
        dh = walk.gru(dxw, dgh_all, gouts, outs)
    else:
        dh = walk.simple(dxw, gouts, outs, mode == "RNN_RELU")
    dev = node.device
    out: list[Any] = [None] * 8
    out[0] = Tensor._make(dxw, dev) if need[0] else None
    out[1] = Tensor._make(dh, dev) if need[1] else None
    if dc is not None and need[2]:
        out[2] = Tensor._make(dc, dev)
    if need[3] or (b_hh is not None and need[4]):
        flat = dgh_all.reshape(-1, width)
        if need[3]:
            # every step's h_prev, in step order: one GEMM for the hidden weights' gradient
            h_prevs = xp.concatenate([outs[1:], h0._data[None]]) if reverse else xp.concatenate([h0._data[None],
                                                                                                 outs[:-1]])
            out[3] = Tensor._make(matmul(xp, flat.T, h_prevs.reshape(-1, h_out)), dev)
        if b_hh is not None and need[4]:
            out[4] = Tensor._make(col_sum(xp, flat), dev)
    if dw_hr is not None:
        out[5] = Tensor._make(dw_hr, dev)
    return tuple(out)


class _Walk:
    """The reverse walk over the steps for one scan: one method per cell kind, each returning dh0.

    ``dh`` lives in two preallocated buffers: each step's GEMM writes the one the step did not read.
    """

    def __init__(self, xp: Any, node: Any, fused: bool, dtype: Any, back: range, first: int, prev: int, w: Any,
                 h0: Any) -> None:
        self.xp, self.node, self.fused, self.dtype = xp, node, fused, dtype
        self.back, self.first, self.prev, self.w, self.h0 = back, first, prev, w, h0  # prev: t's predecessor - t

    def _buffers(self, n: int, h_out: int) -> tuple[Any, Any]:
        return self.xp.zeros((n, h_out), self.dtype), self.xp.empty((n, h_out), self.dtype)

    def lstm(self, dxw: Any, gouts: Any, dc: Any, c0: Any, whr: Any, need_whr: bool) -> tuple[Any, Any]:
        """LSTM: dh0 (dc is updated in place to dc0) and the projection's gradient (or None)."""
        xp, node, fused = self.xp, self.node, self.fused
        n, h_out = gouts.shape[1:]
        hidden = dc.shape[-1]
        acts, cells, tcs = node.acts, node.cells, node.tcs
        dh, spare = self._buffers(n, h_out)
        t1, t2 = (None, None) if fused else (xp.empty((n, hidden), self.dtype), xp.empty((n, hidden), self.dtype))
        dh_all: Any = None
        dhp: Any = None
        zero: Any = None
        if whr is not None:  # the output's gradient per step, kept for the projection's one GEMM at the end
            dh_all = xp.empty((len(self.back) if need_whr else 1, n, h_out), self.dtype)
            dhp = xp.empty((n, hidden), self.dtype)
            zero = xp.zeros((), self.dtype)
        for t in self.back:
            c_prev = c0 if t == self.first else cells[t + self.prev]
            if whr is not None:
                dht_out = dh_all[t if need_whr else 0]
                xp.add(dh, gouts[t], out=dht_out)
                matmul(xp, dht_out, whr, out=dhp)  # (N, H): the gradient before the projection
                dht, gout = dhp, zero
            else:
                dht, gout = dh, gouts[t]
            if fused:
                _rnn_cuda.lstm_backward(xp, dht, gout, cells[t], c_prev, acts[t], dc, dxw[t])
            else:
                if whr is None:
                    dht += gout  # dh is this walk's own buffer
                tc = tcs[t] if tcs is not None else xp.tanh(cells[t])
                _lstm_step_grad(xp, dxw[t], dht, dc, acts[t], tc, c_prev, hidden, t1, t2)
            matmul(xp, dxw[t], self.w, out=spare)
            dh, spare = spare, dh
        dw_hr = None
        if whr is not None and need_whr:
            dw_hr = matmul(xp, dh_all.reshape(-1, h_out).T, node.hraw.reshape(-1, hidden))
        return dh, dw_hr

    def gru(self, dxw: Any, dgh_all: Any, gouts: Any, outs: Any) -> Any:
        """GRU: dh0; fills the input-side ``dxw`` and hidden-side ``dgh_all`` gate gradients."""
        xp, node, fused = self.xp, self.node, self.fused
        n, hidden = gouts.shape[1:]
        dh, spare = self._buffers(n, hidden)
        direct = xp.zeros((n, hidden), self.dtype)  # dht * z: h's share that skips the GEMM
        t1, t2 = (None, None) if fused else (xp.empty((n, hidden), self.dtype), xp.empty((n, hidden), self.dtype))
        for t in self.back:
            h_prev = self.h0 if t == self.first else outs[t + self.prev]
            if fused:
                _rnn_cuda.gru_backward(xp, dh, gouts[t], h_prev, node.ghn[t], node.acts[t], direct, dxw[t],
                                       dgh_all[t])
                matmul(xp, dgh_all[t], self.w, out=spare)
            else:
                dh += gouts[t]
                _gru_step_grad(xp, dxw[t], dgh_all[t], dh, node.acts[t], node.ghn[t], h_prev, hidden, t1, t2,
                               direct)
                matmul(xp, dgh_all[t], self.w, out=spare)
                spare += direct
            dh, spare = spare, dh
        if fused:
            dh += direct  # the first step's direct share (the kernel adds it to the next step's otherwise)
        return dh

    def simple(self, dxw: Any, gouts: Any, outs: Any, relu: bool) -> Any:
        """Plain RNN (tanh or relu): dh0; fills ``dxw`` with the pre-activation gradients."""
        xp = self.xp
        dh, spare = self._buffers(*gouts.shape[1:])
        for t in self.back:
            d = dxw[t]
            if self.fused:
                _rnn_cuda.simple_backward(xp, dh, gouts[t], outs[t], d, relu)
            else:
                dh += gouts[t]
                if relu:
                    xp.multiply(dh, outs[t] > 0, out=d)
                else:
                    xp.multiply(outs[t], outs[t], out=d)
                    xp.subtract(1.0, d, out=d)
                    d *= dh
            matmul(xp, d, self.w, out=spare)
            dh, spare = spare, dh
        return dh
