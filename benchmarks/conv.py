"""Convolution and pooling benchmarks: axonml against PyTorch, measured in the same run.

    python benchmarks/conv.py                 # CPU (PyTorch CPU with the same thread count)
    python benchmarks/conv.py --device cuda   # GPU (CuPy and PyTorch CUDA)
    OPENBLAS_NUM_THREADS=2 python benchmarks/conv.py --threads 2   # a fixed thread count on both sides

Cases: LeNet's two convolutions (64x1x28x28, 6x5x5, padding 2; 64x6x14x14, 16x5x5), ResNet-18's 3x3
layers at 32x32 (64 channels: the shift GEMMs) and 8x8 (256 channels: Winograd), its strided 3x3 layer
(32x64x32x32 -> 128, stride 2), a depthwise 3x3 (32x64x32x32, groups 64), max pool 2x2, average pool 2x2
and batch norm (training statistics) on (32, 64, 32, 32). Forward, and forward + backward (gradients of
the input and the parameters), each the median of interleaved repeats (medians resist the bursts of a
shared machine); the sides are separated by a pause because OpenBLAS threads busy-spin after a call
(see PERF-NOTES.md). The header says which CPU paths are on: the compiled loops need numba, the
shift GEMMs NumPy's own OpenBLAS.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from _timing import compare

import axonml as ax
from axonml.nn.functional.conv import conv2d
from axonml.nn.functional.normalization import batch_norm
from axonml.nn.functional.pooling import avg_pool2d, max_pool2d
from axonml.nn.prims import _conv_cpu_blas as _blas
from axonml.nn.prims import _conv_cpu_jit as _jit

try:
    import torch
    import torch.nn.functional as tF
except ImportError:  # the table then shows "-" for PyTorch
    torch = None


def _pair(shape: tuple[int, ...], device: str, seed: int, grad: bool) -> tuple[Any, Any]:
    a = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.1
    t = ax.tensor(a, device=device, requires_grad=grad)
    tt = None
    if torch is not None:
        tt = torch.from_numpy(a).to(device).requires_grad_(grad)
    return t, tt


def _case(name: str, x_shape: tuple[int, ...], device: str, number: int, repeats: int,
          w_shape: tuple[int, ...] | None = None, **kw: Any) -> list[str]:
    x, tx = _pair(x_shape, device, 0, True)
    if w_shape is not None:
        w, tw = _pair(w_shape, device, 1, True)
        b, tb = _pair((w_shape[0],), device, 2, True)
        ours: Callable[[], Any] = lambda: conv2d(x, w, b, **kw)
        theirs = (lambda: tF.conv2d(tx, tw, tb, **kw)) if torch is not None else None
        params, tparams = [x, w, b], [tx, tw, tb]
    elif name.startswith("batch_norm"):
        c = x_shape[1]
        w, tw = _pair((c,), device, 1, True)
        b, tb = _pair((c,), device, 2, True)
        ours = lambda: batch_norm(x, None, None, w, b, training=True)
        theirs = (lambda: tF.batch_norm(tx, None, None, tw, tb, training=True)) if torch is not None else None
        params, tparams = [x, w, b], [tx, tw, tb]
    else:
        pool = max_pool2d if name.startswith("max") else avg_pool2d
        tpool = (tF.max_pool2d if name.startswith("max") else tF.avg_pool2d) if torch is not None else None
        ours = lambda: pool(x, **kw)
        theirs = (lambda: tpool(tx, **kw)) if tpool is not None else None
        params, tparams = [x], [tx]
    y = ours()
    gy = ax.ones(tuple(y.shape), device=device)
    tgy = torch.ones(tuple(y.shape), device=device) if torch is not None else None

    def ours_fb() -> None:
        ax.autograd.grad(ours(), params, gy)

    def theirs_fb() -> None:
        torch.autograd.grad(theirs(), tparams, tgy)  # type: ignore[misc]

    with ax.no_grad():
        fwd = compare({"ax": ours, "torch": theirs}, device, number, repeats)
    fb = compare({"ax": ours_fb, "torch": theirs_fb if torch is not None else None}, device, number, repeats)
    row = [name]
    for r in (fwd, fb):
        a, t = r["ax"] * 1e3, r.get("torch")
        row += [f"{a:.2f}", "-" if t is None else f"{t * 1e3:.2f}", "-" if t is None else f"{a / (t * 1e3):.2f}"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--number", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="PyTorch CPU threads; give NumPy's BLAS the same with OPENBLAS_NUM_THREADS")
    args = ap.parse_args()
    dev = args.device
    if torch is not None and dev == "cpu":
        torch.set_num_threads(args.threads)
    paths = (f"numba loops {'on' if _jit.kernels() is not None else 'off'}, "
             f"direct OpenBLAS {'on' if _blas.available(np.float32) else 'off'}")
    print(f"device {dev}; CPU paths: {paths}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; "
          f"torch {torch.__version__ if torch is not None else '-'} threads "
          f"{torch.get_num_threads() if torch is not None else '-'}; median of {args.repeats} interleaved repeats")
    n, r = args.number, args.repeats
    rows = [
        _case("LeNet conv1 64x1x28x28, 6x5x5", (64, 1, 28, 28), dev, n, r, (6, 1, 5, 5), padding=2),
        _case("LeNet conv2 64x6x14x14, 16x5x5", (64, 6, 14, 14), dev, n, r, (16, 6, 5, 5)),
        _case("ResNet 3x3 32x64x32x32 -> 64", (32, 64, 32, 32), dev, n, r, (64, 64, 3, 3), padding=1),
        _case("ResNet 3x3 32x256x8x8 -> 256", (32, 256, 8, 8), dev, n, r, (256, 256, 3, 3), padding=1),
        _case("ResNet 3x3 stride 2 -> 128", (32, 64, 32, 32), dev, n, r, (128, 64, 3, 3), stride=2, padding=1),
        _case("depthwise 3x3 32x64x32x32", (32, 64, 32, 32), dev, n, r, (64, 1, 3, 3), padding=1, groups=64),
        _case("max_pool2d 2x2 (32,64,32,32)", (32, 64, 32, 32), dev, n, r, kernel_size=2),
        _case("avg_pool2d 2x2 (32,64,32,32)", (32, 64, 32, 32), dev, n, r, kernel_size=2),
        _case("batch_norm (32,64,32,32)", (32, 64, 32, 32), dev, n, r),
    ]
    header = ["case", "fwd ax ms", "fwd torch ms", "ratio", "fwd+bwd ax ms", "fwd+bwd torch ms", "ratio"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
