"""Timing shared by the benchmarks: interleaved medians, synchronized on the GPU.

Each side of a comparison is warmed up once, then the sides take turns for
``repeats`` rounds with a short pause between them: OpenBLAS threads busy-spin
for a while after a call, and the next side must not pay for that (PERF-NOTES.md).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import axonml as ax

try:
    import torch
except ImportError:  # the PyTorch columns then show "-"
    torch = None


def sync(device: str) -> None:
    """Wait for queued GPU work of both frameworks (nothing to do on the CPU)."""
    if device == "cuda":
        ax.cuda.synchronize()
        if torch is not None:
            torch.cuda.synchronize()


def timeit(fn: Callable[[], Any], device: str, number: int) -> float:
    """Seconds per call of ``fn`` over ``number`` calls, after one warm-up call, synchronized at the ends."""
    fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / number


def compare(
    sides: dict[str, Callable[[], Any] | None], device: str, number: int, repeats: int = 7, pause: float = 0.2
) -> dict[str, float]:
    """Median seconds per call of each side (``None`` sides are skipped), interleaving the sides across repeats."""
    samples: dict[str, list[float]] = {k: [] for k, f in sides.items() if f is not None}
    for _ in range(repeats):
        for name, fn in sides.items():
            if fn is None:
                continue
            time.sleep(pause)
            samples[name].append(timeit(fn, device, number))
    return {k: statistics.median(v) for k, v in samples.items()}
