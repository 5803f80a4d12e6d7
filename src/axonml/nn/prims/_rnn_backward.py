"""Backpropagation through time for :class:`RecurrentScan`, on raw arrays.

Walks the steps in reverse order of the forward pass, carrying ``dh`` (and ``dc`` for
LSTM); each step writes the pre-activation gradient of its gates into ``dxw[t]`` and
makes one GEMM for the hidden state's gradient. The hidden weights' gradient is one
GEMM over all steps at the end.
"""

from __future__ import annotations

from typing import Any

from ...core.tensor import Tensor
from ._fastpath import col_sum
from .rnn import GATES


def _lstm_step_grad(xp: Any, d: Any, dht: Any, dc: Any, a: Any, c_t: Any, c_prev: Any, hidden: int,
                    w_hr: Any, dw_hr: Any) -> Any:
    """Fill ``d`` (N, 4H) with the gates' pre-activation gradients; update ``dc`` in place to dc_prev."""
    i, f, g, o = a[:, :hidden], a[:, hidden:2 * hidden], a[:, 2 * hidden:3 * hidden], a[:, 3 * hidden:]
    tc = xp.tanh(c_t)
    if w_hr is not None:
        if dw_hr is not None:
            dw_hr += dht.T @ (tc * o)
        dht = dht @ w_hr  # (N, H): the gradient before the projection
    d_o = d[:, 3 * hidden:]
    xp.multiply(dht, tc, out=d_o)
    d_o *= o * (1.0 - o)
    tc *= tc  # from here tc holds dh * o * (1 - tanh(c)^2), the cell state's share
    xp.subtract(1.0, tc, out=tc)
    tc *= o
    tc *= dht
    dc += tc
    d_i, d_f, d_g = d[:, :hidden], d[:, hidden:2 * hidden], d[:, 2 * hidden:3 * hidden]
    xp.multiply(dc, g, out=d_i)
    d_i *= i * (1.0 - i)
    xp.multiply(dc, c_prev, out=d_f)
    d_f *= f * (1.0 - f)
    xp.multiply(dc, i, out=d_g)
    d_g *= 1.0 - g * g
    dc *= f
    return d


def _gru_step_grad(xp: Any, d: Any, dgh: Any, dht: Any, a: Any, ghn: Any, h_prev: Any, hidden: int) -> Any:
    """Fill ``d`` (N, 3H, input side) and ``dgh`` (N, 3H, hidden side); return dh's direct share (dht * z)."""
    r, z, new = a[:, :hidden], a[:, hidden:2 * hidden], a[:, 2 * hidden:]
    d_r, d_z, d_n = d[:, :hidden], d[:, hidden:2 * hidden], d[:, 2 * hidden:]
    xp.subtract(h_prev, new, out=d_z)
    d_z *= dht
    d_z *= z * (1.0 - z)
    xp.subtract(1.0, z, out=d_n)
    d_n *= dht
    d_n *= 1.0 - new * new
    xp.multiply(d_n, ghn, out=d_r)
    d_r *= r * (1.0 - r)
    dgh[:, : 2 * hidden] = d[:, : 2 * hidden]
    xp.multiply(d_n, r, out=dgh[:, 2 * hidden:])
    return dht * z


def scan_backward(node: Any, grad: Tensor) -> tuple[Any, ...]:
    xw, h0, c0, w_hh, b_hh, w_hr = node.inputs[:6]
    mode, reverse, xp = node.mode, node.reverse, node.xp
    steps, n, width = xw.shape
    hidden = width // GATES[mode]
    h_out = h0.shape[-1]
    split = steps * n * h_out
    outs = node._out[0][:split].reshape(steps, n, h_out)
    g = grad._data
    gouts = g[:split].reshape(steps, n, h_out)
    dtype = xw._data.dtype
    dxw = xp.empty((steps, n, width), dtype)
    dgh_all = xp.empty((steps, n, width), dtype) if mode == "GRU" else dxw  # the hidden GEMM's share
    w = w_hh._data
    whr = None if w_hr is None else w_hr._data
    need = [e is not None for e in node.next_edges[:6]]
    dw_hr = xp.zeros(whr.shape, dtype) if whr is not None and need[5] else None
    dh = xp.zeros((n, h_out), dtype)
    dc = g[split:].reshape(n, hidden).astype(dtype, copy=True) if mode == "LSTM" else None
    first = steps - 1 if reverse else 0
    back = range(steps) if reverse else range(steps - 1, -1, -1)
    for t in back:
        prev = t + 1 if reverse else t - 1
        h_prev = h0._data if t == first else outs[prev]
        dht = dh  # dh is always a fresh array here: add the output's gradient in place
        dht += gouts[t]
        if mode == "LSTM":
            c_prev = c0._data if t == first else node.cells[prev]
            _lstm_step_grad(xp, dxw[t], dht, dc, node.acts[t], node.cells[t], c_prev, hidden, whr, dw_hr)
            dh = dxw[t] @ w
        elif mode == "GRU":
            direct = _gru_step_grad(xp, dxw[t], dgh_all[t], dht, node.acts[t], node.ghn[t], h_prev, hidden)
            dh = dgh_all[t] @ w
            dh += direct
        else:
            d = dxw[t]
            if mode == "RNN_TANH":
                xp.multiply(outs[t], outs[t], out=d)
                xp.subtract(1.0, d, out=d)
                d *= dht
            else:
                xp.multiply(dht, outs[t] > 0, out=d)
            dh = d @ w
    dev = node.device
    out: list[Any] = [None] * 8
    out[0] = Tensor._make(dxw, dev) if need[0] else None
    out[1] = Tensor._make(dh, dev) if need[1] else None
    if mode == "LSTM" and need[2]:
        out[2] = Tensor._make(dc, dev)
    if need[3] or (b_hh is not None and need[4]):
        flat = dgh_all.reshape(-1, width)
        if need[3]:
            # every step's h_prev, in step order: one GEMM for the hidden weights' gradient
            h_prevs = xp.concatenate([outs[1:], h0._data[None]]) if reverse else xp.concatenate([h0._data[None],
                                                                                                 outs[:-1]])
            out[3] = Tensor._make(flat.T @ h_prevs.reshape(-1, h_out), dev)
        if b_hh is not None and need[4]:
            out[4] = Tensor._make(col_sum(xp, flat), dev)
    if dw_hr is not None:
        out[5] = Tensor._make(dw_hr, dev)
    return tuple(out)
