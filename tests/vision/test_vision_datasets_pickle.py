"""The restricted unpickler of CIFAR batches: arrays and plain containers load, whatever could run code is refused."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

import axonml.io as ax_io
from axonml.vision.datasets import CIFAR10, DatasetFileError, UnsafePickleError, load_pickle


class RunsACommand:
    """Unpickling this with plain pickle would run a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class CallsEval:
    def __reduce__(self):
        return eval, ("__import__('os').getcwd()",)


def _write(tmp_path: Path, obj_or_bytes, name: str = "batch") -> Path:
    path = tmp_path / name
    data = obj_or_bytes if isinstance(obj_or_bytes, bytes) else pickle.dumps(obj_or_bytes, protocol=2)
    path.write_bytes(data)
    return path


def test_os_system_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = _write(tmp_path, {b"data": np.zeros((1, 3072), np.uint8), b"labels": [RunsACommand(f"touch {marker}")]})
    with pytest.raises(UnsafePickleError) as info:
        load_pickle(path)
    msg = str(info.value)
    assert str(path) in msg and f"{os.system.__module__}.system" in msg and "refusing" in msg
    assert not marker.exists()
    # one error class, catchable as a bad dataset file or as an unpickling error
    assert isinstance(info.value, DatasetFileError) and isinstance(info.value, pickle.UnpicklingError)
    assert isinstance(info.value, ax_io.UnsafePickleError)
    # the same file in place of a real batch stops the dataset, naming the file
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    path.rename(folder / "test_batch")
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"] * 10}, protocol=2))
    with pytest.raises(UnsafePickleError, match="test_batch"):
        CIFAR10(tmp_path, train=False)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_other_callables_are_refused(tmp_path, protocol):
    for evil in (CallsEval(), {"x": [1, (2, CallsEval())]}, getattr, Path("/x")):
        path = tmp_path / "p"
        path.write_bytes(pickle.dumps(evil, protocol=protocol))
        with pytest.raises(UnsafePickleError, match="refusing"):
            load_pickle(path)


def test_codecs_and_object_arrays_are_restricted(tmp_path):
    # _codecs.encode is how Python 3 pickles bytes at protocol 2; any codec but latin-1 is refused
    rot13 = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(UnsafePickleError, match="rot13"):
        load_pickle(_write(tmp_path, rot13))
    with pytest.raises(UnsafePickleError, match="Python objects"):
        load_pickle(_write(tmp_path, {"a": np.array([1, "x"], dtype=object)}))
    persistent = b"\x80\x02X\x01\x00\x00\x00aQ."  # BINPERSID
    with pytest.raises(UnsafePickleError, match="persistent"):
        load_pickle(_write(tmp_path, persistent))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_arrays_and_containers_load(tmp_path, protocol):
    rng = np.random.default_rng(protocol)
    obj = {
        b"data": rng.integers(0, 256, (7, 3072), dtype=np.uint8),
        b"labels": [int(x) for x in rng.integers(0, 10, 7)],
        b"filenames": [b"a.png", b"b.png"],
        b"batch_label": "training batch 1 of 5",
        b"f": np.asfortranarray(rng.normal(size=(3, 4)).astype(np.float32)),
        b"strided": np.arange(20, dtype=np.int64)[::3],
        b"nested": {"t": (1, 2.5, None, True), "l": [[1], {"k": b"v"}]},
    }
    path = tmp_path / "b"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    out = load_pickle(path)
    assert set(out) == {"data", "labels", "filenames", "batch_label", "f", "strided", "nested"}
    for key in ("data", "f", "strided"):
        assert np.array_equal(out[key], obj[key.encode()]) and out[key].dtype == obj[key.encode()].dtype
    assert out["labels"] == obj[b"labels"] and out["filenames"] == [b"a.png", b"b.png"]
    assert out["nested"] == {"t": (1, 2.5, None, True), "l": [[1], {"k": b"v"}]}


def _short(b: bytes) -> bytes:
    return b"U" + bytes([len(b)]) + b  # SHORT_BINSTRING: a Python 2 str


def test_python2_pickle_of_an_array(tmp_path):
    """A batch as Python 2 wrote it: numpy.core globals and the raw bytes as a latin-1 str."""
    raw = bytes(range(250, 256))
    array = (b"cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85" + _short(b"b") + b"\x87R"
             + b"(K\x01K\x02K\x03\x86cnumpy\ndtype\n" + _short(b"u1") + b"K\x00K\x01\x87R"
             + b"(K\x03" + _short(b"|") + b"NNN" + (b"J" + struct.pack("<i", -1)) * 2 + b"K\x00tb"
             + b"\x89" + _short(raw) + b"tb")
    data = b"\x80\x02}(" + _short(b"data") + array + _short(b"labels") + b"](K\x01K\x02eu."
    out = load_pickle(_write(tmp_path, data))
    assert out["labels"] == [1, 2] and out["data"].dtype == np.uint8
    assert np.array_equal(out["data"], np.frombuffer(raw, np.uint8).reshape(2, 3))


def test_real_python2_meta_file(shared_data):
    meta = load_pickle(shared_data / "cifar-10-batches-py" / "batches.meta")  # the original, written by Python 2
    assert meta["label_names"][:3] == ["airplane", "automobile", "bird"] and meta["num_cases_per_batch"] == 10000


def test_truncated_or_garbage_pickles_name_the_file(tmp_path):
    good = pickle.dumps({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 2]}, protocol=2)
    for name, data in {"cut": good[: len(good) // 2], "tail": good[:-1], "junk": b"\x00garbage\xff" * 10,
                       "empty": b""}.items():
        path = _write(tmp_path, data, name)
        with pytest.raises(DatasetFileError, match="truncated or corrupt") as info:
            load_pickle(path)
        assert str(path) in str(info.value) and not isinstance(info.value, UnsafePickleError)
