"""``gradcheck``/``gradgradcheck``: pass on correct derivatives, fail clearly on wrong ones."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
from axonml.autograd import GradcheckError, gradcheck, gradgradcheck
from harness import Cube

RNG = np.random.default_rng(3)


def inp(shape, requires_grad=True):
    return ax.tensor(RNG.uniform(-1.0, 1.0, shape), dtype=ax.float64, requires_grad=requires_grad)


class WrongCube(Cube):
    """x**3 with a wrong backward (2x^2 instead of 3x^2)."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * g * x * x


class CubeFlatSecond(Cube):
    """x**3 with a correct first derivative whose own derivative is wrong (x detached inside)."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        xd = x.detach()
        return 3 * g * xd * xd


GOOD = {
    "elementwise": (lambda x: (x.exp() * x.sin()).tanh(), [(3, 2)]),
    "binary_broadcast": (lambda a, b: a * b / (b * b + 1.0) - a.atan2(b + 2.0), [(2, 3), (3,)]),
    "matmul": (lambda a, b: a @ b, [(2, 3), (3, 4)]),
    "reduction": (lambda x: x.sum(dim=0) + x.amax(dim=1).sum(), [(3, 4)]),
    "movement": (lambda x: x.reshape(2, 6).T[::2] * x.flatten()[:6].reshape(3, 2), [(3, 4)]),
    "composed": (lambda x: x.softmax(dim=-1) * x.logsumexp(dim=-1, keepdim=True), [(2, 5)]),
    "tuple_outputs": (lambda x, y: (x * y, (x - y).exp().sum()), [(4,), (4,)]),
    "good_function": (Cube.apply, [(5,)]),
}


@pytest.mark.parametrize("name", list(GOOD))
def test_gradcheck_passes_on_correct_ops(name: str) -> None:
    f, shapes = GOOD[name]
    assert gradcheck(f, tuple(inp(s) for s in shapes))


@pytest.mark.parametrize("name", ["elementwise", "binary_broadcast", "matmul", "composed", "good_function"])
def test_gradgradcheck_passes_on_correct_ops(name: str) -> None:
    f, shapes = GOOD[name]
    assert gradgradcheck(f, tuple(inp(s) for s in shapes))


def test_gradcheck_forward_mode() -> None:
    assert gradcheck(lambda x: (x * x.sin()).sum(dim=0), inp((3, 2)), check_forward_ad=True)
    assert gradcheck(Cube.apply, inp((3,)), check_forward_ad=True)


def test_gradcheck_fails_on_wrong_function() -> None:
    x = inp((4,))
    assert gradcheck(WrongCube.apply, x, raise_exception=False) is False
    with pytest.raises(GradcheckError) as info:
        gradcheck(WrongCube.apply, x)
    msg = str(info.value)
    assert "output 0 with respect to input 0" in msg
    assert "max |analytical - numerical|" in msg
    worst = np.max(np.abs(x.detach().numpy()) ** 2)  # |2x^2 - 3x^2| = x^2
    reported = float(msg.split("numerical| = ")[1].split(" ")[0])
    assert reported == pytest.approx(worst, rel=1e-4)


def test_gradcheck_names_the_failing_input() -> None:
    def f(a, b):
        return a * 2 + WrongCube.apply(b)

    with pytest.raises(GradcheckError, match=r"with respect to input 1"):
        gradcheck(f, (inp((2,)), inp((3,))[:2]))


def test_gradgradcheck_fails_on_wrong_second_derivative() -> None:
    x = inp((3,))
    assert gradcheck(CubeFlatSecond.apply, x)  # the first derivative is right
    assert gradgradcheck(CubeFlatSecond.apply, x, raise_exception=False) is False
    with pytest.raises(GradcheckError, match=r"mismatch"):
        gradgradcheck(CubeFlatSecond.apply, x)


def test_gradcheck_forward_mode_catches_wrong_jvp() -> None:
    class WrongJvp(Cube):
        @staticmethod
        def jvp(ctx, t):
            (x,) = ctx.saved_tensors
            return t * x

    x = inp((3,))
    assert gradcheck(WrongJvp.apply, x)  # backward is right
    with pytest.raises(GradcheckError, match=r"forward-mode"):
        gradcheck(WrongJvp.apply, x, check_forward_ad=True)


def test_only_inputs_requiring_grad_are_checked() -> None:
    a, b = inp((3,)), inp((3,), requires_grad=False)
    assert gradcheck(lambda x, y: x * y.exp(), (a, b))
    assert gradcheck(lambda x, s: x * s, (a, 2.5))  # non-tensor arguments pass through


def test_no_input_requires_grad() -> None:
    with pytest.raises(ValueError, match=r"require gradient"):
        gradcheck(lambda x: x * 2, inp((2,), requires_grad=False))


def test_float32_inputs_warn() -> None:
    x = ax.tensor([0.5, 0.25], requires_grad=True)
    with pytest.warns(UserWarning, match=r"float64"):
        gradcheck(lambda t: t * 2, x, eps=1e-3, atol=1e-3, raise_exception=False)


def test_constant_output_is_checked_to_be_constant() -> None:
    x = inp((3,))

    def leaks(t):
        return ax.tensor(t.detach().numpy() * 2)  # depends on t but cut from the graph

    assert gradcheck(leaks, x, raise_exception=False) is False
    assert gradcheck(lambda t: (t * 0 + 1).detach() * 1.0, x)


def test_gradgradcheck_with_given_grad_outputs() -> None:
    x = inp((3,))
    go = ax.tensor(RNG.standard_normal(3), dtype=ax.float64, requires_grad=True)
    assert gradgradcheck(lambda t: t.sin() * t, x, go)
