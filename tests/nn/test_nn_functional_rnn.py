"""Recurrent functions: the cells and rnn_forward against PyTorch's cells and RNN/LSTM/GRU modules
(outputs, final states, gradients of inputs, initial states and every weight), harness checks
(second derivatives and forward mode through the scan's composed form), dropout and errors."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
import torch_ref as tr
from axonml.errors import DTypeError, ShapeError
from axonml.nn.functional.rnn import gru_cell, lstm_cell, rnn_forward, rnn_relu_cell, rnn_tanh_cell
from harness import OpSpec, op_tests


def _sig(x):
    return 1 / (1 + np.exp(-x))


def ref_tanh_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    return np.tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)


def ref_relu_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    return np.maximum(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh, 0)


def ref_lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh):
    g = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, gg, o = np.split(g, 4, -1)
    c = _sig(f) * c + _sig(i) * np.tanh(gg)
    return _sig(o) * np.tanh(c), c


def ref_gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    gi, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    r = _sig(gi[..., :2] + gh[..., :2])
    z = _sig(gi[..., 2:4] + gh[..., 2:4])
    n = np.tanh(gi[..., 4:] + r * gh[..., 4:])
    return (1 - z) * n + z * h


def ref_lstm_seq(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    h, c, outs = h0[0], c0[0], []
    for t in range(x.shape[0]):
        h, c = ref_lstm_cell(x[t], h, c, w_ih, w_hh, b_ih, b_hh)
        outs.append(h)
    return np.stack(outs), h[None], c[None]


def ref_gru_seq_reverse(x, h0, w_ih, w_hh, b_ih, b_hh):
    h, outs = h0[0], [None] * x.shape[0]
    for t in reversed(range(x.shape[0])):
        h = ref_gru_cell(x[t], h, w_ih, w_hh, b_ih, b_hh)
        outs[t] = h
    return np.stack(outs), h[None]


def _lstm_seq(x, h0, c0, *w):
    out, (h, c) = rnn_forward("LSTM", x, (h0, c0), w, 1)
    return out, h, c


def _lstm_seq_torch(x, h0, c0, *w):
    return tuple(tr.torch().lstm(x, (h0, c0), list(w), True, 1, 0.0, False, False, False))


def _gru_seq_rev(x, h0, *w):
    # the reverse direction of a bidirectional layer: only its half of the output is compared
    out, h = rnn_forward("GRU", x, h0.expand(2, *h0.shape[1:]).contiguous(), list(w) * 2, 1, bidirectional=True)
    return out[..., 2:], h[1:]


def _torch_cell(name):
    def call(x, h, *w):  # PyTorch's functional cells take batches only (nn.RNNCell adds the batch dim)
        if x.ndim == 1:
            return getattr(tr.torch(), name)(x[None], h[None], *w)[0]
        return getattr(tr.torch(), name)(x, h, *w)

    return call


CELL = ((3, 2), (3, 2), (2, 2), (2, 2), (2,), (2,))
UNBATCHED_CELL = ((2,), (2,), (2, 2), (2, 2), (2,), (2,))
SPECS = [
    OpSpec("rnn_tanh_cell", rnn_tanh_cell, ref_tanh_cell, (CELL, UNBATCHED_CELL), domain=(-1, 1),
           torch_fn=_torch_cell("rnn_tanh_cell")),
    OpSpec("rnn_relu_cell", rnn_relu_cell, ref_relu_cell, (CELL,), domain=(-1, 1), gradgrad=False,
           torch_fn=lambda *a: tr.torch().rnn_relu_cell(*a)),
    OpSpec("lstm_cell", lambda x, h, c, *w: lstm_cell(x, (h, c), *w), ref_lstm_cell,
           (((3, 2), (3, 2), (3, 2), (8, 2), (8, 2), (8,), (8,)),), domain=(-1, 1),
           torch_fn=lambda x, h, c, *w: tr.torch().lstm_cell(x, (h, c), *w)),
    OpSpec("gru_cell", gru_cell, ref_gru_cell, (((3, 2), (3, 2), (6, 2), (6, 2), (6,), (6,)),), domain=(-1, 1),
           torch_fn=lambda *a: tr.torch().gru_cell(*a)),
    # the fused scan: its backward under create_graph and its forward mode go through the composed steps
    OpSpec("rnn_forward", _lstm_seq, ref_lstm_seq, (((3, 2, 2), (1, 2, 2), (1, 2, 2), (8, 2), (8, 2), (8,), (8,)),),
           domain=(-1, 1), torch_fn=_lstm_seq_torch),
    OpSpec("rnn_forward_gru_reverse", _gru_seq_rev, ref_gru_seq_reverse,
           (((3, 2, 2), (1, 2, 2), (6, 2), (6, 2), (6,), (6,)),), domain=(-1, 1)),
]
globals().update(op_tests(SPECS))


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _close(a, t, tol=1e-10):
    assert a is not None and t is not None
    np.testing.assert_allclose(a.detach().numpy(), t.detach().numpy(), atol=tol, rtol=tol)


MODES = {"LSTM": "LSTM", "GRU": "GRU", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}
CASES = [
    {},
    {"num_layers": 2, "bidirectional": True},
    {"batch_first": True, "bias": False},
    {"num_layers": 3, "batch_first": True, "states": True},
    {"bidirectional": True, "states": True, "unbatched": True},
    {"num_layers": 2, "dropout": 1.0},  # every unit dropped between layers: deterministic
    {"num_layers": 2, "bidirectional": True, "proj_size": 2, "states": True},  # LSTM only
]


@pytest.mark.torch
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_rnn_forward_matches_torch_module(torch, mode, case):
    proj = case.get("proj_size", 0)
    if proj and mode != "LSTM":
        pytest.skip("proj_size is an LSTM option")
    rng = np.random.default_rng(7)
    layers, dirs = case.get("num_layers", 1), 2 if case.get("bidirectional") else 1
    hidden, feat, steps, n = 3, 4, 5, 2
    kw = {"num_layers": layers, "bias": case.get("bias", True), "batch_first": case.get("batch_first", False),
          "dropout": case.get("dropout", 0.0), "bidirectional": bool(case.get("bidirectional")), "dtype": torch.float64}
    if mode == "RNN_RELU":
        kw["nonlinearity"] = "relu"
    if proj:
        kw["proj_size"] = proj
    module = getattr(torch.nn, MODES[mode])(feat, hidden, **kw)
    shape = (steps, feat) if case.get("unbatched") else ((n, steps, feat) if kw["batch_first"] else (steps, n, feat))
    x = rng.standard_normal(shape)
    state_shape = (layers * dirs,) + (() if case.get("unbatched") else (n,))
    states = []
    if case.get("states"):
        states = [rng.standard_normal((*state_shape, proj or hidden))]
        if mode == "LSTM":
            states.append(rng.standard_normal((*state_shape, hidden)))
    tx = torch.tensor(x, requires_grad=True)
    tstates = [torch.tensor(s, requires_grad=True) for s in states]
    thx = None if not states else (tuple(tstates) if mode == "LSTM" else tstates[0])
    tout, th = module(tx, thx)
    weights = [ax.tensor(p.detach().numpy(), requires_grad=True) for p in module._flat_weights]
    ax_x = ax.tensor(x, requires_grad=True)
    ax_states = [ax.tensor(s, requires_grad=True) for s in states]
    hx = None if not states else (tuple(ax_states) if mode == "LSTM" else ax_states[0])
    out, h = rnn_forward(mode, ax_x, hx, weights, layers, kw["bias"], kw["batch_first"], kw["dropout"], True,
                         kw["bidirectional"], proj)
    _close(out, tout)
    finals, tfinals = (list(h), list(th)) if mode == "LSTM" else ([h], [th])
    for a, t in zip(finals, tfinals):
        _close(a, t)
    g = rng.standard_normal(out.shape)
    loss = (out * ax.tensor(g)).sum() + sum(((i + 2) * f * f).sum() for i, f in enumerate(finals))
    tloss = (tout * torch.tensor(g)).sum() + sum(((i + 2) * f * f).sum() for i, f in enumerate(tfinals))
    loss.backward()
    tloss.backward()
    _close(ax_x.grad, tx.grad)
    for a, t in zip(ax_states, tstates):
        _close(a.grad, t.grad)
    for a, p in zip(weights, module._flat_weights):
        _close(a.grad, p.grad)


@pytest.mark.torch
def test_lstm_cell_with_projection_and_unbatched_cells(torch):
    rng = np.random.default_rng(8)
    w_ih, w_hh, w_hr = rng.standard_normal((12, 4)), rng.standard_normal((12, 2)), rng.standard_normal((2, 3))
    x, h, c = rng.standard_normal((5, 4)), rng.standard_normal((5, 2)), rng.standard_normal((5, 3))
    h1, c1 = lstm_cell(ax.tensor(x), (ax.tensor(h), ax.tensor(c)), ax.tensor(w_ih), ax.tensor(w_hh),
                       w_hr=ax.tensor(w_hr))
    module = torch.nn.LSTM(4, 3, proj_size=2, bias=False, dtype=torch.float64)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.tensor(w_ih))
        module.weight_hh_l0.copy_(torch.tensor(w_hh))
        module.weight_hr_l0.copy_(torch.tensor(w_hr))
    _, (th, tc) = module(torch.tensor(x)[None], (torch.tensor(h)[None], torch.tensor(c)[None]))
    _close(h1, th[0])
    _close(c1, tc[0])
    wi, wh = rng.standard_normal((6, 4)), rng.standard_normal((6, 2))
    xu, hu = rng.standard_normal(4), rng.standard_normal(2)
    _close(gru_cell(ax.tensor(xu), ax.tensor(hu), ax.tensor(wi), ax.tensor(wh)),
           torch.gru_cell(torch.tensor(xu)[None], torch.tensor(hu)[None], torch.tensor(wi), torch.tensor(wh))[0])


def test_dropout_between_layers_follows_the_generator_and_training_flag():
    rng = np.random.default_rng(9)
    weights = [ax.tensor(rng.standard_normal(s) * 0.5) for s in ((12, 3), (12, 3), (12, 3), (12, 3))]
    x = ax.tensor(rng.standard_normal((4, 2, 3)))

    def run(seed, training=True):
        return rnn_forward("LSTM", x, None, weights, 2, False, dropout=0.5, training=training,
                           generator=ax.Generator().manual_seed(seed))[0].numpy()

    np.testing.assert_array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))
    np.testing.assert_array_equal(run(1, False), run(2, False))
    assert not np.array_equal(run(1), run(1, False))


def test_errors():
    w = [ax.randn(4, 2), ax.randn(4, 4)]
    x = ax.randn(3, 2, 2)
    with pytest.raises(ValueError, match="unknown mode"):
        rnn_forward("LSTMX", x, None, w)
    with pytest.raises(ValueError, match="weight tensors"):
        rnn_forward("RNN_TANH", x, None, w, 2, False)
    with pytest.raises(ShapeError, match="features"):
        rnn_forward("RNN_TANH", ax.randn(3, 2, 5), None, [ax.randn(4, 5)[:, :2], ax.randn(4, 4)], 1, False)
    with pytest.raises(ShapeError, match="hx of shape"):
        rnn_forward("RNN_TANH", x, ax.randn(1, 3, 4), w, 1, False)
    with pytest.raises(ShapeError, match="empty"):
        rnn_forward("RNN_TANH", ax.randn(0, 2, 2), None, w, 1, False)
    with pytest.raises(ValueError, match="proj_size"):
        rnn_forward("GRU", x, None, w, 1, False, proj_size=2)
    with pytest.raises(ValueError, match="pair"):
        rnn_forward("LSTM", x, ax.randn(1, 2, 1), [ax.randn(4, 2), ax.randn(4, 1)], 1, False)
    with pytest.raises(DTypeError, match="floating"):
        rnn_forward("GRU", ax.ones(3, 2, 2, dtype=ax.int64), None, w, 1, False)
    with pytest.raises(ShapeError, match="cell state"):
        lstm_cell(ax.randn(2, 2), (ax.randn(2, 1), ax.randn(2, 2)), ax.randn(4, 2), ax.randn(4, 1))
    with pytest.raises(ShapeError, match="hidden state"):
        gru_cell(ax.randn(2, 2), ax.randn(3, 2), ax.randn(6, 2), ax.randn(6, 2))
