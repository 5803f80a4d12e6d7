"""PyTorch checkpoints without PyTorch: torch.save -> our reader, our writer -> torch.load(weights_only=True).

The reader and writer never import torch; torch is only the oracle here. The
safety tests (hand-made malicious checkpoints) need no torch at all.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from iohelp import every_dtype_arrays, same_bits

import axonml as ax
from axonml.errors import DeviceError
from axonml.io import SerializationError, UnsafePickleError, load_torch, save_torch
from axonml.io.pickle_writer import GlobalRef, Persistent, Pickler2, Reduce
from axonml.io.torch_format import LEGACY_PREFIX


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def to_torch(torch: Any, arr: np.ndarray) -> Any:
    if arr.dtype.name == "bfloat16":
        return torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(arr.copy())


def same_as_torch(ours: Any, theirs: Any) -> bool:
    import torch as _t

    raw = theirs.detach().contiguous().reshape(-1).view(_t.uint8).numpy()
    ref = np.ascontiguousarray(ours._host()).reshape(-1).view(np.uint8)
    return tuple(ours.shape) == tuple(theirs.shape) and str(ours.dtype).split(".")[1] == str(theirs.dtype).split(
        ".")[1] and np.array_equal(raw, ref)


# ----- torch.save -> load_torch -----------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_every_dtype_bit_for_bit(torch: Any, tmp_path: Path, zip_format: bool) -> None:
    tensors = {k: to_torch(torch, v) for k, v in every_dtype_arrays().items()}
    tensors["scalar"] = torch.tensor(2.5, dtype=torch.float64)
    tensors["empty"] = torch.zeros(0, 4, dtype=torch.int16)
    torch.save(tensors, tmp_path / "t.pt", _use_new_zipfile_serialization=zip_format)
    out = load_torch(tmp_path / "t.pt")
    assert list(out) == list(tensors)
    for k, t in tensors.items():
        assert isinstance(out[k], ax.Tensor) and same_as_torch(out[k], t), k
    if zip_format:
        mapped = load_torch(tmp_path / "t.pt", mmap=True)
        assert all(same_as_torch(mapped[k], t) for k, t in tensors.items())


@pytest.mark.torch
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_views_with_offsets_and_strides(torch: Any, tmp_path: Path, zip_format: bool) -> None:
    base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
    views = {
        "base": base,
        "transposed": base.transpose(0, 2),
        "sliced": base[1:, ::2, 3:],
        "narrow": base.reshape(-1)[7:19],
        "permuted": base.permute(2, 0, 1)[:, 1],
        "expanded": torch.arange(3.0).expand(4, 3),
        "diagonal": base[0].diagonal(),
        "empty_view": base[:, :0],
        "half_T": torch.arange(12, dtype=torch.float16).reshape(3, 4).T,
        "long_slice": torch.arange(20)[5::3],
    }
    torch.save(views, tmp_path / "v.pt", _use_new_zipfile_serialization=zip_format)
    out = load_torch(tmp_path / "v.pt")
    for k, t in views.items():
        assert same_as_torch(out[k], t), k
    # views of one storage come back sharing memory, as in PyTorch
    assert np.shares_memory(out["base"]._data, out["transposed"]._data)
    assert np.shares_memory(out["base"]._data, out["sliced"]._data)


@pytest.mark.torch
def test_nested_state_dicts_and_training_state(torch: Any, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(),
                                torch.nn.Linear(8, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2)
    model(torch.randn(4, 1, 4, 4)).sum().backward()
    opt.step()
    sched.step()
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "epoch": 3, "size": torch.Size([2, 3]), "blob": b"\x00\xff", "big": 2**70, "nan": float("nan"),
            "pair": (1, None), "param": torch.nn.Parameter(torch.ones(2)), "dtype": torch.float16,
            "names": {"a", "b"}}
    torch.save(ckpt, tmp_path / "c.pt")
    out = ax.load(tmp_path / "c.pt")  # axonml.load detects the PyTorch format
    assert isinstance(out["model"], OrderedDict) and out["model"]._metadata == ckpt["model"]._metadata
    for k, t in ckpt["model"].items():
        assert same_as_torch(out["model"][k], t), k
    state = out["optimizer"]["state"]
    assert sorted(state) == [0, 1, 2, 3, 4, 5]
    for i, s in ckpt["optimizer"]["state"].items():
        assert all(same_as_torch(state[i][k], v) for k, v in s.items())
    assert out["optimizer"]["param_groups"][0]["params"] == [0, 1, 2, 3, 4, 5]
    assert out["scheduler"]["last_epoch"] == 1 and out["scheduler"]["_last_lr"] == ckpt["scheduler"]["_last_lr"]
    assert out["size"] == (2, 3) and out["blob"] == b"\x00\xff" and out["big"] == 2**70 and np.isnan(out["nan"])
    assert out["pair"] == (1, None) and out["dtype"] is ax.float16 and out["names"] == {"a", "b"}
    assert isinstance(out["param"], ax.nn.Parameter) and out["param"].requires_grad
    # the weights drive an axonml model to PyTorch's outputs
    ours = ax.nn.Sequential(ax.nn.Conv2d(1, 2, 3), ax.nn.BatchNorm2d(2), ax.nn.Flatten(), ax.nn.Linear(8, 3))
    ours.load_state_dict(out["model"])
    ours.eval()
    model.eval()
    x = np.random.default_rng(0).standard_normal((2, 1, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(ours(ax.from_numpy(x)).detach().numpy(),
                               model(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.torch
def test_file_objects_and_map_location(torch: Any, tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)
    buf.seek(0)
    assert load_torch(buf)["w"].tolist() == [1.0, 1.0]
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf, _use_new_zipfile_serialization=False)
    buf.seek(0)
    assert ax.load(buf, map_location="cpu")["w"].tolist() == [1.0, 1.0]
    for protocol in (4, 5):  # torch.save(pickle_protocol=...) brings FRAME, MEMOIZE, SHORT_BINUNICODE...
        torch.save({"w": torch.arange(3), "b": b"xy", "s": {1}}, tmp_path / "p.pt", pickle_protocol=protocol)
        out = load_torch(tmp_path / "p.pt")
        assert out["w"].tolist() == [0, 1, 2] and out["b"] == b"xy" and out["s"] == {1}


@pytest.mark.torch
def test_whole_pickled_modules_are_refused(torch: Any, tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(2, 2), tmp_path / "m.pt")
    with pytest.raises(UnsafePickleError, match=r"torch\.nn\.modules\.linear\.Linear"):
        load_torch(tmp_path / "m.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "m_legacy.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(SerializationError, match=r"whole pickled nn\.Module|not on the whitelist"):
        load_torch(tmp_path / "m_legacy.pt")


# ----- save_torch -> torch.load(weights_only=True) -----------------------------------------------------
@pytest.mark.torch
def test_writer_every_dtype_read_by_torch(torch: Any, tmp_path: Path) -> None:
    tensors = {k: ax.from_numpy(v) for k, v in every_dtype_arrays().items()}
    tensors["scalar"] = ax.tensor(7, dtype=ax.int32)
    tensors["empty"] = ax.zeros(2, 0)
    save_torch(tensors, tmp_path / "w.pt")
    back = torch.load(tmp_path / "w.pt", weights_only=True)
    assert list(back) == list(tensors)
    for k, t in tensors.items():
        assert same_as_torch(t, back[k]), k


@pytest.mark.torch
def test_writer_views_share_storages(torch: Any, tmp_path: Path) -> None:
    base = ax.arange(24, dtype=ax.float32).reshape(2, 3, 4)
    obj = {"base": base, "T": base.permute(2, 0, 1), "slice": base[1, :, 1:3], "flip_copy": base.flip(0)}
    save_torch(obj, tmp_path / "v.pt")
    back = torch.load(tmp_path / "v.pt", weights_only=True)
    for k, t in obj.items():
        assert same_as_torch(t, back[k]), k
    ptr = back["base"].untyped_storage().data_ptr()
    assert back["T"].untyped_storage().data_ptr() == ptr and back["slice"].untyped_storage().data_ptr() == ptr
    assert back["slice"].storage_offset() == 13
    with zipfile.ZipFile(tmp_path / "v.pt") as zf:
        assert len([n for n in zf.namelist() if "/data/" in n]) == 2  # base + the copy that flip made


@pytest.mark.torch
def test_writer_state_dict_into_torch_model(torch: Any, tmp_path: Path) -> None:
    ax.manual_seed(1)
    ours = ax.nn.Sequential(ax.nn.Linear(4, 8), ax.nn.LayerNorm(8), ax.nn.Linear(8, 2))
    opt = ax.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    ours(ax.randn(3, 4)).sum().backward()
    opt.step()
    ckpt = {"model": ours.state_dict(), "optimizer": opt.state_dict(), "epoch": 2, "dtype": ax.bfloat16,
            "blob": b"\x01\x02", "big": -(2**66), "param": ax.nn.Parameter(ax.ones(3)), "nan": float("nan")}
    save_torch(ckpt, tmp_path / "m.pt")
    back = torch.load(tmp_path / "m.pt", weights_only=True)
    assert back["model"]._metadata == dict(ckpt["model"]._metadata)
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    theirs.load_state_dict(back["model"])
    topt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    topt.load_state_dict(back["optimizer"])
    assert back["epoch"] == 2 and back["dtype"] is torch.bfloat16 and back["blob"] == b"\x01\x02"
    assert back["big"] == -(2**66) and isinstance(back["param"], torch.nn.Parameter) and np.isnan(back["nan"])
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(ours(ax.from_numpy(x)).detach().numpy(),
                               theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    # and back again through our reader, bit for bit
    out = load_torch(tmp_path / "m.pt")
    assert all(same_bits(out["model"][k], v) for k, v in ckpt["model"].items())


def test_writer_refuses_what_torch_would_not_load(tmp_path: Path) -> None:
    with pytest.raises(SerializationError, match="save_torch cannot store"):
        save_torch({"m": ax.nn.Linear(2, 2)}, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_reader_and_writer_without_torch_round_trip(tmp_path: Path) -> None:
    arrays = every_dtype_arrays(seed=3)
    obj = {"sd": OrderedDict((k, ax.from_numpy(v)) for k, v in arrays.items()), "n": 5, "t": (1.5, "x")}
    obj["sd"]._metadata = OrderedDict({"": {"version": 1}})  # type: ignore[attr-defined]
    save_torch(obj, tmp_path / "r.pt")
    out = load_torch(tmp_path / "r.pt")
    assert out["n"] == 5 and out["t"] == (1.5, "x") and out["sd"]._metadata == obj["sd"]._metadata
    assert all(same_bits(out["sd"][k], t) for k, t in obj["sd"].items())


# ----- safety: hand-made checkpoints -----------------------------------------------------------------
def _torch_zip(data_pkl: bytes, storages: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/byteorder", "little")
        for key, raw in (storages or {}).items():
            zf.writestr(f"archive/data/{key}", raw)
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_in_pt_zip_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"weight": _RunsCode(marker)}, protocol=2)
    assert b"system" in evil
    (tmp_path / "evil.pt").write_bytes(_torch_zip(evil))
    for loader in (load_torch, ax.load):
        with pytest.raises(UnsafePickleError, match=r"system.*not on the whitelist"):
            loader(tmp_path / "evil.pt")
    assert not marker.exists()  # nothing ran
    # the same payload hidden in a persistent id's storage type, and in the legacy layout
    hidden = Pickler2(lambda o: o).dumps(Persistent(("storage", GlobalRef("os", "system"), "0", "cpu", 1)))
    (tmp_path / "evil2.pt").write_bytes(_torch_zip(hidden, {"0": b"\0" * 4}))
    with pytest.raises(UnsafePickleError, match=r"os\.system"):
        load_torch(tmp_path / "evil2.pt")
    legacy = LEGACY_PREFIX + pickle.dumps(1001, protocol=2) + pickle.dumps({}, protocol=2) + evil
    (tmp_path / "evil3.pt").write_bytes(legacy)
    with pytest.raises(UnsafePickleError, match="system"):
        ax.load(tmp_path / "evil3.pt")
    assert not marker.exists()


def _tensor_pkl(size: tuple[int, ...], stride: tuple[int, ...], offset: int = 0, numel: int = 4,
                location: str = "cpu") -> bytes:
    pid = Persistent(("storage", GlobalRef("torch", "FloatStorage"), "0", location, numel))
    node = Reduce("torch._utils", "_rebuild_tensor_v2", (pid, offset, size, stride, False, OrderedDict()))
    return Pickler2(lambda o: o).dumps({"w": node})


def test_corrupt_geometry_and_missing_storages(tmp_path: Path) -> None:
    raw = struct.pack("<4f", 1, 2, 3, 4)
    (tmp_path / "ok.pt").write_bytes(_torch_zip(_tensor_pkl((2, 2), (1, 2)), {"0": raw}))
    assert load_torch(tmp_path / "ok.pt")["w"].tolist() == [[1.0, 3.0], [2.0, 4.0]]
    (tmp_path / "far.pt").write_bytes(_torch_zip(_tensor_pkl((2, 2), (2, 2)), {"0": raw}))
    with pytest.raises(SerializationError, match="reaches past its storage"):
        load_torch(tmp_path / "far.pt")
    (tmp_path / "neg.pt").write_bytes(_torch_zip(_tensor_pkl((2,), (-1,), offset=1), {"0": raw}))
    with pytest.raises(SerializationError, match="bad tensor geometry"):
        load_torch(tmp_path / "neg.pt")
    (tmp_path / "missing.pt").write_bytes(_torch_zip(_tensor_pkl((4,), (1,))))
    with pytest.raises(SerializationError, match="missing"):
        load_torch(tmp_path / "missing.pt")
    (tmp_path / "short.pt").write_bytes(_torch_zip(_tensor_pkl((4,), (1,)), {"0": raw[:8]}))
    with pytest.raises(SerializationError, match="needs more"):
        load_torch(tmp_path / "short.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(SerializationError, match="not a PyTorch checkpoint"):
        load_torch(tmp_path / "junk.pt")
    good = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(good[: len(good) - 30])
    with pytest.raises(SerializationError, match="truncated or corrupt"):
        load_torch(tmp_path / "cut.pt")


def test_gpu_saved_tensors_need_map_location_here(tmp_path: Path) -> None:
    raw = struct.pack("<4f", 1, 2, 3, 4)
    (tmp_path / "g.pt").write_bytes(_torch_zip(_tensor_pkl((4,), (1,), location="cuda:5"), {"0": raw}))
    with pytest.raises(DeviceError, match="map_location='cpu'"):
        load_torch(tmp_path / "g.pt")
    assert load_torch(tmp_path / "g.pt", map_location="cpu")["w"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert load_torch(tmp_path / "g.pt", map_location={"cuda:5": "cpu"})["w"].shape == (4,)


def test_reading_and_writing_never_import_torch(tmp_path: Path) -> None:
    raw = struct.pack("<4f", 1, 2, 3, 4)
    (tmp_path / "ok.pt").write_bytes(_torch_zip(_tensor_pkl((4,), (1,)), {"0": raw}))
    code = (
        "import sys, axonml.io as io; w = io.load_torch(sys.argv[1])['w']; io.save_torch({'w': w}, sys.argv[2]); "
        "assert io.load_torch(sys.argv[2])['w'].tolist() == [1.0, 2.0, 3.0, 4.0]; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "ok.pt"), str(tmp_path / "out.pt")], check=True)
