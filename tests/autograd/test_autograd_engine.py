"""The reverse-mode engine: leaves, accumulation, backward's arguments, graph lifetime, hooks, errors."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import axonml as ax
from axonml.errors import AutogradError, DTypeError, ShapeError
from harness import Square


def leaf(values, dtype=ax.float64):
    return ax.tensor(values, dtype=dtype, requires_grad=True)


def close(t, expected, atol=1e-10):
    got = t.detach().numpy() if isinstance(t, ax.Tensor) else t
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), expected, atol=atol, rtol=1e-7)


# ----- leaves and non-leaves -----------------------------------------------------------------
def test_leaf_and_non_leaf() -> None:
    x = leaf([1.0, 2.0])
    c = ax.tensor([1.0, 2.0])
    y = x * 2
    assert x.is_leaf and x.requires_grad and x.grad_fn is None
    assert c.is_leaf and not c.requires_grad
    assert not y.is_leaf and y.requires_grad and y.grad_fn is not None
    z = c * 2  # nothing requires grad: no graph
    assert z.is_leaf and not z.requires_grad
    y.sum().backward()
    close(x.grad, [2.0, 2.0])
    assert y.grad is None  # non-leaf grads are not kept without retain_grad()


def test_grad_accumulates_across_backwards() -> None:
    x = leaf([1.0, 2.0, 3.0])
    (x * x).sum().backward()
    (x * 3).sum().backward()
    close(x.grad, [2 + 3, 4 + 3, 6 + 3])
    x.grad = None
    (x * x).sum().backward()
    close(x.grad, [2.0, 4.0, 6.0])


def test_grad_buffer_is_owned() -> None:
    # one gradient array reaches two leaves through add: each leaf must own its .grad
    a, b = leaf([1.0, 1.0]), leaf([1.0, 1.0])
    (a + b).sum().backward()
    with ax.no_grad():
        a.grad.mul_(10)
    close(b.grad, [1.0, 1.0])


def test_fresh_gradient_becomes_grad_without_copy(gradient_copies: list[tuple[int, ...]]) -> None:
    # a weight gradient nobody else holds is kept as .grad (no copy), as PyTorch steals it
    w = leaf(np.ones((3, 4)))
    x = ax.tensor(np.arange(8.0).reshape(2, 4))
    ax.nn.functional.linear(x, w).sum().backward()
    assert gradient_copies == []
    close(w.grad, np.tile(x.numpy().sum(0), (3, 1)))


def test_gradient_held_elsewhere_is_copied() -> None:
    # a hook that keeps the gradient, or a user's grad_output passed through: .grad never aliases them
    kept = []
    w = leaf(np.ones((3, 4)))
    w.register_hook(lambda g: kept.append(g))
    ax.nn.functional.linear(ax.ones(2, 4, dtype=ax.float64), w).sum().backward()
    with ax.no_grad():
        w.grad.mul_(10)
    close(kept[0], np.full((3, 4), 2.0))
    x = leaf([1.0, 2.0])
    g = ax.tensor([3.0, 4.0], dtype=ax.float64)
    x.clone().backward(g)
    with ax.no_grad():
        x.grad.mul_(10)
    close(g, [3.0, 4.0])


def test_backward_gradient_argument() -> None:
    x = leaf([1.0, 2.0])
    y = x * x
    y.backward(gradient=ax.tensor([1.0, 10.0], dtype=ax.float64))
    close(x.grad, [2.0, 40.0])


def test_backward_gradient_shape_mismatch() -> None:
    y = leaf([1.0, 2.0]) * 2
    with pytest.raises(ShapeError, match=r"gradient has shape"):
        y.backward(gradient=ax.ones(3, dtype=ax.float64))


def test_non_scalar_backward_needs_gradient() -> None:
    y = leaf([1.0, 2.0]) * 2
    with pytest.raises(AutogradError, match=r"only for scalar outputs"):
        y.backward()


def test_backward_on_tensor_without_grad() -> None:
    with pytest.raises(AutogradError, match=r"does not require grad"):
        ax.tensor([1.0]).sum().backward()


def test_retain_graph_allows_second_backward() -> None:
    x = leaf([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    close(x.grad, 2 * (np.exp([1.0, 2.0]) * (1 + np.array([1.0, 2.0]))))


def test_second_backward_without_retain_graph_raises() -> None:
    x = leaf([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(AutogradError, match=r"second time.*retain_graph=True"):
        y.backward()


def test_create_graph_gives_differentiable_grad() -> None:
    x = leaf([1.0, 2.0])
    (x**3).sum().backward(create_graph=True)
    g = x.grad
    assert g.requires_grad
    (gx,) = ax.autograd.grad(g.sum(), x)
    close(gx, 6 * np.array([1.0, 2.0]))


def test_backward_inputs_restricts_accumulation() -> None:
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    y = x * 2
    z = (y * w).sum()
    z.backward(inputs=[w, y])
    assert x.grad is None
    close(w.grad, [2.0, 4.0])
    close(y.grad, [3.0, 4.0])  # a non-leaf in inputs gets .grad, as in PyTorch


# ----- graph lifetime --------------------------------------------------------------------------
def test_graph_is_freed_after_backward() -> None:
    x = leaf([1.0, 2.0])
    y = x.exp()
    ref = weakref.ref(y)
    z = (y * y).sum()  # Mul saves y
    del y
    gc.collect()
    assert ref() is not None
    z.backward()
    gc.collect()
    assert ref() is None, "a tensor saved for backward outlived the backward pass"


def test_retain_graph_keeps_saved_tensors() -> None:
    x = leaf([1.0, 2.0])
    y = x.exp()
    ref = weakref.ref(y)
    z = (y * y).sum()
    del y
    z.backward(retain_graph=True)
    gc.collect()
    assert ref() is not None
    z.backward()
    gc.collect()
    assert ref() is None


def test_graph_nodes_die_with_their_outputs() -> None:
    x = leaf([1.0, 2.0])
    y = (x.sin() * 2).sum()
    node = weakref.ref(y.grad_fn)
    y.backward()
    del y
    gc.collect()
    assert node() is None


# ----- autograd.grad ----------------------------------------------------------------------------
def test_grad_returns_without_accumulating() -> None:
    x = leaf([1.0, 2.0])
    (g,) = ax.autograd.grad((x * x).sum(), x)
    close(g, [2.0, 4.0])
    assert x.grad is None


def test_grad_allow_unused() -> None:
    x, unused = leaf([1.0]), leaf([5.0])
    y = (x * 2).sum()
    with pytest.raises(AutogradError, match=r"not to have been used"):
        ax.autograd.grad(y, [x, unused], retain_graph=True)
    gx, gu = ax.autograd.grad(y, [x, unused], allow_unused=True, retain_graph=True)
    close(gx, [2.0])
    assert gu is None
    gx, gu = ax.autograd.grad(y, [x, unused], materialize_grads=True)
    close(gu, [0.0])


def test_grad_of_intermediate_and_repeated_inputs() -> None:
    x = leaf([1.0, 2.0])
    y = x * 3
    z = (y * y).sum()
    gy, gx, gy2 = ax.autograd.grad(z, [y, x, y])
    close(gy, [6.0, 12.0])
    close(gy2, [6.0, 12.0])
    close(gx, [18.0, 36.0])


def test_grad_input_must_require_grad() -> None:
    x = leaf([1.0])
    with pytest.raises(AutogradError, match=r"does not require grad"):
        ax.autograd.grad((x * 2).sum(), ax.tensor([1.0]))


def test_broadcasting_and_dtype_are_undone() -> None:
    a = leaf([[1.0], [2.0]])  # (2, 1)
    b = ax.tensor([1.0, 2.0, 3.0], requires_grad=True)  # (3,) float32
    y = (a * b).sum()  # (2, 3), promoted to float64
    y.backward()
    assert a.grad.shape == (2, 1) and b.grad.shape == (3,)
    assert b.grad.dtype == ax.float32
    close(a.grad, [[6.0], [6.0]])
    close(b.grad, [3.0, 3.0, 3.0], atol=1e-6)


# ----- higher order -------------------------------------------------------------------------------
def test_third_derivative_of_cube() -> None:
    x = leaf(2.0)
    y = x**3
    (g1,) = ax.autograd.grad(y, x, create_graph=True)
    (g2,) = ax.autograd.grad(g1, x, create_graph=True)
    (g3,) = ax.autograd.grad(g2, x)
    close(g1, 12.0)
    close(g2, 12.0)
    close(g3, 6.0)


def test_higher_derivatives_of_composite() -> None:
    # f = sin(x) * exp(x): f'' = 2 cos(x) exp(x), f''' = 2 (cos - sin) exp
    x = leaf([0.3, -0.7])
    f = (x.sin() * x.exp()).sum()
    (d1,) = ax.autograd.grad(f, x, create_graph=True)
    (d2,) = ax.autograd.grad(d1.sum(), x, create_graph=True)
    (d3,) = ax.autograd.grad(d2.sum(), x)
    v = np.array([0.3, -0.7])
    close(d2, 2 * np.cos(v) * np.exp(v))
    close(d3, 2 * (np.cos(v) - np.sin(v)) * np.exp(v))


def test_mixed_second_derivative() -> None:
    x, y = leaf(1.5), leaf(-0.5)
    f = x * x * y + (x * y).exp()
    (gx,) = ax.autograd.grad(f, x, create_graph=True)
    (gxy,) = ax.autograd.grad(gx, y)
    close(gxy, 2 * 1.5 + np.exp(-0.75) * (1 + 1.5 * -0.5))


# ----- hooks --------------------------------------------------------------------------------------
def test_hook_on_non_leaf_modifies_gradient() -> None:
    x = leaf([1.0, 2.0])
    y = x * 2
    seen = []
    y.register_hook(lambda g: seen.append(g.numpy().copy()))
    y.register_hook(lambda g: g * 10)
    y.sum().backward()
    close(seen[0], [1.0, 1.0])
    close(x.grad, [20.0, 20.0])


def test_hook_on_leaf_and_remove() -> None:
    x = leaf([1.0, 2.0])
    handle = x.register_hook(lambda g: g + 1)
    (x * 1).sum().backward()
    close(x.grad, [2.0, 2.0])
    handle.remove()
    x.grad = None
    (x * 1).sum().backward()
    close(x.grad, [1.0, 1.0])


def test_leaf_hook_runs_for_autograd_grad() -> None:
    x = leaf([1.0, 2.0])
    x.register_hook(lambda g: g * 10)
    (g,) = ax.autograd.grad((x * 2).sum(), x)
    close(g, [20.0, 20.0])


def test_non_leaf_hook_remove() -> None:
    x = leaf([1.0])
    y = x * 2
    h = y.register_hook(lambda g: g * 100)
    h.remove()
    y.sum().backward()
    close(x.grad, [2.0])


def test_hook_needs_requires_grad() -> None:
    with pytest.raises(AutogradError):
        ax.tensor([1.0]).register_hook(lambda g: g)


def test_retain_grad_sees_hooked_gradient() -> None:
    x = leaf([1.0, 2.0])
    y = x * 2
    y.retain_grad()
    y.register_hook(lambda g: g * 10)  # registered after retain_grad, still runs first (as PyTorch)
    (y * y).sum().backward()
    assert y.retains_grad
    close(y.grad, 10 * 2 * np.array([2.0, 4.0]))
    close(x.grad, 2 * 10 * 2 * np.array([2.0, 4.0]))


def test_retain_grad_accumulates() -> None:
    x = leaf([1.0])
    y = x * 3
    y.retain_grad()
    z = (y * y).sum()
    z.backward(retain_graph=True)
    z.backward()
    close(y.grad, [12.0])


# ----- detach, requires_grad_ ---------------------------------------------------------------------
def test_detach_shares_memory_and_cuts_graph() -> None:
    x = leaf([1.0, 2.0])
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None
    d[0] = 100.0  # same memory, as in PyTorch
    assert y[0].item() == 100.0
    (y.sum() + (d * x).sum()).backward()
    close(x.grad, [2.0 + 100.0, 2.0 + 4.0])


def test_detach_in_place() -> None:
    x = leaf([1.0, 2.0])
    y = x * 2
    y.detach_()
    assert y.is_leaf and not y.requires_grad
    z = (y * x).sum()
    z.backward()
    close(x.grad, [2.0, 4.0])


def test_requires_grad_on_integer_tensor_raises() -> None:
    with pytest.raises(DTypeError, match=r"floating point"):
        ax.tensor([1, 2]).requires_grad_()
    with pytest.raises(DTypeError):
        ax.tensor([1, 2], requires_grad=True)


def test_requires_grad_false_on_non_leaf_raises() -> None:
    y = leaf([1.0]) * 2
    with pytest.raises(AutogradError, match=r"leaf"):
        y.requires_grad_(False)


def test_integer_results_do_not_require_grad() -> None:
    x = leaf([1.5, -2.5])
    assert not (x > 0).requires_grad
    assert x.floor().requires_grad  # float result: differentiable (zero gradient)


# ----- in-place safety ------------------------------------------------------------------------------
def test_modified_saved_input_raises_naming_op() -> None:
    x = leaf([1.0, 2.0])
    a = x * 1
    y = (a * a).sum()  # Mul saves a
    a.add_(1)
    with pytest.raises(AutogradError, match=r"Mul.*modified by an in-place operation"):
        y.backward()


def test_modified_saved_output_raises_naming_op() -> None:
    x = leaf([1.0, 2.0])
    y = x.exp()  # Exp saves its output
    y.mul_(2)
    with pytest.raises(AutogradError, match=r"Exp.*in-place"):
        y.sum().backward()


def test_in_place_not_needed_by_backward_is_fine() -> None:
    x = leaf([1.0, 2.0])
    a = x * 1
    y = a * 3  # Mul by a scalar reads only the scalar in its backward of a
    a.add_(1)
    y.sum().backward()
    close(x.grad, [3.0, 3.0])


def test_in_place_on_leaf_requiring_grad_raises() -> None:
    x = leaf([1.0, 2.0])
    with pytest.raises(AutogradError, match=r"leaf"):
        x.add_(1)
    with pytest.raises(AutogradError, match=r"leaf"):
        x[0] = 5.0
    with ax.no_grad():
        x.add_(1)  # allowed without recording (an optimizer step)
    close(x, [2.0, 3.0])


def test_in_place_on_non_leaf_is_differentiable() -> None:
    x = leaf([1.0, 2.0])
    y = x * 2
    y.mul_(3)
    y.exp_()  # y = exp(6x)
    y.sum().backward()
    close(x.grad, 6 * np.exp(6 * np.array([1.0, 2.0])), atol=1e-6)


def test_in_place_with_itself_as_saved_operand_raises() -> None:
    x = leaf([1.0, 2.0])
    y = x * 2
    y.mul_(y)  # Mul saved y itself, which the write then changes (PyTorch raises too)
    with pytest.raises(AutogradError, match=r"in-place"):
        y.sum().backward()


# ----- anomaly detection -------------------------------------------------------------------------------
def test_detect_anomaly_names_forward_op_and_stack() -> None:
    with ax.autograd.detect_anomaly(), np.errstate(all="ignore"):
        x = leaf([0.0, 1.0])
        y = x.sqrt()  # d sqrt/dx = inf at 0; times 0 -> NaN
        z = (y * 0.0).sum()
        with pytest.raises(AutogradError) as info:
            z.backward()
    msg = str(info.value)
    assert "Sqrt" in msg and "NaN" in msg
    assert "test_autograd_engine.py" in msg and "x.sqrt()" in msg  # the forward stack points at the call


def test_detect_anomaly_custom_function() -> None:
    class BadGrad(Square):
        @staticmethod
        def backward(ctx, g):
            return g * float("nan")

    with ax.autograd.detect_anomaly():
        x = leaf([1.0])
        y = BadGrad.apply(x).sum()
        with pytest.raises(AutogradError, match=r"BadGrad.*NaN"):
            y.backward()


def test_anomaly_mode_adds_forward_trace_to_backward_errors() -> None:
    class Broken(Square):
        @staticmethod
        def backward(ctx, g):
            raise ValueError("boom")

    with ax.autograd.detect_anomaly():
        y = Broken.apply(leaf([1.0])).sum()
        with pytest.raises(ValueError, match=r"boom") as info:
            y.backward()
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "BrokenBackward" in notes and "Broken.apply" in notes


def test_without_anomaly_nan_passes_silently() -> None:
    assert not ax.autograd.is_anomaly_enabled()
    x = leaf([0.0])
    with np.errstate(all="ignore"):
        (x.sqrt() * 0.0).sum().backward()
    assert np.isnan(x.grad.numpy()).all()


def test_set_detect_anomaly() -> None:
    ax.autograd.set_detect_anomaly(True)
    try:
        assert ax.autograd.is_anomaly_enabled()
    finally:
        ax.autograd.set_detect_anomaly(False)
    assert not ax.autograd.is_anomaly_enabled()


def test_argument_count_errors() -> None:
    x = leaf([1.0])
    y = x * 2
    with pytest.raises(AutogradError, match=r"needs at least one input"):
        ax.autograd.grad(y.sum(), [])
    with pytest.raises(AutogradError, match=r"grad_outputs has 2 entries for 1 outputs"):
        ax.autograd.grad(y, x, grad_outputs=[ax.ones(1, dtype=ax.float64)] * 2)
    with pytest.raises(AutogradError, match=r"2 gradient\(s\) for 1 tensor"):
        ax.autograd.backward([y], [ax.ones(1, dtype=ax.float64)] * 2)
    with pytest.raises(AutogradError, match=r"cannot be empty"):
        y.sum().backward(inputs=[])


def test_grad_at_node_freed_but_not_needed() -> None:
    # capturing the gradient of a tensor whose own node was freed works: that node need not run
    x = leaf([1.0, 2.0])
    y = x * 2
    y.sum().backward()  # frees y's node
    z = (y * y).sum()
    (gy,) = ax.autograd.grad(z, y)
    close(gy, [4.0, 8.0])


def test_a_reshaped_gradient_is_kept_only_when_nobody_else_holds_its_base() -> None:
    # a gradient that is a reshaped view of a fresh array (a weight gradient made as a matrix) is kept as .grad
    # when the view alone holds that array; while someone else holds it, it is copied
    from axonml.core import accumulate
    from axonml.core.accumulate import AccumulateGrad

    if not accumulate.STEALS:
        pytest.skip("this Python's reference counts are not trusted for stealing: gradients are copied")
    for held in (True, False):
        target = leaf(np.zeros(6))
        base = np.zeros((2, 3))
        g = ax.Tensor._make(base.reshape(6), target.device)
        if not held:
            del base
        AccumulateGrad(target).accumulate(g, False, True)
        assert (target.grad._data is g._data) == (not held)
