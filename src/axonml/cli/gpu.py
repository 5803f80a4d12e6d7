"""``axonml gpu list|info|status|memory|bench|select``: the NVIDIA GPUs axonml can use.

Devices are CUDA's, seen through CuPy (indices after ``CUDA_VISIBLE_DEVICES``);
utilization, temperature, power and per-process memory come from NVML (``pynvml``
when installed, else ``nvidia-smi``), matched to CUDA devices by PCI bus id.
Without a usable GPU every subcommand prints one line, ``no CUDA GPU available
(reason)``, and exits 1. ``select N`` saves ``default_device: "cuda:N"`` in
``.axonml/config.json`` of the current folder, which ``train`` and ``bench`` use
when no ``--device`` is given.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from ..backend import gpu_info
from ._app import JSON_OPTION, app, emit_json, fail, handle_errors
from ._config import DEFAULT_DEVICE, config_path, get_default_device, update_config

gpu_app = typer.Typer(
    name="gpu",
    help="List, inspect, monitor, benchmark and select NVIDIA GPUs (through CuPy and NVML).",
    no_args_is_help=True,
)
app.add_typer(gpu_app, name="gpu")

GIB = 1 << 30
MIB = 1 << 20


def require_gpus() -> int:
    """The number of usable CUDA devices; stops with ``no CUDA GPU available (reason)`` when there are none."""
    count, reason = gpu_info.cuda_status()
    if count == 0:
        seen = gpu_info.nvml_devices()
        extra = f"; NVML sees {len(seen)} GPU(s) that CuPy cannot use" if seen else ""
        fail(f"no CUDA GPU available ({reason}{extra})")
    return count


def _indices(index: int | None, count: int) -> list[int]:
    if index is None:
        return list(range(count))
    if not 0 <= index < count:
        fail(f"GPU {index} does not exist: {count} CUDA device(s), indices 0..{count - 1}")
    return [index]


def _gib(n: float | None) -> str:
    return "-" if n is None else f"{n / GIB:.2f} GiB"


def _fmt(value: Any, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def _print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*r)
    Console().print(table)


def _by_cuda_index(records: list[dict[str, Any]] | None, props: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """NVML records keyed by the CUDA index of the same GPU (matched by PCI bus id)."""
    if not records:
        return {}
    by_bus = {gpu_info.pci_key(r.get("pci_bus_id")): r for r in records}
    return {p["index"]: by_bus[k] for p in props if (k := gpu_info.pci_key(p["pci_bus_id"])) in by_bus}


def _memory(index: int, nvml: dict[str, Any] | None) -> tuple[int, int, str]:
    """(free, total, source) bytes: NVML's when it knows the GPU (no CUDA context is created), else CUDA's."""
    if nvml and nvml.get("memory_free_bytes") is not None and nvml.get("memory_total_bytes") is not None:
        return int(nvml["memory_free_bytes"]), int(nvml["memory_total_bytes"]), str(nvml["source"])
    free, total = gpu_info.memory_info(index)
    return free, total, "cuda"


# ----- list / info ---------------------------------------------------------------------------------------
@gpu_app.command("list")
@handle_errors
def list_gpus(as_json: bool = JSON_OPTION) -> None:
    """One line per CUDA device: index, name, memory, compute capability, SMs; * marks the selected default."""
    count = require_gpus()
    default = get_default_device()
    props = [gpu_info.device_properties(i) for i in range(count)]
    for p in props:
        p["default"] = default == f"cuda:{p['index']}"
    if as_json:
        emit_json(props)
        return
    _print_table(f"{count} CUDA device(s)", ["", "index", "name", "memory", "compute capability", "SMs"], [
        ["*" if p["default"] else "", str(p["index"]), p["name"], _gib(p["total_memory_bytes"]),
         p["compute_capability"], str(p["multiprocessors"])] for p in props
    ])


@gpu_app.command("info")
@handle_errors
def info(index: int | None = typer.Argument(None, help="CUDA device index (default: every device)."),
         as_json: bool = JSON_OPTION) -> None:
    """Every property of a device: memory, clocks, bus width, peak bandwidth, caches, PCI id, and the CUDA versions."""
    count = require_gpus()
    versions = gpu_info.runtime_versions()
    devices = []
    for i in _indices(index, count):
        p = gpu_info.device_properties(i)
        p["free_memory_bytes"], _ = gpu_info.memory_info(i)
        devices.append(p)
    if as_json:
        emit_json({"versions": versions, "devices": devices})
        return
    typer.echo(f"CUDA driver {versions['driver']}, runtime {versions['runtime']}, CuPy {versions['cupy']}")
    for p in devices:
        typer.echo(f"\ncuda:{p['index']}  {p['name']}")
        for key, value in p.items():
            if key not in ("index", "name"):
                shown = _gib(value) if key.endswith("memory_bytes") else _fmt(value, digits=1)
                typer.echo(f"  {key:32s} {shown}")


# ----- status / memory -----------------------------------------------------------------------------------
@gpu_app.command("status")
@handle_errors
def status(as_json: bool = JSON_OPTION) -> None:
    """Live state of every device: utilization, memory used, temperature, power (NVML; memory only without it)."""
    count = require_gpus()
    props = [gpu_info.device_properties(i) for i in range(count)]
    nvml = _by_cuda_index(gpu_info.nvml_devices(), props)
    rows = []
    for p in props:
        i = p["index"]
        n = nvml.get(i, {})
        free, total, source = _memory(i, n)
        rows.append({
            "index": i, "name": p["name"], "memory_used_bytes": total - free, "memory_total_bytes": total,
            "memory_source": source,
            "utilization_gpu_percent": n.get("utilization_gpu_percent"),
            "utilization_memory_percent": n.get("utilization_memory_percent"),
            "temperature_c": n.get("temperature_c"), "power_w": n.get("power_w"),
            "power_limit_w": n.get("power_limit_w"), "nvml_source": n.get("source"),
        })
    if as_json:
        emit_json(rows)
        return
    _print_table("GPU status", ["index", "name", "util", "memory used", "temp", "power"], [
        [str(r["index"]), r["name"], _fmt(r["utilization_gpu_percent"], "%"),
         f"{_gib(r['memory_used_bytes'])} / {_gib(r['memory_total_bytes'])}", _fmt(r["temperature_c"], " C"),
         f"{_fmt(r['power_w'], ' W')} / {_fmt(r['power_limit_w'], ' W')}"] for r in rows
    ])
    if not nvml:
        typer.echo("utilization, temperature and power need NVML: pip install nvidia-ml-py, or nvidia-smi on PATH")


@gpu_app.command("memory")
@handle_errors
def memory(index: int | None = typer.Argument(None, help="CUDA device index (default: every device)."),
           as_json: bool = JSON_OPTION) -> None:
    """Device memory: total, used, free (all processes), and the processes holding it (through NVML)."""
    count = require_gpus()
    props = [gpu_info.device_properties(i) for i in _indices(index, count)]
    nvml = _by_cuda_index(gpu_info.nvml_devices(), props)
    procs = gpu_info.nvml_processes()
    out = []
    for p in props:
        free, total, source = _memory(p["index"], nvml.get(p["index"]))
        key = gpu_info.pci_key(p["pci_bus_id"])
        mine = None if procs is None else [q for q in procs if gpu_info.pci_key(q["pci_bus_id"]) == key]
        out.append({"index": p["index"], "name": p["name"], "total_bytes": total, "used_bytes": total - free,
                    "free_bytes": free, "source": source, "processes": mine})
    if as_json:
        emit_json(out)
        return
    for d in out:
        typer.echo(f"cuda:{d['index']}  {d['name']}: {_gib(d['used_bytes'])} used, {_gib(d['free_bytes'])} free "
                   f"of {_gib(d['total_bytes'])}")
        if d["processes"] is None:
            typer.echo("  processes: unknown (needs NVML: pip install nvidia-ml-py, or nvidia-smi on PATH)")
        for q in d["processes"] or []:
            used = "-" if q["used_memory_bytes"] is None else f"{q['used_memory_bytes'] / MIB:.0f} MiB"
            typer.echo(f"  pid {q['pid']:>8}  {used:>10}  {q['name']}")


# ----- bench ---------------------------------------------------------------------------------------------
def _timed(fn: Callable[[], Any], iters: int, sync: Callable[[], None]) -> float:
    """Seconds per call of ``fn``: one warm-up call (kernels, pool growth), then ``iters`` calls."""
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - t0) / iters


def measure_gpu(index: int, size: int = 4096, iters: int = 10, copy_mb: int = 256) -> dict[str, float]:
    """Measured throughput of CUDA device ``index`` through axonml tensors.

    Matmul TFLOP/s (``size``-square float32 and float16, 2 size^3 flops each),
    device copy bandwidth (read + write of ``copy_mb`` MiB, GB/s) and host <-> device
    transfer rates (GB/s, from pageable host memory).
    """
    from ..backend.cuda import synchronize
    from ..core import dtypes
    from ..core.creation import empty, from_numpy
    from ..core.grad_mode import no_grad
    from ..ops.random import randn

    dev = f"cuda:{index}"
    sync = lambda: synchronize(index)
    flops = 2 * size**3
    out: dict[str, float] = {}
    with no_grad():
        for name, dtype in (("float32", dtypes.float32), ("float16", dtypes.float16)):
            a, b = randn(size, size, device=dev).to(dtype), randn(size, size, device=dev).to(dtype)
            out[f"matmul_{name}_tflops"] = flops / _timed(functools.partial(a.matmul, b), iters, sync) / 1e12
        n = copy_mb * MIB // 4  # float32 elements
        x = empty(n, device=dev)
        out["device_copy_gbs"] = 2 * n * 4 / _timed(x.clone, iters, sync) / 1e9
        h = from_numpy(np.ones(n, np.float32))
        out["host_to_device_gbs"] = n * 4 / _timed(functools.partial(h.to, dev), iters, sync) / 1e9
        out["device_to_host_gbs"] = n * 4 / _timed(x.cpu, iters, sync) / 1e9
    return out


@gpu_app.command("bench")
@handle_errors
def bench(index: int | None = typer.Argument(None, help="CUDA device index (default: every device)."),
          size: int = typer.Option(4096, "--size", min=64, help="Side of the square matrices multiplied."),
          iters: int = typer.Option(10, "--iters", min=1, help="Timed repetitions of each measurement."),
          copy_mb: int = typer.Option(256, "--copy-mb", min=1, help="MiB moved by the copy and transfer tests."),
          as_json: bool = JSON_OPTION) -> None:
    """Measure matmul TFLOP/s (float32, float16), device copy bandwidth and host<->device transfer rates."""
    count = require_gpus()
    results = []
    for i in _indices(index, count):
        r: dict[str, Any] = {"index": i, "name": gpu_info.device_properties(i)["name"]}
        r.update(measure_gpu(i, size, iters, copy_mb))
        results.append(r)
    if as_json:
        emit_json(results)
        return
    _print_table(f"GPU benchmark ({size}x{size} matmul, {copy_mb} MiB copies)",
                 ["index", "name", "fp32 TFLOP/s", "fp16 TFLOP/s", "copy GB/s", "H2D GB/s", "D2H GB/s"], [
                     [str(r["index"]), r["name"], f"{r['matmul_float32_tflops']:.1f}",
                      f"{r['matmul_float16_tflops']:.1f}", f"{r['device_copy_gbs']:.0f}",
                      f"{r['host_to_device_gbs']:.1f}", f"{r['device_to_host_gbs']:.1f}"] for r in results
                 ])


# ----- select --------------------------------------------------------------------------------------------
def _device_name(index: int) -> str | None:
    try:
        return str(gpu_info.device_properties(index)["name"])
    except Exception:  # the name is only decoration on the confirmation line
        return None


@gpu_app.command("select")
@handle_errors
def select(index: int = typer.Argument(..., help="CUDA device index to use by default."),
           as_json: bool = JSON_OPTION) -> None:
    """Make cuda:N the default device of this folder (saved in .axonml/config.json; train and bench use it)."""
    count = require_gpus()
    _indices(index, count)
    device = f"cuda:{index}"
    update_config(**{DEFAULT_DEVICE: device})
    if as_json:
        emit_json({DEFAULT_DEVICE: device, "config": str(config_path())})
        return
    name = _device_name(index)
    typer.echo(f"default device: {device}{f' ({name})' if name else ''}, saved in {config_path()}")
