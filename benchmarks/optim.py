"""Optimizer step time against PyTorch (not a test: run ``python tests/optim/bench_optim.py [cpu|cuda]``).

Interleaved rounds, medians, the same thread count on both sides. CPU: the MLP
784-256-128-10 (float32). CUDA: ResNet-18's 62 parameter tensors (11.7M values).
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

import axonml as ax
from axonml import optim

MLP = [(256, 784), (256,), (128, 256), (128,), (10, 128), (10,)]


def resnet18_shapes() -> list[tuple[int, ...]]:
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
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) * 1e-3 for s in shapes]
    sync_ax = ax.cuda.synchronize if device == "cuda" else (lambda: None)
    sync_t = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    print(f"\n{device}: {len(shapes)} tensors, {sum(int(np.prod(s)) for s in shapes) / 1e6:.2f}M values, float32")
    print(f"{'optimizer':34s} {'axonml us':>10s} {'torch us':>10s} {'ratio':>6s}")
    for name, kw in configs:
        variants = [kw] if device == "cpu" else [kw, {**kw, "fused": True}]
        for tkw in variants:
            pa = [ax.tensor(x, device=device, requires_grad=True) for x in init]
            pt = [torch.tensor(x, device=device, requires_grad=True) for x in init]
            for p, g in zip(pa, grads):
                p.grad = ax.tensor(g, device=device)
            for p, g in zip(pt, grads):
                p.grad = torch.tensor(g, device=device)
            oa = getattr(optim, name)(pa, **kw)
            ot = getattr(torch.optim, name)(pt, **tkw)
            times: dict[str, list[float]] = {"ax": [], "torch": []}
            for _ in range(3):
                oa.step()
                ot.step()
            for _ in range(7):
                for lab, o, sync in (("ax", oa, sync_ax), ("torch", ot, sync_t)):
                    sync()
                    t = time.perf_counter()
                    for _ in range(n):
                        o.step()
                    sync()
                    times[lab].append((time.perf_counter() - t) / n * 1e6)
                    time.sleep(0.2)  # let BLAS worker threads go idle before the other side runs
            a, b = statistics.median(times["ax"]), statistics.median(times["torch"])
            label = name + "".join(f" {k}={v}" for k, v in tkw.items())
            print(f"{label:34s} {a:10.0f} {b:10.0f} {a / b:6.2f}")


CONFIGS = [("SGD", {"lr": 0.01}), ("SGD", {"lr": 0.01, "momentum": 0.9}), ("Adam", {}), ("AdamW", {}),
           ("RMSprop", {}), ("Adagrad", {})]

if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    if which == "cpu":
        torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
        bench("cpu", MLP, CONFIGS, 50)
    else:
        bench("cuda", resnet18_shapes(), CONFIGS[:4], 20)
