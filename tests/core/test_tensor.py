"""The Tensor API: shape queries, conversions, the Python protocol and operators against NumPy."""

from __future__ import annotations

import copy
import operator
import pickle
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml.errors import AutogradError, IndexingError


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


# ----- shape and layout ------------------------------------------------------------------
def test_shape_queries() -> None:
    x = ax.zeros(2, 3, 4)
    assert x.shape == (2, 3, 4) and isinstance(x.shape, tuple)
    assert x.size() == (2, 3, 4) and x.size(1) == 3 and x.size(-1) == 4
    assert x.dim() == x.ndim == 3
    assert x.numel() == x.nelement() == 24
    assert x.element_size() == x.itemsize == 4 and x.nbytes == 96
    s = ax.tensor(5.0)
    assert s.shape == () and s.dim() == 0 and s.numel() == 1
    e = ax.zeros(0, 3)
    assert e.numel() == 0 and e.shape == (0, 3)
    with pytest.raises(IndexingError, match="out of range"):
        x.size(3)
    with pytest.raises(IndexError):
        x.size(-4)


def test_stride_and_contiguity() -> None:
    x = ax.arange(24.0).reshape(2, 3, 4)
    assert x.stride() == (12, 4, 1) and x.stride(0) == 12 and x.stride(-1) == 1
    assert x.is_contiguous()
    t = x.transpose(0, 2)
    assert t.stride() == (1, 4, 12) and not t.is_contiguous()
    c = t.contiguous()
    assert c.is_contiguous() and c.stride() == (6, 2, 1)
    np.testing.assert_array_equal(c.numpy(), x.numpy().transpose(2, 1, 0))
    assert x.contiguous() is x
    assert x[:, :, ::2].stride() == (12, 4, 2)


@pytest.mark.torch
def test_strides_match_torch(torch: Any) -> None:
    a = np.arange(60.0).reshape(3, 4, 5)
    x, t = ax.tensor(a), torch.tensor(a)
    assert x.stride() == t.stride()
    assert x.permute(2, 0, 1).stride() == t.permute(2, 0, 1).stride()
    assert x[1:, ::2].stride() == t[1:, ::2].stride()
    assert x.T.is_contiguous() == t.permute(2, 1, 0).is_contiguous()


# ----- repr -------------------------------------------------------------------------------
def test_repr() -> None:
    assert repr(ax.tensor([1.0, 2.5])) == "tensor([1. , 2.5])"
    assert repr(ax.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(ax.tensor([True])) == "tensor([ True])"
    assert repr(ax.tensor(3.0)) == "tensor(3.)"
    assert "dtype=axonml.float64" in repr(ax.tensor([1.0], dtype=ax.float64))
    assert "dtype=axonml.int32" in repr(ax.tensor([1], dtype=ax.int32))
    assert "dtype=axonml.bfloat16" in repr(ax.tensor([1.5], dtype=ax.bfloat16))
    assert "requires_grad=True" in repr(ax.ones(2, requires_grad=True))
    y = ax.ones(2, requires_grad=True) * 2
    assert "grad_fn=<MulBackward>" in repr(y)
    assert repr(ax.zeros(0)) == "tensor([])"
    big = repr(ax.zeros(10000))
    assert "..." in big and len(big) < 200
    assert str(ax.tensor([1, 2])) == repr(ax.tensor([1, 2]))


# ----- Python protocol -----------------------------------------------------------------------
def test_scalar_conversions() -> None:
    assert float(ax.tensor([2.5])) == 2.5
    assert int(ax.tensor(2.7)) == 2
    assert int(ax.tensor(-2.7)) == -2
    assert bool(ax.tensor([0.0])) is False and bool(ax.tensor(3)) is True
    assert [10, 20, 30][ax.tensor(1)] == 20
    assert operator.index(ax.tensor([2], dtype=ax.int8)) == 2
    assert complex(ax.tensor(1.5)) == 1.5 + 0j


def test_scalar_conversion_errors() -> None:
    x = ax.zeros(2, 3)
    with pytest.raises(ValueError, match="ambiguous"):
        bool(x)
    with pytest.raises(ValueError, match="one element"):
        float(x)
    with pytest.raises(ValueError, match="one element"):
        int(x)
    with pytest.raises(ValueError):
        bool(ax.zeros(0))
    with pytest.raises(TypeError, match="index"):
        operator.index(ax.tensor(1.0))
    with pytest.raises(TypeError, match="index"):
        [1, 2][ax.tensor([0, 1])]


def test_len_and_iter() -> None:
    x = ax.arange(6).reshape(3, 2)
    assert len(x) == 3
    rows = list(x)
    assert len(rows) == 3 and all(r.shape == (2,) for r in rows)
    assert [r.tolist() for r in rows] == [[0, 1], [2, 3], [4, 5]]
    assert len(ax.zeros(0, 4)) == 0 and list(ax.zeros(0, 4)) == []
    a, b = ax.tensor([1, 2])
    assert (a.item(), b.item()) == (1, 2)
    with pytest.raises(TypeError, match="0-d"):
        len(ax.tensor(1.0))
    with pytest.raises(TypeError, match="0-d"):
        iter(ax.tensor(1.0))


def test_hash_and_identity() -> None:
    a, b = ax.tensor([1.0]), ax.tensor([1.0])
    assert hash(a) != hash(b) or a is not b
    d = {a: "a", b: "b"}
    assert d[a] == "a" and d[b] == "b"
    assert ax.is_tensor(a) and not ax.is_tensor(np.ones(1))


def test_pickle_and_deepcopy() -> None:
    x = ax.tensor([[1.5, 2.0]], dtype=ax.float64, requires_grad=True)
    y = pickle.loads(pickle.dumps(x))
    assert y.dtype is ax.float64 and y.requires_grad and y.tolist() == x.tolist()
    z = copy.deepcopy(x)
    assert z.requires_grad and z.data_ptr() != x.data_ptr()
    with pytest.raises(AutogradError, match="leaf"):
        copy.deepcopy(x * 2)


def test_data_and_detach() -> None:
    x = ax.tensor([1.0, 2.0], requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.data_ptr() == x.data_ptr()
    d[0] = 10.0  # shares memory and the version counter
    assert x[0].item() == 10.0 and x._version_count == d._version_count == 1
    assert x.data.data_ptr() == x.data_ptr()
    x.data = ax.tensor([5.0, 6.0])
    assert x.tolist() == [5.0, 6.0] and x.requires_grad
    with pytest.raises(TypeError):
        x.data = [1.0]  # type: ignore[assignment]


def test_requires_grad_rules() -> None:
    x = ax.ones(2)
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad = False
    assert not x.requires_grad
    y = ax.ones(2, requires_grad=True) * 2
    assert not y.is_leaf
    with pytest.raises(AutogradError, match="leaf"):
        y.requires_grad_(False)
    with pytest.raises(TypeError, match="floating point"):
        ax.ones(2, dtype=ax.int64).requires_grad_()


# ----- operators vs NumPy ------------------------------------------------------------------
BINARY = [
    ("add", operator.add), ("sub", operator.sub), ("mul", operator.mul), ("truediv", operator.truediv),
    ("floordiv", operator.floordiv), ("mod", operator.mod), ("pow", operator.pow),
    ("lt", operator.lt), ("le", operator.le), ("gt", operator.gt), ("ge", operator.ge),
    ("eq", operator.eq), ("ne", operator.ne),
]


def _pos(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 3.0, size=shape)


@pytest.mark.parametrize("name,op", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((4,), (2, 3, 4)), ((), (3,)), ((0, 2), (2,))])
def test_binary_operators_match_numpy(name: str, op: Any, shapes: tuple[tuple[int, ...], ...]) -> None:
    a, b = _pos(shapes[0], 1), _pos(shapes[1], 2)
    got = op(ax.tensor(a), ax.tensor(b))
    want = op(a, b)
    assert got.shape == want.shape
    np.testing.assert_allclose(got.numpy().astype(np.float64), want, rtol=1e-12)


@pytest.mark.parametrize("name,op", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("scalar", [2, 2.5, -1.5])
def test_scalar_and_reflected_operators(name: str, op: Any, scalar: float) -> None:
    a = _pos((2, 3), 3)
    x = ax.tensor(a)
    with np.errstate(invalid="ignore"):  # (-1.5) ** x is NaN in both
        np.testing.assert_allclose(op(x, scalar).numpy().astype(np.float64), op(a, scalar), rtol=1e-12)
        np.testing.assert_allclose(op(scalar, x).numpy().astype(np.float64), op(scalar, a), rtol=1e-12)


def test_reflected_operators_spelled_out() -> None:
    x = ax.tensor([1.0, 2.0, 4.0])
    assert (2 - x).tolist() == [1.0, 0.0, -2.0]
    assert (2 / x).tolist() == [2.0, 1.0, 0.5]
    assert (2**x).tolist() == [2.0, 4.0, 16.0]
    assert (7 // x).tolist() == [7.0, 3.0, 1.0]
    assert (7 % x).tolist() == [0.0, 1.0, 3.0]
    assert (1 + x).tolist() == [2.0, 3.0, 5.0]
    assert (3 * x).tolist() == [3.0, 6.0, 12.0]
    assert (np.float64(2.0) - x).tolist() == [1.0, 0.0, -2.0]  # NumPy scalars defer to the tensor


def test_integer_operators() -> None:
    a, b = np.array([7, -7, 5, -5]), np.array([2, 2, -3, -3])
    x, y = ax.tensor(a), ax.tensor(b)
    for op in (operator.add, operator.sub, operator.mul, operator.floordiv, operator.mod):
        got = op(x, y)
        assert got.dtype is ax.int64
        np.testing.assert_array_equal(got.numpy(), op(a, b))
    assert (x**2).dtype is ax.int64 and (x**2).tolist() == (a**2).tolist()
    np.testing.assert_allclose((x / y).numpy(), a / b, rtol=1e-6)
    for op in (operator.and_, operator.or_, operator.xor, operator.lshift, operator.rshift):
        np.testing.assert_array_equal(op(x, ax.tensor([1, 2, 3, 1])).numpy(), op(a, np.array([1, 2, 3, 1])))
    np.testing.assert_array_equal((~x).numpy(), ~a)
    mask = ax.tensor([True, False])
    assert (~mask).tolist() == [False, True]
    assert (mask & ax.tensor([True, True])).tolist() == [True, False]
    assert (mask | ax.tensor([False, True])).tolist() == [True, True]


def test_unary_operators_and_matmul() -> None:
    a = np.random.default_rng(0).standard_normal((3, 4))
    x = ax.tensor(a)
    np.testing.assert_allclose((-x).numpy(), -a)
    np.testing.assert_allclose((+x).numpy(), a)
    np.testing.assert_allclose(abs(x).numpy(), np.abs(a))
    b = np.random.default_rng(1).standard_normal((4, 2))
    np.testing.assert_allclose((x @ ax.tensor(b)).numpy(), a @ b, rtol=1e-12)
    np.testing.assert_allclose((a @ ax.tensor(b)).numpy(), a @ b, rtol=1e-12)


def test_comparisons_return_bool_and_eq_is_elementwise() -> None:
    x = ax.tensor([1, 2, 3])
    assert (x == 2).dtype is ax.bool and (x == 2).tolist() == [False, True, False]
    assert (x != ax.tensor([1, 0, 3])).tolist() == [False, True, False]
    assert (2 < x).tolist() == [False, False, True]  # noqa: SIM300 - the reflected comparison
    assert (x == 2.5).tolist() == [False, False, False]


def test_broadcast_error_names_shapes() -> None:
    with pytest.raises(ValueError) as e:
        ax.ones(2, 3) + ax.ones(4)
    assert "(2, 3)" in str(e.value) or "2,3" in str(e.value).replace(" ", "")


def test_version_counter_and_views() -> None:
    x = ax.zeros(3, 4)
    assert x._version_count == 0
    row = x[1]
    row.add_(1)
    assert x._version_count == 1 and row._version_count == 1
    assert x.sum().item() == 4.0
    x.mul_(2)
    x[0, 0] = 5.0
    assert x._version_count == 3
    r = x.reshape(12)
    r.zero_()
    assert x.sum().item() == 0.0 and x._version_count == 4


def test_numpy_interop_returns_tensor() -> None:
    a = np.ones(3)
    x = ax.tensor([1.0, 2.0, 3.0], dtype=ax.float64)
    for r in (a + x, a * x, a - x, a / x):
        assert isinstance(r, ax.Tensor)
    np.testing.assert_allclose((a - x).numpy(), [0.0, -1.0, -2.0])


def test_make_sets_what_init_sets() -> None:
    # Tensor._make inlines _init's assignments: the two must leave every slot alike
    from axonml.backend import CPU
    from axonml.core.tensor import Tensor, _init, _new

    data = np.zeros(3)
    made = Tensor._make(data, CPU)
    inited = _new(Tensor)
    _init(inited, data, CPU)
    for slot in Tensor.__slots__:
        if slot == "__weakref__":
            continue
        assert hasattr(made, slot) == hasattr(inited, slot), slot
        if hasattr(made, slot) and slot != "_data":
            assert getattr(made, slot) == getattr(inited, slot), slot
    assert made._data is inited._data and made._version is not inited._version  # a version box each
