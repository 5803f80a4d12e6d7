"""Elementwise primitives through the generic harness."""

from __future__ import annotations

import numpy as np

import axonml as ax
import torch_ref as tr
from harness import OpSpec, op_tests

BROADCAST = (((3, 4), (3, 4)), ((2, 3, 1), (4,)), ((0, 3), (1, 3)), ((), (2, 2)))
UNARY_SHAPES = (((3, 4),), ((2, 0, 3),), ((),))
POSITIVE = (0.2, 3.0)
UNIT = (-0.9, 0.9)

try:
    from scipy import special as _sp
except ImportError:  # pragma: no cover
    _sp = None


def _unary(name: str, ref, domain=(-2.0, 2.0), gradgrad=True, **kw) -> OpSpec:
    return OpSpec(
        name, getattr(ax, name), ref, shapes=UNARY_SHAPES, domain=domain, gradgrad=gradgrad,
        torch_fn=tr.fn(name), **kw,
    )


SPECS = [
    _unary("exp", np.exp),
    _unary("exp2", np.exp2),
    _unary("expm1", np.expm1),
    _unary("log", np.log, POSITIVE),
    _unary("log2", np.log2, POSITIVE),
    _unary("log10", np.log10, POSITIVE),
    _unary("log1p", np.log1p, POSITIVE),
    _unary("sqrt", np.sqrt, POSITIVE),
    _unary("rsqrt", lambda x: 1 / np.sqrt(x), POSITIVE),
    _unary("sin", np.sin),
    _unary("cos", np.cos),
    _unary("tan", np.tan, UNIT),
    _unary("asin", np.arcsin, UNIT),
    _unary("acos", np.arccos, UNIT),
    _unary("atan", np.arctan),
    _unary("sinh", np.sinh),
    _unary("cosh", np.cosh),
    _unary("tanh", np.tanh),
    _unary("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    _unary("relu", lambda x: np.maximum(x, 0), gradgrad=False),
    _unary("abs", np.abs, gradgrad=False),
    _unary("neg", np.negative),
    _unary("reciprocal", np.reciprocal, POSITIVE),
    _unary("erf", (lambda x: _sp.erf(x)) if _sp else np.vectorize(__import__("math").erf)),
    _unary("erfinv", (lambda x: _sp.erfinv(x)) if _sp else None, UNIT),
    _unary("sign", np.sign, gradgrad=False),
    _unary("floor", np.floor, gradgrad=False),
    _unary("ceil", np.ceil, gradgrad=False),
    _unary("trunc", np.trunc, gradgrad=False),
    _unary("round", np.round, gradgrad=False),
    OpSpec("add", ax.add, np.add, BROADCAST, torch_fn=tr.fn("add")),
    OpSpec("sub", ax.sub, np.subtract, BROADCAST, torch_fn=tr.fn("sub")),
    OpSpec("mul", ax.mul, np.multiply, BROADCAST, torch_fn=tr.fn("mul")),
    OpSpec("div", ax.div, np.divide, BROADCAST, domain=POSITIVE, torch_fn=tr.fn("div")),
    OpSpec("pow", ax.pow, np.power, BROADCAST, domain=POSITIVE, torch_fn=tr.fn("pow")),
    OpSpec("atan2", ax.atan2, np.arctan2, BROADCAST, domain=POSITIVE, torch_fn=tr.fn("atan2")),
    OpSpec("maximum", ax.maximum, np.maximum, BROADCAST, gradgrad=False, torch_fn=tr.fn("maximum")),
    OpSpec("minimum", ax.minimum, np.minimum, BROADCAST, gradgrad=False, torch_fn=tr.fn("minimum")),
    OpSpec("remainder", ax.remainder, np.remainder, BROADCAST, domain=POSITIVE, gradgrad=False,
           torch_fn=tr.fn("remainder")),
    OpSpec("floor_divide", ax.floor_divide, np.floor_divide, BROADCAST, domain=POSITIVE, grad=False,
           torch_fn=tr.fn("floor_divide")),
    OpSpec("clamp", lambda x: ax.clamp(x, -0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7), UNARY_SHAPES,
           gradgrad=False, torch_fn=lambda x: tr.torch().clamp(x, -0.5, 0.7)),
    OpSpec("clamp_tensor_bounds", lambda x, lo, hi: ax.clamp(x, lo, hi - 0.0 + 1.0),
           lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi + 1.0), (((3, 4), (3, 4), (4,)),), gradgrad=False),
    # the condition is made from the first input's sign; only the branches get gradients
    OpSpec("where", lambda c, a, b: ax.where(c > 0, a, b), lambda c, a, b: np.where(c > 0, a, b),
           (((3, 4), (3, 4), (4,)), ((2, 1), (), (1, 3))), grad_inputs=(1, 2)),
    OpSpec("clone", ax.clone, np.copy, UNARY_SHAPES, torch_fn=tr.fn("clone")),
]

globals().update(op_tests(SPECS))

# non-differentiable ops, tested by the plain tests below
NONDIFF_NAMES = [
    "eq", "ne", "lt", "le", "gt", "ge", "greater", "greater_equal", "less", "less_equal", "not_equal",
    "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "bitwise_left_shift", "bitwise_right_shift",
    "logical_and", "logical_or", "logical_xor", "logical_not", "isnan", "isinf", "isfinite",
]


def test_comparisons_and_logic_match_numpy():
    a = np.array([[1, 2, 3], [4, 5, 6]])
    b = np.array([3, 2, 1])
    ta, tb = ax.tensor(a), ax.tensor(b)
    for op, ref in [(ta == tb, a == b), (ta != tb, a != b), (ta < tb, a < b), (ta <= tb, a <= b),
                    (ta > tb, a > b), (ta >= tb, a >= b), (ta & tb, a & b), (ta | tb, a | b),
                    (ta ^ tb, a ^ b), (~ta, ~a), (ta << 1, a << 1), (ta >> 1, a >> 1)]:
        np.testing.assert_array_equal(op.numpy(), ref)
    m = ta > 2
    assert m.dtype is ax.bool
    np.testing.assert_array_equal((~m).numpy(), ~(a > 2))


def test_isnan_isinf_isfinite():
    x = ax.tensor([1.0, float("nan"), float("inf"), -float("inf")])
    assert x.isnan().tolist() == [False, True, False, False]
    assert x.isinf().tolist() == [False, False, True, True]
    assert x.isfinite().tolist() == [True, False, False, False]


def test_maximum_splits_gradient_at_ties():
    a = ax.tensor([1.0, 2.0], requires_grad=True)
    b = ax.tensor([1.0, 1.0], requires_grad=True)
    ax.maximum(a, b).sum().backward()
    assert a.grad.tolist() == [0.5, 1.0]
    assert b.grad.tolist() == [0.5, 0.0]
