"""Recurrent networks, functionally: the cells of ``torch`` (``rnn_tanh_cell``, ``rnn_relu_cell``,
``lstm_cell``, ``gru_cell``) and ``rnn_forward``, the multi-layer, optionally bidirectional
sequence loop that the RNN, LSTM and GRU modules call.

Weights follow PyTorch's layout and gate order (LSTM: input, forget, cell, output; GRU:
reset, update, new), so a PyTorch module's parameters can be passed as they are.
Gradients through time come from autograd over the unrolled loop. The input projection
of a whole sequence is one GEMM before the loop; each step then adds one hidden GEMM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...core.autocast import autocast_op
from ...core.methods import cat
from ...core.random import Generator
from ...core.tensor import Tensor
from ...errors import DTypeError, ShapeError
from ...ops.shape import stack
from ..prims.rnn import GATES as _GATES
from ..prims.rnn import RecurrentScan, gru_step, lstm_step, simple_step, unpack
from .activation import dropout as _dropout
from .linear import linear

__all__ = ["gru_cell", "lstm_cell", "rnn_forward", "rnn_relu_cell", "rnn_tanh_cell"]

# ----- cells ------------------------------------------------------------------------------------------
def _check_cell(op: str, input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, gates: int) -> None:  # noqa: A002
    if not input.is_floating_point():
        raise DTypeError(f"{op}: expected a floating point input, got {input.dtype}")
    if input.ndim not in (1, 2):
        raise ShapeError(f"{op}: expected input of shape (N, input_size) or (input_size,), got {tuple(input.shape)}")
    if w_ih.ndim != 2 or w_hh.ndim != 2 or w_ih.shape[0] % gates or w_ih.shape[0] != w_hh.shape[0]:
        raise ShapeError(f"{op}: weights of shapes {tuple(w_ih.shape)} and {tuple(w_hh.shape)} are not "
                         f"({gates} * hidden, input) and ({gates} * hidden, hidden)")
    if input.shape[-1] != w_ih.shape[1]:
        raise ShapeError(f"{op}: input has {input.shape[-1]} features, w_ih expects {w_ih.shape[1]}")
    if hx.shape != (*input.shape[:-1], w_hh.shape[1]):
        expected = (*input.shape[:-1], w_hh.shape[1])
        raise ShapeError(f"{op}: hidden state of shape {tuple(hx.shape)}, expected {expected}")


@autocast_op("lower")
def rnn_tanh_cell(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,  # noqa: A002
                  b_hh: Tensor | None = None) -> Tensor:
    """``tanh(input @ w_ih^T + b_ih + hx @ w_hh^T + b_hh)``."""
    _check_cell("rnn_tanh_cell", input, hx, w_ih, w_hh, 1)
    return simple_step(linear(input, w_ih, b_ih), hx, w_hh, b_hh, relu=False)


@autocast_op("lower")
def rnn_relu_cell(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,  # noqa: A002
                  b_hh: Tensor | None = None) -> Tensor:
    """``relu(input @ w_ih^T + b_ih + hx @ w_hh^T + b_hh)``."""
    _check_cell("rnn_relu_cell", input, hx, w_ih, w_hh, 1)
    return simple_step(linear(input, w_ih, b_ih), hx, w_hh, b_hh, relu=True)


@autocast_op("lower")
def lstm_cell(input: Tensor, hx: Sequence[Tensor], w_ih: Tensor, w_hh: Tensor,  # noqa: A002
              b_ih: Tensor | None = None, b_hh: Tensor | None = None,
              w_hr: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One LSTM step: ``(h', c')`` from ``hx = (h, c)``; gates in PyTorch's order (i, f, g, o).

    ``w_hr`` (proj_size, hidden) projects ``h'`` as ``nn.LSTM(proj_size=...)`` does; ``h`` then
    has proj_size features.
    """
    if len(hx) != 2:
        raise ValueError("lstm_cell: hx must be a pair (h, c)")
    h, c = hx
    _check_cell("lstm_cell", input, h, w_ih, w_hh, 4)
    hidden = w_ih.shape[0] // 4
    if c.shape != (*input.shape[:-1], hidden):
        raise ShapeError(f"lstm_cell: cell state of shape {tuple(c.shape)}, expected {(*input.shape[:-1], hidden)}")
    if w_hr is not None and (w_hr.ndim != 2 or w_hr.shape != (w_hh.shape[1], hidden)):
        raise ShapeError(f"lstm_cell: w_hr of shape {tuple(w_hr.shape)}, expected {(w_hh.shape[1], hidden)}")
    if w_hr is None and w_hh.shape[1] != hidden:
        raise ShapeError(f"lstm_cell: w_hh of shape {tuple(w_hh.shape)} needs a projection w_hr of shape "
                         f"({w_hh.shape[1]}, {hidden})")
    return lstm_step(linear(input, w_ih, b_ih), h, c, w_hh, b_hh, w_hr)


@autocast_op("lower")
def gru_cell(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,  # noqa: A002
             b_hh: Tensor | None = None) -> Tensor:
    """One GRU step; gates in PyTorch's order (reset, update, new), ``b_hh``'s new part inside the reset."""
    _check_cell("gru_cell", input, hx, w_ih, w_hh, 3)
    return gru_step(linear(input, w_ih, b_ih), hx, w_hh, b_hh)


# ----- full sequences ---------------------------------------------------------------------------------
def _run_direction(mode: str, x: Tensor, h: Tensor, c: Tensor | None, ws: Sequence[Tensor | None],
                   reverse: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """One layer in one direction over x (T, N, I): (outputs (T, N, H_out), last h, last c)."""
    w_ih, w_hh, b_ih, b_hh, w_hr = ws
    if mode != "GRU" and b_ih is not None and b_hh is not None:
        b_ih, b_hh = b_ih + b_hh, None  # both biases add to the same pre-activation: fold them into one GEMM
    xw = linear(x, w_ih, b_ih)  # type: ignore[arg-type]  # (T, N, G * H): the whole sequence's projection at once
    packed = RecurrentScan.apply(xw, h, c, w_hh, b_hh, w_hr, mode, reverse)
    steps, n = x.shape[0], x.shape[1]
    outs, c_last = unpack(packed, steps, n, h.shape[-1], xw.shape[-1] // _GATES[mode], mode == "LSTM")
    return outs, (outs[0] if reverse else outs[-1]), c_last


def _layer_weights(weights: Sequence[Tensor], index: int, per: int, has_biases: bool,
                   proj: bool) -> tuple[Tensor | None, ...]:
    """(w_ih, w_hh, b_ih, b_hh, w_hr) of the ``index``-th (layer, direction) in PyTorch's flat order."""
    ws = list(weights[index * per:(index + 1) * per])
    w_ih, w_hh = ws[0], ws[1]
    b_ih, b_hh = (ws[2], ws[3]) if has_biases else (None, None)
    w_hr = ws[-1] if proj else None
    return w_ih, w_hh, b_ih, b_hh, w_hr


@autocast_op("lower")
def rnn_forward(mode: str, input: Tensor, hx: Tensor | Sequence[Tensor] | None,  # noqa: A002
                weights: Sequence[Tensor], num_layers: int = 1, has_biases: bool = True,
                batch_first: bool = False, dropout: float = 0.0, training: bool = True,
                bidirectional: bool = False, proj_size: int = 0, *,
                generator: Generator | None = None) -> tuple[Tensor, Any]:
    """Run a multi-layer RNN (``mode``: 'RNN_TANH', 'RNN_RELU', 'LSTM' or 'GRU') over a sequence.

    ``input``: (T, N, I), (N, T, I) with ``batch_first``, or unbatched (T, I). ``hx``: the
    initial hidden state (L * D, N, H_out) (LSTM: a pair ``(h0, c0)`` with c0 of (L * D, N, H)),
    or None for zeros; D = 2 when bidirectional, H_out = proj_size or H. ``weights``: per layer
    and direction, ``w_ih, w_hh[, b_ih, b_hh][, w_hr]``, PyTorch's ``_flat_weights`` order.
    ``dropout`` applies to every layer's output but the last when ``training`` (mask drawn
    from ``generator``). Returns ``(output, h_n)`` with output (T, N, D * H_out) (batch first
    if asked), and for LSTM ``(output, (h_n, c_n))``.
    """
    if mode not in _GATES:
        raise ValueError(f"rnn_forward: unknown mode {mode!r}; expected one of {sorted(_GATES)}")
    op = f"rnn_forward({mode})"
    if not isinstance(input, Tensor) or not input.is_floating_point():
        raise DTypeError(f"{op}: expected a floating point Tensor input")
    if input.ndim not in (2, 3):
        raise ShapeError(f"{op}: expected input of 3 dimensions (or 2 unbatched), got shape {tuple(input.shape)}")
    if proj_size and mode != "LSTM":
        raise ValueError(f"{op}: proj_size is only supported by LSTM")
    dirs = 2 if bidirectional else 1
    per = 2 + 2 * has_biases + (1 if proj_size else 0)
    if len(weights) != num_layers * dirs * per:
        raise ValueError(f"{op}: expected {num_layers * dirs * per} weight tensors for {num_layers} layer(s), "
                         f"{dirs} direction(s), got {len(weights)}")
    batched = input.ndim == 3
    x = input if batched else input.unsqueeze(1)
    if batched and batch_first:
        x = x.transpose(0, 1)
    seq_len, bsz = x.shape[0], x.shape[1]
    if seq_len == 0:
        raise ShapeError(f"{op}: the input sequence is empty (shape {tuple(input.shape)})")
    hidden = weights[0].shape[0] // _GATES[mode]
    h_out = proj_size or hidden
    if x.shape[-1] != weights[0].shape[1]:
        raise ShapeError(f"{op}: input has {x.shape[-1]} features, the first layer expects {weights[0].shape[1]}")
    h0, c0 = _initial_states(op, mode, hx, batched, num_layers * dirs, bsz, h_out, hidden, x)
    h_last: list[Tensor] = []
    c_last: list[Tensor] = []
    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            ws = _layer_weights(weights, k, per, has_biases, bool(proj_size))
            out, h, c = _run_direction(mode, x, h0[k], None if c0 is None else c0[k], ws, reverse=d == 1)
            outs.append(out)
            h_last.append(h)
            if c is not None:
                c_last.append(c)
        x = outs[0] if dirs == 1 else cat(outs, -1)
        if dropout > 0 and training and layer < num_layers - 1:
            x = _dropout(x, dropout, True, generator=generator)
    if batched and batch_first:
        x = x.transpose(0, 1)
    h_n = stack(h_last, 0)
    c_n = stack(c_last, 0) if c_last else None
    if not batched:
        x, h_n = x.squeeze(1), h_n.squeeze(1)
        c_n = None if c_n is None else c_n.squeeze(1)
    return (x, (h_n, c_n)) if mode == "LSTM" else (x, h_n)


def _initial_states(op: str, mode: str, hx: Any, batched: bool, n_states: int, bsz: int, h_out: int, hidden: int,
                    like: Tensor) -> tuple[list[Tensor], list[Tensor] | None]:
    """The initial h (and c) per (layer, direction), each (N, H_out) / (N, H); zeros when ``hx`` is None."""
    xp, dt = like.device.xp, like._data.dtype

    def zeros(n: int) -> list[Tensor]:
        return [Tensor._make(xp.zeros((bsz, n), dt), like.device) for _ in range(n_states)]

    if hx is None:
        return zeros(h_out), (zeros(hidden) if mode == "LSTM" else None)
    if mode == "LSTM":
        if not isinstance(hx, tuple | list) or len(hx) != 2:
            raise ValueError(f"{op}: hx must be a pair (h_0, c_0)")
        h, c = hx
    else:
        if not isinstance(hx, Tensor):
            raise TypeError(f"{op}: hx must be a Tensor")
        h, c = hx, None

    def split(t: Tensor, n: int, name: str) -> list[Tensor]:
        expected = (n_states, bsz, n) if batched else (n_states, n)
        if tuple(t.shape) != expected:
            raise ShapeError(f"{op}: {name} of shape {tuple(t.shape)}, expected {expected}")
        t = t if batched else t.unsqueeze(1)
        return [t[i] for i in range(n_states)]

    return split(h, h_out, "h_0" if c is not None else "hx"), (None if c is None else split(c, hidden, "c_0"))
