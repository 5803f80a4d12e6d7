"""RNN, LSTM, GRU and their cells vs torch.nn: parameter names, shapes and order, reprs, default
initialization; outputs, final states and gradients (input, initial states, every parameter) in float64."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from module_parity import cpu_vs_cuda

import axonml as ax
from axonml.errors import DTypeError, ShapeError
from axonml.nn.modules.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

TOL = {"rtol": 1e-9, "atol": 1e-11}
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported:UserWarning")  # PyTorch's note


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def _np(t: Any) -> np.ndarray:
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def _flat(out: Any) -> list[Any]:
    if isinstance(out, tuple | list):
        return [y for o in out for y in _flat(o)]
    return [out]


def _pair(cls: Any, *args: Any, **kw: Any) -> tuple[Any, Any]:
    """The axonml layer and PyTorch's, with PyTorch's weights copied in; float64."""
    import torch

    tm = getattr(torch.nn, cls.__name__)(*args, **kw).double()
    m = cls(*args, **kw, dtype=ax.float64)
    assert repr(m) == repr(tm)
    assert [(n, p.shape) for n, p in m.named_parameters()] == [(n, tuple(p.shape)) for n, p in tm.named_parameters()]
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return m, tm


def _run_both(m: Any, tm: Any, arrays: list[Any], torch: Any) -> None:
    """Call both on the same inputs (nested tuples of float arrays, all requiring grad); compare outputs,
    then the gradients of every input and parameter for a random linear function of every output."""
    def convert(a: Any, make: Any) -> Any:
        return tuple(convert(b, make) for b in a) if isinstance(a, tuple) else (None if a is None else make(a))

    xs = [convert(a, lambda v: ax.tensor(v, requires_grad=True)) for a in arrays]
    txs = [convert(a, lambda v: torch.tensor(v, requires_grad=True)) for a in arrays]
    outs, touts = _flat(m(*xs)), _flat(tm(*txs))
    assert len(outs) == len(touts)
    rng = np.random.default_rng(7)
    loss, tloss = 0.0, 0.0
    for o, to in zip(outs, touts, strict=True):
        assert o.shape == tuple(to.shape)
        np.testing.assert_allclose(_np(o), _np(to), **TOL)
        g = rng.standard_normal(o.shape)
        loss = loss + (o * ax.tensor(g)).sum()
        tloss = tloss + (to * torch.tensor(g)).sum()
    loss.backward()
    tloss.backward()
    for x, tx in zip(_flat(xs), _flat(txs), strict=True):
        if x is not None:
            np.testing.assert_allclose(_np(x.grad), _np(tx.grad), **TOL)
    for (n, p), (_, tp) in zip(m.named_parameters(), tm.named_parameters(), strict=True):
        np.testing.assert_allclose(_np(p.grad), _np(tp.grad), **TOL, err_msg=n)


def _states(layers: int, dirs: int, batch: int | None, size: int, seed: int) -> np.ndarray:
    shape = (layers * dirs, size) if batch is None else (layers * dirs, batch, size)
    return np.random.default_rng(seed).standard_normal(shape) * 0.5


@pytest.mark.torch
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("layers,bidirectional,batch_first,bias,with_h0", [
    (1, False, False, True, False), (2, True, True, True, True), (2, False, False, False, True),
    (3, True, False, True, False)])
def test_rnn_matches_torch(torch: Any, nonlinearity: str, layers: int, bidirectional: bool, batch_first: bool,
                           bias: bool, with_h0: bool) -> None:
    m, tm = _pair(RNN, 3, 5, layers, nonlinearity=nonlinearity, bias=bias, batch_first=batch_first,
                  bidirectional=bidirectional)
    x = np.random.default_rng(0).standard_normal((2, 4, 3) if batch_first else (4, 2, 3))
    h0 = _states(layers, 2 if bidirectional else 1, 2, 5, 1) if with_h0 else None
    _run_both(m, tm, [x, h0], torch)


@pytest.mark.torch
@pytest.mark.parametrize("proj_size", [0, 2])
@pytest.mark.parametrize("layers,bidirectional,batch_first,with_states", [
    (2, True, True, True), (1, False, False, False), (2, False, False, True), (1, True, True, False)])
def test_lstm_matches_torch(torch: Any, proj_size: int, layers: int, bidirectional: bool, batch_first: bool,
                            with_states: bool) -> None:
    m, tm = _pair(LSTM, 3, 4, layers, batch_first=batch_first, bidirectional=bidirectional, proj_size=proj_size)
    x = np.random.default_rng(2).standard_normal((3, 5, 3) if batch_first else (5, 3, 3))
    dirs = 2 if bidirectional else 1
    hx = (_states(layers, dirs, 3, proj_size or 4, 3), _states(layers, dirs, 3, 4, 4)) if with_states else None
    _run_both(m, tm, [x, hx], torch)


@pytest.mark.torch
@pytest.mark.parametrize("layers,bidirectional,batch_first,with_h0", [
    (2, True, True, True), (1, False, False, False), (2, False, True, False)])
def test_gru_matches_torch(torch: Any, layers: int, bidirectional: bool, batch_first: bool, with_h0: bool) -> None:
    m, tm = _pair(GRU, 3, 4, layers, batch_first=batch_first, bidirectional=bidirectional)
    x = np.random.default_rng(5).standard_normal((2, 6, 3) if batch_first else (6, 2, 3))
    h0 = _states(layers, 2 if bidirectional else 1, 2, 4, 6) if with_h0 else None
    _run_both(m, tm, [x, h0], torch)


@pytest.mark.torch
@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_unbatched_input_matches_torch(torch: Any, cls: Any) -> None:
    kw = {"proj_size": 2} if cls is LSTM else {}
    m, tm = _pair(cls, 3, 4, 2, bidirectional=True, batch_first=True, **kw)
    x = np.random.default_rng(8).standard_normal((5, 3))  # (T, in): batch_first does not apply
    h = _states(2, 2, None, 2 if cls is LSTM else 4, 9)
    hx = (h, _states(2, 2, None, 4, 10)) if cls is LSTM else h
    _run_both(m, tm, [x, hx], torch)


@pytest.mark.torch
@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_dropout_between_layers(torch: Any, cls: Any) -> None:
    # dropout=1 zeroes every layer's output but the last: deterministic, so comparable with PyTorch in training
    m, tm = _pair(cls, 3, 4, 2, dropout=1.0)
    x = np.random.default_rng(11).standard_normal((4, 2, 3))
    _run_both(m, tm, [x], torch)
    m.eval()
    tm.eval()  # eval mode: no dropout
    m.zero_grad()
    tm.zero_grad()
    _run_both(m, tm, [x], torch)
    half, _ = _pair(cls, 3, 4, 2, dropout=0.5)
    xt = ax.tensor(x)
    first, second = _flat(half(xt))[0], _flat(half(xt))[0]
    assert not np.allclose(_np(first), _np(second))  # training: fresh masks each call
    half.eval()
    np.testing.assert_array_equal(_np(_flat(half(xt))[0]), _np(_flat(half(xt))[0]))
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        cls(3, 4, 1, dropout=0.5)


@pytest.mark.torch
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
@pytest.mark.parametrize("cls,kw", [(RNNCell, {}), (RNNCell, {"nonlinearity": "relu", "bias": False}),
                                    (LSTMCell, {}), (LSTMCell, {"bias": False}), (GRUCell, {})],
                         ids=["rnn-tanh", "rnn-relu-nobias", "lstm", "lstm-nobias", "gru"])
def test_cells_match_torch(torch: Any, cls: Any, kw: dict[str, Any], batched: bool, with_hx: bool) -> None:
    m, tm = _pair(cls, 3, 4, **kw)
    rng = np.random.default_rng(12)
    lead = (5,) if batched else ()
    x = rng.standard_normal((*lead, 3))
    hx: Any = None
    if with_hx:
        h = rng.standard_normal((*lead, 4))
        hx = (h, rng.standard_normal((*lead, 4))) if cls is LSTMCell else h
    _run_both(m, tm, [x, hx], torch)


@pytest.mark.torch
def test_state_dict_loads_into_torch(torch: Any) -> None:
    m = LSTM(3, 5, 2, bidirectional=True, proj_size=2)
    tm = torch.nn.LSTM(3, 5, 2, bidirectional=True, proj_size=2)
    tm.load_state_dict({k: torch.from_numpy(_np(v).copy()) for k, v in m.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    for a, b in zip(_flat(m(ax.tensor(x))), _flat(tm(torch.tensor(x))), strict=True):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-5, atol=1e-6)


def test_parameter_layout_and_default_init() -> None:
    ax.manual_seed(3)
    m = LSTM(10, 64, num_layers=2, bidirectional=True, proj_size=16)
    names = [n for n, _ in m.named_parameters()]
    assert names[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0"]
    assert names[5] == "weight_ih_l0_reverse" and names[-1] == "weight_hr_l1_reverse"
    assert m.weight_ih_l1.shape == (256, 32) and m.weight_hh_l0.shape == (256, 16)
    assert m.weight_hr_l0.shape == (16, 64)
    assert [len(ws) for ws in m.all_weights] == [5, 5, 5, 5] and m.all_weights[0][0] is m.weight_ih_l0
    bound = 1 / math.sqrt(64)
    w = np.concatenate([_np(p).ravel() for p in m.parameters()])
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound and abs(w.mean()) < 0.01 * bound
    cell = GRUCell(3, 9, bias=False)
    assert [n for n, _ in cell.named_parameters()] == ["weight_ih", "weight_hh"] and cell.weight_ih.shape == (27, 3)
    assert np.abs(_np(cell.weight_hh)).max() <= 1 / 3
    gru = GRU(2, 3, bias=False)
    assert list(gru.state_dict()) == ["weight_ih_l0", "weight_hh_l0"] and gru.weight_ih_l0.dtype == ax.float32
    gru.flatten_parameters()  # accepted for PyTorch scripts


def test_errors() -> None:
    with pytest.raises(TypeError):
        GRU(3, 4, proj_size=2)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="proj_size has to be smaller"):
        LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="nonlinearity"):
        RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="dropout"):
        RNN(3, 4, 2, dropout=1.5)
    with pytest.raises(ValueError, match="hidden_size"):
        RNN(3, 0)
    m = LSTM(3, 4, 2)
    with pytest.raises(ShapeError, match="2D or 3D"):
        m(ax.randn(2, 3, 4, 3))
    with pytest.raises(ShapeError, match="input_size"):
        m(ax.randn(5, 2, 2))
    with pytest.raises(ShapeError, match=r"Expected hidden\[0\] size"):
        m(ax.randn(5, 2, 3), (ax.zeros(2, 3, 4), ax.zeros(2, 2, 4)))
    with pytest.raises(ShapeError, match=r"hidden\[1\]"):
        m(ax.randn(5, 2, 3), (ax.zeros(2, 2, 4), ax.zeros(1, 2, 4)))
    with pytest.raises(ShapeError, match="3-D"):
        m(ax.randn(5, 2, 3), (ax.zeros(2, 4), ax.zeros(2, 4)))
    with pytest.raises(DTypeError, match="dtype"):
        m(ax.randn(5, 2, 3, dtype=ax.float64))
    with pytest.raises(ShapeError, match="1D or 2D"):
        RNNCell(3, 4)(ax.randn(2, 2, 3))


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_recurrent_layers_on_cuda_match_cpu() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 2, 3))
    lstm = LSTM(3, 4, 2, bidirectional=True, proj_size=2, batch_first=True, dtype=ax.float64)
    cpu_vs_cuda(lstm, [x, (rng.standard_normal((4, 5, 2)), rng.standard_normal((4, 5, 4)))])
    cpu_vs_cuda(GRU(3, 4, 2, dtype=ax.float64), [x])
    cpu_vs_cuda(RNN(3, 4, nonlinearity="relu", dtype=ax.float64), [x[:, 0]])
    for cell in (RNNCell(3, 4, dtype=ax.float64), LSTMCell(3, 4, dtype=ax.float64), GRUCell(3, 4, dtype=ax.float64)):
        cpu_vs_cuda(cell, [x[0]])  # the default zero state is made on the input's device
