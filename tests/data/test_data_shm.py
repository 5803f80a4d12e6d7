"""The shared-memory transport of DataLoader batches: packing, unpacking, slot growth, cleanup."""

from __future__ import annotations

import collections
import os
import pickle
import secrets
import sys
from pathlib import Path

import numpy as np
import pytest

import axonml as ax
from axonml.data import TensorDataset, default_collate
from axonml.data.collate import _out_allocator
from axonml.data.shm import Arena, MetaBlob, Segment, load

pytestmark = pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="POSIX shared memory in /dev/shm")

sys.path.insert(0, str(Path(__file__).parent))
from datahelp import structure  # noqa: E402

Pair = collections.namedtuple("Pair", ["a", "b"])


@pytest.fixture
def arena():
    prefix = f"/ax{os.getpid():x}-t{secrets.token_hex(2)}"
    a = Arena(prefix, 0, 0)
    yield a
    a.destroy()
    assert not [p for p in os.listdir("/dev/shm") if p.startswith(prefix[1:])]


def roundtrip(arena: Arena, batch):
    arena.reset()
    meta, name = arena.pack(batch)
    wire = pickle.loads(pickle.dumps(meta))  # what crosses the pipe
    if name is None:
        return wire, 0
    seg = Segment(name)
    try:
        return load(wire, seg.base), len(pickle.dumps(meta))
    finally:
        seg.close()


def test_roundtrip_of_every_kind(arena):
    batch = {
        "f32": ax.randn(3, 4),
        "i64": ax.arange(5),
        "bool": ax.tensor([True, False]),
        "f16": ax.ones(2, dtype=ax.float16),
        "bf16": ax.ones(3, dtype=ax.bfloat16),
        "empty": ax.zeros(0, 3),
        "scalar": ax.tensor(2.5),
        "strided": ax.arange(12.0).reshape(3, 4).T,  # not contiguous
        "np": np.arange(6, dtype=np.int16).reshape(2, 3),
        "pair": Pair(ax.ones(1), "text"),
        "ordered": collections.OrderedDict(x=np.float32([1.5])),
        "list": [1, 2.0, None, b"raw"],
        "tuple": (ax.zeros(2, dtype=ax.int8),),
    }
    out, wire_bytes = roundtrip(arena, batch)
    assert structure(out) == structure(batch)
    assert isinstance(out["np"], np.ndarray) and isinstance(out["ordered"], collections.OrderedDict)
    assert out["bf16"].dtype == ax.bfloat16 and out["strided"].tolist() == batch["strided"].tolist()
    assert wire_bytes < 3000  # metadata only


def test_big_batch_sends_only_metadata(arena):
    big = ax.randn(256, 1024)  # 1 MiB
    out, wire_bytes = roundtrip(arena, [big])
    assert np.array_equal(out[0].numpy(), big.numpy()) and wire_bytes < 500
    out[0][0, 0] = 1e9  # a private copy: writing it does not touch the slot
    again, _ = roundtrip(arena, [big])
    assert again[0][0, 0].item() == big[0, 0].item()


def test_requires_grad_survives(arena):
    out, _ = roundtrip(arena, ax.ones(2, requires_grad=True))
    assert out.requires_grad and out.is_leaf


def test_no_arrays_no_segment(arena):
    out, _ = roundtrip(arena, ["a", 1, {"k": None}])
    assert out == ["a", 1, {"k": None}] and arena.seg is None


def test_collate_writes_straight_into_the_slot(arena):
    samples = [(ax.full((4, 4), float(i)), i) for i in range(8)]
    roundtrip(arena, default_collate(samples))  # the first batch sizes the slot
    gen = arena.gen
    arena.reset()
    _out_allocator[0] = arena.alloc
    try:
        batch = default_collate(samples)
    finally:
        _out_allocator[0] = None
    x = batch[0]._data
    assert np.shares_memory(x, arena.seg.base)  # stacked in shared memory, no second copy
    meta, name = arena.pack(batch)
    assert meta[0].offset == x.__array_interface__["data"][0] - arena.seg.address
    assert arena.gen == gen and name == arena.seg.name


def test_tensor_dataset_gathers_straight_into_the_slot(arena):
    ds = TensorDataset(ax.randn(50, 3, 3), ax.arange(50))
    idx = [49, 0, -1, 7]
    expected = ds._collated_batch(idx)
    roundtrip(arena, expected)  # size the slot
    arena.reset()
    _out_allocator[0] = arena.alloc
    try:
        batch = ds._collated_batch(idx)
    finally:
        _out_allocator[0] = None
    assert all(np.shares_memory(t._data, arena.seg.base) for t in batch)
    assert structure(batch) == structure(expected)


def test_slot_grows_and_unlinks_old_generation(arena):
    roundtrip(arena, ax.zeros(10))
    first = arena.seg.name
    out, _ = roundtrip(arena, ax.arange(100000.0))
    assert arena.gen == 1 and arena.seg.name != first and out[-1].item() == 99999.0
    assert first[1:] not in os.listdir("/dev/shm") and arena.seg.name[1:] in os.listdir("/dev/shm")
    small, _ = roundtrip(arena, ax.ones(3))  # smaller batches reuse the big slot
    assert arena.gen == 1 and small.tolist() == [1.0, 1.0, 1.0]


def test_big_structures_travel_in_shared_memory(arena):
    words = [f"word{i}" for i in range(5000)]  # about 50 kB pickled: too much for the pipe
    out, wire_bytes = roundtrip(arena, (ax.arange(4), words))
    assert out[1] == words and out[0].tolist() == [0, 1, 2, 3] and wire_bytes < 200
    arena.reset()
    assert isinstance(arena.pack({"w": words})[0], MetaBlob)  # also with no array at all
    out, _ = roundtrip(arena, {"w": words * 3})  # a bigger one grows the slot
    assert out["w"] == words * 3
