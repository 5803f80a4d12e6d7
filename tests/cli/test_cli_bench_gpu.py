"""``axonml bench model|inference|compare|hardware`` and ``axonml gpu ...``, and the folder config they share."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import axonml as ax
from axonml import nn
from axonml.backend import gpu_info
from axonml.backend.device import Device
from axonml.cli import _config
from axonml.cli.bench import benchmark
from axonml.cli.main import app
from axonml.io import ModelArchive
from axonml.vision.models import get_model

NONDIFF_NAMES: list[str] = []

CLI = [sys.executable, "-m", "axonml.cli.main"]
GPU_COMMANDS = [["list"], ["info"], ["info", "0"], ["status"], ["memory"], ["bench"], ["select", "0"]]
HAS_GPU = ax.cuda.is_available()
no_gpu_only = pytest.mark.skipif(HAS_GPU, reason="checks the behaviour without a CUDA GPU")


def _json(args: list[str]) -> object:
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


# ----- the folder config --------------------------------------------------------------------------------
def test_config_round_trip_and_errors(tmp_path: Path) -> None:
    assert _config.load_config(tmp_path) == {} and _config.get_default_device(tmp_path) is None
    _config.save_config({"other": [1, 2]}, tmp_path)
    assert _config.update_config(tmp_path, default_device="cuda:1") == {"other": [1, 2], "default_device": "cuda:1"}
    assert _config.get_default_device(tmp_path) == "cuda:1"
    assert json.loads((tmp_path / ".axonml" / "config.json").read_text())["other"] == [1, 2]
    assert [p.name for p in (tmp_path / ".axonml").iterdir()] == ["config.json"]  # no temporary file left
    (tmp_path / ".axonml" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        _config.load_config(tmp_path)
    (tmp_path / ".axonml" / "config.json").write_text('["a list"]')
    with pytest.raises(ValueError, match="JSON object"):
        _config.load_config(tmp_path)
    with pytest.raises(TypeError):
        _config.save_config({"bad": object()}, tmp_path)
    assert (tmp_path / ".axonml" / "config.json").read_text() == '["a list"]'  # a failed save leaves the file


# ----- gpu without a GPU --------------------------------------------------------------------------------
@no_gpu_only
@pytest.mark.parametrize("args", GPU_COMMANDS, ids=" ".join)
def test_gpu_commands_without_a_gpu_say_so_in_one_line(args: list[str], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["gpu", *args])
    assert r.exit_code == 1
    assert r.stderr.startswith("error: no CUDA GPU available (") and len(r.stderr.splitlines()) == 1
    assert r.stdout == "" and not (tmp_path / ".axonml").exists()  # select wrote nothing


@no_gpu_only
def test_gpu_in_a_subprocess_without_a_gpu(tmp_path: Path) -> None:
    r = subprocess.run([*CLI, "gpu", "select", "0"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1 and "no CUDA GPU available" in r.stderr and not (tmp_path / ".axonml").exists()
    r = subprocess.run([*CLI, "gpu", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and all(c in r.stdout for c in ("list", "info", "status", "memory", "bench", "select"))
    assert subprocess.run([*CLI, "gpu", "select"], capture_output=True, text=True).returncode == 2


def test_select_validates_the_index_and_persists_the_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gpu_info, "cuda_status", lambda: (2, None))  # a two-GPU machine, as CuPy would report it
    _config.save_config({"keep": True})
    runner = CliRunner()
    r = runner.invoke(app, ["gpu", "select", "1"])
    assert r.exit_code == 0, r.output
    assert "cuda:1" in r.stdout and ".axonml/config.json" in r.stdout
    assert _config.load_config() == {"keep": True, "default_device": "cuda:1"}
    r = runner.invoke(app, ["gpu", "select", "2"])
    assert r.exit_code == 1 and "indices 0..1" in r.stderr
    assert _config.get_default_device() == "cuda:1"  # unchanged
    assert json.loads(runner.invoke(app, ["gpu", "select", "0", "--json"]).stdout)["default_device"] == "cuda:0"


@no_gpu_only
def test_bench_honours_the_selected_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _config.save_config({"default_device": "cuda:0"})
    r = CliRunner().invoke(app, ["bench", "model", "mlp", "--iters", "1"])
    assert r.exit_code == 1 and "no CUDA GPU available" in r.stderr
    r = CliRunner().invoke(app, ["bench", "model", "mlp", "--iters", "1", "--device", "cpu", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["device"] == "cpu"


# ----- NVML through a stand-in nvidia-smi ---------------------------------------------------------------
SMI = """#!/bin/sh
case "$1" in
  --query-gpu=*) echo "0, 00000000:3B:00.0, NVIDIA H100 80GB HBM3, 37, 12, 81559, 1024, 80535, 41, 71.50, 700.00"
                 echo "1, 00000000:5E:00.0, NVIDIA H100 80GB HBM3, [N/A], [N/A], 81559, 0, 81559, 35, [N/A], 700.00";;
  --query-compute-apps=*) echo "4242, python, 1000, 00000000:3B:00.0";;
  *) exit 3;;
esac
"""


def test_nvml_through_nvidia_smi_is_parsed_and_matched_by_bus_id(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if gpu_info._pynvml() is not None:
        pytest.skip("pynvml is installed: it is used before nvidia-smi")
    smi = tmp_path / "nvidia-smi"
    smi.write_text(SMI)
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    devices = gpu_info.nvml_devices()
    assert devices is not None and len(devices) == 2
    d0, d1 = devices
    assert d0["name"] == "NVIDIA H100 80GB HBM3" and d0["utilization_gpu_percent"] == 37.0
    assert d0["memory_used_bytes"] == 1024 << 20 and d0["power_w"] == 71.5 and d0["temperature_c"] == 41.0
    assert d1["utilization_gpu_percent"] is None and d1["power_w"] is None  # [N/A] fields
    procs = gpu_info.nvml_processes()
    assert procs == [{"pid": 4242, "name": "python", "used_memory_bytes": 1000 << 20,
                      "pci_bus_id": "00000000:3B:00.0", "source": "nvidia-smi"}]
    # CUDA writes the same bus id as 0000:3b:00.0
    assert gpu_info.pci_key("0000:3b:00.0") == gpu_info.pci_key(d0["pci_bus_id"]) == (0, 0x3B, 0, 0)
    assert gpu_info.pci_key("garbage") is None
    if not HAS_GPU:  # the one-line refusal names what NVML sees
        r = CliRunner().invoke(app, ["gpu", "list"])
        assert r.exit_code == 1 and "NVML sees 2 GPU(s) that CuPy cannot use" in r.stderr


def _fake_cuda_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two CUDA devices as CuPy would describe them; CUDA's order differs from NVML's (index 0 is bus 5e)."""
    buses = ["0000:5e:00.0", "0000:3b:00.0"]

    def props(i: int) -> dict[str, object]:
        return {"index": i, "name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0",
                "total_memory_bytes": 81559 << 20, "multiprocessors": 132, "pci_bus_id": buses[i]}

    monkeypatch.setattr(gpu_info, "cuda_status", lambda: (2, None))
    monkeypatch.setattr(gpu_info, "device_properties", props)
    monkeypatch.setattr(gpu_info, "memory_info", lambda i: (80000 << 20, 81559 << 20))
    monkeypatch.setattr(gpu_info, "runtime_versions", lambda: {"driver": "12.4", "runtime": "12.4", "cupy": "13"})


def test_gpu_commands_match_nvml_records_to_cuda_devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if gpu_info._pynvml() is not None:
        pytest.skip("pynvml is installed: it is used before nvidia-smi")
    smi = tmp_path / "nvidia-smi"
    smi.write_text(SMI)
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    _fake_cuda_side(monkeypatch)
    _config.save_config({"default_device": "cuda:1"})
    listed = _json(["gpu", "list", "--json"])
    assert [d["default"] for d in listed] == [False, True]
    r = CliRunner().invoke(app, ["gpu", "list"])
    assert r.exit_code == 0 and "NVIDIA H100" in r.stdout and "*" in r.stdout
    status = _json(["gpu", "status", "--json"])
    assert status[0]["utilization_gpu_percent"] is None and status[1]["utilization_gpu_percent"] == 37.0
    assert status[1]["memory_used_bytes"] == 1024 << 20 and status[1]["memory_source"] == "nvidia-smi"
    assert CliRunner().invoke(app, ["gpu", "status"]).exit_code == 0
    memory = _json(["gpu", "memory", "--json"])
    assert memory[0]["processes"] == [] and memory[1]["processes"][0]["pid"] == 4242
    r = CliRunner().invoke(app, ["gpu", "memory", "1"])
    assert r.exit_code == 0 and "pid     4242" in r.stdout
    info = _json(["gpu", "info", "1", "--json"])
    assert info["versions"]["driver"] == "12.4" and info["devices"][0]["free_memory_bytes"] == 80000 << 20
    r = CliRunner().invoke(app, ["gpu", "info", "2"])
    assert r.exit_code == 1 and "GPU 2 does not exist" in r.stderr


# ----- bench model / inference / compare ----------------------------------------------------------------
def test_bench_model_json_measures_latency_throughput_and_memory() -> None:
    out = _json(["bench", "model", "lenet5", "--iters", "4", "--warmup", "1", "--batch-size", "2", "--json"])
    assert out["input_shape"] == [1, 28, 28] and out["batch_size"] == 2 and out["iterations"] == 4  # inferred
    lat = out["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] and lat["std"] >= 0
    assert out["throughput_samples_per_s"] == pytest.approx(2 / (lat["mean"] / 1e3))
    assert out["parameters"] == 61_706
    mem = out["memory"]
    assert mem["parameters_bytes"] == 4 * 61_706 and mem["buffers_bytes"] == 0
    # outputs of conv1, relu, pool, conv2, relu, pool, 3 linears and 2 relus, float32, batch 2
    leaf = 2 * 4 * (6 * 28 * 28 * 2 + 6 * 14 * 14 + 16 * 10 * 10 * 2 + 16 * 5 * 5 + 120 * 2 + 84 * 2 + 10)
    assert mem["activations_bytes"] == leaf
    assert mem["peak_method"] == "tracemalloc" and 0 < mem["peak_forward_bytes"] < 20 * leaf


def test_bench_model_from_an_archive_and_shapes(tmp_path: Path) -> None:
    path = tmp_path / "digits.axonml"
    ModelArchive.save(path, get_model("simple_cnn", num_classes=4, in_channels=1, image_size=16), name="digits",
                      config={"num_classes": 4, "in_channels": 1, "image_size": 16},
                      metadata={"input_shape": [1, 16, 16]})
    out = _json(["bench", "model", str(path), "--iters", "2", "--json"])
    assert out["model"] == "digits" and out["source"] == str(path) and out["input_shape"] == [1, 16, 16]
    assert _json(["bench", "model", "simple_cnn", "--iters", "1", "--json"])["input_shape"] == [3, 32, 32]  # probed
    out = _json(["bench", "model", "mlp", "--iters", "1", "--input-shape", "1,28,28", "--num-classes", "3", "--json"])
    assert out["input_shape"] == [1, 28, 28] and out["parameters"] == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 3 + 3


def test_bench_model_text_and_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["bench", "model", "mlp", "--iters", "2"])
    assert r.exit_code == 0 and "latency" in r.stdout and "samples/s" in r.stdout and "peak forward" in r.stdout
    r = runner.invoke(app, ["bench", "model", "lenet6"])
    assert r.exit_code == 1 and "did you mean lenet5" in r.stderr
    r = runner.invoke(app, ["bench", "model", str(tmp_path / "missing.axonml")])
    assert r.exit_code == 1 and "no such file" in r.stderr
    (tmp_path / "corrupt.axonml").write_bytes(b"not a zip")
    r = runner.invoke(app, ["bench", "model", str(tmp_path / "corrupt.axonml")])
    assert r.exit_code == 1 and "not a valid zip" in r.stderr and len(r.stderr.splitlines()) == 1
    (tmp_path / "weights.pt").write_bytes(b"x")
    assert runner.invoke(app, ["bench", "model", str(tmp_path / "weights.pt")]).exit_code == 1
    r = runner.invoke(app, ["bench", "model", "mlp", "--input-shape", "3,32,32", "--iters", "1"])
    assert r.exit_code == 1 and r.stderr.startswith("error: ") and len(r.stderr.splitlines()) == 1  # wrong shape
    assert runner.invoke(app, ["bench", "model", "mlp", "--input-shape", "a,b"]).exit_code == 2
    assert runner.invoke(app, ["bench", "model", "mlp", "--iters", "0"]).exit_code == 2


def test_a_model_that_starts_with_an_embedding_gets_token_ids() -> None:
    model = nn.Sequential(nn.Embedding(50, 8), nn.Flatten(), nn.Linear(8 * 128, 3))
    out = benchmark(model, {"name": "tokens", "source": "test", "input_shape": None}, None, 2, 2, 0, Device("cpu"))
    assert out["input_shape"] == [128] and out["parameters"] == 50 * 8 + 8 * 128 * 3 + 3
    # embedding (2, 128, 8), flatten (2, 1024), linear (2, 3): float32
    assert out["memory"]["activations_bytes"] == 4 * (2 * 128 * 8 + 2 * 1024 + 2 * 3)


def test_bench_inference_finds_the_best_batch_size() -> None:
    out = _json(["bench", "inference", "mlp", "--batch-sizes", "1,16", "--iters", "3", "--json"])
    results = out["results"]
    assert [r["batch_size"] for r in results] == [1, 16]
    best = max(results, key=lambda r: r["throughput_samples_per_s"])
    assert out["best_batch_size"] == best["batch_size"]
    assert out["best_throughput_samples_per_s"] == best["throughput_samples_per_s"]
    assert results[1]["memory"]["activations_bytes"] == 16 * results[0]["memory"]["activations_bytes"]
    r = CliRunner().invoke(app, ["bench", "inference", "mlp", "--batch-sizes", "1,2", "--iters", "1"])
    assert r.exit_code == 0 and "best batch size:" in r.stdout
    assert CliRunner().invoke(app, ["bench", "inference", "mlp", "--batch-sizes", "0,4"]).exit_code == 2


def test_bench_compare_one_table() -> None:
    out = _json(["bench", "compare", "lenet5", "mlp", "--iters", "2", "--json"])
    names = [r["model"] for r in out["results"]]
    assert names == ["lenet5", "mlp"]
    assert min(r["relative_latency"] for r in out["results"]) == 1.0
    r = CliRunner().invoke(app, ["bench", "compare", "lenet5", "mlp", "--iters", "1"])
    assert r.exit_code == 0 and "lenet5" in r.stdout and "mlp" in r.stdout and "samples/s" in r.stdout
    assert CliRunner().invoke(app, ["bench", "compare", "mlp"]).exit_code == 2


# ----- bench hardware -----------------------------------------------------------------------------------
def test_bench_hardware_measures_this_machine() -> None:
    out = _json(["bench", "hardware", "--size-mb", "8", "--matmul-size", "128", "--repeats", "2", "--json"])
    cpu = out["cpu"]
    assert cpu["logical_cores"] == os.cpu_count() and cpu["model"] and cpu["numpy"]
    if Path("/proc/cpuinfo").exists():
        model_names = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model")]
        assert any(cpu["model"] in line for line in model_names) or not model_names
    assert out["memory_bandwidth"]["copy_gbs"] > 0 and out["memory_bandwidth"]["size_mb"] == 8
    assert out["matmul"]["float32_gflops"] > 0 and out["matmul"]["float64_gflops"] > 0
    assert out["gpu"]["available"] == HAS_GPU
    if not HAS_GPU:
        assert out["gpu"]["reason"] and out["gpu"]["devices"] == []


def test_bench_in_a_subprocess() -> None:
    r = subprocess.run([*CLI, "bench", "model", "mlp", "--iters", "2", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["parameters"] == 235_146
    r = subprocess.run([*CLI, "bench", "hardware", "--size-mb", "4", "--matmul-size", "64", "--repeats", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "GFLOP/s" in r.stdout and "GB/s" in r.stdout, r.stderr
    r = subprocess.run([*CLI, "bench", "model", "nosuchmodel"], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("error: ")


# ----- on a GPU (the `device` machine) ------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")
def test_gpu_commands_on_a_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    devices = _json(["gpu", "list", "--json"])
    assert isinstance(devices, list) and len(devices) == ax.cuda.device_count()
    assert devices[0]["name"] == ax.cuda.get_device_name(0) and devices[0]["total_memory_bytes"] > 0
    info = _json(["gpu", "info", "0", "--json"])
    assert info["versions"]["driver"]
    assert 0 < info["devices"][0]["free_memory_bytes"] <= devices[0]["total_memory_bytes"]
    status = _json(["gpu", "status", "--json"])
    assert 0 < status[0]["memory_used_bytes"] <= status[0]["memory_total_bytes"]
    memory = _json(["gpu", "memory", "0", "--json"])
    assert memory[0]["used_bytes"] + memory[0]["free_bytes"] == memory[0]["total_bytes"]
    bench = _json(["gpu", "bench", "0", "--size", "1024", "--iters", "3", "--copy-mb", "64", "--json"])
    assert bench[0]["matmul_float32_tflops"] > 0.5 and bench[0]["device_copy_gbs"] > 50
    r = CliRunner().invoke(app, ["gpu", "select", "0"])
    assert r.exit_code == 0 and _config.get_default_device() == "cuda:0"
    out = _json(["bench", "model", "lenet5", "--iters", "3", "--json"])  # the selected device is the default
    assert out["device"] == "cuda:0" and out["memory"]["peak_method"] == "cupy-pool"
    hw = _json(["bench", "hardware", "--size-mb", "8", "--matmul-size", "128", "--repeats", "1", "--gpu-size",
                "1024", "--json"])
    assert hw["gpu"]["available"] and hw["gpu"]["devices"][0]["matmul_float32_tflops"] > 0.5
    assert CliRunner().invoke(app, ["gpu", "info", str(len(devices))]).exit_code == 1
