"""Composed elementwise math and softmax through the generic harness, plus edge cases and dtypes."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
import torch_ref as tr
from axonml.errors import DTypeError
from harness import HAS_TORCH, OpSpec, op_tests

T = tr.torch
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")

BROADCAST = (((3, 4), (3, 4)), ((2, 3, 1), (4,)), ((0, 3), (1, 3)), ((), (2, 2)))
UNARY = (((3, 4),), ((2, 0, 3),), ((),))
POSITIVE = (0.2, 3.0)


def _np_softmax(x, dim):
    e = np.exp(x - np.max(x, axis=dim, keepdims=True, initial=-np.inf))
    return e / e.sum(axis=dim, keepdims=True)


def _np_log_softmax(x, dim):
    m = np.max(x, axis=dim, keepdims=True, initial=-np.inf)
    return x - m - np.log(np.exp(x - m).sum(axis=dim, keepdims=True))


def _np_lerp(a, b, w):
    return a + w * (b - a)


def _with_nonfinite(rng, shape):
    x = rng.uniform(-2, 2, size=shape)
    flat = x.reshape(-1)
    for k, v in zip(range(0, flat.size, 3), (np.nan, np.inf, -np.inf) * flat.size):
        flat[k] = v
    return x


def _xlogy_x(rng, shape):
    x = rng.uniform(-2, 2, size=shape)
    x.reshape(-1)[::4] = 0.0
    return x


NAN_KW = {"nan": 0.5, "posinf": 3.0, "neginf": -4.0}
SPECS = [
    OpSpec("square", ax.square, np.square, UNARY, torch_fn=tr.fn("square")),
    OpSpec("frac", ax.frac, lambda x: x - np.trunc(x), UNARY, domain=(-3.0, 3.0), torch_fn=tr.fn("frac")),
    OpSpec("lerp", lambda a, b: ax.lerp(a, b, 0.3), lambda a, b: _np_lerp(a, b, 0.3), BROADCAST,
           torch_fn=lambda a, b: tr.torch().lerp(a, b, 0.3)),
    OpSpec("lerp_high_weight", lambda a, b: a.lerp(b, 0.8), lambda a, b: _np_lerp(a, b, 0.8), BROADCAST[:2],
           torch_fn=lambda a, b: a.lerp(b, 0.8)),
    OpSpec("lerp_tensor_weight", ax.lerp, _np_lerp, (((3, 4), (3, 4), (3, 4)), ((2, 1, 4), (3, 1), (4,))),
           domain=(-1.5, 1.5), torch_fn=tr.fn("lerp")),
    OpSpec("nan_to_num", ax.nan_to_num, lambda x, **kw: np.nan_to_num(x, **kw), UNARY, kwargs=NAN_KW,
           input_maker=_with_nonfinite, gradgrad=False, torch_fn=tr.fn("nan_to_num")),
    OpSpec("logaddexp", ax.logaddexp, np.logaddexp, BROADCAST, domain=(-5.0, 5.0), torch_fn=tr.fn("logaddexp")),
    OpSpec("hypot", ax.hypot, np.hypot, BROADCAST, torch_fn=tr.fn("hypot")),
    OpSpec("xlogy", ax.xlogy, lambda x, y: x * np.log(y), BROADCAST, domain=POSITIVE, torch_fn=tr.fn("xlogy")),
    # exact zeros in x; y is shifted away from 0 the same way on both sides
    OpSpec("xlogy_zeros", lambda x, y: ax.xlogy(x, y.abs() + 0.5), lambda x, y: x * np.log(np.abs(y) + 0.5),
           (((3, 4), (3, 4)),), input_maker=_xlogy_x),
    OpSpec("softmax", ax.softmax, _np_softmax, (((3, 4),), ((2, 0),), ((2, 3, 4),)), kwargs={"dim": 1},
           torch_fn=tr.fn("softmax")),
    OpSpec("softmax_dim0", lambda x, dim: x.softmax(dim), _np_softmax, (((3, 4),),), kwargs={"dim": 0},
           domain=(-20.0, 20.0), torch_fn=lambda x, dim: x.softmax(dim)),
    OpSpec("log_softmax", ax.log_softmax, _np_log_softmax, (((3, 4),), ((2, 0),), ((2, 3, 4),)),
           kwargs={"dim": -1}, torch_fn=tr.fn("log_softmax")),
]

globals().update(op_tests(SPECS))


# ----- edge cases ---------------------------------------------------------------------------------
def test_nan_to_num_defaults_are_the_dtype_limits():
    for d in (ax.float16, ax.float32, ax.float64):
        x = ax.tensor([float("nan"), float("inf"), -float("inf"), 1.5], dtype=d)
        info = np.finfo(d.np)
        assert x.nan_to_num().tolist() == [0.0, float(info.max), float(info.min), 1.5]
        assert x.nan_to_num().dtype is d
    i = ax.tensor([1, 2])
    assert ax.nan_to_num(i).dtype is ax.int64 and ax.nan_to_num(i).tolist() == [1, 2]


def test_nan_to_num_gradient_passes_only_finite_entries():
    x = ax.tensor([1.0, float("inf"), float("nan"), -2.0], requires_grad=True)
    ax.nan_to_num(x, nan=1.0).sum().backward()
    assert x.grad.tolist() == [1.0, 0.0, 0.0, 1.0]


def test_logaddexp_infinities_ties_and_tails():
    a = ax.tensor([float("inf"), -float("inf"), float("inf"), 0.0, 1000.0, 2.0])
    b = ax.tensor([float("inf"), -float("inf"), -float("inf"), -40.0, 1000.0, 2.0])
    out = ax.logaddexp(a, b).tolist()
    assert out[:3] == [float("inf"), -float("inf"), float("inf")]
    np.testing.assert_allclose(out[3:], [np.exp(-40.0), 1000.0 + np.log(2), 2.0 + np.log(2)], rtol=1e-6)
    x = ax.tensor([0.5], requires_grad=True)
    ax.logaddexp(x, ax.tensor([0.5])).backward()
    assert x.grad.tolist() == [0.5]


def test_hypot_does_not_overflow_or_underflow():
    big = ax.tensor([1e30, 3e-30, 0.0, float("inf")])
    other = ax.tensor([1e30, 4e-30, 0.0, float("nan")])
    out = ax.hypot(big, other).tolist()
    np.testing.assert_allclose(out[:3], [np.sqrt(2) * 1e30, 5e-30, 0.0], rtol=1e-6)
    assert out[3] == float("inf")


def test_xlogy_special_values_and_integers():
    out = ax.xlogy(ax.tensor([0.0, 0.0, 1.0, 0.0]), ax.tensor([0.0, float("nan"), 0.0, float("inf")])).tolist()
    assert out[0] == 0.0 and np.isnan(out[1]) and out[2] == -float("inf") and out[3] == 0.0
    r = ax.xlogy(ax.tensor([0, 1]), ax.tensor([0, 2]))
    assert r.dtype is ax.float32 and r.tolist() == pytest.approx([0.0, np.log(2)])
    assert ax.xlogy(2, ax.tensor([np.e])).tolist() == pytest.approx([2.0])
    x = ax.tensor([0.0, 2.0], requires_grad=True)
    y = ax.tensor([0.0, 3.0], requires_grad=True)
    ax.xlogy(x, y).sum().backward()
    assert x.grad.tolist() == pytest.approx([0.0, np.log(3)]) and y.grad.tolist() == pytest.approx([0.0, 2 / 3])


def test_softmax_with_masked_entries_and_extreme_values():
    x = ax.tensor([[0.0, -float("inf"), 1.0], [1000.0, 1000.0, -1000.0]], requires_grad=True)
    p = ax.softmax(x, -1)
    np.testing.assert_allclose(p.tolist(), [[1 / (1 + np.e), 0.0, np.e / (1 + np.e)], [0.5, 0.5, 0.0]], rtol=1e-6)
    lp = ax.log_softmax(x, 1).tolist()
    assert lp[0][1] == -float("inf")
    np.testing.assert_allclose(lp[1], [-np.log(2), -np.log(2), -2000.0 - np.log(2)], rtol=1e-6)
    p.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()
    row = ax.softmax(ax.tensor([-float("inf"), -float("inf")]), 0).tolist()
    assert all(np.isnan(v) for v in row)  # as in PyTorch: nothing to normalize


def test_softmax_dtypes():
    with pytest.raises(DTypeError, match="floating"):
        ax.softmax(ax.tensor([1, 2]), 0)
    assert ax.softmax(ax.tensor([1, 2]), 0, dtype=ax.float64).dtype is ax.float64
    h = ax.softmax(ax.zeros(4, dtype=ax.float16), 0)
    assert h.dtype is ax.float16 and h.tolist() == [0.25] * 4
    with pytest.raises(TypeError, match="dim"):
        ax.softmax(ax.zeros(3), None)


def test_square_and_frac_dtypes():
    assert ax.square(ax.tensor([True, False])).dtype is ax.int64
    assert ax.square(ax.tensor([3], dtype=ax.int32)).tolist() == [9]
    assert ax.square(ax.tensor([3], dtype=ax.int32)).dtype is ax.int32
    assert ax.frac(ax.tensor([-1.5, 2.25])).tolist() == [-0.5, 0.25]
    with pytest.raises(DTypeError):
        ax.frac(ax.tensor([1, 2]))
    with pytest.raises(DTypeError):
        ax.logaddexp(ax.tensor([1]), ax.tensor([2]))
    with pytest.raises(DTypeError):
        ax.hypot(ax.tensor([1]), ax.tensor([2]))
    with pytest.raises(DTypeError):
        ax.lerp(ax.tensor([1]), ax.tensor([2]), 0.5)


def test_lerp_endpoints_are_exact():
    a = ax.tensor([0.1, -3.3, 7.7])
    b = ax.tensor([1e-3, 5.1, -2.2])
    assert ax.lerp(a, b, 1.0).tolist() == b.tolist() and ax.lerp(a, b, 0.0).tolist() == a.tolist()
    assert ax.lerp(a, b, ax.ones(3)).tolist() == b.tolist()


def test_inplace_methods():
    x = ax.tensor([1.5, -2.0])
    assert x.square_() is x and x.tolist() == [2.25, 4.0]
    assert x.frac_().tolist() == [0.25, 0.0]
    y = ax.tensor([float("nan"), 1.0])
    assert y.nan_to_num_(nan=7.0).tolist() == [7.0, 1.0]
    z = ax.tensor([0.0, 1.0])
    assert z.lerp_(ax.tensor([2.0, 3.0]), 0.5).tolist() == [1.0, 2.0]
    assert z.hypot_(ax.tensor([0.0, 0.0])).tolist() == [1.0, 2.0]
    assert z.xlogy_(ax.tensor([1.0, 1.0])).tolist() == [0.0, 0.0]


@needs_torch
def test_log_softmax_gradient_matches_torch():
    data = np.random.default_rng(0).normal(size=(4, 5)) * 10
    x = ax.tensor(data, requires_grad=True)
    tx = T().tensor(data, requires_grad=True)
    w = np.random.default_rng(1).normal(size=(4, 5))
    (ax.log_softmax(x, 1) * ax.tensor(w)).sum().backward()
    (T().log_softmax(tx, 1) * T().tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
