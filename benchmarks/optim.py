"""Optimizer step time against PyTorch (not a test).

    python benchmarks/optim.py cpu [threads] [mlp|resnet18]   # default: 2 threads, the MLP
    python benchmarks/optim.py cuda                           # ResNet-18's parameters on the GPU

Interleaved rounds, medians, the same thread count on both sides. CPU: the MLP
784-256-128-10 (6 tensors, 0.24M float32 values) or ResNet-18's 62 tensors
(11.7M values). CUDA: ResNet-18's 62 tensors; each optimizer also against
PyTorch's ``fused=True``, and the ``launches`` column counts axonml's fused
kernel launches per step (one per parameter; LAMB adds its norms' reductions).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

import axonml as ax
from axonml import optim
from axonml.backend.fused import Kernel

MLP = [(256, 784), (256,), (128, 256), (128,), (10, 128), (10,)]


def resnet18_shapes() -> list[tuple[int, ...]]:
    """The shapes of ResNet-18's parameters (convolutions without bias, batch-norm weight and bias, the head)."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            c_in = cin if block == 0 else cout
            shapes += [(cout, c_in, 3, 3), (cout,), (cout,), (cout, cout, 3, 3), (cout,), (cout,)]
            if block == 0 and (stride != 1 or cin != cout):
                shapes += [(cout, cin, 1, 1), (cout,), (cout,)]
        cin = cout
    return [*shapes, (1000, 512), (1000,)]


def bench(device: str, shapes: list[tuple[int, ...]], configs: list[tuple[str, dict[str, Any]]], n: int) -> None:
    """Print axonml's and PyTorch's median step time for each configuration (and the fused launches on CUDA)."""
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) * 1e-3 for s in shapes]
    sync_ax = ax.cuda.synchronize if device == "cuda" else (lambda: None)
    sync_t = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    print(f"\n{device}: {len(shapes)} tensors, {sum(int(np.prod(s)) for s in shapes) / 1e6:.2f}M values, float32"
          f" (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')})")
    print(f"{'optimizer':34s} {'axonml us':>10s} {'torch us':>10s} {'ratio':>6s}"
          + (f" {'launches':>9s}" if device == "cuda" else ""))
    for name, kw in configs:
        has_torch = hasattr(torch.optim, name)
        # PyTorch's CUDA default is its multi-tensor ("foreach") path; three optimizers also have ``fused=True``
        variants = [kw, {**kw, "fused": True}] if device == "cuda" and name in ("SGD", "Adam", "AdamW") else [kw]
        for tkw in variants:
            pa = [ax.tensor(x, device=device, requires_grad=True) for x in init]
            for p, g in zip(pa, grads):
                p.grad = ax.tensor(g, device=device)
            oa = getattr(optim, name)(pa, **kw)
            sides: list[tuple[str, Any, Any]] = [("ax", oa, sync_ax)]
            if has_torch:
                pt = [torch.tensor(x, device=device, requires_grad=True) for x in init]
                for p, g in zip(pt, grads):
                    p.grad = torch.tensor(g, device=device)
                sides.append(("torch", getattr(torch.optim, name)(pt, **tkw), sync_t))
            for _ in range(3):
                for _, o, _ in sides:
                    o.step()
            launches = Kernel.launches
            oa.step()
            launches = Kernel.launches - launches
            times: dict[str, list[float]] = {lab: [] for lab, _, _ in sides}
            for _ in range(7):
                for lab, o, sync in sides:
                    sync()
                    t = time.perf_counter()
                    for _ in range(n):
                        o.step()
                    sync()
                    times[lab].append((time.perf_counter() - t) / n * 1e6)
                    time.sleep(0.2)  # let BLAS worker threads go idle before the other side runs
            a = statistics.median(times["ax"])
            b = statistics.median(times["torch"]) if has_torch else float("nan")
            label = name + "".join(f" {k}={v}" for k, v in tkw.items())
            print(f"{label:34s} {a:10.0f} {b:10.0f} {a / b:6.2f}" + (f" {launches:9d}" if device == "cuda" else ""))


CONFIGS = [("SGD", {"lr": 0.01}), ("SGD", {"lr": 0.01, "momentum": 0.9}), ("Adam", {}), ("AdamW", {}),
           ("RMSprop", {}), ("Adagrad", {})]
MORE = [("NAdam", {}), ("RAdam", {}), ("Adamax", {}), ("Adadelta", {}), ("Lion", {}), ("LAMB", {})]

if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    if which == "cpu":
        torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
        model = sys.argv[3] if len(sys.argv) > 3 else "mlp"
        if model == "mlp":
            bench("cpu", MLP, CONFIGS, 50)
        else:
            bench("cpu", resnet18_shapes(), CONFIGS, 3)
    else:
        bench("cuda", resnet18_shapes(), CONFIGS + MORE, 20)
