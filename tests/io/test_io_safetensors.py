"""SafeTensors through the safetensors library: every dtype bit for bit, metadata, lazy reads, modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from iohelp import every_dtype_arrays, same_bits

import axonml as ax
from axonml.io import SerializationError, load_file, load_metadata, load_model, safe_open, save_file, save_model
from axonml.io import safetensors_io as st

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def test_every_dtype_bit_for_bit(tmp_path: Path) -> None:
    tensors = {k: ax.from_numpy(v) for k, v in every_dtype_arrays().items()}
    tensors["scalar"] = ax.tensor(1.25)
    tensors["empty"] = ax.zeros(0, 2, dtype=ax.int64)
    tensors["strided"] = ax.arange(12.0).reshape(3, 4).T  # stored by value
    save_file(tensors, tmp_path / "a.safetensors", metadata={"source": "test"})
    out = load_file(tmp_path / "a.safetensors")
    assert set(out) == set(tensors)
    for k, t in tensors.items():
        assert same_bits(out[k], t), k
    assert load_metadata(tmp_path / "a.safetensors") == {"source": "test"}
    blob = st.save(tensors)
    again = st.load(blob)
    assert all(same_bits(again[k], t) for k, t in tensors.items())
    assert out["float32"]._data.flags.writeable  # loaded tensors are ordinary, writable tensors
    out["float32"].add_(1)


def test_files_interoperate_with_the_library(tmp_path: Path) -> None:
    arrays = every_dtype_arrays(seed=5)
    safetensors_numpy.save_file(arrays, str(tmp_path / "lib.safetensors"), metadata={"k": "v"})
    ours = load_file(tmp_path / "lib.safetensors")
    assert all(same_bits(ours[k], a) for k, a in arrays.items())
    save_file(ours, tmp_path / "ours.safetensors")
    theirs = safetensors_numpy.load_file(str(tmp_path / "ours.safetensors"))
    assert all(same_bits(theirs[k], a) for k, a in arrays.items())


def test_safe_open_reads_lazily(tmp_path: Path) -> None:
    big = np.arange(64 * 1024, dtype=np.float32).reshape(256, 256)
    save_file({"big": ax.from_numpy(big), "small": ax.ones(3)}, tmp_path / "l.safetensors", {"m": "1"})
    with safe_open(tmp_path / "l.safetensors") as f:
        assert f.keys() == ["big", "small"] and len(f) == 2 and "big" in f and "nope" not in f
        assert list(f) == ["big", "small"] and f.metadata() == {"m": "1"}
        assert f.get_tensor("small").tolist() == [1.0, 1.0, 1.0]
        sl = f.get_slice("big")
        assert sl.get_shape() == [256, 256] and sl.get_dtype() == "F32"
        part = sl[10:12, 5:8]
        assert part.shape == (2, 3) and np.array_equal(part.numpy(), big[10:12, 5:8])
        with pytest.raises(KeyError, match="nope"):
            f.get_tensor("nope")
    with safe_open(tmp_path / "l.safetensors", framework="np") as f:
        assert isinstance(f.get_tensor("big"), ax.Tensor)


def test_module_save_and_load(tmp_path: Path) -> None:
    ax.manual_seed(0)
    model = ax.nn.Sequential(ax.nn.Linear(4, 3), ax.nn.BatchNorm1d(3))
    model(ax.randn(5, 4))  # updates the running statistics (buffers)
    save_model(model, tmp_path / "m.safetensors", metadata={"epoch": "2"})
    assert load_metadata(tmp_path / "m.safetensors") == {"format": "pt", "epoch": "2"}
    fresh = ax.nn.Sequential(ax.nn.Linear(4, 3), ax.nn.BatchNorm1d(3))
    result = load_model(fresh, tmp_path / "m.safetensors")
    assert not result.missing_keys and not result.unexpected_keys
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert same_bits(a, b), k
    bigger = ax.nn.Sequential(ax.nn.Linear(4, 3), ax.nn.BatchNorm1d(3), ax.nn.Linear(3, 1))
    with pytest.raises(RuntimeError, match="Missing key"):
        load_model(bigger, tmp_path / "m.safetensors")
    result = load_model(bigger, tmp_path / "m.safetensors", strict=False)
    assert result.missing_keys == ["2.weight", "2.bias"]


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="strings to strings"):
        save_file({"a": ax.ones(1)}, tmp_path / "x", metadata={"n": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="not a Tensor"):
        save_file({"a": [1, 2]}, tmp_path / "x")
    with pytest.raises(TypeError, match="names must be strings"):
        save_file({1: ax.ones(1)}, tmp_path / "x")  # type: ignore[dict-item]
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(SerializationError, match="not a valid SafeTensors"):
        load_file(tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError):
        load_file(tmp_path / "missing.safetensors")
    with pytest.raises(SerializationError, match="invalid SafeTensors"):
        st.load(b"garbage")
    with pytest.raises(TypeError, match=r"nn\.Module"):
        save_model({"a": ax.ones(1)}, tmp_path / "x")  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()


def test_axonml_load_reads_safetensors(tmp_path: Path) -> None:
    save_file({"w": ax.arange(3)}, tmp_path / "w.safetensors")
    out: Any = ax.load(tmp_path / "w.safetensors")
    assert out["w"].tolist() == [0, 1, 2]
    with open(tmp_path / "w.safetensors", "rb") as f:
        assert ax.load(f, weights_only=True)["w"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="weights_only=False"):
        ax.load(tmp_path / "w.safetensors", weights_only=False)
