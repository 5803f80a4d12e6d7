"""Forward-mode AD: dual tensors through elementwise, reduction, matmul and movement ops."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
from axonml.autograd import forward_ad as fwd
from axonml.errors import AutogradError, ShapeError

RNG = np.random.default_rng(0)


def t64(a):
    return ax.tensor(np.asarray(a, dtype=np.float64))


def jvp_forward(f, primal: np.ndarray, tangent: np.ndarray) -> np.ndarray:
    with fwd.dual_level():
        out = f(fwd.make_dual(t64(primal), t64(tangent)))
        primal_out, tangent_out = fwd.unpack_dual(out)
        assert tangent_out is not None
        assert primal_out._tangent is None
        return tangent_out.numpy()


def jvp_numeric(f, primal: np.ndarray, tangent: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    hi = f(t64(primal + eps * tangent)).numpy()
    lo = f(t64(primal - eps * tangent)).numpy()
    return (hi - lo) / (2 * eps)


CASES = {
    # elementwise
    "exp_sin": (lambda x: x.exp() * x.sin(), (3, 4)),
    "tanh_sigmoid": (lambda x: x.tanh() + x.sigmoid() * 2, (5,)),
    "pow_div": (lambda x: (x * x + 1.0) ** 1.5 / (x.abs() + 2.0), (2, 3)),
    "log_sqrt": (lambda x: (x * x + 1).log() + (x * x + 0.5).sqrt(), (4,)),
    "where_max": (lambda x: ax.where(x > 0, x * 3, x.exp()) + ax.maximum(x, 0.1 * x), (6,)),
    # reductions
    "sum_dim": (lambda x: x.sum(dim=1), (3, 4)),
    "sum_keepdim": (lambda x: (x * x).sum(dim=0, keepdim=True), (3, 4)),
    "amax": (lambda x: x.amax(dim=-1), (3, 5)),
    "mean_var": (lambda x: x.mean(dim=0) + x.var(dim=0), (4, 3)),
    # matmul
    "matmul_const": (lambda x: x @ t64(np.arange(12.0).reshape(4, 3) / 10), (2, 4)),
    "matmul_self": (lambda x: x @ x.T, (3, 2)),
    "batched_matmul": (lambda x: x @ x.transpose(-1, -2), (2, 3, 2)),
    "vector_dot": (lambda x: x @ x, (4,)),
    # movement
    "reshape_permute": (lambda x: x.reshape(2, 6).permute(1, 0) * 2, (3, 4)),
    "index_slice": (lambda x: x[1:, ::2] * x[:-1, 1::2], (3, 4)),
    "index_array": (lambda x: x[t64([0, 2, 2]).long()], (3, 2)),
    "expand_cat_flip": (lambda x: ax.cat([x.unsqueeze(0).expand(2, 3), x.flip(0).unsqueeze(0)], dim=0), (3,)),
    "softmax": (lambda x: x.softmax(dim=-1), (2, 5)),
    # constant operands and parameters
    "scalars": (lambda x: (x * 3 + 2.5 - x / np.float64(2)) ** 2 + x * np.int64(2), (4,)),
    "comparison_mask": (lambda x: x * (x > 0).double() + ax.where(x < 0.5, x, 0.0), (5,)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_jvp_matches_finite_differences(name: str) -> None:
    f, shape = CASES[name]
    primal = RNG.uniform(-1.5, 1.5, shape)
    tangent = RNG.standard_normal(shape)
    np.testing.assert_allclose(jvp_forward(f, primal, tangent), jvp_numeric(f, primal, tangent), rtol=1e-5,
                               atol=1e-6)


def test_cast_carries_tangent_in_new_dtype() -> None:
    tangent = np.array([1.0, -2.0, 0.5])
    with fwd.dual_level():
        y = fwd.make_dual(t64([1.0, 2.0, 3.0]), t64(tangent)).to(ax.float32) * 2
        t = fwd.unpack_dual(y).tangent
        assert t.dtype == ax.float32
        np.testing.assert_allclose(t.numpy(), 2 * tangent)


def test_unpack_dual_of_plain_tensor() -> None:
    x = t64([1.0])
    p, t = fwd.unpack_dual(x)
    assert p is x and t is None


def test_tangents_dropped_on_exit() -> None:
    with fwd.dual_level():
        d = fwd.make_dual(t64([1.0, 2.0]), t64([1.0, 1.0]))
        y = d * 3
    assert fwd.unpack_dual(d).tangent is None
    assert fwd.unpack_dual(y).tangent is None


def test_ops_on_non_dual_tensors_have_no_tangent() -> None:
    with fwd.dual_level():
        d = fwd.make_dual(t64([1.0]), t64([2.0]))
        c = t64([3.0]) * 2
        assert fwd.unpack_dual(c).tangent is None
        np.testing.assert_allclose(fwd.unpack_dual(d + c).tangent.numpy(), [2.0])


def test_make_dual_errors() -> None:
    with pytest.raises(AutogradError, match=r"dual_level"):
        fwd.make_dual(t64([1.0]), t64([1.0]))
    with fwd.dual_level():
        with pytest.raises(ShapeError):
            fwd.make_dual(t64([1.0, 2.0]), t64([1.0]))
        with pytest.raises(AutogradError, match=r"nested"), fwd.dual_level():
            pass


def test_enter_exit_dual_level() -> None:
    fwd.enter_dual_level()
    try:
        d = fwd.make_dual(t64([2.0]), t64([1.0]))
        np.testing.assert_allclose(fwd.unpack_dual(d * d).tangent.numpy(), [4.0])
    finally:
        fwd.exit_dual_level()
    with pytest.raises(AutogradError):
        fwd.exit_dual_level()


def test_tangent_dtype_follows_primal() -> None:
    with fwd.dual_level():
        d = fwd.make_dual(ax.tensor([1.0], dtype=ax.float64), ax.tensor([1.0], dtype=ax.float32))
        assert fwd.unpack_dual(d).tangent.dtype == ax.float64


def test_forward_over_reverse_hessian_vector_product() -> None:
    # f(x) = sum(exp(x) * x^2): H = diag(exp(x) (x^2 + 4x + 2)); exp saves its output, which must carry a tangent
    x0 = np.array([0.3, -0.4, 1.1])
    v = np.array([1.0, 2.0, -1.0])
    with fwd.dual_level():
        x = fwd.make_dual(t64(x0), t64(v)).requires_grad_(True)
        f = (x.exp() * x * x).sum()
        (g,) = ax.autograd.grad(f, x, create_graph=True)
        hv = fwd.unpack_dual(g).tangent
    np.testing.assert_allclose(hv.detach().numpy(), np.exp(x0) * (x0**2 + 4 * x0 + 2) * v, rtol=1e-10)


def test_dual_with_requires_grad_keeps_reverse_graph() -> None:
    p = ax.tensor([1.0, 2.0], dtype=ax.float64, requires_grad=True)
    with fwd.dual_level():
        d = fwd.make_dual(p, t64([1.0, 0.0]))
        y = (d * d).sum()
        np.testing.assert_allclose(fwd.unpack_dual(y).tangent.detach().numpy(), 2.0)
    y.backward()
    np.testing.assert_allclose(p.grad.numpy(), [2.0, 4.0])


def test_dual_levels_are_per_thread() -> None:
    import threading

    barrier = threading.Barrier(2, timeout=10)
    results = {}

    def worker(scale: float) -> None:
        with fwd.dual_level():  # each thread opens its own level (a shared one would refuse to nest)
            d = fwd.make_dual(t64([1.0]), t64([scale]))
            barrier.wait()
            results[scale] = fwd.unpack_dual(d * 3).tangent.numpy()[0]
            barrier.wait()

    threads = [threading.Thread(target=worker, args=(s,)) for s in (1.0, 2.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {1.0: 3.0, 2.0: 6.0}
