"""axonml.save / axonml.load: the safe zip format, bit-for-bit, atomic, and clear about foreign files."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from iohelp import every_dtype_arrays, same_bits

import axonml as ax
from axonml.errors import DeviceError
from axonml.io import SerializationError, read_metadata, verify

# save/load are functions of the root namespace without gradients: tested here
NONDIFF_NAMES = ["save", "load"]


def test_every_dtype_round_trips_bit_for_bit(tmp_path: Path) -> None:
    arrays = every_dtype_arrays()
    tensors = {k: ax.from_numpy(v) for k, v in arrays.items()}
    tensors["empty"] = ax.zeros(0, 3)
    tensors["scalar"] = ax.tensor(3.25, dtype=ax.float64)
    tensors["transposed"] = ax.from_numpy(arrays["float32"]).T  # non-contiguous views are stored by value
    ax.save(tensors, tmp_path / "t.axonml")
    for mmap in (False, True):
        out = ax.load(tmp_path / "t.axonml", mmap=mmap)
        assert list(out) == list(tensors)
        for k, t in tensors.items():
            assert isinstance(out[k], ax.Tensor) and same_bits(out[k], t), k


def test_state_dicts_and_optimizer_state(tmp_path: Path) -> None:
    model = ax.nn.Sequential(ax.nn.Linear(3, 4), ax.nn.BatchNorm1d(4))
    opt = ax.optim.AdamW(model.parameters(), lr=1e-2)
    model(ax.randn(5, 3)).sum().backward()
    opt.step()
    obj = {"model": model.state_dict(), "optimizer": opt.state_dict()}
    ax.save(obj, tmp_path / "ckpt")
    out = ax.load(tmp_path / "ckpt")
    assert isinstance(out["model"], OrderedDict) and out["model"]._metadata == obj["model"]._metadata
    assert list(out["optimizer"]["state"]) == [0, 1, 2, 3]  # int keys stay ints
    assert out["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)  # tuples stay tuples
    for k, v in obj["model"].items():
        assert same_bits(out["model"][k], v)
    fresh = ax.nn.Sequential(ax.nn.Linear(3, 4), ax.nn.BatchNorm1d(4))
    fresh.load_state_dict(out["model"])
    opt2 = ax.optim.AdamW(fresh.parameters(), lr=1e-2)
    opt2.load_state_dict(out["optimizer"])
    for a, b in zip(opt.state.values(), opt2.state.values()):
        assert all(same_bits(a[k], b[k]) for k in a)


def test_plain_values_and_awkward_keys(tmp_path: Path) -> None:
    shared = ax.randn(2)
    obj = {
        "numbers": [0, -1, 2**80, 1.5, float("inf"), float("-inf"), True, None, 1 + 2j],
        "text": "é✓", "bytes": b"\x00\xff", "tuple": (1, (2,), ()), "set": {1, 2}, "frozen": frozenset({"a"}),
        "$tensor": "a user key that looks like a tag", "$$x": 1,
        "keys": {1: "a", (2, 3): "b", None: "c", 2.5: "d"},
        "np": np.arange(5, dtype=np.uint16), "np_scalar": np.float32(0.1), "np_bool": np.bool_(True),
        "dtype": ax.bfloat16, "device": ax.device("cpu"),
        "shared": [shared, shared],
        "param": ax.nn.Parameter(ax.ones(2)), "grad": ax.ones(2, requires_grad=True),
    }
    ax.save(obj, tmp_path / "x")
    out = ax.load(tmp_path / "x")
    assert out["numbers"] == obj["numbers"] and out["text"] == obj["text"] and out["bytes"] == obj["bytes"]
    assert out["tuple"] == (1, (2,), ()) and out["set"] == {1, 2} and out["frozen"] == frozenset({"a"})
    assert out["$tensor"] == obj["$tensor"] and out["$$x"] == 1 and out["keys"] == obj["keys"]
    assert out["np"].dtype == np.uint16 and np.array_equal(out["np"], obj["np"])
    assert type(out["np_scalar"]) is np.float32 and out["np_scalar"] == obj["np_scalar"]
    assert type(out["np_bool"]) is np.bool_
    assert out["dtype"] is ax.bfloat16 and out["device"] == ax.device("cpu")
    assert out["shared"][0] is out["shared"][1]  # one tensor saved once comes back as one object
    assert isinstance(out["param"], ax.nn.Parameter) and out["param"].requires_grad
    assert out["grad"].requires_grad and out["grad"].is_leaf


def test_nan_floats_and_metadata(tmp_path: Path) -> None:
    ax.save({"x": float("nan")}, tmp_path / "n", metadata={"epoch": 3, "tag": "best"})
    assert np.isnan(ax.load(tmp_path / "n")["x"])
    assert read_metadata(tmp_path / "n") == {"epoch": 3, "tag": "best"}
    with pytest.raises(SerializationError, match="metadata must be JSON"):
        ax.save({}, tmp_path / "bad", metadata={"x": object()})


def test_header_is_readable_json(tmp_path: Path) -> None:
    ax.save({"w": ax.ones(2, 3)}, tmp_path / "f")
    with zipfile.ZipFile(tmp_path / "f") as zf:
        header = json.loads(zf.read("axonml.json"))
        assert header["format"] == "axonml.save" and header["tensors"][0]["shape"] == [2, 3]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    raw = (tmp_path / "f").read_bytes()
    assert b"pickle" not in raw and raw[:2] == b"PK"


def test_files_objects_and_bytes() -> None:
    buf = io.BytesIO()
    ax.save([ax.arange(4)], buf)
    buf.seek(0)
    assert ax.load(buf)[0].tolist() == [0, 1, 2, 3]
    assert ax.io.loads(ax.io.dumps({"a": 1})) == {"a": 1}
    with pytest.raises(ValueError, match="path"):
        ax.load(io.BytesIO(ax.io.dumps(1)), mmap=True)


def test_same_content_gives_same_bytes(tmp_path: Path) -> None:
    ax.save({"w": ax.ones(3)}, tmp_path / "a")
    ax.save({"w": ax.ones(3)}, tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_unsupported_objects_are_named(tmp_path: Path) -> None:
    with pytest.raises(SerializationError, match=r"Linear \(at obj\['model'\]\).*state_dict"):
        ax.save({"model": ax.nn.Linear(2, 2)}, tmp_path / "m")
    with pytest.raises(SerializationError, match=r"at obj\[0\]\[1\]"):
        ax.save([[1, lambda: 0]], tmp_path / "m")
    with pytest.raises(SerializationError, match="dtype object"):
        ax.save(np.array([None]), tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "keep"
    ax.save({"v": 1}, target)
    before = target.read_bytes()
    with pytest.raises(SerializationError):
        ax.save({"v": object()}, target)  # fails while encoding: the old file stays
    assert target.read_bytes() == before
    calls = []

    def failing_writestr(self: zipfile.ZipFile, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:  # the header is written, the first tensor fails: a half-written temp file
            raise OSError("disk full")
        real_writestr(self, *args, **kwargs)

    real_writestr = zipfile.ZipFile.writestr
    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing_writestr)
    with pytest.raises(OSError, match="disk full"):
        ax.save({"w": ax.ones(10)}, target)
    monkeypatch.undo()
    assert target.read_bytes() == before  # the old file is intact, the temp file is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]
    (tmp_path / "ref").write_bytes(b"")  # an atomic write gets the permissions a plain write would
    assert os.stat(target).st_mode & 0o777 == os.stat(tmp_path / "ref").st_mode & 0o777


def test_foreign_and_damaged_files(tmp_path: Path) -> None:
    cases = {
        "text": b"hello world, not a checkpoint",
        "empty": b"",
        "pickle": pickle.dumps({"a": 1}),
        "zip": _zip_with({"readme.txt": b"hi"}),
        "archive": _zip_with({"manifest.json": b"{}"}),
    }
    messages = {"text": "not an axonml file", "empty": "not an axonml file", "pickle": "plain Python pickle",
                "zip": "neither an axonml file nor a PyTorch", "archive": "ModelArchive"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(SerializationError, match=messages[name]):
            ax.load(tmp_path / name)
    ax.save({"w": ax.randn(1000)}, tmp_path / "good")
    raw = (tmp_path / "good").read_bytes()
    (tmp_path / "truncated").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SerializationError, match="truncated or corrupt"):
        ax.load(tmp_path / "truncated")
    flipped = bytearray(raw)
    flipped[raw.index(b"data/0") + 200] ^= 0xFF  # a byte of the tensor data
    (tmp_path / "flipped").write_bytes(bytes(flipped))
    with pytest.raises(SerializationError, match="corrupt"):
        ax.load(tmp_path / "flipped")
    with pytest.raises(SerializationError, match="CRC"):
        verify(tmp_path / "flipped")
    verify(tmp_path / "good")
    with pytest.raises(FileNotFoundError):
        ax.load(tmp_path / "missing")


def test_tampered_header_is_checked(tmp_path: Path) -> None:
    ax.save({"w": ax.ones(4)}, tmp_path / "g")
    with zipfile.ZipFile(tmp_path / "g") as zf:
        header = json.loads(zf.read("axonml.json"))
        data = zf.read("data/0")
    for patch, msg in (({"shape": [5]}, "needs"), ({"dtype": "object"}, "not a numeric"),
                       ({"shape": [-1]}, "bad shape")):
        bad = json.loads(json.dumps(header))
        bad["tensors"][0].update(patch)
        (tmp_path / "b").write_bytes(_zip_with({"axonml.json": json.dumps(bad).encode(), "data/0": data}))
        with pytest.raises(SerializationError, match=msg):
            ax.load(tmp_path / "b")
    bad = dict(header, object={"$tensor": 7})
    (tmp_path / "b").write_bytes(_zip_with({"axonml.json": json.dumps(bad).encode(), "data/0": data}))
    with pytest.raises(SerializationError, match="bad tensor index"):
        ax.load(tmp_path / "b")
    newer = dict(header, format_version=99)
    (tmp_path / "b").write_bytes(_zip_with({"axonml.json": json.dumps(newer).encode(), "data/0": data}))
    with pytest.raises(SerializationError, match="newer"):
        ax.load(tmp_path / "b")


def test_map_location(tmp_path: Path) -> None:
    ax.save({"w": ax.ones(2)}, tmp_path / "m")
    assert ax.load(tmp_path / "m", map_location="cpu")["w"].device == ax.device("cpu")
    assert ax.load(tmp_path / "m", map_location={"cpu": "cpu"})["w"].device == ax.device("cpu")
    seen = []
    out = ax.load(tmp_path / "m", map_location=lambda t, loc: seen.append(loc) or t * 2)
    assert seen == ["cpu"] and out["w"].tolist() == [2.0, 2.0]
    with zipfile.ZipFile(tmp_path / "m") as zf:
        header = json.loads(zf.read("axonml.json"))
        data = zf.read("data/0")
    header["tensors"][0]["device"] = "cuda:7"  # as if saved on a GPU this machine lacks
    (tmp_path / "g").write_bytes(_zip_with({"axonml.json": json.dumps(header).encode(), "data/0": data}))
    with pytest.raises(DeviceError, match="map_location='cpu'"):
        ax.load(tmp_path / "g")
    assert ax.load(tmp_path / "g", map_location="cpu")["w"].tolist() == [1.0, 1.0]


def _zip_with(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()
