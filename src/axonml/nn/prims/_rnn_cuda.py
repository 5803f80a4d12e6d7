"""Fused CUDA kernels of the recurrent scan: one elementwise launch per time step and direction.

On a GPU a small recurrent layer is bound by launch cost (~10-15 us of CPU time per CuPy
call), not by arithmetic: the unfused step ran ~10 elementwise launches forward and ~25
backward around its GEMM. Each function here does a step's whole elementwise work in one
``ElementwiseKernel`` launch, so a step costs its GEMM(s) plus one kernel.

Every kernel loops over the (N, H) cells of one step; a thread reads the gate
pre-activations of its cell from the (N, G * H) gate arrays (``raw`` arguments, addressed by
``row * G * H + gate * H + col``) and writes every output of that cell. The layouts and the
formulas are those of the array path in :mod:`.rnn` and :mod:`._rnn_backward` (gates in
PyTorch's order; sigmoid as ``0.5 + 0.5 * tanh(x / 2)``), so either pass can follow the other.

Kernels are built on first use and cached per (kernel, accumulator type); CuPy compiles
each once per array dtype. Arithmetic runs in the accumulator type ``axf``: double for
float64, float for float32 and float16 (half arrays are read and written as half, computed
in float).
CuPy is never imported here: the kernel class is read from the array module ``xp`` that the
caller already holds (``cupy`` itself), so this module loads without CuPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# dtypes the kernels are written for; others (bfloat16 has no CuPy dtype) take the array path
_FUSED_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

_PREAMBLE = """
typedef {acc} axf;
__device__ __forceinline__ axf axonml_sigmoid(axf x) {{
    return (axf)0.5 + (axf)0.5 * tanh((axf)0.5 * x);
}}
"""

# (in_params, out_params, operation) per kernel; ``hid`` is H, ``i`` the (row, col) cell index
_CELL = "const ptrdiff_t row = i / hid; const ptrdiff_t col = i - row * hid;\n"

_SOURCES: dict[str, tuple[str, str, str]] = {
    # g (N, 4H) holds h @ W_hh^T on entry and the activated gates (i, f, g, o) on exit
    "lstm_fwd": (
        "raw T xw, T c_prev, int64 hid",
        "raw T g, T c, T h",
        _CELL + """
        const ptrdiff_t k = row * 4 * hid + col;
        const axf gi = axonml_sigmoid((axf)g[k] + (axf)xw[k]);
        const axf gf = axonml_sigmoid((axf)g[k + hid] + (axf)xw[k + hid]);
        const axf gg = tanh((axf)g[k + 2 * hid] + (axf)xw[k + 2 * hid]);
        const axf go = axonml_sigmoid((axf)g[k + 3 * hid] + (axf)xw[k + 3 * hid]);
        g[k] = (T)gi; g[k + hid] = (T)gf; g[k + 2 * hid] = (T)gg; g[k + 3 * hid] = (T)go;
        const T c_new = (T)(gf * (axf)c_prev + gi * gg);
        c = c_new;
        h = (T)(go * tanh((axf)c_new));
        """,
    ),
    # dc (N, H) carries the cell state's gradient: dc_t on entry, dc_{t-1} on exit; d (N, 4H) the gates'
    "lstm_bwd": (
        "T dh, T gout, T c_t, T c_prev, raw T act, int64 hid",
        "T dc, raw T d",
        _CELL + """
        const ptrdiff_t k = row * 4 * hid + col;
        const axf gi = (axf)act[k];
        const axf gf = (axf)act[k + hid];
        const axf gg = (axf)act[k + 2 * hid];
        const axf go = (axf)act[k + 3 * hid];
        const axf dht = (axf)dh + (axf)gout;
        const axf tc = tanh((axf)c_t);
        const axf dct = (axf)dc + dht * go * ((axf)1 - tc * tc);
        d[k] = (T)(dct * gg * (gi - gi * gi));
        d[k + hid] = (T)(dct * (axf)c_prev * (gf - gf * gf));
        d[k + 2 * hid] = (T)(dct * gi * ((axf)1 - gg * gg));
        d[k + 3 * hid] = (T)(dht * tc * (go - go * go));
        dc = (T)(dct * gf);
        """,
    ),
    # gh (N, 3H) = h @ W_hh^T without bias; b (3H) the hidden bias (zeros when absent)
    "gru_fwd": (
        "raw T xw, raw T gh, raw T b, T h_prev, int64 hid",
        "raw T act, T ghn, T h",
        _CELL + """
        const ptrdiff_t k = row * 3 * hid + col;
        const axf r = axonml_sigmoid((axf)xw[k] + ((axf)gh[k] + (axf)b[col]));
        const axf z = axonml_sigmoid((axf)xw[k + hid] + ((axf)gh[k + hid] + (axf)b[col + hid]));
        const T hn = (T)((axf)gh[k + 2 * hid] + (axf)b[col + 2 * hid]);
        const axf n = tanh(r * (axf)hn + (axf)xw[k + 2 * hid]);
        act[k] = (T)r; act[k + hid] = (T)z; act[k + 2 * hid] = (T)n;
        ghn = hn;
        h = (T)(n + z * ((axf)h_prev - n));
        """,
    ),
    # dz carries h's direct share (dht * z) from one step to the next; dh is the GEMM's share
    "gru_bwd": (
        "T dh, T gout, T h_prev, T ghn, raw T act, int64 hid",
        "T dz, raw T d, raw T dgh",
        _CELL + """
        const ptrdiff_t k = row * 3 * hid + col;
        const axf r = (axf)act[k];
        const axf z = (axf)act[k + hid];
        const axf n = (axf)act[k + 2 * hid];
        const axf dht = ((axf)dh + (axf)dz) + (axf)gout;
        const axf d_z = dht * ((axf)h_prev - n) * (z - z * z);
        const axf d_n = dht * ((axf)1 - z) * ((axf)1 - n * n);
        const axf d_r = d_n * (axf)ghn * (r - r * r);
        d[k] = (T)d_r; d[k + hid] = (T)d_z; d[k + 2 * hid] = (T)d_n;
        dgh[k] = (T)d_r; dgh[k + hid] = (T)d_z; dgh[k + 2 * hid] = (T)(d_n * r);
        dz = (T)(dht * z);
        """,
    ),
    # o holds h @ W_hh^T on entry, the new hidden state on exit
    "tanh_fwd": ("T xw", "T o", "o = (T)tanh((axf)o + (axf)xw);"),
    "relu_fwd": ("T xw", "T o", "const axf v = (axf)o + (axf)xw; o = (T)(v < (axf)0 ? (axf)0 : v);"),
    "tanh_bwd": ("T dh, T gout, T y", "T d",
                 "const axf yy = (axf)y; d = (T)(((axf)1 - yy * yy) * ((axf)dh + (axf)gout));"),
    "relu_bwd": ("T dh, T gout, T y", "T d", "d = (T)((axf)y > (axf)0 ? (axf)dh + (axf)gout : (axf)0);"),
}

# no FMA contraction: each + and * rounds once, as in the array path's separate passes
_OPTIONS = ("--fmad=false",)
_KERNELS: dict[tuple[str, str], Any] = {}  # (kernel, accumulator type) -> ElementwiseKernel
_BY_DTYPE: dict[tuple[str, Any], Any] = {}  # (kernel, array dtype) -> the same objects: one dict lookup per step


def fusable(xp: Any, dtype: Any) -> bool:
    """Whether the fused kernels serve arrays of module ``xp`` and ``dtype`` (CuPy, half/single/double)."""
    return xp is not np and hasattr(xp, "ElementwiseKernel") and np.dtype(dtype) in _FUSED_DTYPES


def kernel(xp: Any, name: str, dtype: Any) -> Any:
    """The cached ``ElementwiseKernel`` ``name`` for arrays of ``dtype``, built on first use."""
    k = _BY_DTYPE.get((name, dtype))
    if k is not None:
        return k
    acc = "double" if np.dtype(dtype) == np.float64 else "float"
    k = _KERNELS.get((name, acc))
    if k is None:
        ins, outs, op = _SOURCES[name]
        k = xp.ElementwiseKernel(ins, outs, op, f"axonml_rnn_{name}_{acc}", preamble=_PREAMBLE.format(acc=acc),
                                 no_return=True, options=_OPTIONS)
        _KERNELS[(name, acc)] = k
    _BY_DTYPE[(name, dtype)] = k
    return k


def cached_kernels() -> list[tuple[str, str]]:
    """(kernel, accumulator type) of every kernel built so far (tests check that the fused path ran)."""
    return sorted(_KERNELS)


# ----- one step each: the caller has run the step's GEMM --------------------------------------------------
def lstm_forward(xp: Any, g: Any, xw: Any, c_prev: Any, c: Any, h: Any) -> None:
    """Activate the gates ``g`` (N, 4H) = h_prev @ W_hh^T in place (+ ``xw``), write ``c`` and ``h`` (N, H)."""
    kernel(xp, "lstm_fwd", g.dtype)(xw, c_prev, c.shape[-1], g, c, h)


def lstm_backward(xp: Any, dh: Any, gout: Any, c_t: Any, c_prev: Any, act: Any, dc: Any, d: Any) -> None:
    """Gates' pre-activation gradients into ``d`` (N, 4H); ``dc`` (N, H) from dc_t to dc_{t-1} in place.

    ``dh + gout`` is the gradient of the step's (unprojected) hidden output; ``gout`` may be a
    0-d zero when ``dh`` already holds it.
    """
    kernel(xp, "lstm_bwd", d.dtype)(dh, gout, c_t, c_prev, act, dc.shape[-1], dc, d)


def gru_forward(xp: Any, xw: Any, gh: Any, b: Any, h_prev: Any, act: Any, ghn: Any, h: Any) -> None:
    """Gates (r, z, n) into ``act`` (N, 3H), ``ghn`` = the new gate's hidden part (with bias), ``h`` (N, H)."""
    kernel(xp, "gru_fwd", act.dtype)(xw, gh, b, h_prev, h.shape[-1], act, ghn, h)


def gru_backward(xp: Any, dh: Any, gout: Any, h_prev: Any, ghn: Any, act: Any, dz: Any, d: Any, dgh: Any) -> None:
    """Input-side ``d`` and hidden-side ``dgh`` (N, 3H) gate gradients; ``dz`` (N, H) becomes dht * z.

    The step's hidden gradient is ``dh + dz + gout``: ``dh`` the GEMM's share from the later
    step, ``dz`` that step's direct share (``dz`` is read, then overwritten).
    """
    kernel(xp, "gru_bwd", d.dtype)(dh, gout, h_prev, ghn, act, dz.shape[-1], dz, d, dgh)


def simple_forward(xp: Any, o: Any, xw: Any, relu: bool) -> None:
    """``o = act(o + xw)`` in place, ``o`` (N, H) holding h_prev @ W_hh^T."""
    kernel(xp, "relu_fwd" if relu else "tanh_fwd", o.dtype)(xw, o)


def simple_backward(xp: Any, dh: Any, gout: Any, y: Any, d: Any, relu: bool) -> None:
    """Pre-activation gradient ``d`` = act'(y) * (dh + gout) from the step's output ``y``."""
    kernel(xp, "relu_bwd" if relu else "tanh_bwd", d.dtype)(dh, gout, y, d)
