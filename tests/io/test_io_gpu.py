"""axonml.io with tensors on a CUDA device: devices restored, map_location honoured, GPU runs resume exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from iohelp import every_dtype_arrays, same_bits

import axonml as ax
from axonml.io import Checkpoint, CheckpointManager, load_file, load_torch, save_file, save_torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")]


def _cuda_tensors() -> dict[str, ax.Tensor]:
    return {k: ax.from_numpy(v).to("cuda") for k, v in every_dtype_arrays(seed=4).items()}


def test_axonml_format_keeps_devices(tmp_path: Path) -> None:
    tensors = _cuda_tensors()
    obj = {"t": tensors, "p": ax.nn.Parameter(ax.ones(3, device="cuda")), "cpu": ax.ones(2)}
    ax.save(obj, tmp_path / "g")
    for mmap in (False, True):
        out = ax.load(tmp_path / "g", mmap=mmap)
        assert out["cpu"].device == ax.device("cpu") and out["p"].device == ax.device("cuda:0")
        assert isinstance(out["p"], ax.nn.Parameter)
        for k, t in tensors.items():
            assert out["t"][k].device == ax.device("cuda:0") and same_bits(out["t"][k], t), k
    on_cpu = ax.load(tmp_path / "g", map_location="cpu")
    assert all(v.device == ax.device("cpu") for v in on_cpu["t"].values())


def test_safetensors_and_pt_from_and_to_the_gpu(tmp_path: Path) -> None:
    tensors = _cuda_tensors()
    save_file(tensors, tmp_path / "g.safetensors")
    back = load_file(tmp_path / "g.safetensors", device="cuda")
    assert all(back[k].device == ax.device("cuda:0") and same_bits(back[k], t) for k, t in tensors.items())
    save_torch(tensors, tmp_path / "g.pt")
    out = load_torch(tmp_path / "g.pt", map_location="cuda")
    assert all(out[k].device == ax.device("cuda:0") and same_bits(out[k], t) for k, t in tensors.items())


def _objects(seed: int) -> tuple[ax.nn.Module, ax.optim.Optimizer]:
    ax.manual_seed(seed)
    model = ax.nn.Sequential(ax.nn.Linear(6, 32), ax.nn.ReLU(), ax.nn.Dropout(0.5), ax.nn.Linear(32, 2)).to("cuda")
    return model, ax.optim.Adam(model.parameters(), lr=1e-2)


def _train(model: ax.nn.Module, opt: ax.optim.Optimizer, steps: range) -> None:
    for _ in steps:
        x = ax.randn(16, 6, device="cuda")  # the CUDA default generator, and dropout's draws
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_gpu_run_resumes_bit_for_bit(tmp_path: Path) -> None:
    ref = _objects(0)
    _train(*ref, range(8))
    model, opt = _objects(0)
    manager = CheckpointManager(tmp_path)
    _train(model, opt, range(4))
    manager.save(Checkpoint(model, opt, step=4))
    model2, opt2 = _objects(1)
    ax.manual_seed(77)
    assert manager.load_latest(Checkpoint(model2, opt2)) is not None
    assert all(p.device == ax.device("cuda:0") for p in model2.parameters())
    _train(model2, opt2, range(4, 8))
    for (k, a), (_, b) in zip(ref[0].state_dict().items(), model2.state_dict().items()):
        assert np.array_equal(a.cpu().numpy().view(np.uint8), b.cpu().numpy().view(np.uint8)), k
