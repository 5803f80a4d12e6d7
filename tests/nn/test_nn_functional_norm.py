"""Normalization functions: harness checks (values, gradients, second derivatives, forward mode,
PyTorch parity) and plain tests of running statistics, dtypes and errors against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
import torch_ref as tr
from axonml.errors import DTypeError, ShapeError
from axonml.nn.functional.normalization import (
    batch_norm,
    group_norm,
    instance_norm,
    layer_norm,
    local_response_norm,
    rms_norm,
)
from harness import OpSpec, op_tests

EPS = 1e-5


def TF():
    return tr.torch().nn.functional


# ----- NumPy float64 references ---------------------------------------------------------------------
def _norm(x: np.ndarray, axes: tuple[int, ...], eps: float = EPS) -> np.ndarray:
    mu = x.mean(axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps)


def _chan(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((-1,) + (1,) * (ndim - 2))


def ref_layer_norm(x, w=None, b=None, n=1):
    y = _norm(x, tuple(range(x.ndim - n, x.ndim)))
    return y * (1 if w is None else w) + (0 if b is None else b)


def ref_batch_norm(x, w, b):
    return _norm(x, tuple(i for i in range(x.ndim) if i != 1)) * _chan(w, x.ndim) + _chan(b, x.ndim)


def ref_batch_norm_eval(x, rm, rv, w, b):
    rv = np.abs(rv) + 0.5
    return (x - _chan(rm, x.ndim)) / np.sqrt(_chan(rv, x.ndim) + EPS) * _chan(w, x.ndim) + _chan(b, x.ndim)


def ref_group_norm(x, w, b, groups=2):
    g = x.reshape(x.shape[0], groups, -1)
    return _norm(g, (2,)).reshape(x.shape) * _chan(w, x.ndim) + _chan(b, x.ndim)


def ref_instance_norm(x, w, b):
    return _norm(x, tuple(range(2, x.ndim))) * _chan(w, x.ndim) + _chan(b, x.ndim)


def ref_rms_norm(x, w, eps=1e-6):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def ref_lrn(x, size=3, alpha=0.1, beta=0.75, k=1.0):
    sq = np.pad(x * x, [(0, 0), (size // 2, (size - 1) // 2)] + [(0, 0)] * (x.ndim - 2))
    window = sum(sq[:, i:i + x.shape[1]] for i in range(size))
    return x / (k + alpha * window / size) ** beta


SMALL3 = ((2, 3, 4), (4,), (4,))
SPECS = [
    OpSpec("layer_norm", lambda x, w, b: layer_norm(x, 4, w, b), ref_layer_norm, (SMALL3, ((0, 4), (4,), (4,))),
           torch_fn=lambda x, w, b: TF().layer_norm(x, (4,), w, b)),
    OpSpec("layer_norm_no_affine_2d", lambda x: layer_norm(x, (3, 4)), lambda x: ref_layer_norm(x, n=2),
           (((2, 3, 4),),), torch_fn=lambda x: TF().layer_norm(x, (3, 4))),
    OpSpec("batch_norm", lambda x, w, b: batch_norm(x, None, None, w, b, True), ref_batch_norm,
           (((5, 3), (3,), (3,)), ((2, 3, 4), (3,), (3,)), ((2, 2, 2, 3), (2,), (2,))),
           torch_fn=lambda x, w, b: TF().batch_norm(x, None, None, w, b, True)),
    OpSpec("batch_norm_eval", lambda x, rm, rv, w, b: batch_norm(x, rm, rv.abs() + 0.5, w, b, False),
           ref_batch_norm_eval, (((2, 3, 4), (3,), (3,), (3,), (3,)),),
           torch_fn=lambda x, rm, rv, w, b: TF().batch_norm(x, rm, rv.abs() + 0.5, w, b, False)),
    OpSpec("group_norm", lambda x, w, b: group_norm(x, 2, w, b), ref_group_norm,
           (((2, 4, 3), (4,), (4,)), ((3, 2, 2, 2), (2,), (2,))),
           torch_fn=lambda x, w, b: TF().group_norm(x, 2, w, b)),
    OpSpec("instance_norm", lambda x, w, b: instance_norm(x, weight=w, bias=b), ref_instance_norm,
           (((2, 3, 4), (3,), (3,)), ((2, 2, 2, 3), (2,), (2,))),
           torch_fn=lambda x, w, b: TF().instance_norm(x, weight=w, bias=b)),
    OpSpec("rms_norm", lambda x, w: rms_norm(x, 4, w, 1e-6), ref_rms_norm, (((2, 3, 4), (4,)), ((0, 4), (4,))),
           torch_fn=lambda x, w: TF().rms_norm(x, (4,), w, 1e-6)),
    OpSpec("local_response_norm", lambda x: local_response_norm(x, 3, 0.1), ref_lrn, (((2, 4, 3),), ((1, 5, 2, 2),)),
           torch_fn=lambda x: TF().local_response_norm(x, 3, 0.1)),
]
globals().update(op_tests(SPECS))

torch_only = pytest.mark.torch


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _close(a, t, tol=1e-10):
    np.testing.assert_allclose(a.detach().numpy(), t.detach().numpy(), atol=tol, rtol=tol)


# ----- batch norm: running statistics, training and eval, against PyTorch ------------------------
@torch_only
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (2, 3, 4, 4)])
@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_batch_norm_running_stats(torch, shape, momentum):
    rng = np.random.default_rng(0)
    rm, rv = ax.zeros(3), ax.ones(3)  # float32 buffers, as a module keeps them
    trm, trv = torch.zeros(3), torch.ones(3)
    for step in range(3):
        x = (rng.standard_normal(shape) * (step + 1) + step).astype(np.float32)
        y = batch_norm(ax.tensor(x), rm, rv, None, None, True, momentum)
        ty = TF().batch_norm(torch.tensor(x), trm, trv, None, None, True, momentum)
        _close(y, ty, 1e-5)
        _close(rm, trm, 1e-6)
        _close(rv, trv, 1e-5)  # unbiased variance, as PyTorch
    x = rng.standard_normal(shape).astype(np.float32)
    _close(batch_norm(ax.tensor(x), rm, rv), TF().batch_norm(torch.tensor(x), trm, trv), 1e-5)


@torch_only
def test_batch_norm_training_grads_match_torch(torch):
    rng = np.random.default_rng(1)
    x, g = rng.standard_normal((4, 3, 5)), rng.standard_normal((4, 3, 5))
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    ins = [ax.tensor(a, requires_grad=True) for a in (x, w, b)]
    tins = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    batch_norm(ins[0], None, None, ins[1], ins[2], True).backward(ax.tensor(g))
    TF().batch_norm(tins[0], None, None, tins[1], tins[2], True).backward(torch.tensor(g))
    for a, t in zip(ins, tins):
        _close(a.grad, t.grad)


@torch_only
def test_instance_norm_running_stats(torch):
    rng = np.random.default_rng(2)
    rm, rv, trm, trv = ax.zeros(3), ax.ones(3), torch.zeros(3), torch.ones(3)
    for _ in range(2):
        x = (rng.standard_normal((2, 3, 5)) * 2 + 1).astype(np.float32)
        y = instance_norm(ax.tensor(x), rm, rv, momentum=0.3)
        ty = TF().instance_norm(torch.tensor(x), trm, trv, momentum=0.3)
        _close(y, ty, 1e-5)
        _close(rm, trm, 1e-6)
        _close(rv, trv, 1e-5)
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    y = instance_norm(ax.tensor(x), rm, rv, use_input_stats=False)
    _close(y, TF().instance_norm(torch.tensor(x), trm, trv, use_input_stats=False), 1e-5)


def _ones(n):
    return tr.torch().ones(n, dtype=tr.torch().float64)


@torch_only
@pytest.mark.parametrize("affine", ["weight", "bias"])
def test_partial_affine_layer_batch_group_norm(torch, affine):
    rng = np.random.default_rng(5)
    x, g = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))
    p = rng.standard_normal(5)
    pc = rng.standard_normal(4)
    calls = [
        (lambda x, p: layer_norm(x, 5, **{affine: p}), lambda x, p: TF().layer_norm(x, (5,), **{affine: p}), p),
        (lambda x, p: batch_norm(x, None, None, training=True, **{affine: p}),
         lambda x, p: TF().batch_norm(x, None, None, training=True, **{affine: p}), pc),
        # PyTorch 2.13's group_norm backward fails with a bias and no weight: give it weight=1, the same function
        (lambda x, p: group_norm(x, 2, **{affine: p}),
         lambda x, p: TF().group_norm(x, 2, **{affine: p}, **({} if affine == "weight" else {"weight": _ones(4)})), pc),
    ]
    for ours, theirs, param in calls:
        ax_in = [ax.tensor(a, requires_grad=True) for a in (x, param)]
        t_in = [torch.tensor(a, requires_grad=True) for a in (x, param)]
        y, ty = ours(*ax_in), theirs(*t_in)
        _close(y, ty)
        y.backward(ax.tensor(g))
        ty.backward(torch.tensor(g))
        for a, t in zip(ax_in, t_in):
            _close(a.grad, t.grad)


def test_running_stats_carry_no_history():
    x = ax.randn(4, 3, requires_grad=True)
    rm, rv = ax.zeros(3), ax.ones(3)
    v0 = rm._version[0]
    batch_norm(x * 2, rm, rv, training=True).sum().backward()
    assert not rm.requires_grad and rm.grad_fn is None and rm._version[0] > v0
    assert x.grad is not None


# ----- dtypes, layouts, eps -----------------------------------------------------------------------
@torch_only
def test_half_precision_layer_and_batch_norm(torch):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 8)) * 3 + 2).astype(np.float16)
    w = rng.standard_normal(8).astype(np.float16)
    y = layer_norm(ax.tensor(x), 8, ax.tensor(w))
    assert y.dtype == ax.float16
    ty = TF().layer_norm(torch.tensor(x).float(), (8,), torch.tensor(w).float())
    np.testing.assert_allclose(y.float().numpy(), ty.numpy(), atol=2e-2, rtol=1e-2)
    yb = batch_norm(ax.tensor(x.reshape(3, 8, 1)), None, None, training=True)
    assert yb.dtype == ax.float16


@torch_only
def test_layer_norm_non_contiguous_input_and_batch_norm_fast_path_vs_create_graph(torch):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 4, 3))
    xt = ax.tensor(x, requires_grad=True)
    y = layer_norm(xt.transpose(0, 2), 5)  # (3, 4, 5) view of a differently laid out array
    ty = TF().layer_norm(torch.tensor(x).transpose(0, 2), (5,))
    _close(y, ty)
    g = rng.standard_normal(y.shape)
    (fast,) = ax.autograd.grad(y, [xt], ax.tensor(g), retain_graph=True)
    (slow,) = ax.autograd.grad(y, [xt], ax.tensor(g), create_graph=True)  # the Tensor-op form of the backward
    np.testing.assert_allclose(fast.numpy(), slow.detach().numpy(), atol=1e-12)


@torch_only
def test_rms_norm_default_eps_is_dtype_epsilon(torch):
    x = np.full((2, 4), 1e-4, np.float32)
    y = rms_norm(ax.tensor(x), [4])
    ty = TF().rms_norm(torch.tensor(x), [4])
    _close(y, ty, 1e-6)


# ----- errors ---------------------------------------------------------------------------------------
def test_errors_are_clear():
    x = ax.randn(2, 3, 4)
    with pytest.raises(ShapeError, match="normalized_shape"):
        layer_norm(x, 3)
    with pytest.raises(ShapeError, match="weight of shape"):
        layer_norm(x, 4, ax.ones(3))
    with pytest.raises(ShapeError, match="running_mean"):
        batch_norm(x, ax.zeros(4), ax.ones(3), training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batch_norm(ax.randn(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match="running_mean and running_var"):
        batch_norm(x, None, None, training=False)
    with pytest.raises(ShapeError, match="groups"):
        group_norm(x, 2)
    with pytest.raises(ValueError, match="spatial element"):
        instance_norm(ax.randn(2, 3, 1))
    with pytest.raises(DTypeError, match="floating point"):
        layer_norm(ax.ones(2, 4, dtype=ax.int64), 4)
    with pytest.raises(ShapeError, match="3 or more"):
        local_response_norm(ax.randn(2, 3), 2)
