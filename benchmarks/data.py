"""DataLoader throughput: axonml.data against torch.utils.data, measured in the same run.

    python benchmarks/data.py                # defaults: 20000 images, 5 repeats
    python benchmarks/data.py --repeats 7 --images 60000

Two datasets, each loaded with 0 and 2 workers, batch 128:
  * images: a TensorDataset of N 28x28 float32 images and int64 labels (each
    framework's own TensorDataset over its own tensors);
  * python: a dataset whose __getitem__ does Python work per sample (a random
    crop and flip of a 28x28 image chosen by index, and a small Python loop over
    the pixels' row sums), returning a NumPy array and an int: the same class
    for both frameworks, collated by each one's default_collate.
Workers are persistent and warmed up by one epoch, so the rows measure the
steady state (the one-time start of the workers is printed separately).
Every row is the median of interleaved repeats of one whole epoch.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import axonml as ax
import axonml.data as axd

try:
    import torch
    import torch.utils.data as tdata
except ImportError:  # the table then shows "-" for PyTorch
    torch = None
    tdata = None

BATCH = 128


class PythonWork:
    """Per-sample Python work: crop, flip, a loop over rows (the kind of code real datasets run)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.images = np.random.default_rng(0).random((64, 32, 32), dtype=np.float32)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        rng = np.random.default_rng(i)
        top, left = (int(v) for v in rng.integers(0, 5, 2))
        img = self.images[i % 64, top:top + 28, left:left + 28]
        if i % 2:
            img = img[:, ::-1]
        total = 0.0
        for row in img.sum(axis=1).tolist():
            total += row * row
        return np.ascontiguousarray(img) * np.float32(1.0 / (1.0 + total / 1e4)), i % 10


def epoch(loader: Any) -> int:
    """Run one epoch; returns the number of samples seen."""
    n = 0
    for x, _ in loader:
        n += x.shape[0]
    return n


def loaders(images: int, python_items: int, workers: int) -> dict[str, dict[str, Callable[[], Any]]]:
    """Dataset name -> framework -> loader factory."""
    x = np.random.default_rng(1).random((images, 28, 28), dtype=np.float32)
    y = np.random.default_rng(2).integers(0, 10, images)
    kw: dict[str, Any] = {"batch_size": BATCH, "shuffle": True, "num_workers": workers}
    if workers:
        kw.update(persistent_workers=True, prefetch_factor=2)
    ax_images = axd.TensorDataset(ax.tensor(x), ax.tensor(y))
    py = PythonWork(python_items)
    out: dict[str, dict[str, Callable[[], Any]]] = {
        "images": {"axonml": lambda: axd.DataLoader(ax_images, **kw)},
        "python": {"axonml": lambda: axd.DataLoader(py, **kw)},
    }
    if torch is not None:
        t_images = tdata.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        out["images"]["torch"] = lambda: tdata.DataLoader(t_images, **kw)
        out["python"]["torch"] = lambda: tdata.DataLoader(py, **kw)
    return out


def measure(make: Callable[[], Any]) -> tuple[Any, float]:
    """A loader and the seconds its first (warm-up) epoch took, worker start included."""
    loader = make()
    t0 = time.perf_counter()
    epoch(loader)
    return loader, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000, help="samples in the image dataset")
    parser.add_argument("--python-items", type=int, default=5000, help="samples in the Python-work dataset")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads in the main process "
                        "(0: PyTorch's default); its idle OpenMP threads spin and can slow the other side")
    args = parser.parse_args()
    if torch is not None:
        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads in the main process")
    rows = []
    for workers in (0, 2):
        for name, sides in loaders(args.images, args.python_items, workers).items():
            live = {fw: measure(make) for fw, make in sides.items()}
            times: dict[str, list[float]] = {fw: [] for fw in live}
            for _ in range(args.repeats):
                for fw, (loader, _) in live.items():  # interleaved: both sides see the same machine load
                    time.sleep(0.05)
                    t0 = time.perf_counter()
                    n = epoch(loader)
                    times[fw].append(time.perf_counter() - t0)
            rate = {fw: n / statistics.median(v) for fw, v in times.items()}
            first = {fw: v[1] for fw, v in live.items()}
            rows.append((name, workers, rate, first))
            del live
    print(f"\nDataLoader throughput, batch {BATCH}, median of {args.repeats} interleaved epochs (samples/s)")
    print(f"{'dataset':<8} {'workers':>7} {'axonml':>12} {'torch':>12} {'ax/torch':>9}   first epoch ax / torch (s)")
    for name, workers, rate, first in rows:
        t = rate.get("torch")
        ratio = f"{rate['axonml'] / t:9.2f}" if t else f"{'-':>9}"
        tf = f"{first['torch']:.3f}" if "torch" in first else "-"
        print(f"{name:<8} {workers:>7} {rate['axonml']:>12,.0f} {t if t is None else round(t):>12,} {ratio}"
              f"   {first['axonml']:.3f} / {tf}")


if __name__ == "__main__":
    main()
