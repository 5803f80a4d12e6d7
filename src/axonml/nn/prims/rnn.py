"""One recurrent layer in one direction over a whole sequence, as one primitive.

A primitive because the unrolled composition was ~5x slower than PyTorch on a 2-layer
LSTM (hidden 256, 50 steps, batch 32): ~15 graph nodes per step, and every per-step
slice's backward allocated a zero array of the whole slice source. Here the forward is
one GEMM and a few in-place array calls per step; the backward runs backpropagation
through time on arrays with one GEMM per step, and the weight gradient is one GEMM over
all steps. Under ``create_graph=True`` (or with forward-mode tangents) the same layer is
rebuilt from the composed steps below and differentiated by autograd, so higher
derivatives work.

The input projection (``x @ w_ih^T + b_ih``) is not part of it: the caller does it for
the whole sequence in one GEMM and passes the result ``xw`` (T, N, G * H).
"""

from __future__ import annotations

from typing import Any

from ...core.engine import grad as _grad
from ...core.function import Primitive
from ...core.grad_mode import enable_grad
from ...core.methods import cat
from ...core.tensor import Tensor
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
        packed = xp.empty(steps * n * h_out + (n * hidden if mode == "LSTM" else 0), xw.dtype)
        outs = packed[: steps * n * h_out].reshape(steps, n, h_out)
        acts = xp.empty((steps, n, gh_width), xw.dtype) if mode != "RNN_TANH" and mode != "RNN_RELU" else None
        cells = xp.empty((steps, n, hidden), xw.dtype) if mode == "LSTM" else None
        ghn = xp.empty((steps, n, hidden), xw.dtype) if mode == "GRU" else None
        if mode == "LSTM":  # per-gate constants (input, forget, cell, output) of the fused activation
            scale = xp.full(gh_width, 0.5, xw.dtype)
            scale[2 * hidden: 3 * hidden] = 1.0
            shift = xp.full(gh_width, 0.5, xw.dtype)
            shift[2 * hidden: 3 * hidden] = 0.0
        w_t = xp.ascontiguousarray(w_hh.T)  # BLAS is ~1.5x faster on (N, H) @ (H, GH) than with a transposed flag
        h, c = h0, c0
        order = range(steps - 1, -1, -1) if reverse else range(steps)
        for t in order:
            if mode == "LSTM":
                g = acts[t]  # type: ignore[index]
                xp.matmul(h, w_t, out=g)
                g += xw[t]
                if b_hh is not None:
                    g += b_hh
                # all four gates in 4 passes: sigmoid(x) = 0.5 * tanh(x / 2) + 0.5, the cell gate tanh(x)
                g *= scale
                xp.tanh(g, out=g)
                g *= scale
                g += shift
                c_new = cells[t]  # type: ignore[index]
                xp.multiply(g[:, hidden: 2 * hidden], c, out=c_new)
                c_new += g[:, :hidden] * g[:, 2 * hidden: 3 * hidden]
                raw = xp.tanh(c_new) if w_hr is not None else xp.tanh(c_new, out=outs[t])
                raw *= g[:, 3 * hidden:]
                if w_hr is not None:
                    xp.matmul(raw, w_hr.T, out=outs[t])
                c = c_new
            elif mode == "GRU":
                g = acts[t]  # type: ignore[index]
                gh = h @ w_t
                if b_hh is not None:
                    gh += b_hh
                xp.add(xw[t, :, : 2 * hidden], gh[:, : 2 * hidden], out=g[:, : 2 * hidden])
                _sigmoid_(xp, g[:, : 2 * hidden])
                ghn[t] = gh[:, 2 * hidden:]  # type: ignore[index]
                new = g[:, 2 * hidden:]
                xp.multiply(g[:, :hidden], gh[:, 2 * hidden:], out=new)
                new += xw[t, :, 2 * hidden:]
                xp.tanh(new, out=new)
                o = outs[t]
                xp.subtract(h, new, out=o)
                o *= g[:, hidden: 2 * hidden]
                o += new
            else:
                o = outs[t]
                xp.matmul(h, w_t, out=o)
                o += xw[t]
                if b_hh is not None:
                    o += b_hh
                if mode == "RNN_TANH":
                    xp.tanh(o, out=o)
                else:
                    xp.maximum(o, 0, out=o)
            h = outs[t]
        if mode == "LSTM":
            packed[steps * n * h_out:] = c.reshape(-1)
        ctx.mode, ctx.reverse, ctx.acts, ctx.cells, ctx.ghn = mode, reverse, acts, cells, ghn
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



def unpack(packed: Tensor, steps: int, n: int, h_out: int, hidden: int,
           lstm: bool) -> tuple[Tensor, Tensor | None]:
    """(outputs (T, N, H_out), last cell state (N, H) or None) as views of a scan's packed result."""
    split = steps * n * h_out
    outs = packed[:split].reshape(steps, n, h_out)
    return outs, (packed[split:].reshape(n, hidden) if lstm else None)

