"""The compiled LSTM step loops (``_rnn_cpu_jit``) give the NumPy chain's bits, forward and backward."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
from axonml.nn.prims import _rnn_cpu_jit

needs_numba = pytest.mark.skipif(_rnn_cpu_jit.kernels() is None, reason="numba is not installed or switched off")


def _run(kw: dict, dtype: str, zero_state: bool) -> list[np.ndarray]:
    ax.manual_seed(0)
    lstm = ax.nn.LSTM(6, 5, num_layers=2, batch_first=True, dtype=getattr(ax, dtype), **kw)
    rng = np.random.default_rng(1)
    x = ax.tensor(rng.standard_normal((3, 7, 6)).astype(dtype), requires_grad=True)
    dirs = 2 if kw.get("bidirectional") else 1
    h_size = kw.get("proj_size") or 5
    state = None if zero_state else (
        ax.tensor(rng.standard_normal((2 * dirs, 3, h_size)).astype(dtype), requires_grad=True),
        ax.tensor(rng.standard_normal((2 * dirs, 3, 5)).astype(dtype), requires_grad=True))
    out, (h, c) = lstm(x, state)
    ((out * out).sum() + (h * h).sum() + (c * c).sum()).backward()
    grads = [x.grad] + [p.grad for p in lstm.parameters()] + ([] if state is None else [s.grad for s in state])
    return [out.detach().numpy(), h.detach().numpy(), c.detach().numpy()] + [g.numpy() for g in grads]


@needs_numba
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kw", [{}, {"bidirectional": True}, {"proj_size": 3}], ids=["plain", "bidir", "proj"])
@pytest.mark.parametrize("zero_state", [True, False])
def test_compiled_lstm_steps_equal_the_numpy_chain(monkeypatch: pytest.MonkeyPatch, dtype: str, kw: dict,
                                                   zero_state: bool) -> None:
    compiled = _run(kw, dtype, zero_state)
    monkeypatch.setattr(_rnn_cpu_jit, "kernels", lambda: None)
    plain = _run(kw, dtype, zero_state)
    assert len(compiled) == len(plain)
    for a, b in zip(compiled, plain):
        assert a.dtype == b.dtype and np.array_equal(a, b)
