"""The restricted pickle machine: same values as Python's pickle on data, refusal of everything that runs code."""

from __future__ import annotations

import pickle
import pickletools
from collections import Counter, OrderedDict
from pathlib import Path

import numpy as np
import pytest

from axonml.io import RestrictedUnpickler, UnsafePickleError, numpy_globals, restricted_loads
from axonml.io._common import SerializationError
from axonml.io.pickle_globals import builtin_globals
from axonml.io.pickle_writer import GlobalRef, Persistent, Pickler2, Reduce

DATA = {
    "ints": [0, 1, -1, 255, 256, 65535, 65536, -(2**31), 2**31 - 1, 2**31, 2**64 + 7, -(2**70), 10**400],
    "floats": [0.0, -0.0, 1.5, 1e-300, float("inf"), float("-inf")],
    "text": ["", "a", "é ünïcödé ✓", "x" * 300],
    "bytes": [b"", b"\x00\xff", bytes(range(256)) * 2],
    "nested": {"t": (1, (2, 3), ()), "l": [[], [None, True, False]], 7: "int key", (1, 2): "tuple key"},
    "od": OrderedDict([("b", 1), ("a", 2)]),
    "set": {1, 2, 3}, "frozen": frozenset({"x"}), "counter": Counter("abca"), "complex": 1 + 2j,
    "bytearray": bytearray(b"xy"),
}
SAFE = builtin_globals()


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_plain_data_matches_pickle(protocol: int) -> None:
    blob = pickle.dumps(DATA, protocol=protocol)
    assert restricted_loads(blob, SAFE) == DATA


def test_shared_references_survive() -> None:
    inner = [1, 2]
    out = restricted_loads(pickle.dumps({"a": inner, "b": inner}, protocol=2), SAFE)
    assert out["a"] is out["b"]


def test_ordered_dict_attributes() -> None:
    od: OrderedDict[str, int] = OrderedDict(w=1)
    od._metadata = OrderedDict({"": {"version": 1}})  # type: ignore[attr-defined]
    out = restricted_loads(pickle.dumps(od, protocol=2), SAFE)
    assert out == od and out._metadata == od._metadata


def test_several_pickles_from_one_stream(tmp_path: Path) -> None:
    path = tmp_path / "multi.pkl"
    with open(path, "wb") as f:
        for obj in (1, "two", [3]):
            pickle.dump(obj, f, protocol=2)
    with open(path, "rb") as f:
        got = [RestrictedUnpickler(f, SAFE).load() for _ in range(3)]
    assert got == [1, "two", [3]]


@pytest.mark.parametrize("protocol", [2, 4])
def test_numpy_arrays_dtypes_scalars(protocol: int) -> None:
    obj = {
        "f": np.arange(12, dtype=np.float32).reshape(3, 4),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
        "big": np.arange(4, dtype=">i4"),
        "u8": np.zeros((0, 3), np.uint8),
        "scalar": np.float64(2.5),
        "dtype": np.dtype("<f8"),
        "str": np.array(["ab", "c"]),
    }
    out = restricted_loads(pickle.dumps(obj, protocol=protocol), {**SAFE, **numpy_globals()})
    for k in ("f", "fortran", "big", "u8", "str"):
        np.testing.assert_array_equal(out[k], obj[k])
        assert out[k].dtype == obj[k].dtype and out[k].shape == obj[k].shape
    assert out["scalar"] == 2.5 and out["scalar"].dtype == np.float64
    assert out["dtype"] == np.dtype("<f8")


def test_python2_style_numpy_pickle_with_latin1_strings() -> None:
    # CIFAR's batches are Python 2 pickles: str objects hold raw bytes; latin-1 (or 'bytes') recovers them
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    blob = pickle.dumps({"data": arr, "labels": [1, 2]}, protocol=2)
    out = restricted_loads(blob, {**SAFE, **numpy_globals()}, encoding="latin1")
    np.testing.assert_array_equal(out["data"], arr)


def test_numpy_object_arrays_are_refused() -> None:
    blob = pickle.dumps(np.array([1, "x", None], dtype=object), protocol=2)
    with pytest.raises(UnsafePickleError, match="dtype"):
        restricted_loads(blob, {**SAFE, **numpy_globals()})


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_code_execution_is_refused(protocol: int) -> None:
    blob = pickle.dumps({"x": _Evil()}, protocol=protocol)
    with pytest.raises(UnsafePickleError, match=r"(posix|os|nt)\.system"):
        restricted_loads(blob, SAFE)


@pytest.mark.parametrize("payload", [
    b"cbuiltins\neval\n(X\x06\x00\x00\x001 + 1tR.",  # GLOBAL + REDUCE
    b"\x80\x04\x8c\x08builtins\x8c\x04exec\x93X\x04\x00\x00\x00passtR.",  # STACK_GLOBAL
    b"(csubprocess\nPopen\nX\x02\x00\x00\x00lsto.",  # OBJ
    b"(X\x02\x00\x00\x00lsisubprocess\nPopen\n.",  # INST
    b"\x80\x02\x82\x01.",  # EXT1: the copyreg extension registry
])
def test_other_code_paths_are_refused(payload: bytes) -> None:
    with pytest.raises(UnsafePickleError):
        restricted_loads(payload, SAFE)


def test_whitelisted_type_cannot_be_called_with_build_tricks() -> None:
    # BUILD on a whitelisted global (here the OrderedDict class marker) is refused, so no attribute is set
    blob = b"\x80\x02ccollections\nOrderedDict\n}X\x08\x00\x00\x00__init__K\x01sb."
    with pytest.raises(UnsafePickleError):
        restricted_loads(blob, SAFE)
    # and an instance may not get a method shadowed
    blob = b"\x80\x02ccollections\nOrderedDict\n)R}X\x05\x00\x00\x00itemsK\x01sb."
    with pytest.raises(UnsafePickleError, match="bad state"):
        restricted_loads(blob, SAFE)


@pytest.mark.parametrize("blob", [b"", b"\x80\x02", b"\x80\x02]q\x00(K\x01", b"\x80\x02X\xff\x00\x00\x00ab."])
def test_truncated_pickles_are_clear_errors(blob: bytes) -> None:
    with pytest.raises(SerializationError, match="truncated"):
        restricted_loads(blob, SAFE)


def test_persistent_ids_need_a_reader() -> None:
    blob = Pickler2(lambda o: o).dumps(Persistent(("storage", "k")))
    with pytest.raises(UnsafePickleError, match="persistent"):
        restricted_loads(blob, SAFE)
    assert restricted_loads(blob, SAFE, persistent_load=lambda pid: ("got", pid)) == ("got", ("storage", "k"))


def test_pickler2_writes_protocol_2_that_python_reads() -> None:
    plain = {k: v for k, v in DATA.items() if k not in ("set", "frozen", "counter", "complex", "bytearray")}
    blob = Pickler2(lambda o: (_ for _ in ()).throw(TypeError(o))).dumps(plain)
    assert max(op.proto for op, _, _ in pickletools.genops(blob)) <= 2
    assert pickle.loads(blob) == plain
    assert restricted_loads(blob, SAFE) == plain


def test_pickler2_nodes() -> None:
    blob = Pickler2(lambda o: o).dumps([Reduce("collections", "OrderedDict", ([("a", 1)],)),
                                        GlobalRef("collections", "OrderedDict")])
    out = pickle.loads(blob)
    assert out[0] == OrderedDict(a=1) and out[1] is OrderedDict


def test_mutated_pickles_fail_cleanly() -> None:
    # flipped, dropped and inserted bytes: every outcome is a value or a SerializationError, never a crash
    rng = np.random.default_rng(0)
    allowed = {**SAFE, **numpy_globals()}
    seeds = [pickle.dumps(DATA, protocol=p) for p in (0, 2, 4)]
    seeds.append(pickle.dumps({"a": np.arange(6.0).reshape(2, 3), "d": np.dtype("<i4")}, protocol=2))
    outcomes = {"ok": 0, "error": 0}
    for _ in range(1500):
        blob = bytearray(seeds[rng.integers(len(seeds))])
        for _ in range(rng.integers(1, 4)):
            i = int(rng.integers(len(blob)))
            kind = rng.integers(3)
            if kind == 0:
                blob[i] = int(rng.integers(256))
            elif kind == 1:
                del blob[i]
            else:
                blob.insert(i, int(rng.integers(256)))
        try:
            restricted_loads(bytes(blob), allowed, persistent_load=lambda pid: pid)
            outcomes["ok"] += 1
        except SerializationError:
            outcomes["error"] += 1
    assert outcomes["ok"] > 0 and outcomes["error"] > 0
