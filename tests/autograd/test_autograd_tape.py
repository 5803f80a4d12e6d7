"""``axonml.GradientTape``: TensorFlow's tape semantics on axonml's engine."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import axonml as ax
from axonml import GradientTape
from axonml.errors import AutogradError, DTypeError, ShapeError
from harness import Square


def t64(a, requires_grad=False):
    return ax.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def close(t, expected):
    np.testing.assert_allclose(t.detach().numpy(), expected, rtol=1e-9, atol=1e-12)


def test_exported_at_top_level() -> None:
    assert ax.GradientTape is ax.autograd.GradientTape


def test_watch_plain_tensor_and_restore() -> None:
    x = t64([1.0, 2.0])
    with GradientTape() as tape:
        tape.watch(x)
        assert x.requires_grad  # tracked while the tape records
        y = (x * x).sum()
    assert not x.requires_grad  # the caller's tensor is left as it was
    close(tape.gradient(y, x), [2.0, 4.0])
    assert x.grad is None  # the tape returns gradients, it does not accumulate them


def test_parameters_are_watched_automatically() -> None:
    w = t64([3.0, -1.0], requires_grad=True)
    x = t64([1.0, 2.0])
    with GradientTape() as tape:
        loss = (w * x).sum() ** 2
    close(tape.gradient(loss, w), 2 * (3.0 - 2.0) * np.array([1.0, 2.0]))


def test_watch_accessed_variables_false() -> None:
    w = t64([3.0], requires_grad=True)
    b = t64([2.0])
    with GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(b)
        y = (w * b).sum()
    gw, gb = tape.gradient(y, [w, b])
    assert gw is None  # w requires grad but was not watched
    close(gb, [3.0])


def test_non_persistent_tape_allows_one_gradient() -> None:
    x = t64([2.0])
    with GradientTape() as tape:
        tape.watch(x)
        y = x * x
    tape.gradient(y, x)
    with pytest.raises(AutogradError, match=r"non-persistent.*persistent=True"):
        tape.gradient(y, x)


def test_persistent_tape() -> None:
    x = t64([2.0, 3.0])
    with GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        z = y * y
    close(tape.gradient(y, x), [4.0, 6.0])
    close(tape.gradient(z, x), 4 * np.array([8.0, 27.0]))
    close(tape.gradient(z, y), 2 * np.array([4.0, 9.0]))


def test_structures_of_sources() -> None:
    a, b, c = t64([1.0]), t64([2.0]), t64([3.0])
    with GradientTape(persistent=True) as tape:
        tape.watch([a, b, c])
        y = (a * b * c).sum()
    g = tape.gradient(y, {"a": a, "rest": [b, (c,)]})
    assert set(g) == {"a", "rest"}
    close(g["a"], [6.0])
    assert isinstance(g["rest"], list) and isinstance(g["rest"][1], tuple)
    close(g["rest"][0], [3.0])
    close(g["rest"][1][0], [2.0])
    assert isinstance(tape.gradient(y, (a, b)), tuple)
    close(tape.gradient(y, a), [6.0])


def test_unconnected_gradients() -> None:
    x, unused = t64([1.0]), t64([5.0, 6.0])
    with GradientTape(persistent=True) as tape:
        tape.watch([x, unused])
        y = x * 2
    gx, gu = tape.gradient(y, [x, unused])
    close(gx, [2.0])
    assert gu is None
    _, gu = tape.gradient(y, [x, unused], unconnected_gradients="zero")
    close(gu, [0.0, 0.0])
    with pytest.raises(ValueError, match=r"unconnected_gradients"):
        tape.gradient(y, x, unconnected_gradients="nan")


def test_non_scalar_target_and_output_gradients() -> None:
    x = t64([1.0, 2.0])
    with GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x  # not a scalar: differentiated as its sum
        total = y.sum()
    close(tape.gradient(y, x), [2.0, 4.0])
    close(tape.gradient(y, x, output_gradients=t64([10.0, 0.0])), [20.0, 0.0])
    close(tape.gradient([y, total], x), [4.0, 8.0])  # a list of targets: the sum of their gradients
    close(tape.gradient([y, y.sum()], x), [2.0, 4.0])  # y.sum() outside the block was not recorded
    with pytest.raises(ShapeError):
        tape.gradient(y, x, output_gradients=t64([1.0]))


def test_ops_before_the_tape_are_constants() -> None:
    w = t64([2.0], requires_grad=True)
    pre = w * w  # before the tape: not recorded
    with GradientTape() as tape:
        y = pre * w
    close(tape.gradient(y, w), [4.0])  # d(pre * w)/dw with pre constant


def test_target_computed_outside_the_tape() -> None:
    w = t64([2.0], requires_grad=True)
    with GradientTape() as tape:
        pass
    y = w * 3
    assert tape.gradient(y, w) is None


def test_stop_recording() -> None:
    x = t64([3.0])
    with GradientTape() as tape:
        tape.watch(x)
        a = x * x
        with tape.stop_recording():
            b = x * 10  # a constant to this tape
        y = a + b * x
    close(tape.gradient(y, x), [2 * 3.0 + 30.0])


def test_stop_recording_outside_block_raises() -> None:
    tape = GradientTape()
    with pytest.raises(AutogradError, match=r"recording"), tape.stop_recording():
        pass


def test_watch_outside_block_and_integer_tensor() -> None:
    tape = GradientTape()
    with pytest.raises(AutogradError, match=r"inside"):
        tape.watch(t64([1.0]))
    with GradientTape() as tape, pytest.raises(DTypeError, match=r"floating"):
        tape.watch(ax.tensor([1, 2]))


def _nested_derivatives(f, x, order):
    """[f(x), f'(x), ..., f^(order)(x)] from ``order`` nested tapes.

    Each gradient is taken after its tape closes but inside the enclosing one,
    which records it (so it is computed with create_graph) for the next order.
    """
    if order == 0:
        return [f(x)]
    with GradientTape() as tape:
        tape.watch(x)
        lower = _nested_derivatives(f, x, order - 1)
    return [*lower, tape.gradient(lower[-1], x)]


@pytest.mark.parametrize(("f", "x0", "expected"), [
    (lambda x: x**3, 3.0, [27.0, 27.0, 18.0]),  # x^3, 3x^2, 6x
    # x sin x, sin x + x cos x, 2 cos x - x sin x, -3 sin x - x cos x
    (lambda x: x.sin() * x, 0.5, [0.5 * np.sin(0.5), np.sin(0.5) + 0.5 * np.cos(0.5),
                                   2 * np.cos(0.5) - 0.5 * np.sin(0.5), -3 * np.sin(0.5) - 0.5 * np.cos(0.5)]),
], ids=["second", "third"])
def test_nested_tapes_higher_derivatives(f, x0, expected) -> None:
    x = t64(x0)
    got = _nested_derivatives(f, x, len(expected) - 1)
    for g, e in zip(got, expected):
        close(g, e)
    assert not x.requires_grad


def test_gradient_outside_outer_tape_is_not_differentiable() -> None:
    x = t64(2.0)
    with GradientTape() as tape:
        tape.watch(x)
        y = x * x
    g = tape.gradient(y, x)
    assert not g.requires_grad


def test_persistent_tape_gradient_inside_its_block() -> None:
    x = t64(2.0)
    with GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x**3
        g = tape.gradient(y, x)  # recorded by the same tape
    close(tape.gradient(g, x), 12.0)


def test_tape_records_inside_no_grad() -> None:
    x = t64([1.0])
    with ax.no_grad(), GradientTape() as tape:
        tape.watch(x)
        y = x * 4
    close(tape.gradient(y, x), [4.0])


def test_reset() -> None:
    x = t64([1.0])
    with GradientTape(persistent=True) as tape:
        tape.watch(x)
        a = x * 2
        tape.reset()
        y = a * x
    close(tape.gradient(y, x), [2.0])  # a was recorded before the reset: a constant now


def test_tape_jacobian() -> None:
    x = t64([1.0, 2.0, 3.0])
    w = t64([[1.0, 0.0, 2.0], [0.5, -1.0, 0.0]], requires_grad=True)
    with GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = (w @ x).tanh()
    jx = tape.jacobian(y, x)
    d = 1 - np.tanh(w.detach().numpy() @ x.numpy()) ** 2
    close(jx, d[:, None] * w.detach().numpy())
    jw = tape.jacobian(y, [w])[0]
    assert jw.shape == (2, 2, 3)
    close(jw[0, 1], [0.0, 0.0, 0.0])
    close(jw[1, 1], d[1] * x.numpy())


def test_tape_jacobian_fallback_and_unconnected() -> None:
    x, other = t64([1.0, 2.0]), t64([1.0])
    with GradientTape(persistent=True) as tape:
        tape.watch([x, other])
        y = Square.apply(x)  # a user Function has no batched rule: the loop is used
    close(tape.jacobian(y, x), np.diag([2.0, 4.0]))
    assert tape.jacobian(y, other) is None
    close(tape.jacobian(y, other, unconnected_gradients="zero"), np.zeros((2, 1)))


def test_batch_jacobian() -> None:
    rng = np.random.default_rng(0)
    xs = t64(rng.standard_normal((4, 3)))
    m = t64(rng.standard_normal((3, 2)))
    with GradientTape() as tape:
        tape.watch(xs)
        ys = (xs @ m).sin()  # (4, 2), example b depends only on xs[b]
    bj = tape.batch_jacobian(ys, xs)
    assert bj.shape == (4, 2, 3)
    for b in range(4):
        expected = np.cos(xs.numpy()[b] @ m.numpy())[:, None] * m.numpy().T
        close(bj[b], expected)


def test_batch_jacobian_shape_check() -> None:
    x = t64(np.ones((2, 3)))
    with GradientTape() as tape:
        tape.watch(x)
        y = x.sum(dim=0)
    with pytest.raises(ShapeError, match=r"batch"):
        tape.batch_jacobian(y, x)


def test_tapes_in_threads_are_independent() -> None:
    results = {}

    def worker(name: str, scale: float) -> None:
        x = t64([1.0, 2.0])
        with GradientTape() as tape:
            tape.watch(x)
            y = (x * x * scale).sum()
        results[name] = tape.gradient(y, x).numpy()

    threads = [threading.Thread(target=worker, args=(f"t{i}", float(i + 1))) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for i in range(3):
        np.testing.assert_allclose(results[f"t{i}"], (i + 1) * np.array([2.0, 4.0]))


def test_tape_cannot_be_entered_twice() -> None:
    tape = GradientTape()
    with tape, pytest.raises(AutogradError, match=r"already recording"), tape:
        pass


def test_sources_must_be_tensors() -> None:
    x = t64([1.0])
    with GradientTape() as tape:
        tape.watch(x)
        y = x * 2
    with pytest.raises(TypeError, match=r"sources must be tensors"):
        tape.gradient(y, [x, 3.0])


def test_tape_entered_again_keeps_recording() -> None:
    x = t64([2.0])
    tape = GradientTape(persistent=True)
    with tape:
        tape.watch(x)
        a = x * x
    b = a * 100  # between the blocks: not recorded
    with tape:
        assert x.requires_grad
        y = a * x + b
    assert not x.requires_grad
    close(tape.gradient(y, x), [3 * 4.0])
