"""What the machine says about its NVIDIA GPUs: CUDA runtime properties (through CuPy) and NVML status.

* CUDA side (:func:`cuda_status`, :func:`device_properties`, :func:`memory_info`,
  :func:`runtime_versions`): CuPy's ``cupy.cuda.runtime``; device indices are
  CUDA's (after ``CUDA_VISIBLE_DEVICES``).
* NVML side (:func:`nvml_devices`, :func:`nvml_processes`): utilization,
  temperature, power and per-process memory, through ``pynvml`` when it is
  installed, else ``nvidia-smi --query-...`` when it is on ``PATH``, else
  ``None``. NVML numbers GPUs its own way, so each record carries its PCI bus
  id; :func:`pci_key` turns either side's bus id into one comparable key.

CuPy is imported inside functions only (``import axonml`` must never load it).
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
from types import ModuleType
from typing import Any

SMI_GPU_FIELDS = ("index", "pci.bus_id", "name", "utilization.gpu", "utilization.memory", "memory.total",
                  "memory.used", "memory.free", "temperature.gpu", "power.draw", "power.limit")
SMI_APP_FIELDS = ("pid", "process_name", "used_memory", "gpu_bus_id")
MIB = 1 << 20


def _cupy() -> tuple[ModuleType | None, str | None]:
    try:
        return importlib.import_module("cupy"), None
    except ImportError as e:
        return None, f"CuPy is not installed ({e.msg}); pip install 'axonml[cuda]'"
    except Exception as e:  # a broken CUDA install makes CuPy's import itself fail
        return None, f"CuPy failed to import: {type(e).__name__}: {e}"


def cuda_status() -> tuple[int, str | None]:
    """``(device_count, None)`` when CUDA devices are usable, else ``(0, the reason in a few words)``."""
    cp, reason = _cupy()
    if cp is None:
        return 0, reason
    try:
        count = int(cp.cuda.runtime.getDeviceCount())
    except Exception as e:  # CUDARuntimeError without a driver or device
        return 0, f"the CUDA runtime reports an error: {e}"
    if count == 0:
        return 0, "the CUDA runtime sees 0 devices (check CUDA_VISIBLE_DEVICES)"
    return count, None


def _require() -> Any:
    count, reason = cuda_status()
    if count == 0:
        raise RuntimeError(f"no CUDA GPU available ({reason})")
    cp, _ = _cupy()
    return cp


def _check_index(cp: Any, index: int) -> None:
    count = int(cp.cuda.runtime.getDeviceCount())
    if not 0 <= index < count:
        raise ValueError(f"GPU index {index} is out of range: {count} device(s), indices 0..{count - 1}")


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def pci_key(bus_id: str | bytes | None) -> tuple[int, int, int, int] | None:
    """``(domain, bus, device, function)`` from ``"0000:3b:00.0"`` or NVML's ``"00000000:3B:00.0"``; else None."""
    if bus_id is None:
        return None
    text = _text(bus_id).strip()
    try:
        domain, bus, rest = text.split(":")
        dev, func = rest.split(".")
        return int(domain, 16), int(bus, 16), int(dev, 16), int(func, 16)
    except ValueError:
        return None


def device_properties(index: int) -> dict[str, Any]:
    """The CUDA properties of device ``index`` that matter to a user, with units in the key names.

    ``peak_memory_bandwidth_gbs`` is the theoretical DRAM bandwidth (2 transfers per
    memory clock x bus width); ``None`` where this CUDA version no longer reports clocks.
    """
    cp = _require()
    _check_index(cp, index)
    p = cp.cuda.runtime.getDeviceProperties(index)
    mem_clock_khz = p.get("memoryClockRate")
    bus_bits = p.get("memoryBusWidth")
    bandwidth = 2 * mem_clock_khz * 1e3 * bus_bits / 8 / 1e9 if mem_clock_khz and bus_bits else None
    try:
        bus_id: str | None = str(cp.cuda.runtime.deviceGetPCIBusId(index))
    except Exception:  # older CuPy: build it from the numeric fields
        bus_id = f"{p.get('pciDomainID', 0):04x}:{p.get('pciBusID', 0):02x}:{p.get('pciDeviceID', 0):02x}.0"
    uuid = p.get("uuid")
    return {
        "index": index,
        "name": _text(p["name"]),
        "compute_capability": f"{p['major']}.{p['minor']}",
        "total_memory_bytes": int(p["totalGlobalMem"]),
        "multiprocessors": int(p["multiProcessorCount"]),
        "clock_mhz": p["clockRate"] / 1e3 if p.get("clockRate") else None,
        "memory_clock_mhz": mem_clock_khz / 1e3 if mem_clock_khz else None,
        "memory_bus_width_bits": bus_bits,
        "peak_memory_bandwidth_gbs": bandwidth,
        "l2_cache_bytes": p.get("l2CacheSize"),
        "shared_memory_per_block_bytes": p.get("sharedMemPerBlock"),
        "max_threads_per_block": p.get("maxThreadsPerBlock"),
        "ecc_enabled": bool(p["ECCEnabled"]) if "ECCEnabled" in p else None,
        "pci_bus_id": bus_id,
        "uuid": uuid.hex() if isinstance(uuid, bytes | bytearray) else None,
    }


def memory_info(index: int) -> tuple[int, int]:
    """``(free_bytes, total_bytes)`` of device ``index`` as the driver reports it (all processes)."""
    cp = _require()
    _check_index(cp, index)
    with cp.cuda.Device(index):
        free, total = cp.cuda.runtime.memGetInfo()
    return int(free), int(total)


def _version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"  # CUDA encodes 12.4 as 12040


def runtime_versions() -> dict[str, str]:
    """The CUDA driver and runtime versions (``"12.4"``) and CuPy's version."""
    cp = _require()
    return {
        "driver": _version(int(cp.cuda.runtime.driverGetVersion())),
        "runtime": _version(int(cp.cuda.runtime.runtimeGetVersion())),
        "cupy": str(cp.__version__),
    }


# ----- NVML --------------------------------------------------------------------------------------------
def _pynvml() -> ModuleType | None:
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


def _number(field: str) -> float | None:
    """A value of nvidia-smi's CSV (``--format=csv,noheader,nounits``); ``None`` for ``[N/A]`` and the like."""
    field = field.strip()
    try:
        return float(field)
    except ValueError:
        return None


def _run_smi(args: list[str]) -> list[list[str]] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [[f.strip() for f in line.split(",")] for line in out.splitlines() if line.strip()]


def _smi_devices() -> list[dict[str, Any]] | None:
    rows = _run_smi([f"--query-gpu={','.join(SMI_GPU_FIELDS)}", "--format=csv,noheader,nounits"])
    if rows is None:
        return None
    out = []
    for row in rows:
        if len(row) != len(SMI_GPU_FIELDS):
            continue
        v = dict(zip(SMI_GPU_FIELDS, row))
        mib = {k: _number(v[k]) for k in ("memory.total", "memory.used", "memory.free")}
        out.append({
            "nvml_index": int(v["index"]), "pci_bus_id": v["pci.bus_id"], "name": v["name"],
            "utilization_gpu_percent": _number(v["utilization.gpu"]),
            "utilization_memory_percent": _number(v["utilization.memory"]),
            **{f"{k.replace('.', '_')}_bytes": None if m is None else int(m * MIB) for k, m in mib.items()},
            "temperature_c": _number(v["temperature.gpu"]),
            "power_w": _number(v["power.draw"]), "power_limit_w": _number(v["power.limit"]),
            "source": "nvidia-smi",
        })
    return out


def _nvml_call(nv: Any, fn: str, *args: Any) -> Any:
    """One NVML query; ``None`` when this GPU does not support it (NVMLError_NotSupported and kin)."""
    try:
        return getattr(nv, fn)(*args)
    except nv.NVMLError:
        return None


def _pynvml_devices(nv: Any) -> list[dict[str, Any]]:
    out = []
    for i in range(int(nv.nvmlDeviceGetCount())):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        util = _nvml_call(nv, "nvmlDeviceGetUtilizationRates", h)
        mem = _nvml_call(nv, "nvmlDeviceGetMemoryInfo", h)
        pci = _nvml_call(nv, "nvmlDeviceGetPciInfo", h)
        power = _nvml_call(nv, "nvmlDeviceGetPowerUsage", h)  # milliwatts
        limit = _nvml_call(nv, "nvmlDeviceGetEnforcedPowerLimit", h)
        out.append({
            "nvml_index": i, "pci_bus_id": None if pci is None else _text(pci.busId),
            "name": _text(nv.nvmlDeviceGetName(h)),
            "utilization_gpu_percent": None if util is None else float(util.gpu),
            "utilization_memory_percent": None if util is None else float(util.memory),
            "memory_total_bytes": None if mem is None else int(mem.total),
            "memory_used_bytes": None if mem is None else int(mem.used),
            "memory_free_bytes": None if mem is None else int(mem.free),
            "temperature_c": _nvml_call(nv, "nvmlDeviceGetTemperature", h, nv.NVML_TEMPERATURE_GPU),
            "power_w": None if power is None else power / 1e3,
            "power_limit_w": None if limit is None else limit / 1e3,
            "source": "pynvml",
        })
    return out


def _pynvml_processes(nv: Any) -> list[dict[str, Any]]:
    out = []
    for i in range(int(nv.nvmlDeviceGetCount())):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        pci = _nvml_call(nv, "nvmlDeviceGetPciInfo", h)
        for p in _nvml_call(nv, "nvmlDeviceGetComputeRunningProcesses", h) or []:
            used = getattr(p, "usedGpuMemory", None)
            try:
                name = _text(nv.nvmlSystemGetProcessName(p.pid))
            except nv.NVMLError:
                name = ""
            out.append({"pid": int(p.pid), "name": name, "used_memory_bytes": None if used is None else int(used),
                        "pci_bus_id": None if pci is None else _text(pci.busId), "source": "pynvml"})
    return out


def _with_pynvml(fn: Any) -> list[dict[str, Any]] | None:
    nv = _pynvml()
    if nv is None:
        return None
    try:
        nv.nvmlInit()
    except Exception:  # no driver: fall through to nvidia-smi (which will fail the same way, cleanly)
        return None
    try:
        return list(fn(nv))
    finally:
        nv.nvmlShutdown()


def nvml_devices() -> list[dict[str, Any]] | None:
    """Per GPU: utilization, memory, temperature, power (``None`` fields where unsupported); ``None`` without NVML."""
    found = _with_pynvml(_pynvml_devices)
    return found if found is not None else _smi_devices()


def nvml_processes() -> list[dict[str, Any]] | None:
    """The compute processes on every GPU (pid, name, used memory, bus id); ``None`` without NVML."""
    found = _with_pynvml(_pynvml_processes)
    if found is not None:
        return found
    rows = _run_smi([f"--query-compute-apps={','.join(SMI_APP_FIELDS)}", "--format=csv,noheader,nounits"])
    if rows is None:
        return None
    out = []
    for row in rows:
        if len(row) != len(SMI_APP_FIELDS):
            continue
        used = _number(row[2])
        out.append({"pid": int(row[0]), "name": row[1], "used_memory_bytes": None if used is None else int(used * MIB),
                    "pci_bus_id": row[3], "source": "nvidia-smi"})
    return out
