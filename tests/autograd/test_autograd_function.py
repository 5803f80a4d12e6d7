"""User-defined ``autograd.Function``: saving, needs_input_grad, multiple outputs, once_differentiable, jvp."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
from axonml.autograd import Function, forward_ad, once_differentiable
from axonml.errors import AutogradError
from harness import Square


def leaf(values):
    return ax.tensor(values, dtype=ax.float64, requires_grad=True)


def close(t, expected, atol=1e-10):
    np.testing.assert_allclose(t.detach().numpy(), expected, atol=atol, rtol=1e-7)


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        ctx.save_for_backward(y)  # an output saved for backward
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y

    @staticmethod
    def jvp(ctx, t):
        (y,) = ctx.saved_tensors
        return t * y


class MulAdd(Function):
    """(a * b, a + b, argmax index): two differentiable outputs and one index output."""

    @staticmethod
    def forward(ctx, a, b, scale=1.0):
        ctx.seen_needs = ctx.needs_input_grad
        ctx.save_for_backward(a, b)
        ctx.scale = scale
        idx = ax.tensor(int(np.argmax(a.detach().numpy())))
        ctx.mark_non_differentiable(idx)
        return a * b * scale, a + b, idx

    @staticmethod
    def backward(ctx, g_prod, g_sum, g_idx):
        a, b = ctx.saved_tensors
        ga = g_prod * b * ctx.scale + g_sum if ctx.needs_input_grad[0] else None
        gb = g_prod * a * ctx.scale + g_sum if ctx.needs_input_grad[1] else None
        return ga, gb, None


def test_save_for_backward_and_second_derivative() -> None:
    x = leaf([0.5, 1.0])
    y = Exp.apply(x)
    assert y.grad_fn is not None and "Exp" in repr(y.grad_fn)
    (g,) = ax.autograd.grad(y.sum(), x, create_graph=True)
    close(g, np.exp([0.5, 1.0]))
    (gg,) = ax.autograd.grad(g.sum(), x)  # backward written with axonml ops: differentiable again
    close(gg, np.exp([0.5, 1.0]))


def test_needs_input_grad_multiple_outputs_non_differentiable() -> None:
    a, b = leaf([1.0, 3.0]), ax.tensor([2.0, 5.0], dtype=ax.float64)
    prod, total, idx = MulAdd.apply(a, b, 2.0)
    assert prod.grad_fn is total.grad_fn
    assert prod.requires_grad and total.requires_grad
    assert not idx.requires_grad and idx.item() == 1
    (prod.sum() * 1 + total.sum() * 10).backward()
    close(a.grad, [2 * 2 + 10, 5 * 2 + 10])
    assert prod.grad_fn.seen_needs == (True, False, False)


def test_unused_output_gets_zero_gradient() -> None:
    a, b = leaf([1.0]), leaf([4.0])
    prod, _total, _idx = MulAdd.apply(a, b)
    prod.sum().backward()  # total got no gradient: backward sees zeros for it
    close(a.grad, [4.0])
    close(b.grad, [1.0])


def test_set_materialize_grads_false_passes_none() -> None:
    seen = []

    class Two(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.set_materialize_grads(False)
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, g1, g2):
            seen.append((g1 is None, g2 is None))
            return g1 * 2 if g1 is not None else g2 * 3

    x = leaf([1.0])
    a, _ = Two.apply(x)
    a.sum().backward()
    assert seen == [(False, True)]
    close(x.grad, [2.0])


def test_no_graph_when_nothing_requires_grad() -> None:
    y = Exp.apply(ax.tensor([1.0]))
    assert not y.requires_grad and y.grad_fn is None


def test_forward_runs_without_recording() -> None:
    seen = []

    class Probe(Function):
        @staticmethod
        def forward(ctx, x):
            seen.append((x * 2).requires_grad)
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2

    Probe.apply(leaf([1.0]))
    assert seen == [False]


def test_wrong_number_of_gradients_is_clear() -> None:
    class Bad(Function):
        @staticmethod
        def forward(ctx, x, y):
            return x * y

        @staticmethod
        def backward(ctx, g):
            return g

    with pytest.raises(AutogradError, match=r"returned 1 gradient.*expected 2"):
        Bad.apply(leaf([1.0]), leaf([2.0])).sum().backward()


def test_saved_tensor_modified_in_place_raises() -> None:
    x = leaf([1.0, 2.0])
    a = x * 1
    y = Square.apply(a)
    a.add_(1)
    with pytest.raises(AutogradError, match=r"Square.*in-place"):
        y.sum().backward()


def test_saved_tensors_freed_after_backward() -> None:
    x = leaf([1.0])
    y = Exp.apply(x)
    node = y.grad_fn
    y.sum().backward()
    with pytest.raises(AutogradError, match=r"second time"):
        node.saved_tensors  # noqa: B018


# ----- once_differentiable ---------------------------------------------------------------------
class NumpySquare(Square):
    """Backward through NumPy: not differentiable again."""

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return ax.tensor(2 * x.detach().numpy() * g.detach().numpy())


def test_once_differentiable_first_derivative() -> None:
    x = leaf([1.0, 3.0])
    NumpySquare.apply(x).sum().backward()
    close(x.grad, [2.0, 6.0])


def test_once_differentiable_raises_on_double_backward() -> None:
    x = leaf([1.0, 3.0])
    (g,) = ax.autograd.grad(NumpySquare.apply(x).sum(), x, create_graph=True)
    close(g, [2.0, 6.0])
    with pytest.raises(AutogradError, match=r"NumpySquare.*once_differentiable"):
        ax.autograd.grad(g.sum(), x)


def test_once_differentiable_with_grad_of_grad_outputs() -> None:
    x = leaf([2.0])
    v = leaf([1.0])  # a grad output that requires grad
    y = NumpySquare.apply(x)
    (g,) = ax.autograd.grad(y, x, grad_outputs=v, create_graph=True)
    with pytest.raises(AutogradError, match=r"once_differentiable"):
        ax.autograd.grad(g.sum(), v)


# ----- forward mode through a Function ---------------------------------------------------------
def test_function_jvp_forward_mode() -> None:
    p = ax.tensor([0.1, 0.2], dtype=ax.float64)
    t = ax.tensor([1.0, -1.0], dtype=ax.float64)
    with forward_ad.dual_level():
        y = Exp.apply(forward_ad.make_dual(p, t))
        close(forward_ad.unpack_dual(y).tangent, np.exp([0.1, 0.2]) * [1.0, -1.0])


def test_function_without_jvp_in_forward_mode_raises() -> None:
    with forward_ad.dual_level():
        d = forward_ad.make_dual(ax.tensor([1.0]), ax.tensor([1.0]))
        with pytest.raises(AutogradError, match=r"MulAdd.*jvp"):
            MulAdd.apply(d, ax.tensor([2.0]))


def test_function_jvp_gets_zeros_for_untangented_tensor() -> None:
    class Mul(Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * b, g * a

        @staticmethod
        def jvp(ctx, ta, tb):
            a, b = ctx.saved_tensors
            return ta * b + tb * a

    with forward_ad.dual_level():
        a = forward_ad.make_dual(ax.tensor([2.0]), ax.tensor([1.0]))
        y = Mul.apply(a, ax.tensor([5.0]))
        close(forward_ad.unpack_dual(y).tangent, [5.0])
