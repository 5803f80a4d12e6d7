"""Batch norm's and max pooling's CPU paths (compiled loops, one-sweep argmax, strided gradient scatter)
give the values of the plain NumPy paths and of PyTorch: statistics, outputs, gradients, indices,
ties, NaN windows, odd sizes, overlapping windows and second derivatives."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
from axonml.nn.functional.normalization import batch_norm
from axonml.nn.functional.pooling import max_pool2d
from axonml.nn.prims import _conv_cpu, _conv_cpu_blas, _conv_cpu_jit
from harness import HAS_TORCH


def torch_only(fn):
    """Marks a test that compares with PyTorch."""
    return pytest.mark.torch(pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")(fn))



@pytest.fixture(params=["compiled", "numpy"])
def jit_mode(request, monkeypatch):
    """The compiled loops (when numba is installed) or the NumPy paths; splits forced over two threads."""
    if request.param == "compiled" and _conv_cpu_jit.kernels() is None:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(_conv_cpu_jit, "ENABLED", request.param == "compiled")
    monkeypatch.setattr(_conv_cpu, "_MIN_SPLIT_BYTES", 0)
    monkeypatch.setattr(_conv_cpu_blas, "num_threads", lambda: 2)
    return request.param


def _bn_run(x_np, affine, dtype):
    x = ax.tensor(x_np.astype(dtype), requires_grad=True)
    c = x_np.shape[1]
    rng = np.random.default_rng(1)
    w = ax.tensor(rng.standard_normal(c).astype(dtype), requires_grad=True) if affine else None
    b = ax.tensor(rng.standard_normal(c).astype(dtype), requires_grad=True) if affine else None
    rm, rv = ax.zeros(c, dtype=x.dtype), ax.ones(c, dtype=x.dtype)
    y = batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
    g = ax.tensor(rng.standard_normal(x_np.shape).astype(dtype))
    params = [t for t in (x, w, b) if t is not None]
    grads = ax.autograd.grad(y, params, g)
    return [y.detach().numpy(), rm.numpy(), rv.numpy()] + [gr.numpy() for gr in grads]


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (6, 5), (3, 4, 7)], ids=["4d", "2d", "3d"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_batch_norm_paths_agree(monkeypatch, jit_mode, shape, affine, dtype):
    x = np.random.default_rng(0).standard_normal(shape) * 3 + 1.5
    got = _bn_run(x, affine, dtype)
    monkeypatch.setattr(_conv_cpu_jit, "ENABLED", False)
    want = _bn_run(x, affine, dtype)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@torch_only
def test_batch_norm_compiled_matches_torch(jit_mode):
    import torch

    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 6, 5, 5)) * 2 - 1
    ours = _bn_run(x, True, np.float64)
    tx = torch.tensor(x, requires_grad=True)
    rng = np.random.default_rng(1)
    tw = torch.tensor(rng.standard_normal(6), requires_grad=True)
    tb = torch.tensor(rng.standard_normal(6), requires_grad=True)
    rm, rv = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    ty = torch.nn.functional.batch_norm(tx, rm, rv, tw, tb, training=True, momentum=0.1, eps=1e-5)
    g = torch.tensor(rng.standard_normal(x.shape))
    grads = torch.autograd.grad(ty, [tx, tw, tb], g)
    for a, b in zip(ours, [ty.detach(), rm, rv, *grads]):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-10, atol=1e-10)


def _pool_run(x_np, **kw):
    x = ax.tensor(x_np, requires_grad=True)
    y, idx = max_pool2d(x, return_indices=True, **kw)
    g = ax.tensor(np.random.default_rng(5).standard_normal(tuple(y.shape)).astype(x_np.dtype))
    (gx,) = ax.autograd.grad(y, [x], g)
    return y.detach().numpy(), idx.numpy(), gx.numpy()


@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"kernel_size": 3}, {"kernel_size": 3, "stride": 2},
                                {"kernel_size": 2, "padding": 1}], ids=["2x2", "3x3", "overlapping", "padded"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@torch_only
def test_max_pool_paths_agree_with_torch(jit_mode, kw, dtype):
    import torch

    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 7, 9)).astype(dtype)
    x[0, 0, :2, :2] = 1.0  # a tie: the first of the window wins
    x[1, 2, 2:4, 4:6] = [[np.nan, 0.0], [1.0, np.nan]]  # NaN windows: the last NaN wins
    y, idx, gx = _pool_run(x, **kw)
    tx = torch.tensor(x, requires_grad=True)
    ty, tidx = torch.nn.functional.max_pool2d(tx, return_indices=True, **kw)
    (tg,) = torch.autograd.grad(ty, [tx], torch.tensor(np.random.default_rng(5).standard_normal(tuple(ty.shape))
                                                        .astype(dtype)))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    np.testing.assert_allclose(gx, tg.numpy(), rtol=1e-6)


def test_max_pool_integers_and_second_derivative(jit_mode):
    xi = ax.tensor(np.arange(2 * 3 * 6 * 6).reshape(2, 3, 6, 6)[..., ::-1].copy())
    y = max_pool2d(xi, 2)
    np.testing.assert_array_equal(y.numpy(), xi.numpy().reshape(2, 3, 3, 2, 3, 2).max((3, 5)))
    x = ax.tensor(np.random.default_rng(6).standard_normal((1, 2, 4, 6)), requires_grad=True)
    (g,) = ax.autograd.grad((max_pool2d(x, 2) ** 2).sum(), [x], create_graph=True)
    (gg,) = ax.autograd.grad((g * g).sum(), [x])  # d/dx sum((2 m)^2) = 8 m at each max
    mask = g.detach().numpy() != 0
    np.testing.assert_allclose(gg.numpy()[mask], 4 * g.detach().numpy()[mask])
    assert np.all(gg.numpy()[~mask] == 0)
