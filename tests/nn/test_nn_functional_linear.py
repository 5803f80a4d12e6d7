"""linear and bilinear: harness checks (values, gradients, second derivatives, forward mode,
PyTorch parity) and argument errors."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
import torch_ref as tr
from axonml.errors import DTypeError, ShapeError
from axonml.nn.functional.linear import bilinear, linear
from harness import OpSpec, op_tests


def TF():
    return tr.torch().nn.functional


def ref_linear(x, w, b=None):
    return x @ w.T + (0 if b is None else b)


def ref_bilinear(x1, x2, w, b=None):
    return np.einsum("...i,oij,...j->...o", x1, w, x2) + (0 if b is None else b)


SPECS = [
    OpSpec("linear", linear, ref_linear,
           (((4, 3), (5, 3), (5,)), ((2, 3, 3), (2, 3), (2,)), ((3,), (2, 3), (2,)), ((0, 3), (2, 3), (2,))),
           torch_fn=lambda x, w, b: TF().linear(x, w, b)),
    OpSpec("linear_no_bias", linear, ref_linear, (((2, 2, 3), (4, 3)),), torch_fn=lambda x, w: TF().linear(x, w)),
    OpSpec("bilinear", bilinear, ref_bilinear,
           (((3, 2), (3, 4), (5, 2, 4), (5,)), ((2, 2, 3), (2, 2, 2), (2, 3, 2), (2,))),
           torch_fn=lambda a, b, w, c: TF().bilinear(a, b, w, c)),
    OpSpec("bilinear_no_bias", bilinear, ref_bilinear, (((3, 2), (3, 2), (2, 2, 2)),),
           torch_fn=lambda a, b, w: TF().bilinear(a, b, w)),
]
globals().update(op_tests(SPECS))


def test_linear_fast_backward_equals_the_create_graph_form():
    rng = np.random.default_rng(0)
    x, w, b = (ax.tensor(rng.standard_normal(s), requires_grad=True) for s in ((2, 3, 4), (5, 4), (5,)))
    y = linear(x, w, b)
    g = ax.tensor(rng.standard_normal(y.shape))
    fast = ax.autograd.grad(y, [x, w, b], g, retain_graph=True)
    slow = ax.autograd.grad(y, [x, w, b], g, create_graph=True)
    for a, s in zip(fast, slow):
        np.testing.assert_allclose(a.numpy(), s.detach().numpy(), atol=1e-12)


def test_linear_vector_weight_and_scalar_bias():
    x = ax.tensor([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(linear(x, ax.tensor([1.0, -1.0]), ax.tensor(0.5)).numpy(), [-0.5, -0.5])


def test_errors():
    with pytest.raises(ShapeError, match="do not match"):
        linear(ax.randn(2, 3), ax.randn(4, 2))
    with pytest.raises(ShapeError, match="bias"):
        linear(ax.randn(2, 3), ax.randn(4, 3), ax.randn(3))
    with pytest.raises(DTypeError, match="one dtype"):
        linear(ax.randn(2, 3), ax.randn(4, 3).double())
    with pytest.raises(DTypeError, match="floating"):
        linear(ax.ones(2, 3, dtype=ax.int64), ax.ones(4, 3, dtype=ax.int64))
    with pytest.raises(ShapeError, match="leading"):
        bilinear(ax.randn(2, 3), ax.randn(3, 4), ax.randn(5, 3, 4))
    with pytest.raises(ShapeError, match="3-d"):
        bilinear(ax.randn(2, 3), ax.randn(2, 4), ax.randn(3, 4))
