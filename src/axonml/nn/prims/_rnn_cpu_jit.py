"""Compiled elementwise parts of the feature-major LSTM step on the CPU (numba, the ``fast`` extra).

A step of ``rnn._lstm_forward_fm`` and ``_rnn_backward._lstm_backward_fm`` is one GEMM and
a chain of NumPy calls over (H, N) blocks: ~11 calls forward and ~17 backward, each a pass
over memory plus ~3-5 us of call overhead, for 100 steps of a 2-layer LSTM. These loops do
the arithmetic between the ``tanh`` calls in one pass each. ``tanh`` itself stays NumPy's
(vectorized), since numba calls the scalar libm one (~10x slower, PERF-NOTES).

Each loop performs the NumPy chain's operations in the same order with no contraction
or reassociation (plain ``njit``): the same bits as the NumPy path, which runs without numba.
"""

from __future__ import annotations

import types
from typing import Any

from ._conv_cpu_jit import compiled


def _build(jit: Any) -> Any:
    del jit  # exact IEEE order: no fastmath flags here
    import numba

    exact = numba.njit(cache=True, nogil=True)

    @exact
    def gates_cell(a: Any, c: Any, c_new: Any, half: Any, one: Any, zero: Any) -> None:  # pragma: no cover
        """After ``tanh`` of the pre-scaled gates a (4, H, N): sigmoid's affine map on i, f, o (``g`` goes
        through ``* 1 + 0`` as the NumPy chain does), then ``c_new = f * c + i * g`` (c, c_new: (H, N)).
        ``half``, ``one``, ``zero``: scalars of the arrays' dtype, so that the arithmetic stays in it."""
        _, hidden, n = a.shape
        for j in range(hidden):
            for k in range(n):
                i = a[0, j, k] * half + half
                f = a[1, j, k] * half + half
                g = a[2, j, k] * one + zero
                a[0, j, k] = i
                a[1, j, k] = f
                a[2, j, k] = g
                a[3, j, k] = a[3, j, k] * half + half
                c_new[j, k] = f * c[j, k] + i * g

    @exact
    def cell_backward(a: Any, tc: Any, c_prev: Any, dh: Any, dc: Any, d4: Any, one: Any) -> None:  # pragma: no cover
        """One step's gate gradients d4 (4, H, N) and dc (H, N) in place (to the previous step's), from the
        activations a (4, H, N), tanh(c) tc, c_prev and dh (H, N), in the NumPy path's order."""
        _, hidden, n = a.shape
        for j in range(hidden):
            for k in range(n):
                i, f, g, o = a[0, j, k], a[1, j, k], a[2, j, k], a[3, j, k]
                t, d = tc[j, k], dh[j, k]
                fac_i = (i - i * i) * g
                fac_g = (one - g * g) * i
                fac_f = (f - f * f) * c_prev[j, k]
                d4[3, j, k] = ((o - o * o) * t) * d
                dcv = dc[j, k] + (((one - t * t) * o) * d)
                d4[0, j, k] = fac_i * dcv
                d4[1, j, k] = fac_f * dcv
                d4[2, j, k] = fac_g * dcv
                dc[j, k] = dcv * f

    return types.SimpleNamespace(gates_cell=gates_cell, cell_backward=cell_backward)


kernels = compiled(_build)
