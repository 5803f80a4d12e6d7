"""Devices: parsing, equality, CUDA availability without CuPy, and (on a GPU) moves, mixing errors, memory stats."""

from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml.backend import CPU, Device, as_device
from axonml.backend import cuda as bcuda
from axonml.errors import DeviceError

HAS_CUPY = importlib.util.find_spec("cupy") is not None


# ----- parsing ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec,kind,index",
    [
        ("cpu", "cpu", None), ("cuda", "cuda", 0), ("cuda:1", "cuda", 1), ("cuda:12", "cuda", 12),
        ("CUDA:0", "cuda", 0), (" cpu ", "cpu", None), ("cpu:0", "cpu", None), (3, "cuda", 3),
    ],
)
def test_device_parsing(spec: Any, kind: str, index: int | None) -> None:
    d = Device(spec)
    assert d.type == kind and d.index == index


def test_device_forms() -> None:
    assert Device("cuda", 1) is Device("cuda:1")
    assert Device(Device("cuda:2")) is Device("cuda:2")
    assert Device("cuda") is Device("cuda:0")  # interned
    assert as_device(None) is CPU and as_device("cpu") is CPU
    assert ax.device is Device and ax.device("cpu") is CPU


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "cuda:-1", "cpu:", "", "cuda:0:1", "tpu:0", None, 2.5, True])
def test_bad_devices(bad: Any) -> None:
    with pytest.raises(DeviceError):
        Device(bad)


def test_bad_device_index() -> None:
    with pytest.raises(DeviceError, match="non-negative"):
        Device("cuda", -1)
    with pytest.raises(DeviceError, match="already names an index"):
        Device("cuda:1", 2)
    with pytest.raises(DeviceError, match="unknown device"):
        ax.zeros(2, device="xpu")


def test_device_equality_and_names() -> None:
    cpu, c0, c1 = Device("cpu"), Device("cuda:0"), Device("cuda:1")
    assert cpu == "cpu" and "cpu" == cpu  # noqa: SIM300 - both orders
    assert c0 == "cuda" and c0 == "cuda:0" and c0 != "cuda:1"
    assert cpu != c0 and c0 != c1
    assert cpu != "bogus" and cpu != 0
    assert str(c1) == "cuda:1" and str(cpu) == "cpu"
    assert repr(cpu) == "device(type='cpu')" and repr(c1) == "device(type='cuda', index=1)"
    assert len({Device("cuda"), Device("cuda:0"), c1, cpu}) == 3
    assert pickle.loads(pickle.dumps(c1)) is c1


def test_cpu_device_context_nests() -> None:
    cpu = Device("cpu")
    with cpu as d, cpu:
        assert d is cpu
        assert ax.zeros(1).device is cpu


def test_cpu_tensors() -> None:
    x = ax.zeros(2)
    assert x.device is CPU and x.device == "cpu" and not x.is_cuda
    assert x.to("cpu") is x and x.cpu() is x and x.to(CPU) is x
    assert ax.ones(2, device="cpu").device is CPU
    assert ax.tensor([1.0], device=Device("cpu")).device is CPU


# ----- without CuPy ----------------------------------------------------------------------------
def test_cuda_queries_without_cupy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bcuda, "_cupy", lambda: None)
    assert ax.cuda.is_available() is False
    assert ax.cuda.device_count() == 0
    for fn in (ax.cuda.memory_allocated, ax.cuda.memory_reserved, ax.cuda.max_memory_allocated,
               ax.cuda.empty_cache, ax.cuda.synchronize, ax.cuda.reset_peak_memory_stats):
        with pytest.raises(DeviceError, match="CuPy"):
            fn()
    with pytest.raises(DeviceError, match="CuPy"):
        ax.cuda.get_device_name()


def test_to_cuda_without_cupy_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # a fresh device table, and an import of cupy that fails as on a machine without it
    monkeypatch.setattr(Device, "_cache", {("cpu", None): CPU})
    monkeypatch.setitem(sys.modules, "cupy", None)
    x = ax.tensor([1.0, 2.0])
    for move in (lambda: x.to("cuda"), lambda: x.cuda(), lambda: ax.zeros(2, device="cuda:0"),
                 lambda: ax.tensor([1.0], device="cuda")):
        with pytest.raises(DeviceError, match="CuPy"):
            move()
    assert x.tolist() == [1.0, 2.0]


@pytest.mark.skipif(HAS_CUPY, reason="CuPy is installed here")
def test_real_machine_without_cupy() -> None:
    assert not ax.cuda.is_available() and ax.cuda.device_count() == 0
    with pytest.raises(DeviceError, match="CuPy"):
        ax.zeros(2).to("cuda")


# ----- on a GPU ------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("name", ["float32", "float64", "float16", "int64", "int32", "uint8", "bool"])
def test_round_trip_to_gpu(name: str) -> None:
    d = getattr(ax, name)
    a = (np.arange(6).reshape(2, 3) % 3).astype(d.np)
    x = ax.tensor(a)
    g = x.to("cuda")
    assert g.device == "cuda:0" and g.is_cuda and g.dtype is d
    back = g.cpu()
    assert back.device is CPU and back.dtype is d
    np.testing.assert_array_equal(back.numpy(), a)
    assert g.tolist() == a.tolist()



@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
class TestGPU:
    def test_creation_on_gpu(self) -> None:
        for t in (ax.zeros(2, 3, device="cuda"), ax.ones(2, device="cuda:0"), ax.full((2,), 3.0, device="cuda"),
                  ax.arange(5, device="cuda"), ax.linspace(0, 1, 3, device="cuda"), ax.eye(2, device="cuda"),
                  ax.tensor([1, 2], device="cuda"), ax.empty(3, device="cuda"), ax.zeros_like(ax.ones(2).cuda())):
            assert t.device == "cuda:0" and t.is_cuda
        assert ax.arange(5, device="cuda").tolist() == [0, 1, 2, 3, 4]
        assert ax.tensor(np.arange(3.0), device="cuda").dtype is ax.float64
        assert ax.ones(2).cuda(0).device == "cuda:0"

    def test_item_numpy_repr(self) -> None:
        g = ax.tensor([[1.5, 2.5]], device="cuda")
        assert g[0, 1].item() == 2.5 and g.tolist() == [[1.5, 2.5]]
        with pytest.raises(DeviceError, match="cpu"):
            g.numpy()
        assert g.numpy(force=True).tolist() == [[1.5, 2.5]]
        assert np.asarray(g).tolist() == [[1.5, 2.5]]
        assert "device='cuda:0'" in repr(g)

    def test_mixing_devices_names_both(self) -> None:
        c, g = ax.ones(3), ax.ones(3, device="cuda")
        for op in (lambda: c + g, lambda: g * c, lambda: g @ c, lambda: ax.maximum(g, c)):
            with pytest.raises(DeviceError) as e:
                op()
            assert "cpu" in str(e.value) and "cuda:0" in str(e.value)
        with pytest.raises(DeviceError, match="cpu"):
            g.add_(c)
        with pytest.raises(DeviceError):
            g[ax.tensor([0])] = 1.0  # an index tensor on the wrong device
        g.add_(ax.tensor(2.0))  # a zero-dim CPU tensor counts as a scalar
        assert g.tolist() == [3.0, 3.0, 3.0]

    def test_ops_and_promotion_on_gpu(self) -> None:
        a = np.random.default_rng(0).standard_normal((3, 4))
        g = ax.tensor(a, device="cuda")
        np.testing.assert_allclose((g * 2 + 1).cpu().numpy(), a * 2 + 1)
        np.testing.assert_allclose((2 - g).cpu().numpy(), 2 - a)
        assert (ax.tensor([1, 2], device="cuda") / ax.tensor([2, 2], device="cuda")).dtype is ax.float32
        assert (ax.tensor([1.0], dtype=ax.float16, device="cuda") * 2.5).dtype is ax.float16
        u8, i8 = ax.tensor([1], dtype=ax.uint8, device="cuda"), ax.tensor([1], dtype=ax.int8, device="cuda")
        assert (u8 + i8).dtype is ax.int16

    def test_inplace_on_gpu(self) -> None:
        g = ax.tensor([1.0, 2.0], device="cuda")
        g += 1
        g *= ax.tensor([2.0, 3.0], device="cuda")
        g[0] = -1.0
        assert g.tolist() == [-1.0, 9.0] and g._version_count == 3
        i = ax.tensor([1, 2], device="cuda")
        with pytest.raises(TypeError, match="can't be cast"):
            i += 1.5
        u = ax.tensor([1], dtype=ax.uint8, device="cuda")
        u += ax.tensor([1], device="cuda")
        assert u.tolist() == [2]

    def test_gradient_across_devices(self) -> None:
        x = ax.tensor([1.0, 2.0, 3.0], requires_grad=True)
        y = x.to("cuda") * ax.tensor([1.0, 2.0, 3.0], device="cuda")
        y.sum().backward()
        assert x.grad is not None and x.grad.device is CPU
        assert x.grad.tolist() == [1.0, 2.0, 3.0]

    def test_device_context(self) -> None:
        import cupy as cp

        dev = Device("cuda:0")
        with dev as d, dev:  # reentrant: devices are shared objects
            assert d is dev and cp.cuda.Device().id == 0
        assert cp.cuda.Device().id == 0

    def test_missing_device_index(self) -> None:
        n = ax.cuda.device_count()
        with pytest.raises(DeviceError, match="does not exist"):
            ax.zeros(1, device=f"cuda:{n + 3}")

    def test_memory_stats(self) -> None:
        ax.cuda.synchronize()
        ax.cuda.reset_peak_memory_stats()
        before = ax.cuda.memory_allocated()
        big = ax.zeros(1024, 1024, device="cuda")  # 4 MiB
        assert ax.cuda.memory_allocated() >= before + 4 * 2**20
        peak = ax.cuda.max_memory_allocated()
        assert peak >= ax.cuda.memory_allocated()
        assert ax.cuda.memory_reserved() >= ax.cuda.memory_allocated()
        del big
        assert ax.cuda.memory_allocated() <= peak - 4 * 2**20 + 2**20
        assert ax.cuda.max_memory_allocated() >= peak  # the peak stays until reset
        ax.cuda.empty_cache()
        ax.cuda.reset_peak_memory_stats()
        assert ax.cuda.max_memory_allocated() == ax.cuda.memory_allocated()
        assert isinstance(ax.cuda.get_device_name(0), str) and ax.cuda.get_device_name(0)
        assert ax.cuda.is_available() and ax.cuda.device_count() >= 1

    def test_peak_tracking_starts_on_demand(self) -> None:
        # a fresh process: CuPy's allocator is plain until peak tracking is asked for, then a peak since the
        # first max_memory_allocated() (which warns that the peak before it is unknown) is exact
        code = """
import warnings, cupy as cp, axonml as ax
x = ax.zeros(1024, device="cuda")
assert cp.cuda.get_allocator() == cp.get_default_memory_pool().malloc
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    start = ax.cuda.max_memory_allocated()
assert start == ax.cuda.memory_allocated() and "peak tracking starts now" in str(w[0].message)
big = ax.zeros(4 * 2**20, device="cuda")
del big
assert ax.cuda.max_memory_allocated() >= start + 16 * 2**20
print("ok")
"""
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr

    def test_dlpack_and_as_tensor_on_gpu(self) -> None:
        import cupy as cp

        c = cp.arange(4, dtype=cp.float32)
        t = ax.from_dlpack(c)
        assert t.device == "cuda:0" and t.dtype is ax.float32
        c[0] = 7
        assert t[0].item() == 7.0
        s = ax.as_tensor(c)
        assert s.data_ptr() == t.data_ptr()
        back = cp.from_dlpack(t)
        back[1] = -1
        assert t[1].item() == -1.0

    def test_dlpack_with_torch_on_gpu(self) -> None:
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("this PyTorch has no CUDA")
        tt = torch.arange(3, dtype=torch.float32, device="cuda")
        x = ax.from_dlpack(tt)
        assert x.device == "cuda:0"
        tt[2] = 10
        torch.cuda.synchronize()
        assert x[2].item() == 10.0
        y = torch.from_dlpack(ax.ones(2, device="cuda"))
        assert y.device.type == "cuda" and y.tolist() == [1.0, 1.0]
