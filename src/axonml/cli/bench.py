"""``axonml bench model|inference|compare|hardware``: measured speed and memory of models and of this machine.

MODEL is a name from the vision model registry (``axonml.vision.models.list_models()``)
or an ``.axonml`` archive. Every number is measured in the run that prints it:
forward latency over ``--iters`` timed calls after ``--warmup`` untimed ones (the
device synchronized after each call), throughput = batch size / mean latency.
Memory: parameter and buffer bytes; ``activations`` = the bytes of every leaf
module's output in one forward (what a training step keeps for backward);
``peak forward`` = the extra memory one forward allocates at its peak, measured
by ``tracemalloc`` on the CPU (NumPy reports its buffers to it) and by CuPy's
pool (``max_memory_allocated``) on CUDA.
"""

from __future__ import annotations

import math
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from ..backend import gpu_info
from ..backend.device import Device
from ..core.grad_mode import no_grad
from ..core.tensor import Tensor
from ..io import ModelArchive
from ..nn import Conv1d, Conv2d, Conv3d, Embedding, Linear, Module
from ..ops.random import randint, randn
from ..vision.models import get_model_builder
from ._app import JSON_OPTION, CommandError, app, emit_json, fail, handle_errors
from ._config import get_default_device
from ._hardware import hardware_report, print_hardware
from ._train_models import canonical_model_name

bench_app = typer.Typer(
    name="bench",
    help="Benchmark models (latency, throughput, memory) and this machine (CPU, memory bandwidth, matmul, GPU).",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")

SHAPE_HELP = "Shape of one sample without the batch dimension, e.g. 3,224,224 (default: inferred from the model)."
DEVICE_HELP = "cpu or cuda:N (default: the one saved by `axonml gpu select`, else cpu)."
PROBE_SIDES = (224, 32, 28, 64, 96, 128, 256, 299)  # image sides tried when a conv net's input size is unknown


# ----- loading and inputs ------------------------------------------------------------------------------
def load_model(spec: str, num_classes: int | None = None) -> tuple[Module, dict[str, Any]]:
    """A model from a registry name or an ``.axonml`` archive, with what is known about it."""
    path = Path(spec)
    if path.suffix == ".axonml" or path.is_file():
        if not path.is_file():
            fail(f"{spec}: no such file")
        if path.suffix != ".axonml":
            fail(f"{spec}: bench reads .axonml archives or registry model names (convert it with `axonml convert`)")
        archive = ModelArchive.load(path)
        shape = archive.metadata.get("input_shape")
        return archive.model, {"name": archive.name or path.stem, "source": str(path),
                               "input_shape": list(shape) if isinstance(shape, list | tuple) else None}
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    try:
        name = canonical_model_name(spec)  # aliases too: lenet -> lenet5
    except CommandError as e:
        fail(f"{spec}: no such file or registry model; {e}")
    return get_model_builder(name)(**kwargs), {"name": name, "source": "registry", "input_shape": None}


def parse_shape(text: str) -> list[int]:
    """``"3,224,224"`` (or ``3x224x224``) -> ``[3, 224, 224]``; ``typer.BadParameter`` (exit 2) otherwise."""
    try:
        dims = [int(p) for p in text.replace("x", ",").split(",") if p.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a shape like 3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise typer.BadParameter(f"{text!r}: every dimension must be a positive integer")
    return dims


def _first_layer(model: Module) -> Module | None:
    for m in model.modules():
        if isinstance(m, Linear | Conv1d | Conv2d | Conv3d | Embedding):
            return m
    return None


def make_input(model: Module, shape: list[int] | None, batch: int, device: Device) -> Tensor:
    """A random batch for ``model``: int token ids when its first layer is an Embedding, else float32 normals."""
    first = _first_layer(model)
    if shape is None:
        shape = infer_input_shape(model, device)
    if isinstance(first, Embedding):
        return randint(0, first.num_embeddings, (batch, *shape), device=device)
    return randn(batch, *shape, device=device)


def infer_input_shape(model: Module, device: Device | None = None) -> list[int]:
    """One sample's shape, from the first Linear/Conv/Embedding layer; conv nets are probed with forward calls.

    ``device`` is where the model's parameters are (the probe batches are made there; default cpu).
    """
    first = _first_layer(model)
    if isinstance(first, Linear):
        return [first.in_features]
    if isinstance(first, Embedding):
        return [128]
    if isinstance(first, Conv1d):
        return [first.in_channels, 128]
    if isinstance(first, Conv2d):
        own = getattr(model, "image_size", None)
        sides = ([own] if isinstance(own, int) else []) + [s for s in PROBE_SIDES if s != own]
        was_training = model.training
        model.eval()
        try:
            for side in sides:
                try:
                    with no_grad():
                        model(randn(1, first.in_channels, side, side, device=device))
                    return [first.in_channels, side, side]
                except (ValueError, RuntimeError, IndexError):  # ShapeError and kin: not this size
                    continue
        finally:
            model.train(was_training)
    fail(f"cannot infer the input shape of {type(model).__name__}; pass --input-shape (e.g. 3,224,224)")
    raise AssertionError  # unreachable: fail() raises


def resolve_device(device: str | None) -> Device:
    """``--device``, else the folder's ``default_device``, else cpu; a CUDA device must exist."""
    dev = Device(device or get_default_device() or "cpu")
    if dev.type == "cuda":
        count, reason = gpu_info.cuda_status()
        if count == 0:
            fail(f"no CUDA GPU available ({reason})")
        if dev.index is not None and dev.index >= count:
            fail(f"{dev} does not exist: {count} CUDA device(s)")
    return dev


# ----- measuring ---------------------------------------------------------------------------------------
def _sync(device: Device) -> None:
    if device.type == "cuda":
        from ..backend.cuda import synchronize

        synchronize(device.index)


def _tensors(out: Any) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, list | tuple):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    return []


def activation_bytes(model: Module, x: Tensor) -> int:
    """Bytes of every leaf module's output in one forward of ``x`` (through forward hooks)."""
    total = [0]

    def hook(_module: Module, _args: Any, output: Any) -> None:
        total[0] += sum(t.numel() * t.element_size() for t in _tensors(output))

    handles = [m.register_forward_hook(hook) for m in model.modules() if not any(True for _ in m.children())]
    try:
        with no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total[0]


def peak_forward_bytes(model: Module, x: Tensor, device: Device) -> tuple[int, str]:
    """Extra bytes allocated at the peak of one forward, and how it was measured."""
    if device.type == "cuda":
        from ..backend import cuda

        _sync(device)
        base = cuda.memory_allocated()
        cuda.reset_peak_memory_stats()
        with no_grad():
            model(x)
        _sync(device)
        return max(cuda.max_memory_allocated() - base, 0), "cupy-pool"
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        with no_grad():
            model(x)
        return max(tracemalloc.get_traced_memory()[1] - base, 0), "tracemalloc"
    finally:
        if not tracing:
            tracemalloc.stop()


def time_forward(model: Module, x: Tensor, iters: int, warmup: int, device: Device) -> list[float]:
    """Seconds of each of ``iters`` forward calls (after ``warmup`` untimed ones), synchronized."""
    times = []
    with no_grad():
        for _ in range(warmup):
            model(x)
        _sync(device)
        for _ in range(iters):
            t0 = time.perf_counter()
            model(x)
            _sync(device)
            times.append(time.perf_counter() - t0)
    return times


def latency_stats(times: list[float]) -> dict[str, float]:
    """Mean, std, min, p50, p99 of ``times`` in milliseconds."""
    ms = np.asarray(times, np.float64) * 1e3
    return {"mean": float(ms.mean()), "std": float(ms.std()), "min": float(ms.min()),
            "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def benchmark(model: Module, info: dict[str, Any], shape: list[int] | None, batch: int, iters: int, warmup: int,
              device: Device) -> dict[str, Any]:
    """Latency, throughput and memory of ``model`` on a random batch of ``batch`` samples."""
    model = model.to(device)
    model.eval()
    shape = shape or info.get("input_shape") or infer_input_shape(model, device)
    x = make_input(model, shape, batch, device)
    stats = latency_stats(time_forward(model, x, iters, warmup, device))
    peak, method = peak_forward_bytes(model, x, device)
    params = list(model.parameters())
    return {
        "model": info["name"], "source": info["source"], "device": str(device), "batch_size": batch,
        "input_shape": list(shape), "iterations": iters, "parameters": int(sum(p.numel() for p in params)),
        "latency_ms": stats,
        "throughput_samples_per_s": batch / (stats["mean"] / 1e3) if stats["mean"] > 0 else math.inf,
        "memory": {
            "parameters_bytes": int(sum(p.numel() * p.element_size() for p in params)),
            "buffers_bytes": int(sum(b.numel() * b.element_size() for b in model.buffers())),
            "activations_bytes": activation_bytes(model, x),
            "peak_forward_bytes": int(peak), "peak_method": method,
        },
    }


def parse_batch_sizes(text: str) -> list[int]:
    """``"1,8,32"`` -> ``[1, 8, 32]``; ``typer.BadParameter`` (exit 2) otherwise."""
    try:
        sizes = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a list like 1,8,32,128") from None
    if not sizes or any(s <= 0 for s in sizes):
        raise typer.BadParameter(f"{text!r}: batch sizes must be positive integers")
    return sizes


# ----- printing ----------------------------------------------------------------------------------------
def _mib(n: int) -> str:
    return f"{n / (1 << 20):.2f} MiB" if n >= 1 << 20 else f"{n / 1024:.1f} KiB"


def print_one(r: dict[str, Any]) -> None:
    """One model's result as aligned lines."""
    lat, mem = r["latency_ms"], r["memory"]
    lines = [
        ("model", f"{r['model']} ({r['source']}), {r['parameters']:,} parameters"),
        ("input", f"batch {r['batch_size']} x {'x'.join(map(str, r['input_shape']))} on {r['device']}"),
        ("latency", f"mean {lat['mean']:.3f} ms, std {lat['std']:.3f}, p50 {lat['p50']:.3f}, p99 {lat['p99']:.3f}, "
                    f"min {lat['min']:.3f} ({r['iterations']} iterations)"),
        ("throughput", f"{r['throughput_samples_per_s']:,.1f} samples/s"),
        ("weights", f"{_mib(mem['parameters_bytes'])} parameters + {_mib(mem['buffers_bytes'])} buffers"),
        ("activations", f"{_mib(mem['activations_bytes'])} (sum of leaf-module outputs of one forward)"),
        ("peak forward", f"{_mib(mem['peak_forward_bytes'])} (measured by {mem['peak_method']})"),
    ]
    for key, value in lines:
        typer.echo(f"{key:<13} {value}")


def print_results(results: list[dict[str, Any]], title: str) -> None:
    """One table row per model (the rest of each result is in ``--json``)."""
    table = Table(title=title)
    for c in ("model", "params", "mean ms", "p99 ms", "samples/s", "weights", "peak fwd"):
        table.add_column(c, justify="left" if c == "model" else "right")
    for r in results:
        lat, mem = r["latency_ms"], r["memory"]
        table.add_row(r["model"], f"{r['parameters']:,}", f"{lat['mean']:.3f} x{r['relative_latency']:.2f}",
                      f"{lat['p99']:.3f}", f"{r['throughput_samples_per_s']:,.1f}",
                      _mib(mem["parameters_bytes"] + mem["buffers_bytes"]), _mib(mem["peak_forward_bytes"]))
    Console().print(table)


def print_inference(out: dict[str, Any]) -> None:
    """The batch-size scaling table and the best batch size."""
    table = Table(title=f"{out['model']} on {out['device']}, input {'x'.join(map(str, out['input_shape']))}")
    for c in ("batch", "mean ms", "p99 ms", "ms/sample", "samples/s", "peak fwd"):
        table.add_column(c, justify="right")
    for r in out["results"]:
        lat, mem = r["latency_ms"], r["memory"]
        best = " *" if r["batch_size"] == out["best_batch_size"] else ""
        table.add_row(f"{r['batch_size']}{best}", f"{lat['mean']:.3f}", f"{lat['p99']:.3f}",
                      f"{lat['mean'] / r['batch_size']:.4f}", f"{r['throughput_samples_per_s']:,.1f}",
                      _mib(mem["peak_forward_bytes"]))
    Console().print(table)
    typer.echo(f"best batch size: {out['best_batch_size']} "
               f"({out['best_throughput_samples_per_s']:,.1f} samples/s)")


# ----- commands ----------------------------------------------------------------------------------------
MODEL_ARG = typer.Argument(..., help="A registry model name (e.g. resnet18, lenet5) or an .axonml archive.")
SHAPE_OPT = typer.Option(None, "--input-shape", help=SHAPE_HELP)
ITERS_OPT = typer.Option(20, "--iters", min=1, help="Timed forward calls.")
WARMUP_OPT = typer.Option(3, "--warmup", min=0, help="Untimed forward calls first.")
DEVICE_OPT = typer.Option(None, "--device", help=DEVICE_HELP)
CLASSES_OPT = typer.Option(None, "--num-classes", min=1, help="num_classes of a registry model (default: its own).")
MODELS_ARG = typer.Argument(..., help="Two or more registry model names or .axonml archives.")


@bench_app.command("model")
@handle_errors
def bench_model(model: str = MODEL_ARG, input_shape: str | None = SHAPE_OPT,
                batch_size: int = typer.Option(1, "--batch-size", min=1, help="Samples per forward call."),
                iters: int = ITERS_OPT, warmup: int = WARMUP_OPT, device: str | None = DEVICE_OPT,
                num_classes: int | None = CLASSES_OPT, as_json: bool = JSON_OPTION) -> None:
    """Forward latency (mean, std, p50, p99), throughput and memory of one model."""
    shape = parse_shape(input_shape) if input_shape else None
    dev = resolve_device(device)
    net, info = load_model(model, num_classes)
    result = benchmark(net, info, shape, batch_size, iters, warmup, dev)
    if as_json:
        emit_json(result)
        return
    print_one(result)


@bench_app.command("inference")
@handle_errors
def bench_inference(model: str = MODEL_ARG, batch_sizes: str = typer.Option(
                        "1,8,32,128", "--batch-sizes", help="Comma-separated batch sizes to measure."),
                    input_shape: str | None = SHAPE_OPT, iters: int = ITERS_OPT, warmup: int = WARMUP_OPT,
                    device: str | None = DEVICE_OPT, num_classes: int | None = CLASSES_OPT,
                    as_json: bool = JSON_OPTION) -> None:
    """How latency and throughput scale with the batch size, and the batch size with the highest throughput."""
    sizes = parse_batch_sizes(batch_sizes)
    shape = parse_shape(input_shape) if input_shape else None
    dev = resolve_device(device)
    net, info = load_model(model, num_classes)
    results = [benchmark(net, info, shape, b, iters, warmup, dev) for b in sizes]
    best = max(results, key=lambda r: r["throughput_samples_per_s"])
    out = {"model": info["name"], "device": str(dev), "input_shape": results[0]["input_shape"],
           "results": results, "best_batch_size": best["batch_size"],
           "best_throughput_samples_per_s": best["throughput_samples_per_s"]}
    if as_json:
        emit_json(out)
        return
    print_inference(out)


@bench_app.command("compare")
@handle_errors
def bench_compare(models: list[str] = MODELS_ARG,
                  input_shape: str | None = SHAPE_OPT,
                  batch_size: int = typer.Option(1, "--batch-size", min=1, help="Samples per forward call."),
                  iters: int = ITERS_OPT, warmup: int = WARMUP_OPT, device: str | None = DEVICE_OPT,
                  num_classes: int | None = CLASSES_OPT, as_json: bool = JSON_OPTION) -> None:
    """Benchmark several models under the same settings, in one table (speed relative to the fastest)."""
    if len(models) < 2:
        raise typer.BadParameter("compare needs at least two models", param_hint="MODELS")
    shape = parse_shape(input_shape) if input_shape else None
    dev = resolve_device(device)
    results = []
    for spec in models:
        net, info = load_model(spec, num_classes)
        results.append(benchmark(net, info, shape, batch_size, iters, warmup, dev))
    fastest = min(r["latency_ms"]["mean"] for r in results)
    for r in results:
        r["relative_latency"] = r["latency_ms"]["mean"] / fastest if fastest > 0 else 1.0
    if as_json:
        emit_json({"device": str(dev), "batch_size": batch_size, "results": results})
        return
    print_results(results, f"{len(results)} models on {dev}, batch {batch_size}, {iters} iterations "
                           "(mean: x time of the fastest)")


@bench_app.command("hardware")
@handle_errors
def bench_hardware(size_mb: int = typer.Option(256, "--size-mb", min=1, help="MiB copied by the bandwidth test."),
                   matmul_size: int = typer.Option(1024, "--matmul-size", min=16, help="Side of the CPU matmuls."),
                   repeats: int = typer.Option(5, "--repeats", min=1, help="Repetitions; the best one is reported."),
                   gpu_size: int = typer.Option(4096, "--gpu-size", min=64, help="Side of the GPU matmuls."),
                   as_json: bool = JSON_OPTION) -> None:
    """This machine: CPU model and cores, memory, copy bandwidth, NumPy matmul GFLOP/s, and GPUs when present."""
    report = hardware_report(size_mb, matmul_size, repeats, gpu_size)
    if as_json:
        emit_json(report)
        return
    print_hardware(report)

