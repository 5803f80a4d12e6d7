"""What ``axonml bench hardware`` measures: the CPU and memory as the OS describes them, then timed NumPy and GPU work.

Bandwidth is the best of ``repeats`` copies of a ``size_mb`` array (``np.copyto``),
counted as bytes read plus bytes written. Matmul GFLOP/s is ``2 n^3`` over the
best of ``repeats`` NumPy products of two ``n x n`` matrices (through whatever BLAS
NumPy was built with, on all the threads it uses). The GPU part runs
:func:`axonml.cli.gpu.measure_gpu` on each CUDA device.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import typer

from ..backend import gpu_info

MIB = 1 << 20
GIB = 1 << 30


def _proc_cpuinfo() -> tuple[str | None, int | None]:
    """(model name, physical core count) from /proc/cpuinfo on Linux; (None, None) elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, None
    model, cores = None, set()
    for block in text.split("\n\n"):
        fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in block.splitlines())}
        model = model or fields.get("model name") or fields.get("Model") or fields.get("cpu model")
        if "physical id" in fields and "core id" in fields:
            cores.add((fields["physical id"], fields["core id"]))
    return model, len(cores) or None


def _memory_total() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not on this OS
        return None


def _blas() -> str | None:
    try:
        config: Any = np.show_config(mode="dicts")  # type: ignore[call-arg]
        return str(config["Build Dependencies"]["blas"]["name"])
    except Exception:  # older NumPy prints instead of returning; the name is optional
        return None


def cpu_info() -> dict[str, Any]:
    """CPU model, architecture, core counts, total memory, OS and NumPy's BLAS."""
    model, physical = _proc_cpuinfo()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": model or platform.processor() or platform.machine() or "unknown",
        "architecture": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "usable_cores": usable,
        "memory_total_bytes": _memory_total(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas(),
    }


def _best(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: pages faulted in, BLAS threads started
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def copy_bandwidth_gbs(size_mb: int, repeats: int) -> float:
    """GB/s of ``np.copyto`` on ``size_mb`` MiB (read + write bytes), best of ``repeats``."""
    src = np.ones(size_mb * MIB // 8, np.float64)
    dst = np.empty_like(src)
    return 2 * src.nbytes / _best(lambda: np.copyto(dst, src), repeats) / 1e9


def matmul_gflops(n: int, dtype: type[np.floating[Any]], repeats: int) -> float:
    """GFLOP/s of an ``n x n`` NumPy matmul in ``dtype``, best of ``repeats``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    return 2 * n**3 / _best(lambda: a @ b, repeats) / 1e9


def gpu_report(size: int, repeats: int) -> dict[str, Any]:
    """Each CUDA device's name, memory and measured throughput; or why there is none."""
    count, reason = gpu_info.cuda_status()
    if count == 0:
        return {"available": False, "reason": reason, "devices": []}
    from .gpu import measure_gpu

    devices = []
    for i in range(count):
        p = gpu_info.device_properties(i)
        devices.append({"index": i, "name": p["name"], "total_memory_bytes": p["total_memory_bytes"],
                        "compute_capability": p["compute_capability"], **measure_gpu(i, size, repeats)})
    return {"available": True, "reason": None, "devices": devices}


def hardware_report(size_mb: int, matmul_size: int, repeats: int, gpu_size: int) -> dict[str, Any]:
    """Everything ``bench hardware`` prints, measured now."""
    return {
        "cpu": cpu_info(),
        "memory_bandwidth": {"copy_gbs": copy_bandwidth_gbs(size_mb, repeats), "size_mb": size_mb,
                             "counted": "read + write bytes"},
        "matmul": {"size": matmul_size,
                   "float32_gflops": matmul_gflops(matmul_size, np.float32, repeats),
                   "float64_gflops": matmul_gflops(matmul_size, np.float64, repeats)},
        "gpu": gpu_report(gpu_size, repeats),
    }


def print_hardware(r: dict[str, Any]) -> None:
    """The report as aligned lines."""
    cpu, bw, mm, gpu = r["cpu"], r["memory_bandwidth"], r["matmul"], r["gpu"]
    mem = "-" if cpu["memory_total_bytes"] is None else f"{cpu['memory_total_bytes'] / GIB:.1f} GiB"
    lines = [
        ("CPU", f"{cpu['model']} ({cpu['architecture']})"),
        ("cores", f"{cpu['logical_cores']} logical, {cpu['physical_cores'] or '-'} physical, "
                  f"{cpu['usable_cores']} usable by this process"),
        ("memory", mem),
        ("NumPy", f"{cpu['numpy']} (BLAS: {cpu['blas'] or 'unknown'})"),
        ("copy bandwidth", f"{bw['copy_gbs']:.2f} GB/s ({bw['size_mb']} MiB, read + write)"),
        (f"matmul {mm['size']}^3 float32", f"{mm['float32_gflops']:.1f} GFLOP/s"),
        (f"matmul {mm['size']}^3 float64", f"{mm['float64_gflops']:.1f} GFLOP/s"),
    ]
    if not gpu["available"]:
        lines.append(("GPU", f"none ({gpu['reason']})"))
    for d in gpu["devices"]:
        lines.append((f"GPU {d['index']}", f"{d['name']}, {d['total_memory_bytes'] / GIB:.1f} GiB, "
                                           f"compute {d['compute_capability']}"))
        lines.append((f"GPU {d['index']} matmul", f"{d['matmul_float32_tflops']:.1f} TFLOP/s float32, "
                                                  f"{d['matmul_float16_tflops']:.1f} TFLOP/s float16"))
        lines.append((f"GPU {d['index']} bandwidth", f"{d['device_copy_gbs']:.0f} GB/s copy, "
                                                     f"{d['host_to_device_gbs']:.1f} GB/s host->device"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        typer.echo(f"{key:<{width}}  {value}")
