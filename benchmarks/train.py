"""Training-step times of five models: axonml against PyTorch, measured in the same run.

    python benchmarks/train.py                       # CPU, both sides on os.cpu_count() threads
    python benchmarks/train.py --threads 1           # one BLAS / PyTorch thread on both sides
    python benchmarks/train.py --device cuda         # GPU: CuPy against PyTorch CUDA
    python benchmarks/train.py --models mlp lenet    # a subset
    python benchmarks/train.py --profile --models resnet18   # where axonml's step spends its time
    python benchmarks/train.py --device cuda --amp float16   # mixed precision on both sides

One step = zero_grad, forward, loss, backward, SGD (momentum 0.9) step. Models (built
from one definition for both frameworks, so the layers and state-dict keys are the same):
MLP 784-256-128-10 (batch 128), LeNet-5 (batch 64, 1x28x28), ResNet-18 for CIFAR
(batch 32, 3x32x32: a 3x3 stem, BasicBlocks 64-128-256-512, BatchNorm2d), a 2-layer LSTM
(input and hidden 256, seq 50, batch 32, a linear head on the last step), and one
Transformer encoder layer (d 256, 4 heads, feed-forward 1024, seq 128, batch 16,
batch_first, dropout 0.1). Both sides start from the same weights (axonml's, copied into
PyTorch); the table's "check" column is the relative difference of their eval-mode losses
on the same batch, so a mismatched model cannot pass for a fast one.

Timing: after warm-up steps, ``--repeats`` rounds alternate the two sides, each round
timing ``--number`` steps; the table gives medians (a shared machine's bursts fall
outside them). The sides are separated by a pause because OpenBLAS's threads busy-spin
for ~0.1 s after a call and would slow the other side (PERF-NOTES.md). The thread count
must be set before NumPy loads: this script sets OPENBLAS_NUM_THREADS (and OMP/MKL)
from --threads before importing it, and PyTorch gets ``torch.set_num_threads``.
A model whose layers axonml lacks is reported as "not run" with the missing names.

``--amp float16|bfloat16`` runs forward and loss under autocast on both sides, with a
GradScaler for float16 (scale, backward, step, update), as PyTorch's AMP recipe does;
compare its table with the float32 one to see what mixed precision gains.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any


def _early_threads(argv: list[str]) -> int:
    """--threads, read before NumPy is imported (OpenBLAS reads its thread count once, at load)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    n = p.parse_known_args(argv)[0].threads
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    return n


THREADS = _early_threads(sys.argv[1:])

import numpy as np  # noqa: E402

import axonml as ax  # noqa: E402
import axonml.nn as axnn  # noqa: E402

try:
    import torch
    import torch.nn as tnn
except ImportError:  # the table then shows "-" for PyTorch
    torch = None  # type: ignore[assignment]
    tnn = None  # type: ignore[assignment]

# (name, batch, target ratio on CPU, target on the GPU, axonml.nn names the model needs)
MODELS: dict[str, tuple[str, int, float, float | None, tuple[str, ...]]] = {
    "mlp": ("MLP 784-256-128-10", 128, 1.2, None, ("Linear", "ReLU", "Flatten", "CrossEntropyLoss")),
    "lenet": ("LeNet-5", 64, 1.5, None, ("Conv2d", "MaxPool2d", "Linear", "ReLU", "Flatten", "CrossEntropyLoss")),
    "resnet18": ("ResNet-18 (CIFAR)", 32, 1.5, 1.5,
                 ("Conv2d", "BatchNorm2d", "ReLU", "AdaptiveAvgPool2d", "Linear", "Flatten", "CrossEntropyLoss")),
    "lstm": ("LSTM 2x256, seq 50", 32, 1.5, None, ("LSTM", "Linear", "CrossEntropyLoss")),
    "transformer": ("Transformer enc. layer d256 h4, seq 128", 16, 1.2, 1.5, ("TransformerEncoderLayer", "MSELoss")),
}


# ---- one model definition for both frameworks: `nn` is axonml.nn or torch.nn -------------------------------------

def build_mlp(nn: Any) -> Any:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def build_lenet(nn: Any) -> Any:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 6, 14, 14)
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 5, 5)
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def build_resnet18(nn: Any, num_classes: int = 10) -> Any:
    """ResNet-18 for 32x32 inputs (He et al. 2016, the CIFAR stem: one 3x3 convolution, no max pool)."""

    def conv3x3(cin: int, cout: int, stride: int = 1) -> Any:
        return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)

    class BasicBlock(nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = conv3x3(cin, cout, stride)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.conv2 = conv3x3(cout, cout)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                                nn.BatchNorm2d(cout))

        def forward(self, x: Any) -> Any:
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            skip = x if self.downsample is None else self.downsample(x)
            return self.relu(out + skip)

    layers: list[Any] = [conv3x3(3, 64), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)


def build_lstm(nn: Any) -> Any:
    class LSTMClassifier(nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(256, 256, num_layers=2)
            self.head = nn.Linear(256, 10)

        def forward(self, x: Any) -> Any:  # x: (T, B, 256)
            out, _ = self.lstm(x)
            return self.head(out[-1])  # (B, 10)

    return LSTMClassifier()


def build_transformer(nn: Any) -> Any:
    return nn.TransformerEncoderLayer(256, 4, dim_feedforward=1024, dropout=0.1, batch_first=True)


BUILDERS: dict[str, Callable[[Any], Any]] = {
    "mlp": build_mlp, "lenet": build_lenet, "resnet18": build_resnet18, "lstm": build_lstm,
    "transformer": build_transformer,
}


def make_batch(key: str, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic batch (timing only: the values do not matter, the shapes do)."""
    if key == "mlp":
        return rng.standard_normal((batch, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, batch)
    if key == "lenet":
        return rng.standard_normal((batch, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, batch)
    if key == "resnet18":
        return rng.standard_normal((batch, 3, 32, 32), dtype=np.float32), rng.integers(0, 10, batch)
    if key == "lstm":
        return rng.standard_normal((50, batch, 256), dtype=np.float32), rng.integers(0, 10, batch)
    x = rng.standard_normal((batch, 128, 256), dtype=np.float32)
    return x, rng.standard_normal((batch, 128, 256), dtype=np.float32)


class Side:
    """One framework's model, optimizer, loss and batch, with a ``step()`` to time."""

    def __init__(self, key: str, fw: str, model: Any, x: np.ndarray, y: np.ndarray, device: str,
                 amp: str | None = None) -> None:
        self.fw = fw
        self.device = device
        lib: Any = ax if fw == "ax" else torch
        nn = axnn if fw == "ax" else tnn
        opt_mod = ax.optim if fw == "ax" else torch.optim
        self.model = model
        self.amp_dtype = None if amp is None else getattr(lib, amp)
        scaler_cls = ax.amp.GradScaler if fw == "ax" else torch.amp.GradScaler
        self.scaler = scaler_cls(device) if amp == "float16" else None
        self.loss_fn = nn.MSELoss() if key == "transformer" else nn.CrossEntropyLoss()
        self.opt = opt_mod.SGD(model.parameters(), lr=0.01, momentum=0.9)
        if fw == "ax":
            self.x, self.y = ax.tensor(x, device=device), ax.tensor(y, device=device)
        else:
            self.x, self.y = torch.from_numpy(x).to(device), torch.from_numpy(np.asarray(y)).to(device)
        self.lib = lib

    def capture(self) -> None:
        """Make ``step()`` replay a CUDA graph of one step (forward, backward, SGD), captured after the warm-up.

        PyTorch's side follows its documented recipe (warm-up on a side stream, then ``torch.cuda.graph``).
        The gradients are set to None before the capture, so the captured backward writes them afresh.
        """
        if self.amp_dtype is not None:
            raise ValueError("--cuda-graph and --amp do not combine here (GradScaler's inf check syncs the host)")
        if self.fw == "ax":
            g: Any = ax.cuda.CUDAGraph()
            self.opt.zero_grad(set_to_none=True)
            with ax.cuda.graph(g):
                self._forward_backward_step()
        else:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self.step()
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            self.opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(g):
                self._forward_backward_step()
        self.step = g.replay  # type: ignore[method-assign]

    def _forward_backward_step(self) -> None:
        loss = self.loss_fn(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()

    def step(self) -> None:
        self.opt.zero_grad()
        if self.amp_dtype is None:
            loss = self.loss_fn(self.model(self.x), self.y)
            loss.backward()
            self.opt.step()
            return
        with self.lib.autocast(self.device, dtype=self.amp_dtype):
            loss = self.loss_fn(self.model(self.x), self.y)
        if self.scaler is None:  # bfloat16 has float32's range: no loss scaling
            loss.backward()
            self.opt.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()

    def eval_loss(self) -> float:
        self.model.eval()
        with self.lib.no_grad():
            v = float(self.loss_fn(self.model(self.x), self.y).item())
        self.model.train()
        return v

    def sync(self) -> None:
        if self.device == "cuda":
            if self.fw == "ax":
                ax.cuda.synchronize()
            else:
                torch.cuda.synchronize()


def _time(side: Side, number: int) -> float:
    side.sync()
    t0 = time.perf_counter()
    for _ in range(number):
        side.step()
    side.sync()
    return (time.perf_counter() - t0) / number


def profile_model(key: str, device: str, steps: int, top: int = 15) -> None:
    """cProfile of axonml's training step: where the time of a missed target goes."""
    import cProfile
    import pstats

    _, batch, *_ = MODELS[key]
    ax.manual_seed(0)
    x, y = make_batch(key, batch, np.random.default_rng(0))
    side = Side(key, "ax", BUILDERS[key](axnn).to(device), x, y, device)
    side.step()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        side.step()
    side.sync()
    prof.disable()
    print(f"\n== {MODELS[key][0]}: axonml, {steps} steps, top {top} by own time")
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)
    if device == "cuda" and torch is not None:
        _kernel_table(side, steps, top)


def _kernel_table(side: Side, steps: int, top: int) -> None:
    """The GPU kernels of axonml's step: PyTorch's profiler reads CUPTI, which sees CuPy's launches too."""
    from torch.profiler import ProfilerActivity, profile

    side.sync()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            side.step()
        side.sync()
    wall = (time.perf_counter() - t0) / steps
    events = prof.key_averages()
    gpu_us = sum(e.self_device_time_total for e in events) / steps
    # the GPU's own activities: CUDA runtime/driver API calls (cudaLaunchKernel, cuLaunchKernel, ...) are events too
    launches = sum(e.count for e in events if not re.match(r"cuda[A-Z]|cu[A-Z]", e.key)) / steps
    print(f"\n== GPU kernels per step: {launches:.0f} launches, {gpu_us / 1e3:.2f} ms busy of "
          f"{wall * 1e3:.2f} ms wall (profiled)")
    print(events.table(sort_by="self_device_time_total", row_limit=top, max_name_column_width=60))


def bench_model(key: str, device: str, repeats: int, number: int, warmup: int, amp: str | None,
                cuda_graph: bool = False) -> list[str]:
    """One table row: median ms per step for both sides, their ratio, the target and the loss check.

    With ``cuda_graph`` axonml's step is a captured CUDA graph, and PyTorch runs both eagerly (the ratio's
    denominator) and as a captured graph (an extra column)."""
    title, batch, cpu_target, gpu_target, needs = MODELS[key]
    target = cpu_target if device == "cpu" else gpu_target
    tgt = "-" if target is None else f"<= {target}"
    missing = [n for n in needs if not hasattr(axnn, n)]
    if missing:
        return [title, str(batch), "not run", "-", "-", tgt, f"axonml.nn lacks {', '.join(missing)}"]
    ax.manual_seed(0)
    model = BUILDERS[key](axnn).to(device)
    x, y = make_batch(key, batch, np.random.default_rng(0))
    sides = [Side(key, "ax", model, x, y, device, amp)]
    check = "-"
    if torch is not None:
        tmodel = BUILDERS[key](tnn)
        tmodel.load_state_dict({k: torch.from_numpy(v.detach().cpu().numpy().copy())
                                for k, v in model.state_dict().items()})
        tside = Side(key, "torch", tmodel.to(device), x, y, device, amp)
        a, t = sides[0].eval_loss(), tside.eval_loss()
        check = f"{abs(a - t) / max(abs(t), 1e-12):.0e}"
        sides.append(tside)
    if cuda_graph and torch is not None:
        gmodel = BUILDERS[key](tnn)
        gmodel.load_state_dict(tmodel.state_dict())
        sides.append(Side(key, "torch-graph", gmodel.to(device), x, y, device, amp))
    for s in sides:  # warm-up: first-call costs (buffers, caches, kernels) stay out of the samples
        for _ in range(warmup):
            s.step()
        if cuda_graph and s.fw != "torch":
            s.capture()
    samples: dict[str, list[float]] = {s.fw: [] for s in sides}
    for _ in range(repeats):
        for s in sides:
            time.sleep(0.2)
            samples[s.fw].append(_time(s, number))
    a_ms = statistics.median(samples["ax"]) * 1e3
    if torch is None:
        return [title, str(batch), f"{a_ms:.2f}", "-", "-", tgt, check]
    t_ms = statistics.median(samples["torch"]) * 1e3
    row = [title, str(batch), f"{a_ms:.2f}", f"{t_ms:.2f}", f"{a_ms / t_ms:.2f}", tgt, check]
    if cuda_graph:
        g_ms = statistics.median(samples["torch-graph"]) * 1e3
        row[4:4] = [f"{g_ms:.2f}", f"{a_ms / g_ms:.2f}"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=THREADS, help="BLAS and PyTorch threads (default: all cores)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--repeats", type=int, default=7, help="interleaved rounds (the median is reported)")
    ap.add_argument("--number", type=int, default=0, help="steps per round (default: by model, about 0.2 s)")
    ap.add_argument("--warmup", type=int, default=0,
                    help="untimed steps per side first (default: 2 on the CPU; 20 on the GPU, where the first ~20 "
                         "steps of either framework ran slower while allocator pools and clocks settled)")
    ap.add_argument("--profile", action="store_true", help="instead of timing, profile axonml's step (cProfile)")
    ap.add_argument("--amp", choices=("float16", "bfloat16"), help="autocast forward+loss (GradScaler for float16)")
    ap.add_argument("--cuda-graph", action="store_true",
                    help="GPU: axonml replays its step as a captured CUDA graph; PyTorch is timed eager and captured")
    args = ap.parse_args()
    if args.cuda_graph and args.device != "cuda":
        ap.error("--cuda-graph needs --device cuda")
    if torch is not None and args.device == "cpu":
        torch.set_num_threads(args.threads)
    print(f"device {args.device}; threads {args.threads} (OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, "
          f"torch {torch.get_num_threads() if torch is not None else '-'}); "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; "
          f"numpy {np.__version__}, torch {torch.__version__ if torch is not None else '-'}; "
          f"median of {args.repeats} interleaved rounds; amp {args.amp or 'off'}; "
          f"axonml step {'as a CUDA graph' if args.cuda_graph else 'eager'}")
    default_number = {"mlp": 20, "lenet": 10, "resnet18": 1, "lstm": 1, "transformer": 2}
    if args.profile:
        for key in args.models:
            profile_model(key, args.device, args.number or 5 * default_number[key])
        return
    if args.device == "cuda":
        default_number = {"mlp": 50, "lenet": 50, "resnet18": 10, "lstm": 10, "transformer": 20}
    header = ["model", "batch", "axonml ms/step", "PyTorch ms/step", "ratio", "target", "loss check"]
    if args.cuda_graph:
        header = ["model", "batch", "axonml graph ms/step", "PyTorch eager ms/step", "PyTorch graph ms/step",
                  "ratio vs graph", "ratio vs eager", "target", "loss check"]
    rows = []
    for key in args.models:
        try:
            row = bench_model(key, args.device, args.repeats, args.number or default_number[key],
                              args.warmup or (20 if args.device == "cuda" else 2),
                              args.amp, args.cuda_graph)
        except Exception as e:  # one broken model must not hide the others' rows
            title, batch, *_ = MODELS[key]
            row = [title, str(batch), "failed", "-", "-", "-", f"{type(e).__name__}: {str(e)[:80]}"]
        print("  " + " | ".join(row), flush=True)
        rows.append(row)
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
