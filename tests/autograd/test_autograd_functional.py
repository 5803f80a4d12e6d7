"""``axonml.autograd.functional``: vjp, jvp, jacobian, hessian, hvp, vhp (PyTorch's structures and results)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import axonml as ax
from axonml.autograd import functional as F
from axonml.errors import AutogradError, ShapeError
from harness import Cube

HAS_TORCH = importlib.util.find_spec("torch") is not None
RNG = np.random.default_rng(1)


def t64(a, requires_grad=False):
    return ax.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def arr(t):
    return t.detach().numpy()


def close(a, b, tol=1e-9):
    np.testing.assert_allclose(arr(a) if isinstance(a, ax.Tensor) else a, b, rtol=tol, atol=tol)


A = RNG.standard_normal(3)
B = RNG.standard_normal((2, 3))


def two_in_two_out(x, y):
    return (x.exp() * y).sum(1), (x @ y.T).tanh()


def scalar_fn(x):
    return (x.sin() * x).sum() + (x**3).sum() * 0.1


def scalar_fn2(x, y):
    return (x.exp() * y).sum() + (y * y).sum() * x.sum()


# ----- structures -------------------------------------------------------------------------------
def test_jacobian_structures() -> None:
    x, y = t64(A), t64(B)
    assert F.jacobian(lambda a: a * 2, x).shape == (3, 3)
    j = F.jacobian(lambda a, b: a * b, (x, y))
    assert isinstance(j, tuple) and [t.shape for t in j] == [(2, 3, 3), (2, 3, 2, 3)]
    j = F.jacobian(lambda a: (a * 2, a.sum()), x)
    assert isinstance(j, tuple) and [t.shape for t in j] == [(3, 3), (3,)]
    j = F.jacobian(two_in_two_out, (x, y))
    assert [[t.shape for t in row] for row in j] == [[(2, 3), (2, 2, 3)], [(2, 3), (2, 2, 3)]]
    j = F.jacobian(lambda a: a * 2, [x])  # a list counts as a tuple
    assert isinstance(j, tuple) and j[0].shape == (3, 3)


def test_hessian_structures() -> None:
    x, y = t64(A), t64(B)
    assert F.hessian(scalar_fn, x).shape == (3, 3)
    h = F.hessian(scalar_fn2, (x, y))
    assert [[t.shape for t in row] for row in h] == [[(3, 3), (3, 2, 3)], [(2, 3, 3), (2, 3, 2, 3)]]


def test_jacobian_values_of_known_function() -> None:
    x, y = t64(A), t64(B)
    j = F.jacobian(lambda a, b: a * b, (x, y))
    expected_x = np.zeros((2, 3, 3))
    for i in range(2):
        for k in range(3):
            expected_x[i, k, k] = B[i, k]
    close(j[0], expected_x)
    h = F.hessian(scalar_fn, x)
    close(h, np.diag(2 * np.cos(A) - A * np.sin(A) + 0.6 * A))


def test_results_detached_unless_create_graph() -> None:
    x = t64(A, requires_grad=True)
    j = F.jacobian(lambda a: a.exp(), x)
    assert not j.requires_grad
    j = F.jacobian(lambda a: a.exp(), x, create_graph=True)
    assert j.requires_grad
    (g,) = ax.autograd.grad(j.sum(), x)  # d/dx sum(diag(exp x)) = exp x
    close(g, np.exp(A))
    out, v = F.vjp(lambda a: (a * a).sum(), x, create_graph=True)
    assert out.requires_grad and v.requires_grad
    assert x.grad is None  # nothing is accumulated into the caller's leaves


def test_vjp_jvp_known_values() -> None:
    x, y = t64(A), t64(B)
    v_out = (t64([1.0, 2.0]), t64([[0.5, -1.0]]).reshape(2))
    outs, (gx, _) = F.vjp(two_in_two_out, (x, y), v_out)
    assert isinstance(outs, tuple) and len(outs) == 2
    # vjp == v^T J from the full Jacobian
    j = F.jacobian(two_in_two_out, (x, y))
    vx = sum(np.tensordot(arr(v_out[i]), arr(j[i][0]), axes=1) for i in range(2))
    close(gx, vx)
    v_in = (t64(RNG.standard_normal(3)), t64(RNG.standard_normal((2, 3))))
    _, (jv0, jv1) = F.jvp(two_in_two_out, (x, y), v_in)
    expected0 = np.tensordot(arr(j[0][0]), arr(v_in[0]), axes=1) + np.tensordot(arr(j[0][1]), arr(v_in[1]), axes=2)
    close(jv0, expected0)
    assert jv1.shape == (2,)


def test_hvp_vhp_match_hessian() -> None:
    x = t64(A)
    v = t64(RNG.standard_normal(3))
    h = arr(F.hessian(scalar_fn, x))
    out, hv = F.hvp(scalar_fn, x, v)
    close(hv, h @ arr(v))
    close(out, arr(scalar_fn(x)))
    _, vh = F.vhp(scalar_fn, x, v)
    close(vh, arr(v) @ h)


def test_v_may_be_omitted_only_for_single_elements() -> None:
    _, g = F.vjp(lambda a: (a * a).sum(), t64(A))
    close(g, 2 * A)
    _, t = F.jvp(lambda a: a * 3, t64([2.0]))
    close(t, [3.0])
    with pytest.raises(AutogradError, match=r"v can be None"):
        F.vjp(lambda a: a * 2, t64(A))
    with pytest.raises(AutogradError, match=r"v can be None"):
        F.jvp(lambda a: a * 2, t64(A))


def test_v_is_validated() -> None:
    with pytest.raises(ShapeError, match=r"invalid size"):
        F.vjp(lambda a: a * 2, t64(A), t64([1.0]))
    with pytest.raises(ShapeError, match=r"invalid length"):
        F.jvp(lambda a, b: a * b, (t64(A), t64(A)), (t64(A),))


def test_non_tensor_inputs_are_rejected() -> None:
    with pytest.raises(TypeError, match=r"Tensor or a tuple of Tensors"):
        F.jacobian(lambda a: a, (t64(A), 3.0))
    with pytest.raises(TypeError):
        F.vjp(lambda a: 3.0, t64(A))


def test_hessian_needs_single_element_output() -> None:
    with pytest.raises(ShapeError, match=r"single element"):
        F.hessian(lambda a: a * 2, t64(A))
    with pytest.raises(AutogradError, match=r"single Tensor"):
        F.hvp(lambda a: (a.sum(), a.sum()), t64(A), t64(A))


# ----- strict and unused inputs --------------------------------------------------------------------
def test_independent_input_gives_zeros_or_strict_error() -> None:
    x, y = t64(A), t64(A)
    j = F.jacobian(lambda a, b: a * 2, (x, y))
    close(j[1], np.zeros((3, 3)))
    with pytest.raises(AutogradError, match=r"independent of input 1"):
        F.jacobian(lambda a, b: a * 2, (x, y), strict=True)
    _, g = F.vjp(lambda a, b: (a * 2).sum(), (x, y))
    close(g[1], np.zeros(3))
    with pytest.raises(AutogradError, match=r"independent of input 1"):
        F.vjp(lambda a, b: (a * 2).sum(), (x, y), strict=True)


def test_strict_rejects_constant_output() -> None:
    with pytest.raises(AutogradError, match=r"does not require gradients"):
        F.jacobian(lambda a: ax.zeros(3, dtype=ax.float64), t64(A), strict=True)
    close(F.jacobian(lambda a: ax.zeros(2, dtype=ax.float64), t64(A)), np.zeros((2, 3)))


def test_strict_hessian_of_linear_function() -> None:
    with pytest.raises(AutogradError):
        F.hessian(lambda a: (a * 2).sum(), t64(A), strict=True)
    close(F.hessian(lambda a: (a * 2).sum(), t64(A)), np.zeros((3, 3)))


def test_bad_strategy() -> None:
    with pytest.raises(ValueError, match=r"strategy"):
        F.jacobian(lambda a: a, t64(A), strategy="sideways")


# ----- vectorize and forward mode ----------------------------------------------------------------
BATCHABLE = {
    "elementwise": lambda x: ((x * 1.5 + 0.2).exp() - x.sin() / (x * x + 1.0)).tanh() ** 2,
    "binary_broadcast": lambda x: ax.maximum(x.reshape(3, 2), t64([0.1, -0.2])) * ax.where(x > 0, x, -x).reshape(3, 2),
    "matmul_2d": lambda x: x.reshape(3, 2) @ t64(np.arange(8.0).reshape(2, 4)),
    "matmul_vec": lambda x: t64(np.arange(6.0).reshape(2, 3)) @ x[:3] + x[3:] @ t64(np.ones((3, 2))),
    "sum_amax": lambda x: ax.stack([x.reshape(2, 3).sum(dim=0).amax(), (x * x).sum()]),
    "movement": lambda x: ax.cat([x.reshape(2, 3).permute(1, 0).flip(0)[1:, :], x[None, ::2].expand(2, 3)], 1),
    "clamp_pow": lambda x: x.clamp(-0.5, 0.5) + x.abs() ** 1.5 + x.float().double(),
    "softmax": lambda x: x.reshape(2, 3).softmax(dim=-1),
}


@pytest.mark.parametrize("name", list(BATCHABLE))
def test_vectorized_jacobian_is_one_batched_backward(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    f = BATCHABLE[name]
    x = t64(RNG.uniform(-1.0, 1.0, 6))
    looped = F.jacobian(f, x)

    def no_loop(*args, **kwargs):
        raise AssertionError("vectorize=True fell back to one backward per row")

    monkeypatch.setattr(F, "_rows_looped", no_loop)
    close(F.jacobian(f, x, vectorize=True), arr(looped), tol=1e-10)


def test_vectorized_jacobian_falls_back_when_not_batchable() -> None:
    x = t64(A)
    close(F.jacobian(Cube.apply, x, vectorize=True), np.diag(3 * A**2))  # a user Function has no batched rule
    close(F.jacobian(lambda a: a @ a, x, vectorize=True), 2 * A)  # vector dot: not batchable either


def test_vectorized_jacobian_tuples_and_create_graph() -> None:
    x, y = t64(A, requires_grad=True), t64(B)
    j_loop = F.jacobian(two_in_two_out, (x, y), create_graph=True)
    j_vec = F.jacobian(two_in_two_out, (x, y), create_graph=True, vectorize=True)
    for i in range(2):
        for k in range(2):
            close(j_vec[i][k], arr(j_loop[i][k]))
    (g_loop,) = ax.autograd.grad(j_loop[1][0].sum(), x)
    (g_vec,) = ax.autograd.grad(j_vec[1][0].sum(), x)
    close(g_vec, arr(g_loop))


def test_forward_mode_jacobian_matches_reverse() -> None:
    x, y = t64(A), t64(B)
    rev = F.jacobian(two_in_two_out, (x, y))
    fwd = F.jacobian(two_in_two_out, (x, y), strategy="forward-mode", vectorize=True)
    for i in range(2):
        for k in range(2):
            close(fwd[i][k], arr(rev[i][k]))


def test_forward_mode_jacobian_create_graph() -> None:
    x = t64(A, requires_grad=True)
    j = F.jacobian(lambda a: a.exp() * 2, x, strategy="forward-mode", create_graph=True)
    assert j.requires_grad
    (g,) = ax.autograd.grad(j.sum(), x)
    close(g, 2 * np.exp(A))


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("outer", ["reverse-mode", "forward-mode"])
def test_hessian_strategies_agree(outer: str, vectorize: bool) -> None:
    x, y = t64(A), t64(B)
    ref = F.hessian(scalar_fn2, (x, y))
    got = F.hessian(scalar_fn2, (x, y), vectorize=vectorize, outer_jacobian_strategy=outer)
    for i in range(2):
        for k in range(2):
            close(got[i][k], arr(ref[i][k]))


def test_empty_input_and_output() -> None:
    empty = t64(np.zeros((0,)))
    assert F.jacobian(lambda a: a * 2, empty).shape == (0, 0)
    assert F.jacobian(lambda a: a * 2, empty, vectorize=True).shape == (0, 0)
    assert F.jacobian(lambda a: a.sum() + t64(1.0), empty).shape == (0,)


# ----- parity with torch.autograd.functional --------------------------------------------------------
def _torch_pair(fn_name: str):
    import torch

    return getattr(F, fn_name), getattr(torch.autograd.functional, fn_name), torch


def _to_np(res):
    if isinstance(res, tuple):
        return tuple(_to_np(r) for r in res)
    return res.detach().numpy() if hasattr(res, "detach") else res


def _assert_same(ours, theirs) -> None:
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs)
        for o, t in zip(ours, theirs):
            _assert_same(o, t)
    else:
        assert not isinstance(ours, tuple)
        assert tuple(ours.shape) == tuple(theirs.shape)
        np.testing.assert_allclose(_to_np(ours), _to_np(theirs), rtol=1e-9, atol=1e-10)


def _both(torch, values):
    """An array, or a tuple of them, as (our tensors, torch's tensors) in the same structure."""
    if isinstance(values, tuple):
        return tuple(t64(v) for v in values), tuple(torch.tensor(v) for v in values)
    return t64(values), torch.tensor(values)


def _args(torch, single: bool):
    return _both(torch, A if single else (A, B))


def _input_like_v(single: bool):
    """A random v shaped like the inputs that ``_args`` gives."""
    return RNG.standard_normal(A.shape) if single else (RNG.standard_normal(A.shape), RNG.standard_normal(B.shape))


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("case", ["single_single", "single_tuple", "tuple_single", "tuple_tuple"])
def test_jacobian_vs_torch(case: str, vectorize: bool) -> None:
    ours_fn, torch_fn, torch = _torch_pair("jacobian")
    single_in = case.startswith("single")
    single_out = case.endswith("_single")

    def f(*xs):
        first = (xs[0].exp() * xs[0]).sum() if single_in else (xs[0].exp() * xs[1]).sum(1)
        if single_out:
            return first
        second = xs[0].tanh() * 3 if single_in else (xs[0] @ xs[1].T).sin()
        return (first, second)

    ours_in, theirs_in = _args(torch, single_in)
    _assert_same(ours_fn(f, ours_in, vectorize=vectorize), torch_fn(f, theirs_in, vectorize=vectorize))


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
@pytest.mark.parametrize("name", ["vjp", "jvp"])
@pytest.mark.parametrize("single", [True, False])
def test_vjp_jvp_vs_torch(name: str, single: bool) -> None:
    ours_fn, torch_fn, torch = _torch_pair(name)

    def f(*xs):
        if single:
            return (xs[0].sin() * 2, (xs[0] * xs[0]).sum())
        return (xs[0].exp() * xs[1]).sum(1)

    ours_in, theirs_in = _args(torch, single)
    if name == "vjp":
        v_np = (RNG.standard_normal(3), RNG.standard_normal(())) if single else RNG.standard_normal(2)
    else:
        v_np = _input_like_v(single)
    ours_v, theirs_v = _both(torch, v_np)
    _assert_same(ours_fn(f, ours_in, ours_v), torch_fn(f, theirs_in, theirs_v))


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
@pytest.mark.parametrize("name", ["hessian", "hvp", "vhp"])
@pytest.mark.parametrize("single", [True, False])
def test_second_order_vs_torch(name: str, single: bool) -> None:
    ours_fn, torch_fn, torch = _torch_pair(name)
    f = scalar_fn if single else scalar_fn2
    ours_in, theirs_in = _args(torch, single)
    if name == "hessian":
        _assert_same(ours_fn(f, ours_in), torch_fn(f, theirs_in))
        return
    ours_v, theirs_v = _both(torch, _input_like_v(single))
    _assert_same(ours_fn(f, ours_in, ours_v), torch_fn(f, theirs_in, theirs_v))


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_create_graph_results_vs_torch() -> None:
    import torch

    x_ours = t64(A, requires_grad=True)
    x_theirs = torch.tensor(A, requires_grad=True)
    # third derivatives: the gradient of the sum of the Hessian
    g_ours = ax.autograd.grad(F.hessian(scalar_fn, x_ours, create_graph=True).sum(), x_ours)[0]
    g_theirs = torch.autograd.grad(torch.autograd.functional.hessian(scalar_fn, x_theirs, create_graph=True).sum(),
                                   x_theirs)[0]
    np.testing.assert_allclose(arr(g_ours), g_theirs.numpy(), rtol=1e-9)
