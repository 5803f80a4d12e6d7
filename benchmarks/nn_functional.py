"""Normalization, attention, recurrent and linear functions: axonml against PyTorch in the same run.

    python benchmarks/nn_functional.py                 # CPU (PyTorch CPU with the same thread count)
    python benchmarks/nn_functional.py --device cuda   # GPU (CuPy and PyTorch CUDA)
    OPENBLAS_NUM_THREADS=2 python benchmarks/nn_functional.py --threads 2

Each case times the fused primitive that axonml uses, the same math composed from Tensor ops
(what the primitive replaced: the reason it exists), and PyTorch. Forward, and forward +
backward, each the median of interleaved repeats with a pause between sides (OpenBLAS threads
busy-spin after a call, see PERF-NOTES.md).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from _timing import compare

import axonml as ax
from axonml.nn.functional.attention import scaled_dot_product_attention
from axonml.nn.functional.linear import linear
from axonml.nn.functional.normalization import batch_norm, layer_norm
from axonml.nn.functional.rnn import rnn_forward
from axonml.nn.prims.rnn import composed_scan

try:
    import torch
    import torch.nn.functional as tF
except ImportError:
    torch = None


def _arrays(rng: np.random.Generator, *shapes: tuple[int, ...], scale: float = 1.0) -> list[np.ndarray]:
    return [(rng.standard_normal(s) * scale).astype(np.float32) for s in shapes]


def _ax(arrs: list[np.ndarray], device: str, grad: bool = True) -> list[Any]:
    return [ax.tensor(a, device=device, requires_grad=grad) for a in arrs]


def _th(arrs: list[np.ndarray], device: str, grad: bool = True) -> list[Any]:
    return [torch.from_numpy(a).to(device).requires_grad_(grad) for a in arrs] if torch is not None else []


def _backward(fn: Callable[[], Any], params: list[Any], lib: Any) -> Callable[[], Any]:
    def run() -> None:
        out = fn()
        out = out[0] if isinstance(out, tuple) else out
        lib.autograd.grad(out.sum(), params)
    return run


def _layer_norm_composed(x: Any, w: Any, b: Any) -> Any:
    mu = x.mean(-1, keepdim=True)
    d = x - mu
    return d * ((d * d).mean(-1, keepdim=True) + 1e-5).rsqrt() * w + b


def _attention_composed(q: Any, k: Any, v: Any) -> Any:
    return ax.softmax((q * (1 / math.sqrt(q.shape[-1]))) @ k.mT, -1) @ v


def _lstm_composed(x: Any, ws: list[Any], layers: int) -> Any:
    h = x
    n, hidden = x.shape[1], ws[1].shape[1]
    zeros = ax.zeros(n, hidden, device=x.device)
    for i in range(layers):
        w_ih, w_hh, b_ih, b_hh = ws[4 * i:4 * i + 4]
        packed = composed_scan("LSTM", linear(h, w_ih, b_ih + b_hh), zeros, zeros, w_hh, None, None, False)
        h = packed[: x.shape[0] * n * hidden].reshape(x.shape[0], n, hidden)
    return h


Case = tuple[str, dict[str, Callable[[], Any]], dict[str, Callable[[], Any]]]


def _norm_cases(device: str, rng: np.random.Generator) -> list[Case]:
    arrs = _arrays(rng, (8, 128, 768), (768,), (768,))
    x, w, b = _ax(arrs, device)
    f = {"fused": lambda: layer_norm(x, 768, w, b), "composed": lambda: _layer_norm_composed(x, w, b)}
    fb = {k: _backward(v, [x, w, b], ax) for k, v in f.items()}
    if torch is not None:
        tx, tw, tb = _th(arrs, device)
        f["torch"] = lambda: tF.layer_norm(tx, (768,), tw, tb)
        fb["torch"] = _backward(f["torch"], [tx, tw, tb], torch)
    arrs2 = _arrays(rng, (32, 64, 32, 32), (64,), (64,))
    x2, w2, b2 = _ax(arrs2, device)
    f2 = {"fused": lambda: batch_norm(x2, None, None, w2, b2, True)}
    fb2 = {k: _backward(v, [x2, w2, b2], ax) for k, v in f2.items()}
    if torch is not None:
        tx2, tw2, tb2 = _th(arrs2, device)
        f2["torch"] = lambda: tF.batch_norm(tx2, None, None, tw2, tb2, True)
        fb2["torch"] = _backward(f2["torch"], [tx2, tw2, tb2], torch)
    return [("layer_norm (8,128,768)", f, fb), ("batch_norm train (32,64,32,32)", f2, fb2)]


def _attention_case(device: str, rng: np.random.Generator, causal: bool) -> Case:
    arrs = _arrays(rng, (8, 4, 128, 64), (8, 4, 128, 64), (8, 4, 128, 64))
    q, k, v = _ax(arrs, device)
    f = {"fused": lambda: scaled_dot_product_attention(q, k, v, is_causal=causal)}
    if not causal:
        f["composed"] = lambda: _attention_composed(q, k, v)
    fb = {kk: _backward(vv, [q, k, v], ax) for kk, vv in f.items()}
    if torch is not None:
        tq, tk, tv = _th(arrs, device)
        f["torch"] = lambda: tF.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
        fb["torch"] = _backward(f["torch"], [tq, tk, tv], torch)
    return f"attention B8 H4 T128 d64{' causal' if causal else ''}", f, fb


def _lstm_case(device: str, rng: np.random.Generator) -> Case:
    layers, hidden, steps, n = 2, 256, 50, 32
    shapes = [(4 * hidden, hidden), (4 * hidden, hidden), (4 * hidden,), (4 * hidden,)] * layers
    warrs = _arrays(rng, *shapes, scale=1 / math.sqrt(hidden))
    xarr = _arrays(rng, (steps, n, hidden))
    ws = _ax(warrs, device)
    xa = _ax(xarr, device, grad=False)[0]
    f = {"fused": lambda: rnn_forward("LSTM", xa, None, ws, layers)[0],
         "composed": lambda: _lstm_composed(xa, ws, layers)}
    fb = {k: _backward(v, ws, ax) for k, v in f.items()}
    if torch is not None:
        module = torch.nn.LSTM(hidden, hidden, layers).to(device)
        with torch.no_grad():
            for p, a in zip(module._flat_weights, warrs):
                p.copy_(torch.from_numpy(a))
        tx = _th(xarr, device, grad=False)[0]
        f["torch"] = lambda: module(tx)[0]
        fb["torch"] = _backward(f["torch"], list(module.parameters()), torch)
    return "LSTM 2x256, T50, N32", f, fb


def _linear_case(device: str, rng: np.random.Generator, rows: int, fin: int, fout: int) -> Case:
    arrs = _arrays(rng, (rows, fin), (fout, fin), (fout,), scale=0.05)
    x, w, b = _ax(arrs, device)
    f = {"fused": lambda: linear(x, w, b), "composed": lambda: x @ w.mT + b}
    fb = {k: _backward(v, [x, w, b], ax) for k, v in f.items()}
    if torch is not None:
        tx, tw, tb = _th(arrs, device)
        f["torch"] = lambda: tF.linear(tx, tw, tb)
        fb["torch"] = _backward(f["torch"], [tx, tw, tb], torch)
    return f"linear {rows}x{fin} -> {fout}", f, fb


def cases(device: str) -> list[Case]:
    """(name, forward sides, forward+backward sides) per case."""
    rng = np.random.default_rng(0)
    return [
        *_norm_cases(device, rng),
        _attention_case(device, rng, False),
        _attention_case(device, rng, True),
        _lstm_case(device, rng),
        _linear_case(device, rng, 128, 784, 256),
        _linear_case(device, rng, 2048, 256, 1024),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--number", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="PyTorch CPU threads; give NumPy's BLAS the same with OPENBLAS_NUM_THREADS")
    ap.add_argument("--only", default="", help="run the cases whose name contains this text")
    args = ap.parse_args()
    if torch is not None and args.device == "cpu":
        torch.set_num_threads(args.threads)
    print(f"device {args.device}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; torch "
          f"{torch.__version__ if torch is not None else '-'} threads {torch.get_num_threads() if torch else '-'}; "
          f"median of {args.repeats} interleaved repeats of {args.number} calls")
    header = ["case", "pass", "fused ms", "composed ms", "torch ms", "fused / torch", "composed / torch"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, fwd, fb in cases(args.device):
        if args.only not in name:
            continue
        for label, sides in (("fwd", fwd), ("fwd+bwd", fb)):
            if label == "fwd":
                with ax.no_grad(), (torch.no_grad() if torch is not None else contextlib.nullcontext()):
                    r = compare(sides, args.device, args.number, args.repeats)
            else:
                r = compare(sides, args.device, args.number, args.repeats)
            t = r.get("torch")

            def cell(k: str, r: dict[str, float] = r) -> str:
                return f"{r[k] * 1e3:.2f}" if k in r else "-"

            def ratio(k: str, r: dict[str, float] = r, t: float | None = t) -> str:
                return f"{r[k] / t:.2f}" if k in r and t else "-"

            print(f"| {name} | {label} | {cell('fused')} | {cell('composed')} | {cell('torch')} | "
                  f"{ratio('fused')} | {ratio('composed')} |", flush=True)


if __name__ == "__main__":
    main()
