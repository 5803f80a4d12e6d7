"""In-place ops: values against NumPy, PyTorch's casting rules, views, versions and autograd."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml.errors import AutogradError, DTypeError, ShapeError


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


IOPS = [
    ("iadd", operator.iadd), ("isub", operator.isub), ("imul", operator.imul), ("itruediv", operator.itruediv),
    ("ifloordiv", operator.ifloordiv), ("imod", operator.imod), ("ipow", operator.ipow),
]


# ----- values ---------------------------------------------------------------------------
@pytest.mark.parametrize("name,op", IOPS, ids=[o[0] for o in IOPS])
@pytest.mark.parametrize("other", ["tensor", "broadcast", "zero_dim", "int", "float"])
def test_float_inplace_operators_match_numpy(name: str, op: Callable[[Any, Any], Any], other: str) -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 3.0, size=(3, 4))
    b: Any = {
        "tensor": rng.uniform(0.5, 2.0, size=(3, 4)), "broadcast": rng.uniform(0.5, 2.0, size=(4,)),
        "zero_dim": np.array(1.5), "int": 2, "float": 1.5,
    }[other]
    x = ax.tensor(a, dtype=ax.float64)
    ptr, version = x.data_ptr(), x._version_count
    y = op(x, ax.tensor(b, dtype=ax.float64) if isinstance(b, np.ndarray) else b)
    assert y is x and x.data_ptr() == ptr and x._version_count == version + 1
    np.testing.assert_allclose(x.numpy(), op(a.copy(), b), rtol=1e-12)


INT_IOPS = [o for o in IOPS if o[0] != "itruediv"]


@pytest.mark.parametrize("name,op", INT_IOPS, ids=[o[0] for o in INT_IOPS])
def test_int_inplace_operators_match_numpy(name: str, op: Callable[[Any, Any], Any]) -> None:
    a = np.array([[7, -7, 5], [-5, 3, 9]])
    b = np.array([2, 3, 2]) if name != "ipow" else np.array([2, 0, 3])
    x = ax.tensor(a)
    op(x, ax.tensor(b))
    assert x.dtype is ax.int64
    np.testing.assert_array_equal(x.numpy(), op(a.copy(), b))
    x = ax.tensor(a)
    op(x, 2)
    np.testing.assert_array_equal(x.numpy(), op(a.copy(), 2))


def test_method_forms() -> None:
    x = ax.tensor([1.0, 2.0, 3.0])
    assert x.add_(ax.tensor([1.0, 1.0, 1.0]), alpha=2).tolist() == [3.0, 4.0, 5.0]
    assert x.sub_(1, alpha=0.5).tolist() == [2.5, 3.5, 4.5]
    assert x.mul_(2).tolist() == [5.0, 7.0, 9.0]
    assert x.div_(ax.tensor(0.5)).tolist() == [10.0, 14.0, 18.0]
    assert x.clamp_(11, 15).tolist() == [11.0, 14.0, 15.0]
    assert x.pow_(0.5).sub_(ax.tensor([11.0, 14.0, 15.0]).sqrt()).abs().max().item() < 1e-6
    y = ax.tensor([0.0, 1.0])
    np.testing.assert_allclose(y.exp_().numpy(), np.exp([0.0, 1.0]), rtol=1e-6)
    assert y.zero_().tolist() == [0.0, 0.0]
    assert y.fill_(2.5).tolist() == [2.5, 2.5]
    assert y.fill_(ax.tensor(1.5)).tolist() == [1.5, 1.5]
    assert y.copy_(ax.tensor([3, 4])).tolist() == [3.0, 4.0]  # cast to the tensor's dtype
    assert y.copy_(ax.tensor(7.0)).tolist() == [7.0, 7.0]  # and broadcast
    assert y.dtype is ax.float32
    with pytest.raises(ShapeError, match="broadcast"):
        y.copy_(ax.ones(3))
    with pytest.raises(TypeError, match="Tensor"):
        y.copy_([1.0, 2.0])  # type: ignore[arg-type]


def test_inplace_shape_errors() -> None:
    x = ax.zeros(2)
    with pytest.raises(ShapeError, match=r"\(2,\)"):
        x += ax.ones(2, 2)
    with pytest.raises(ShapeError):
        x.mul_(ax.ones(3))
    with pytest.raises(ShapeError, match="expanded"):
        ax.ones(3).expand(2, 3).add_(1)
    with pytest.raises(ShapeError, match="expanded"):
        ax.ones(3).expand(2, 3).fill_(0)
    assert x.tolist() == [0.0, 0.0] and x._version_count == 0


# ----- dtype rules (PyTorch's) ----------------------------------------------------------------
def test_int_tensor_plus_float_is_an_error() -> None:
    x = ax.tensor([1, 2])
    with pytest.raises(DTypeError, match=r"float32 can't be cast to the tensor's dtype axonml\.int64"):
        x += 1.5
    with pytest.raises(DTypeError, match="int64"):
        x += ax.tensor([0.5, 0.5])
    with pytest.raises(DTypeError, match="float32"):
        x /= 2  # true division gives a float
    with pytest.raises(DTypeError):
        x.exp_()
    b = ax.tensor([True, False])
    with pytest.raises(DTypeError, match="bool"):
        b += 1
    assert x.tolist() == [1, 2] and x._version_count == 0  # nothing was written


def test_inplace_allowed_casts() -> None:
    u = ax.tensor([1, 2], dtype=ax.uint8)
    u += ax.tensor([1, 1])  # int64 into uint8 is allowed, as in PyTorch
    assert u.dtype is ax.uint8 and u.tolist() == [2, 3]
    h = ax.tensor([1.0, 2.0], dtype=ax.float16)
    h += ax.tensor([0.5, 0.5], dtype=ax.float64)
    assert h.dtype is ax.float16 and h.tolist() == [1.5, 2.5]
    f = ax.tensor([1.0])
    f += ax.tensor([2])
    assert f.tolist() == [3.0]
    b = ax.tensor([True, False])
    b += ax.tensor([False, True])
    assert b.dtype is ax.bool and b.tolist() == [True, True]


def test_inplace_int_scalar_wraps_like_torch() -> None:
    x = ax.tensor([1], dtype=ax.int8)
    x += 1000
    assert x.tolist() == [-23]
    u = ax.tensor([1], dtype=ax.uint8)
    u -= 2
    assert u.tolist() == [255]


@pytest.mark.torch
def test_inplace_dtype_rules_match_torch(torch: Any) -> None:
    names = ["bool", "uint8", "int8", "int32", "int64", "float16", "float32", "float64"]
    wrong = []
    for a, b in itertools.product(names, names):
        for op in (operator.iadd, operator.imul, operator.itruediv):
            t = torch.tensor([1, 2], dtype=getattr(torch, a))
            x = ax.tensor([1, 2], dtype=getattr(ax, a))
            try:
                op(t, torch.tensor([1, 1], dtype=getattr(torch, b)))
                want: Any = t.double().tolist()
            except RuntimeError:
                want = "error"
            try:
                op(x, ax.tensor([1, 1], dtype=getattr(ax, b)))
                got: Any = x.double().tolist()
            except DTypeError:
                got = "error"
            if got != want:
                wrong.append(f"{a} {op.__name__} {b}: axonml {got}, torch {want}")
    assert not wrong, "\n".join(wrong)


# ----- views and versions -----------------------------------------------------------------
def test_views_share_memory() -> None:
    x = ax.zeros(3, 4)
    x[0].add_(1)
    assert x.sum().item() == 4.0
    x.T[1].mul_(0).add_(5)  # column 1 through a transposed view
    assert x[:, 1].tolist() == [5.0, 5.0, 5.0]
    x.reshape(12)[-1].fill_(9)
    assert x[2, 3].item() == 9.0
    x.narrow(1, 2, 1).fill_(-1)
    assert x[:, 2].tolist() == [-1.0, -1.0, -1.0]
    x[1:, :2] = 7.0
    assert x[2, 0].item() == 7.0
    assert x._version_count == 6


def test_version_counter() -> None:
    x = ax.ones(3)
    v = x.view(3)
    d = x.detach()
    _ = x + 1  # out of place: no bump
    assert x._version_count == 0
    x.add_(1)
    v.mul_(2)
    d.sub_(1)
    x[0] = 0.0
    assert x._version_count == v._version_count == d._version_count == 4


def test_saved_tensor_modified_is_an_error() -> None:
    x = ax.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    z = y * y
    y.add_(1)
    with pytest.raises(AutogradError, match="modified by an in-place"):
        z.sum().backward()


# ----- autograd --------------------------------------------------------------------------------
def test_inplace_on_leaf_requiring_grad() -> None:
    w = ax.ones(3, requires_grad=True)
    with pytest.raises(AutogradError, match="leaf"):
        w += 1
    with pytest.raises(AutogradError, match="leaf"):
        w.mul_(2)
    with pytest.raises(AutogradError, match="leaf"):
        w[0] = 5.0
    with pytest.raises(AutogradError, match="leaf"):
        w[0].add_(1)  # through a view, too
    with pytest.raises(AutogradError, match="leaf"):
        w.zero_()
    assert w.tolist() == [1.0, 1.0, 1.0]
    with ax.no_grad():
        w.add_(1)  # an optimizer step
        w[0:2].mul_(2)
    assert w.tolist() == [4.0, 4.0, 2.0] and w.requires_grad and w.is_leaf


def test_inplace_on_non_leaf_gradient() -> None:
    x = ax.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 2
    y.add_(1)
    y.mul_(x)  # y = (2x + 1) x
    y.sum().backward()
    assert x.grad is not None
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.array([1.0, 2.0, 3.0]) + 1)


def test_inplace_through_view_reaches_base() -> None:
    x = ax.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x * 1
    y[0].mul_(3)
    assert y.grad_fn is not None
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[3.0, 3.0], [1.0, 1.0]])


def test_constant_overwrite_cuts_history() -> None:
    x = ax.tensor([1.0, float("inf")], requires_grad=True)
    y = x * 1
    y.fill_(2.0)
    assert y.tolist() == [2.0, 2.0] and y.requires_grad
    y.add_(x)
    y[0].backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 0.0])  # not 2: fill_ cut y's old history


def test_detached_copy_records_its_own_history() -> None:
    x = ax.ones(3, requires_grad=True)
    w = ax.ones(3, requires_grad=True)
    d = x.detach()
    d.add_(w)  # allowed: d is no view of x for autograd
    assert d.grad_fn is not None
    d.sum().backward()
    assert w.grad.tolist() == [1.0, 1.0, 1.0] and x.grad is None


def _both(torch: Any, fn: Callable[[Any, Any], Any], shape: tuple[int, ...] = (2, 3), seed: int = 0) -> None:
    """Run ``fn(lib, x)`` in axonml and PyTorch; compare output and the gradient of a weighted sum."""
    a = np.random.default_rng(seed).standard_normal(shape)
    xa = ax.tensor(a, requires_grad=True)
    xt = torch.tensor(a, requires_grad=True)
    ya, yt = fn(ax, xa), fn(torch, xt)
    w = np.arange(1.0, ya.numel() + 1).reshape(ya.shape)
    (ya * ax.tensor(w)).sum().backward()
    (yt * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(ya.detach().numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xa.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


def _t(lib: Any, x: Any) -> Any:
    return x.t() if lib is not ax else x.T


CASES: dict[str, Callable[[Any, Any], Any]] = {
    "chain": lambda lib, x: (x * 2).add_(1).mul_(x),
    "sub_alpha_div": lambda lib, x: (x * 1).sub_(x, alpha=2).div_(x + 3),
    "unary_chain": lambda lib, x: (x + 0).mul_(3).sin_().add_(1),
    "clamp": lambda lib, x: (x + 0).clamp_(-0.5, 0.5),
    "pow": lambda lib, x: (x + 0).pow_(2).sqrt_(),
    "row_view": lambda lib, x: _row_mul(x),
    "column_view": lambda lib, x: _col_square(x),
    "transposed_view": lambda lib, x: _transposed_pow(lib, x),
    "reshaped_view": lambda lib, x: _reshaped(x),
    "view_of_view": lambda lib, x: _view_of_view(x),
    "setitem_from_input": lambda lib, x: _setitem(x),
    "setitem_scalar": lambda lib, x: _setitem_scalar(x),
    "augmented_setitem": lambda lib, x: _aug_setitem(x),
    "copy_from_graph": lambda lib, x: (x + 0).copy_(x * x),
    "zero_then_add": lambda lib, x: (x + 0).zero_().add_(x),
    "stale_view_after_base_write": lambda lib, x: _stale(x),
    "two_views": lambda lib, x: _two_views(x),
    "view_then_out_of_place": lambda lib, x: _view_out_of_place(x),
}


def _row_mul(x: Any) -> Any:
    y = x * 1
    y[0].mul_(3)
    return y


def _col_square(x: Any) -> Any:
    y = x.clone()
    v = y[:, 1]
    v.mul_(v.clone())
    return y


def _transposed_pow(lib: Any, x: Any) -> Any:
    y = x * 1
    _t(lib, y)[0].pow_(2)
    return y


def _reshaped(x: Any) -> Any:
    y = x + 0
    y.reshape(3, 2)[1:].mul_(2)
    return y


def _view_of_view(x: Any) -> Any:
    y = x + 0
    y[1][1:].mul_(x[0][1:])
    return y


def _setitem(x: Any) -> Any:
    y = x.clone()
    y[0, :] = x[1, :] ** 2
    return y


def _setitem_scalar(x: Any) -> Any:
    y = x * 2
    y[:, 0] = 0.0
    return y * x


def _aug_setitem(x: Any) -> Any:
    y = x + 0
    y[1] += x[0]
    return y


def _stale(x: Any) -> Any:
    y = x + 0
    w = y[0]  # made before the in-place write to its base
    y.mul_(2)
    return w * 1


def _two_views(x: Any) -> Any:
    y = x + 0
    a, b = y[0], y[1]
    a.mul_(3)
    b.add_(a)
    return y


def _view_out_of_place(x: Any) -> Any:
    y = x * 1
    v = y[:, 0]
    y.exp_()
    return v + y.sum(0)[0]


@pytest.mark.torch
@pytest.mark.parametrize("case", list(CASES))
def test_inplace_gradients_match_torch(torch: Any, case: str) -> None:
    _both(torch, CASES[case])


def test_stale_view_gradient_without_torch() -> None:
    x = ax.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x + 0
    w = y[0]
    y.mul_(2)
    assert w.tolist() == [2.0, 4.0]
    w.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[2.0, 2.0], [0.0, 0.0]])


def test_inplace_under_no_grad_is_not_recorded() -> None:
    x = ax.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    with ax.no_grad():
        y.add_(100)
    assert y.tolist() == [103.0, 106.0]
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_inplace_with_grad_operand_makes_result_require_grad() -> None:
    a = ax.zeros(2)
    w = ax.tensor([1.0, 2.0], requires_grad=True)
    a.add_(w * w)
    assert a.requires_grad and not a.is_leaf
    a.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [2.0, 4.0])
    i = ax.tensor([1, 2])
    with pytest.raises(DTypeError):
        i.add_(w)  # a float result can't go into an int tensor, with grad or not


# ----- forward mode ------------------------------------------------------------------------
def test_inplace_ops_carry_tangents() -> None:
    from axonml.autograd import forward_ad as fwd

    p = np.array([1.0, 2.0, 3.0])
    t = np.array([1.0, -1.0, 0.5])
    with fwd.dual_level():
        x = fwd.make_dual(ax.tensor(p), ax.tensor(t))
        y = x * 1
        y.mul_(x)  # y = x**2: tangent 2 x t
        np.testing.assert_allclose(fwd.unpack_dual(y).tangent.numpy(), 2 * p * t)
        y.add_(3)
        np.testing.assert_allclose(fwd.unpack_dual(y).tangent.numpy(), 2 * p * t)
        y.exp_()
        np.testing.assert_allclose(fwd.unpack_dual(y).tangent.numpy(), np.exp(p**2 + 3) * 2 * p * t, rtol=1e-12)
        z = x * 1
        v = fwd.make_dual(ax.tensor(5.0, dtype=ax.float64), ax.tensor(10.0, dtype=ax.float64))
        z[1] = v
        np.testing.assert_allclose(fwd.unpack_dual(z).tangent.numpy(), [1.0, 10.0, 0.5])
        z.fill_(0.0)  # a constant: zero tangent
        assert fwd.unpack_dual(z).tangent is None or not fwd.unpack_dual(z).tangent.numpy().any()


def test_inplace_tangent_through_recorded_view() -> None:
    from axonml.autograd import forward_ad as fwd

    with fwd.dual_level():
        x = fwd.make_dual(ax.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True), ax.ones(2, 2, dtype=ax.float64))
        y = x * 2  # tangent 2 everywhere
        y[0].mul_(x[0])  # row 0 becomes 2 x0 * x0: tangent 4 x0
        np.testing.assert_allclose(fwd.unpack_dual(y).tangent.numpy(), [[4.0, 8.0], [2.0, 2.0]])


def test_inplace_tangent_through_a_view_reaches_the_base() -> None:
    from axonml.autograd import forward_ad as fwd

    with fwd.dual_level():
        x = fwd.make_dual(ax.tensor([1.0, 2.0, 3.0]), ax.ones(3, dtype=ax.float64))
        y = x * 1
        y[1:].mul_(2)
        assert y.tolist() == [1.0, 4.0, 6.0]
        assert fwd.unpack_dual(y).tangent.tolist() == [1.0, 2.0, 2.0]
