"""Eager-op benchmarks: axonml against raw NumPy/CuPy and PyTorch, measured in the same run.

    python benchmarks/ops.py                 # CPU
    python benchmarks/ops.py --device cuda   # GPU (CuPy and PyTorch CUDA)

Prints four tables: framework overhead per op on tiny tensors, large-tensor
throughput, matmul GFLOP/s, and a 20-op chain forward+backward. Every row is
the median of interleaved repeats; sides are separated by a short pause
because OpenBLAS threads busy-spin after a call (see PERF-NOTES.md).
Targets (issue 2): <= 3 us overhead per eager op above the raw array call;
large ops within 1.1x of the raw call; chain backward <= 2x its forward.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from _timing import compare

import axonml as ax

try:
    import torch
except ImportError:  # the tables then show "-" for PyTorch
    torch = None


def arrays(shape: tuple[int, ...], device: str, seed: int = 0) -> tuple[Any, Any, Any]:
    """The same float32 data as a raw array, an axonml tensor and a torch tensor."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape).astype(np.float32)
    t = ax.tensor(a, device=device)
    raw = t._data
    tt = torch.from_numpy(a).to(device) if torch is not None else None
    return raw, t, tt


def fmt(x: float | None, unit: str = "") -> str:
    return "-" if x is None else f"{x:.2f}{unit}"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n## {title}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def bench_overhead(device: str) -> None:
    xp = ax.Device(device).xp
    a, ta, tta = arrays((4, 4), device, 0)
    b, tb, ttb = arrays((4, 4), device, 1)
    cases: list[tuple[str, Callable[[], Any], Callable[[], Any], Callable[[], Any] | None]] = [
        ("add", lambda: a + b, lambda: ta + tb, (lambda: tta + ttb) if torch else None),
        ("mul scalar", lambda: a * 2.0, lambda: ta * 2.0, (lambda: tta * 2.0) if torch else None),
        ("exp", lambda: xp.exp(a), lambda: ta.exp(), (lambda: tta.exp()) if torch else None),
        ("sum", lambda: a.sum(), lambda: ta.sum(), (lambda: tta.sum()) if torch else None),
        ("matmul", lambda: a @ b, lambda: ta @ tb, (lambda: tta @ ttb) if torch else None),
        ("reshape", lambda: a.reshape(16), lambda: ta.reshape(16), (lambda: tta.reshape(16)) if torch else None),
        ("slice", lambda: a[1:3], lambda: ta[1:3], (lambda: tta[1:3]) if torch else None),
        ("transpose", lambda: a.T, lambda: ta.T, (lambda: tta.T) if torch else None),
    ]
    rows = []
    n = 2000 if device == "cuda" else 20000
    for name, raw, ours, theirs in cases:
        r = compare({"raw": raw, "axonml": ours, "torch": theirs}, device, n)
        over = (r["axonml"] - r["raw"]) * 1e6
        rows.append([name, fmt(r["raw"] * 1e6), fmt(r["axonml"] * 1e6), fmt(over), fmt(r.get("torch", 0) * 1e6 or None)])
    ta.requires_grad_(True)
    tta = tta.requires_grad_(True) if torch else None
    for name, raw, ours, theirs in [
        ("add (recording)", lambda: a + b, lambda: ta + tb, (lambda: tta + ttb) if torch else None),
        ("mul (recording)", lambda: a * b, lambda: ta * tb, (lambda: tta * ttb) if torch else None),
    ]:
        r = compare({"raw": raw, "axonml": ours, "torch": theirs}, device, n)
        over = (r["axonml"] - r["raw"]) * 1e6
        rows.append([name, fmt(r["raw"] * 1e6), fmt(r["axonml"] * 1e6), fmt(over), fmt(r.get("torch", 0) * 1e6 or None)])
    table(
        f"Eager overhead on 4x4 float32 ({device}), us per call",
        ["op", "raw array", "axonml", "axonml overhead", "torch"],
        rows,
    )


def bench_throughput(device: str) -> None:
    xp = ax.Device(device).xp
    rows = []
    for n in (1 << 20, 1 << 24):
        a, ta, tta = arrays((n,), device, 0)
        b, tb, ttb = arrays((n,), device, 1)
        number = 50 if n == 1 << 20 else 5
        if device == "cuda":
            number *= 10
        for name, raw, ours, theirs in [
            ("add", lambda: a + b, lambda: ta + tb, (lambda: tta + ttb) if torch else None),
            ("mul", lambda: a * b, lambda: ta * tb, (lambda: tta * ttb) if torch else None),
            ("exp", lambda: xp.exp(a), lambda: ta.exp(), (lambda: tta.exp()) if torch else None),
            ("tanh", lambda: xp.tanh(a), lambda: ta.tanh(), (lambda: tta.tanh()) if torch else None),
            ("sum", lambda: a.sum(), lambda: ta.sum(), (lambda: tta.sum()) if torch else None),
        ]:
            r = compare({"raw": raw, "axonml": ours, "torch": theirs}, device, number, repeats=5)
            rows.append([
                f"{name} {n >> 20}M", fmt(r["raw"] * 1e3), fmt(r["axonml"] * 1e3),
                fmt(r["axonml"] / r["raw"], "x"), fmt(r["torch"] * 1e3) if "torch" in r else "-",
                fmt(r["axonml"] / r["torch"], "x") if "torch" in r else "-",
            ])
    table(f"Large tensors, float32 ({device}), ms per call",
          ["op", "raw array", "axonml", "axonml/raw", "torch", "axonml/torch"], rows)


def bench_matmul(device: str) -> None:
    rows = []
    sizes = (512, 1024) if device == "cpu" else (1024, 4096, 8192)
    for n in sizes:
        a, ta, tta = arrays((n, n), device, 0)
        b, tb, ttb = arrays((n, n), device, 1)
        number = 5 if device == "cpu" else 20
        r = compare({"raw": lambda: a @ b, "axonml": lambda: ta @ tb,
                     "torch": (lambda: tta @ ttb) if torch else None}, device, number, repeats=5)
        flops = 2.0 * n**3
        rows.append([f"{n}^3", fmt(flops / r["raw"] / 1e9), fmt(flops / r["axonml"] / 1e9),
                     fmt(flops / r["torch"] / 1e9) if "torch" in r else "-"])
    table(f"matmul float32 ({device}), GFLOP/s", ["size", "raw array", "axonml", "torch"], rows)


def chain(x: Any, w: Any) -> Any:
    """20 ops: a small residual MLP-like block repeated."""
    h = x
    for _ in range(4):
        z = h @ w  # 1
        z = z * 0.5  # 2
        z = z + h  # 3
        z = z.tanh()  # 4
        h = z - 0.1  # 5
    return h.sum()


def bench_chain(device: str) -> None:
    rows = []
    for shape in ((8, 8), (256, 256)):
        _, x, tx = arrays(shape, device, 0)
        _, w, tw = arrays((shape[1], shape[1]), device, 1)
        w = w * 0.1
        w.requires_grad_(True)
        number = 200 if shape[0] == 8 else 20

        def fwd() -> Any:
            return chain(x, w)

        def fwd_bwd() -> None:
            w.grad = None
            chain(x, w).backward()

        sides: dict[str, Any] = {"fwd": fwd, "fwd+bwd": fwd_bwd}
        if torch is not None:
            twl = (tw * 0.1).detach().requires_grad_(True)

            def tfwd() -> Any:
                return chain(tx, twl)

            def tfwd_bwd() -> None:
                twl.grad = None
                chain(tx, twl).backward()

            sides |= {"t fwd": tfwd, "t fwd+bwd": tfwd_bwd}
        r = compare(sides, device, number, repeats=5)
        bwd = r["fwd+bwd"] - r["fwd"]
        row = [f"{shape[0]}x{shape[1]}", fmt(r["fwd"] * 1e3), fmt(bwd * 1e3), fmt(bwd / r["fwd"], "x")]
        if torch is not None:
            tb = r["t fwd+bwd"] - r["t fwd"]
            row += [fmt(r["t fwd"] * 1e3), fmt(tb * 1e3), fmt(r["fwd+bwd"] / r["t fwd+bwd"], "x")]
        else:
            row += ["-", "-", "-"]
        rows.append(row)
    table(f"20-op chain forward + backward ({device}), ms",
          ["shape", "fwd", "bwd", "bwd/fwd", "torch fwd", "torch bwd", "axonml/torch total"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--only", default="", help="comma-separated subset: overhead,throughput,matmul,chain")
    args = parser.parse_args()
    if torch is not None and args.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    print(f"axonml {ax.__version__}, numpy {np.__version__}, torch {torch.__version__ if torch else 'absent'}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}, device {args.device}")
    chosen = set(filter(None, args.only.split(","))) or {"overhead", "throughput", "matmul", "chain"}
    for name, fn in (("overhead", bench_overhead), ("throughput", bench_throughput),
                     ("matmul", bench_matmul), ("chain", bench_chain)):
        if name in chosen:
            fn(args.device)


if __name__ == "__main__":
    main()
