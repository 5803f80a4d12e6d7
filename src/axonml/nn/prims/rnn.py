"""One recurrent layer in one direction over a whole sequence, as one primitive.

A primitive because the unrolled composition was ~5x slower than PyTorch on a 2-layer
LSTM (hidden 256, 50 steps, batch 32): ~15 graph nodes per step, and every per-step
slice's backward allocated a zero array of the whole slice source. Here the forward is
one GEMM and a few in-place array calls per step; the backward runs backpropagation
through time on arrays with one GEMM per step, and the weight gradient is one GEMM over
all steps. Under ``create_graph=True`` (or with forward-mode tangents) the same layer is
rebuilt from the composed steps below and differentiated by autograd, so higher
derivatives work.

On CUDA (float16/32/64) a step's elementwise work (gates to c and h forward, the gates'
gradients backward) is one fused kernel of :mod:`._rnn_cuda` after the step's GEMM: a GPU
step is launch-bound, and the array path costs ~10 launches forward and ~20 backward per step.

On NumPy the LSTM runs feature-major (:func:`_lstm_forward_fm`): a step's gates are
(4H, N) = W_hh @ h^T, the GEMM orientation OpenBLAS runs fastest at these shapes.

The input projection (``x @ w_ih^T + b_ih``) is not part of it: the caller does it for
the whole sequence in one GEMM and passes the result ``xw`` (T, N, G * H).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np

from ...backend import matmul
from ...core.engine import grad as _grad
from ...core.function import Primitive
from ...core.grad_mode import enable_grad
from ...core.methods import cat
from ...core.tensor import Tensor
from . import _rnn_cpu_jit, _rnn_cuda
from ._fastpath import arrays_only

GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# ----- the steps in Tensor ops (cells, and the differentiable rebuild of the scan) ------------------
def simple_step(gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None, relu: bool) -> Tensor:
    pre = gx + _linear(h, w_hh, b_hh)
    return pre.relu() if relu else pre.tanh()


def lstm_step(gx: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Tensor | None,
              w_hr: Tensor | None) -> tuple[Tensor, Tensor]:
    gates = gx + _linear(h, w_hh, b_hh)  # (N, 4H): input, forget, cell, output
    n = c.shape[-1]
    sig = gates.sigmoid()  # one node for the three sigmoid gates (the cell gate's slice is unused)
    i, f, o = sig[..., :n], sig[..., n:2 * n], sig[..., 3 * n:]
    g = gates[..., 2 * n:3 * n].tanh()
    c = f * c + i * g
    h = o * c.tanh()
    return (h if w_hr is None else _linear(h, w_hr, None)), c


def gru_step(gx: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    gh = _linear(h, w_hh, b_hh)  # (N, 3H): reset, update, new
    n = h.shape[-1]
    rz = (gx[..., :2 * n] + gh[..., :2 * n]).sigmoid()
    r, z = rz[..., :n], rz[..., n:]
    new = (gx[..., 2 * n:] + r * gh[..., 2 * n:]).tanh()
    return new + z * (h - new)  # (1 - z) * new + z * h


def _linear(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    from .linear import Linear

    return Linear.apply(x, w, b)


def composed_scan(mode: str, xw: Tensor, h0: Tensor, c0: Tensor | None, w_hh: Tensor, b_hh: Tensor | None,
                  w_hr: Tensor | None, reverse: bool) -> Tensor:
    """The scan's packed result (see :class:`RecurrentScan`) from the composed steps."""
    steps = range(xw.shape[0] - 1, -1, -1) if reverse else range(xw.shape[0])
    outs: list[Any] = [None] * xw.shape[0]
    h, c = h0, c0
    for t in steps:
        if mode == "LSTM":
            h, c = lstm_step(xw[t], h, c, w_hh, b_hh, w_hr)  # type: ignore[arg-type]
        elif mode == "GRU":
            h = gru_step(xw[t], h, w_hh, b_hh)
        else:
            h = simple_step(xw[t], h, w_hh, b_hh, relu=mode == "RNN_RELU")
        outs[t] = h.reshape(1, -1)
    if c is not None:
        outs.append(c.reshape(1, -1))
    return cat([o.reshape(-1) for o in outs], 0)


# ----- array helpers ------------------------------------------------------------------------------------
# The scan's large arrays (its output, the forward's saved gates and states, the backward's gate
# gradients) have the same shapes every training step. Fresh, they cost page faults: ~3300 a step
# on the 2-layer LSTM benchmark, 5-10 ms in this VM (the process's sys time). So NumPy arrays of
# at least _REUSE_MIN_BYTES are kept here and handed out again once nothing else holds them: a
# Tensor, a view or a saved node on the array adds to its reference count, which is checked.
# What idle arrays hold is bounded: the least recently handed out go first past _REUSE_MAX
# arrays or _REUSE_MAX_BYTES.
_REUSE_MIN_BYTES = 1 << 18
_REUSE_MAX = 16
_REUSE_MAX_BYTES = 1 << 28
_FREE_REFS = 3  # the cache's list, the loop's variable, getrefcount's argument
_REUSE: list[Any] = []
_REUSE_LOCK = threading.Lock()


def reused_empty(shape: tuple[int, ...], dtype: Any) -> Any:
    """An uninitialized NumPy array of ``shape`` and ``dtype``, recycled from an earlier scan when one is free."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    if size * dtype.itemsize < _REUSE_MIN_BYTES:
        return np.empty(shape, dtype)
    with _REUSE_LOCK:
        for k in range(len(_REUSE)):  # by index: an iterator's cached item would add a reference
            a = _REUSE[k]
            if a.size == size and a.dtype == dtype and sys.getrefcount(a) <= _FREE_REFS:
                _REUSE.append(_REUSE.pop(k))
                return a.reshape(shape)
        a = np.empty(size, dtype)
        _REUSE.append(a)
        while len(_REUSE) > _REUSE_MAX or sum(r.nbytes for r in _REUSE) > _REUSE_MAX_BYTES:
            free = [k for k in range(len(_REUSE) - 1) if sys.getrefcount(_REUSE[k]) <= _FREE_REFS - 1]
            del _REUSE[free[0] if free else -1]  # the oldest free one; none free: the new one is not kept
        return a.reshape(shape)


def work_empty(xp: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """``xp.empty``, recycled through :func:`reused_empty` for NumPy (CuPy has its own memory pool)."""
    return reused_empty(shape, dtype) if xp is np else xp.empty(shape, dtype)


def _sigmoid_(xp: Any, a: Any) -> None:
    """Logistic sigmoid in place, as ``0.5 + 0.5 * tanh(a / 2)``: no overflow, and NumPy's tanh is fast."""
    a *= 0.5
    xp.tanh(a, out=a)
    a *= 0.5
    a += 0.5


class RecurrentScan(Primitive):
    """One RNN/LSTM/GRU layer in one direction: ``RecurrentScan.apply(xw, h0, c0, w_hh, b_hh, w_hr, mode, reverse)``.

    ``xw`` (T, N, G * H) is the input projection with its bias (and, for RNN/LSTM, ``b_hh``
    may be folded into it and passed as None here); ``h0`` (N, H_out), ``c0`` (N, H) for
    LSTM else None; ``w_hr`` (H_out, H) the LSTM projection or None. The result is one
    flat array: the outputs (T, N, H_out), then for LSTM the last cell state (N, H).
    """

    saves = "both"

    @staticmethod
    def forward(ctx: Any, xw: Any, h0: Any, c0: Any, w_hh: Any, b_hh: Any, w_hr: Any, mode: str,
                reverse: bool) -> Any:
        xp = ctx.xp
        steps, n, gh_width = xw.shape
        hidden = gh_width // GATES[mode]
        h_out = h0.shape[-1]
        size = steps * n * h_out + (n * hidden if mode == "LSTM" else 0)
        packed = work_empty(xp, (size,), xw.dtype)
        outs = packed[: steps * n * h_out].reshape(steps, n, h_out)
        if b_hh is not None and mode != "GRU":  # it adds to the same pre-activation: one pass, not one per step
            xw = xp.add(xw, b_hh, out=work_empty(xp, xw.shape, xw.dtype))
        order = range(steps - 1, -1, -1) if reverse else range(steps)
        fused = _rnn_cuda.fusable(xp, xw.dtype)  # CUDA: one fused kernel per step after its GEMM
        ctx.acts = ctx.cells = ctx.ghn = ctx.tcs = ctx.hraw = None
        ctx.feature_major = mode == "LSTM" and xp is np and not fused  # see _lstm_forward_fm
        if ctx.feature_major:
            c_last = _lstm_forward_fm(ctx, xw, h0, c0, w_hh, w_hr, outs, order)
            packed[steps * n * h_out:].reshape(n, hidden)[...] = c_last.T
            ctx.mode, ctx.reverse = mode, reverse
            return packed
        w_t = xp.ascontiguousarray(w_hh.T)  # BLAS is ~1.5x faster on (N, H) @ (H, GH) than with a transposed flag
        if mode == "LSTM":
            c_last = _lstm_forward(ctx, xp, xw, h0, c0, w_t, w_hr, outs, order, fused)
            packed[steps * n * h_out:] = c_last.reshape(-1)
        elif mode == "GRU":
            _gru_forward(ctx, xp, xw, h0, w_t, b_hh, outs, order, fused)
        else:
            relu = mode == "RNN_RELU"
            h = h0
            for t in order:
                o = outs[t]
                matmul(xp, h, w_t, out=o)
                if fused:
                    _rnn_cuda.simple_forward(xp, o, xw[t], relu)
                else:
                    o += xw[t]
                    if relu:
                        xp.maximum(o, 0, out=o)
                    else:
                        xp.tanh(o, out=o)
                h = o
        ctx.mode, ctx.reverse = mode, reverse
        return packed

    def backward(self, grad: Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        if not arrays_only():
            return self._composed_backward(grad)
        from ._rnn_backward import scan_backward

        return scan_backward(self, grad)

    def _tensor_inputs(self) -> list[int]:
        return [i for i in range(6) if isinstance(self._inputs[i], Tensor) and self.next_edges[i] is not None]

    def _composed_backward(self, grad: Tensor) -> tuple[Any, ...]:
        """Rebuild the layer from composed steps and let autograd differentiate it (higher derivatives)."""
        inputs = self.inputs
        idx = self._tensor_inputs()
        with enable_grad():
            xw, h0, c0, w_hh, b_hh, w_hr = inputs[:6]
            packed = composed_scan(self.mode, xw, h0, c0, w_hh, b_hh, w_hr, self.reverse)
            grads = _grad(packed, [inputs[i] for i in idx], grad, create_graph=True, allow_unused=True)
        out: list[Any] = [None] * 8
        for i, g in zip(idx, grads):
            out[i] = g
        return tuple(out)

    def jvp(self, *tangents: Any) -> Any:
        """J t as the derivative of the linear map u -> <J^T u, t>, both through the composed rebuild."""
        inputs = self._inputs
        idx = [i for i in range(6) if isinstance(inputs[i], Tensor) and tangents[i] is not None]
        if not idx:
            return None
        with enable_grad():
            leaves = list(inputs[:6])
            for i in idx:
                leaves[i] = inputs[i].detach().requires_grad_(True)
            xw, h0, c0, w_hh, b_hh, w_hr = leaves
            packed = composed_scan(self.mode, xw, h0, c0, w_hh, b_hh, w_hr, self.reverse)
            u = Tensor._make(self.xp.zeros(packed.shape, packed._data.dtype), self.device).requires_grad_(True)
            vjp = _grad(packed, [leaves[i] for i in idx], u, create_graph=True, allow_unused=True)
            total = None
            for i, g in zip(idx, vjp):
                if g is not None:
                    term = (g * tangents[i]).sum()
                    total = term if total is None else total + term
            if total is None:
                return u.detach()
            (jt,) = _grad(total, [u], allow_unused=True)
        return jt if jt is not None else u.detach()



def _lstm_forward(ctx: Any, xp: Any, xw: Any, h: Any, c: Any, w_t: Any, w_hr: Any, outs: Any, order: range,
                  fused: bool) -> Any:
    """The LSTM steps: outputs into ``outs``; keeps the gates (and more) on ``ctx`` for the backward; last c."""
    steps, n, width = xw.shape
    hidden, dt = width // 4, xw.dtype
    acts = xp.empty((steps, n, width), dt)  # per step the activated gates (i, f, g, o)
    cells = xp.empty((steps, n, hidden), dt)
    hraw = None if w_hr is None else xp.empty((steps, n, hidden), dt)  # h before the projection
    tcs = None if fused else xp.empty((steps, n, hidden), dt)  # tanh(c): the backward needs it again
    if not fused:  # per-gate constants of the four-gate activation: sigmoid(x) = 0.5 * tanh(x / 2) + 0.5
        scale = xp.full(width, 0.5, dt)
        scale[2 * hidden: 3 * hidden] = 1.0
        shift = xp.full(width, 0.5, dt)
        shift[2 * hidden: 3 * hidden] = 0.0
        tmp = xp.empty((n, hidden), dt)
    w_hr_t = None if w_hr is None else w_hr.T
    for t in order:
        g = acts[t]
        matmul(xp, h, w_t, out=g)
        h_dst = outs[t] if hraw is None else hraw[t]
        if fused:
            _rnn_cuda.lstm_forward(xp, g, xw[t], c, cells[t], h_dst)
        else:
            g += xw[t]
            g *= scale  # all four gates in 4 passes
            xp.tanh(g, out=g)
            g *= scale
            g += shift
            c_new = cells[t]
            xp.multiply(g[:, hidden: 2 * hidden], c, out=c_new)
            xp.multiply(g[:, :hidden], g[:, 2 * hidden: 3 * hidden], out=tmp)
            c_new += tmp
            xp.tanh(c_new, out=tcs[t])  # type: ignore[index]
            xp.multiply(tcs[t], g[:, 3 * hidden:], out=h_dst)  # type: ignore[index]
        if hraw is not None:
            matmul(xp, hraw[t], w_hr_t, out=outs[t])
        c, h = cells[t], outs[t]
    ctx.acts, ctx.cells, ctx.tcs, ctx.hraw = acts, cells, tcs, hraw
    return c


_GATE_SCALE = (0.5, 0.5, 1.0, 0.5)  # per LSTM gate (i, f, g, o): sigmoid(x) = 0.5 * tanh(x / 2) + 0.5, g is tanh
_GATE_SHIFT = (0.5, 0.5, 0.0, 0.5)


def _lstm_forward_fm(ctx: Any, xw: Any, h: Any, c: Any, w_hh: Any, w_hr: Any, outs: Any, order: range) -> Any:
    """The LSTM steps on NumPy, feature-major: each step's gates are (4, H, N) = W_hh @ h^T, not (N, 4H).

    OpenBLAS runs a step's (4H, H_out) @ (H_out, N) ~1.1x (1 thread) to ~1.5x (2 threads) faster
    than (N, H_out) @ (H_out, 4H), and each gate is then one contiguous (H, N) block, so the
    four-gate activation is 4 calls over the whole array. The price is reading ``xw[t]``
    transposed (one pass); outputs go to ``outs`` (T, N, H_out) as usual. Keeps for the
    backward the gates (T, 4, H, N), c (T, H, N) and h before the projection (T, N, H), not
    tanh(c): recomputing it there costs less than storing and reading it back. Returns the
    last c (H, N).
    """
    steps, n, width = xw.shape
    hidden, dt = width // 4, xw.dtype
    block = steps * n * hidden
    work = reused_empty(((5 if w_hr is None else 6) * block,), dt)  # one array: one free-check, one reuse
    acts = work[: 4 * block].reshape(steps, 4, hidden, n)
    cells = work[4 * block: 5 * block].reshape(steps, hidden, n)
    hraw = None if w_hr is None else work[5 * block: 6 * block].reshape(steps, n, hidden)
    scale = np.asarray(_GATE_SCALE, dt).reshape(4, 1, 1)
    shift = np.asarray(_GATE_SHIFT, dt).reshape(4, 1, 1)
    tmp, tc = np.empty((hidden, n), dt), np.empty((hidden, n), dt)
    c = np.ascontiguousarray(c.T)
    skip = not h.any()  # a zero initial state (the default): the first step's product is zero
    w_hr_t: Any = None if w_hr is None else w_hr.T
    jit = _rnn_cpu_jit.kernels() if dt.char in "fd" else None  # the chain between the tanh calls in one pass
    half, one, zero = dt.type(0.5), dt.type(1), dt.type(0)
    for t in order:
        a = acts[t]
        g = a.reshape(width, n)
        if skip:
            np.copyto(g, xw[t].T)
            skip = False
        else:
            np.matmul(w_hh, h.T, out=g)
            g += xw[t].T
        np.multiply(a, scale, out=a)
        np.tanh(a, out=a)
        c_new = cells[t]
        if jit is not None:
            jit.gates_cell(a, c, c_new, half, one, zero)
        else:
            np.multiply(a, scale, out=a)
            a += shift
            np.multiply(a[1], c, out=c_new)
            np.multiply(a[0], a[2], out=tmp)
            c_new += tmp
        np.tanh(c_new, out=tc)
        np.multiply(tc, a[3], out=(outs[t] if hraw is None else hraw[t]).T)
        if hraw is not None:
            np.matmul(hraw[t], w_hr_t, out=outs[t])
        c, h = c_new, outs[t]
    ctx.acts, ctx.cells, ctx.hraw = acts, cells, hraw
    return c


def _gru_forward(ctx: Any, xp: Any, xw: Any, h: Any, w_t: Any, b_hh: Any, outs: Any, order: range,
                 fused: bool) -> None:
    """The GRU steps: outputs into ``outs``; the gates (r, z, n) and the new gate's hidden part on ``ctx``."""
    steps, n, width = xw.shape
    hidden, dt = width // 3, xw.dtype
    acts = work_empty(xp, (steps, n, width), dt)
    ghn = work_empty(xp, (steps, n, hidden), dt)  # per step h @ W_hn^T + b_hn, which the reset gate scales
    gh = xp.empty((n, width), dt)
    b = (b_hh if b_hh is not None else xp.zeros(width, dt)) if fused else None
    for t in order:
        matmul(xp, h, w_t, out=gh)
        if fused:
            _rnn_cuda.gru_forward(xp, xw[t], gh, b, h, acts[t], ghn[t], outs[t])
        else:
            g = acts[t]
            if b_hh is not None:
                gh += b_hh
            xp.add(xw[t, :, : 2 * hidden], gh[:, : 2 * hidden], out=g[:, : 2 * hidden])
            _sigmoid_(xp, g[:, : 2 * hidden])
            ghn[t] = gh[:, 2 * hidden:]
            new = g[:, 2 * hidden:]
            xp.multiply(g[:, :hidden], gh[:, 2 * hidden:], out=new)
            new += xw[t, :, 2 * hidden:]
            xp.tanh(new, out=new)
            o = outs[t]
            xp.subtract(h, new, out=o)
            o *= g[:, hidden: 2 * hidden]
            o += new
        h = outs[t]
    ctx.acts, ctx.ghn = acts, ghn


def unpack(packed: Tensor, steps: int, n: int, h_out: int, hidden: int,
           lstm: bool) -> tuple[Tensor, Tensor | None]:
    """(outputs (T, N, H_out), last cell state (N, H) or None) as views of a scan's packed result."""
    split = steps * n * h_out
    outs = packed[:split].reshape(steps, n, h_out)
    return outs, (packed[split:].reshape(n, hidden) if lstm else None)

