"""default_collate / default_convert / collate: structures and dtypes equal to torch.utils.data's."""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import numpy as np
import pytest

import axonml as ax
from axonml.data import collate, default_collate, default_collate_fn_map, default_convert
from axonml.errors import ShapeError

sys.path.insert(0, str(Path(__file__).parent))
from datahelp import needs_torch, structure, tdata, torch

Point = collections.namedtuple("Point", ["x", "y"])

# Each case builds a batch (a list of samples) given a tensor maker, so that the same
# samples can be made of axonml tensors and of PyTorch tensors.
CASES = {
    "ints": lambda make: [1, 2, 3],
    "floats": lambda make: [1.5, 2.0],
    "bools": lambda make: [True, False],
    "np_f32_scalars": lambda make: [np.float32(1), np.float32(2.5)],
    "np_int8_scalars": lambda make: [np.int8(1), np.int8(-2)],
    "np_bool_scalars": lambda make: [np.bool_(True), np.bool_(False)],
    "np_arrays": lambda make: [np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)],
    "np_int_arrays": lambda make: [np.arange(3), np.arange(3, 6)],
    "np_uint8_arrays": lambda make: [np.arange(4, dtype=np.uint8).reshape(2, 2)] * 3,
    "np_0d": lambda make: [np.array(1.5), np.array(2.5)],
    "strings": lambda make: ["a", "bc"],
    "bytes": lambda make: [b"x", b"y"],
    "tensors_f32": lambda make: [make(np.ones((2, 2), np.float32)), make(np.full((2, 2), 2, np.float32))],
    "tensors_i64": lambda make: [make(np.array([1, 2])), make(np.array([3, 4]))],
    "tensors_bool": lambda make: [make(np.array([True])), make(np.array([False]))],
    "tensors_f16": lambda make: [make(np.ones(3, np.float16))] * 2,
    "tensors_0d": lambda make: [make(np.array(1.0, np.float32)), make(np.array(2.0, np.float32))],
    "tensors_empty": lambda make: [make(np.zeros((0, 2), np.float32))] * 3,
    "tuples": lambda make: [(make(np.ones(2, np.float32)), 1, "a"), (make(np.zeros(2, np.float32)), 2, "b")],
    "lists": lambda make: [[1, 2.0], [3, 4.0]],
    "namedtuple": lambda make: [Point(1, 2.0), Point(3, 4.0)],
    "dict": lambda make: [{"img": make(np.ones(2, np.float32)), "label": 3, "name": "p"},
                       {"img": make(np.zeros(2, np.float32)), "label": 4, "name": "q"}],
    "ordered_dict": lambda make: [collections.OrderedDict(a=1, b=np.float64(2))] * 2,
    "nested": lambda make: [{"a": [(1, np.array([1.0])), {"b": "s"}]}, {"a": [(2, np.array([2.0])), {"b": "t"}]}],
}


@pytest.mark.parametrize("case", sorted(CASES))
@needs_torch
def test_default_collate_like_torch(case):
    ours = default_collate(CASES[case](ax.tensor))
    theirs = tdata.default_collate(CASES[case](torch.tensor))
    assert structure(ours) == structure(theirs)


@needs_torch
def test_default_collate_defaultdict_like_torch():
    def make():
        d = collections.defaultdict(list)
        d["k"] = 1
        return [d, d]

    ours, theirs = default_collate(make()), tdata.default_collate(make())
    assert type(ours) is type(theirs) is collections.defaultdict
    assert ours.default_factory is list and ours["k"].tolist() == theirs["k"].tolist()


CONVERT = {
    "np_array": lambda: np.arange(3, dtype=np.int16),
    "np_scalar": lambda: np.float32(2.5),
    "np_str_array": lambda: np.array(["a"]),
    "tuple": lambda: (np.array(1), 2, "s"),
    "namedtuple": lambda: Point(np.zeros(2), 3),
    "dict": lambda: {"a": np.ones(2, np.float32), "b": [np.int64(4)]},
    "number": lambda: 3,
    "string": lambda: "abc",
}


@pytest.mark.parametrize("case", sorted(CONVERT))
@needs_torch
def test_default_convert_like_torch(case):
    assert structure(default_convert(CONVERT[case]())) == structure(tdata.default_convert(CONVERT[case]()))


def test_default_convert_keeps_tensors():
    t = ax.ones(2)
    assert default_convert(t) is t
    assert default_convert([t])[0] is t


def test_collate_keeps_dtype_device_and_values():
    a, b = ax.arange(6, dtype=ax.int32).reshape(2, 3), ax.ones(2, 3, dtype=ax.int32)
    out = default_collate([a, b])
    assert out.dtype == ax.int32 and out.shape == (2, 2, 3)
    assert out.tolist() == [a.tolist(), b.tolist()]
    out[0, 0, 0] = 100  # the batch owns its memory
    assert a[0, 0].item() == 0


def test_collate_promotes_mixed_dtypes_like_stack():
    out = default_collate([ax.tensor([1], dtype=ax.int32), ax.tensor([1.5])])
    assert out.dtype == ax.float32 and out.tolist() == [[1.0], [1.5]]


def test_collate_records_autograd():
    x = ax.ones(2, requires_grad=True)
    out = default_collate([x, x * 2])
    assert out.requires_grad
    out.sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]
    with ax.no_grad():
        assert not default_collate([x, x]).requires_grad


def test_collate_errors():
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match="found <U1"):
        default_collate([np.array(["a"]), np.array(["b"])])
    with pytest.raises(TypeError, match="found <class 'object'>"):
        default_collate([object(), object()])
    with pytest.raises(ShapeError, match=r"\(2,\) and \(3,\)"):
        default_collate([ax.ones(2), ax.ones(3)])
    with pytest.raises(ShapeError, match="equal shapes"):
        default_collate([np.ones(2), np.ones(3)])
    with pytest.raises(ValueError, match="empty batch"):
        default_collate([])
    with pytest.raises(TypeError):
        default_collate([np.ones(2, np.uint32)] * 2)  # a dtype axonml has no tensor type for


def test_collate_with_custom_map():
    def sum_ints(batch, *, collate_fn_map=None):
        return sum(batch)

    custom = {**default_collate_fn_map, int: sum_ints}
    assert collate([(1, 2.0), (3, 4.0)], collate_fn_map=custom)[0] == 4
    assert collate([[True], [False]], collate_fn_map={int: sum_ints}) == [1]  # bool reaches int by isinstance
    with pytest.raises(TypeError):
        collate([1.0, 2.0], collate_fn_map={int: sum_ints})
