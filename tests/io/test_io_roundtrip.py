"""Acceptance: every value survives every direction, axonml <-> SafeTensors <-> .pt <-> .axonml, bit for bit.

The data holds every dtype with NaN payloads, infinities, -0.0 and integer
extremes, so any conversion through another type or through text would show.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from iohelp import every_dtype_arrays, same_bits

import axonml as ax
from axonml.io import ModelArchive, load_file, load_torch, save_file, save_torch

pytest.importorskip("safetensors")


class Holder(ax.nn.Module):
    """A module whose state is one buffer per dtype (and a parameter), to carry them through an archive."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.weight = ax.nn.Parameter(ax.from_numpy(arrays["float32"].copy()))
        for name, arr in arrays.items():
            self.register_buffer(f"b_{name}", ax.from_numpy(arr.copy()))


def _check(stage: str, got: dict[str, Any], want: dict[str, np.ndarray]) -> None:
    assert set(got) >= set(want), stage
    for k, v in want.items():
        assert same_bits(got[k], v), f"{stage}: {k}"


def test_all_directions_without_torch(tmp_path: Path) -> None:
    want = every_dtype_arrays(seed=11)
    tensors = OrderedDict((k, ax.from_numpy(v)) for k, v in want.items())

    ax.save(tensors, tmp_path / "a.axonml")  # axonml -> axonml
    a = ax.load(tmp_path / "a.axonml")
    _check("axonml", a, want)
    save_file(a, tmp_path / "b.safetensors")  # axonml -> SafeTensors
    b = load_file(tmp_path / "b.safetensors")
    _check("safetensors", b, want)
    save_torch(b, tmp_path / "c.pt")  # SafeTensors -> .pt
    c = load_torch(tmp_path / "c.pt")
    _check(".pt", c, want)
    holder = Holder(want)  # .pt -> .axonml archive
    holder.load_state_dict({**{f"b_{k}": v for k, v in c.items()}, "weight": c["float32"]})
    ModelArchive.save(tmp_path / "d.axonml", holder)
    d = ModelArchive.load(tmp_path / "d.axonml", model=Holder({k: np.zeros_like(v) for k, v in want.items()}))
    _check(".axonml archive", {k[2:]: v for k, v in d.model.state_dict().items() if k.startswith("b_")}, want)
    ax.save(d.model.state_dict(), tmp_path / "e.axonml")  # .axonml -> axonml -> .pt -> SafeTensors
    e = {k[2:]: v for k, v in ax.load(tmp_path / "e.axonml").items() if k.startswith("b_")}
    save_torch(e, tmp_path / "f.pt")
    save_file(ax.load(tmp_path / "f.pt"), tmp_path / "g.safetensors")
    _check("back to SafeTensors", load_file(tmp_path / "g.safetensors"), want)


@pytest.mark.torch
def test_all_directions_through_pytorch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    import safetensors.torch as st_torch

    want = every_dtype_arrays(seed=12)

    def to_torch(arr: np.ndarray) -> Any:
        if arr.dtype.name == "bfloat16":
            return torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
        return torch.from_numpy(arr.copy())

    def torch_same(t: Any, arr: np.ndarray) -> bool:
        raw = t.contiguous().reshape(-1).view(torch.uint8).numpy()
        return tuple(t.shape) == arr.shape and np.array_equal(raw, np.ascontiguousarray(arr).view(np.uint8).ravel())

    original = {k: to_torch(v) for k, v in want.items()}
    torch.save(original, tmp_path / "t.pt")  # PyTorch .pt -> axonml
    ours = load_torch(tmp_path / "t.pt")
    _check("torch.save -> axonml", ours, want)
    save_file(ours, tmp_path / "o.safetensors")  # axonml -> SafeTensors -> PyTorch
    theirs = st_torch.load_file(str(tmp_path / "o.safetensors"))
    assert all(torch_same(theirs[k], v) for k, v in want.items())
    st_torch.save_file(theirs, str(tmp_path / "t.safetensors"))  # PyTorch -> SafeTensors -> axonml
    _check("safetensors.torch -> axonml", load_file(tmp_path / "t.safetensors"), want)
    save_torch(ours, tmp_path / "o.pt")  # axonml -> .pt -> PyTorch
    back = torch.load(tmp_path / "o.pt", weights_only=True)
    assert all(torch_same(back[k], v) for k, v in want.items())
    holder = Holder(want)  # PyTorch -> .axonml -> PyTorch
    ModelArchive.save(tmp_path / "h.axonml", holder)
    arch = ModelArchive.load(tmp_path / "h.axonml", model=Holder({k: np.zeros_like(v) for k, v in want.items()}))
    save_torch(arch.model.state_dict(), tmp_path / "h.pt")
    final = torch.load(tmp_path / "h.pt", weights_only=True)
    assert all(torch_same(final[f"b_{k}"], v) for k, v in want.items())
