"""nn.functional pooling: the generic harness against naive NumPy references, and float64 values,
indices and gradients against PyTorch over many configurations (ties, NaN, -inf, ceil mode,
padding, dilation, unbatched inputs)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import axonml as ax
from axonml.errors import DTypeError, IndexingError, ShapeError
from axonml.nn.functional import pooling as P
from harness import HAS_TORCH, OpSpec, op_tests


# ----- naive NumPy references: one output position at a time -----------------------------------
def _tup(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def _out_sizes(size, k, s, p, d, ceil_mode):
    out = []
    for n, kk, ss, pp, dd in zip(size, k, s, p, d):
        span = n + 2 * pp - dd * (kk - 1) - 1
        o = (int(np.ceil(span / ss)) if ceil_mode else span // ss) + 1
        if ceil_mode and (o - 1) * ss >= n + pp:
            o -= 1
        out.append(o)
    return out


def _window(o, k, s, p, d):
    """Input positions of the window at output position ``o`` (may lie outside the input)."""
    return [tuple(oo * ss - pp + kk * dd for oo, ss, pp, kk, dd in zip(o, s, p, off, d))
            for off in itertools.product(*[range(kk) for kk in k])]


def ref_max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    n = x.ndim - 2
    size = x.shape[2:]
    k = _tup(kernel_size, n)
    s, p, d = _tup(stride if stride is not None else k, n), _tup(padding, n), _tup(dilation, n)
    out_sz = _out_sizes(size, k, s, p, d, ceil_mode)
    vals = np.full(x.shape[:2] + tuple(out_sz), -np.inf)
    idx = np.zeros(vals.shape, np.int64)
    for o in np.ndindex(*out_sz):
        for pos in _window(o, k, s, p, d):
            if all(0 <= q < m for q, m in zip(pos, size)):
                v = x[(slice(None), slice(None), *pos)]
                better = v > vals[(..., *o)]  # strict: the first maximum wins
                vals[(..., *o)] = np.where(better, v, vals[(..., *o)])
                idx[(..., *o)] = np.where(better, np.ravel_multi_index(pos, size), idx[(..., *o)])
    return (vals, idx) if return_indices else vals


def ref_avg_pool(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
    n = x.ndim - 2
    size = x.shape[2:]
    k = _tup(kernel_size, n)
    s, p = _tup(stride if stride is not None else k, n), _tup(padding, n)
    out_sz = _out_sizes(size, k, s, p, (1,) * n, ceil_mode)
    out = np.zeros(x.shape[:2] + tuple(out_sz))
    for o in np.ndindex(*out_sz):
        inside = [pos for pos in _window(o, k, s, p, (1,) * n) if all(0 <= q < m for q, m in zip(pos, size))]
        in_pad = [pos for pos in _window(o, k, s, p, (1,) * n) if all(-pp <= q < m + pp for q, m, pp in
                                                                           zip(pos, size, p))]
        total = sum(x[(slice(None), slice(None), *pos)] for pos in inside)
        div = divisor_override or (len(in_pad) if count_include_pad else len(inside))
        out[(..., *o)] = total / div
    return out


def _adaptive_boxes(size, out_sz):
    for o in np.ndindex(*out_sz):
        yield o, tuple(slice((oo * n) // m, -((-(oo + 1) * n) // m)) for oo, n, m in zip(o, size, out_sz))


def ref_adaptive_avg(x, output_size):
    n = x.ndim - 2
    out_sz = _tup(output_size, n)
    out = np.zeros(x.shape[:2] + out_sz)
    for o, box in _adaptive_boxes(x.shape[2:], out_sz):
        out[(..., *o)] = x[(slice(None), slice(None), *box)].mean(axis=tuple(range(2, 2 + n)))
    return out


def ref_adaptive_max(x, output_size, return_indices=False):
    n = x.ndim - 2
    size, out_sz = x.shape[2:], _tup(output_size, n)
    vals = np.zeros(x.shape[:2] + out_sz)
    idx = np.zeros(vals.shape, np.int64)
    for o, box in _adaptive_boxes(size, out_sz):
        block = x[(slice(None), slice(None), *box)]
        flat = block.reshape((*block.shape[:2], -1))
        arg = flat.argmax(-1)  # first maximum
        vals[(..., *o)] = flat.max(-1)
        local = np.unravel_index(arg, block.shape[2:])
        idx[(..., *o)] = np.ravel_multi_index(tuple(q + b.start for q, b in zip(local, box)), size)
    return (vals, idx) if return_indices else vals


def ref_unpool_of_pool(x, k):
    vals, idx = ref_max_pool(x, k, return_indices=True)
    out = np.zeros((*x.shape[:2], int(np.prod(x.shape[2:]))))
    for b, c in np.ndindex(*x.shape[:2]):
        out[b, c, idx[b, c].ravel()] = vals[b, c].ravel()
    return out.reshape(x.shape)


def _torch(name):
    def call(*args, **kw):
        import torch.nn.functional as F

        return getattr(F, name)(*args, **kw)

    return call


# ----- the harness ---------------------------------------------------------------------------------
def _spec(name, ref, shapes, **kw):
    base = name.split("[")[0]
    return OpSpec(name, getattr(P, base), ref, shapes, kwargs=kw, torch_fn=_torch(base), atol=1e-9, rtol=1e-7)


SPECS = [
    _spec("max_pool1d", ref_max_pool, (((2, 2, 7),),), kernel_size=3, stride=2, padding=1, ceil_mode=True),
    _spec("max_pool2d", ref_max_pool, (((1, 2, 4, 6),), ((2, 1, 5, 5),)), kernel_size=2),
    _spec("max_pool2d[indices]", ref_max_pool, (((1, 2, 6, 5),),), kernel_size=3, stride=2, padding=1,
          dilation=(1, 2), return_indices=True),
    _spec("max_pool3d", ref_max_pool, (((1, 1, 3, 4, 4),),), kernel_size=2, padding=1),
    _spec("avg_pool1d", ref_avg_pool, (((2, 2, 7),),), kernel_size=3, stride=2, padding=1, ceil_mode=True,
          count_include_pad=False),
    _spec("avg_pool2d", ref_avg_pool, (((1, 2, 5, 6),), ((1, 1, 4, 4),)), kernel_size=3, stride=2, padding=1,
          ceil_mode=True),
    _spec("avg_pool2d[divisor]", ref_avg_pool, (((1, 2, 5, 4),),), kernel_size=(2, 3), stride=1, divisor_override=5),
    _spec("avg_pool3d", ref_avg_pool, (((1, 1, 3, 4, 4),),), kernel_size=2, padding=1, count_include_pad=False),
    _spec("adaptive_avg_pool1d", ref_adaptive_avg, (((2, 2, 7),),), output_size=3),
    _spec("adaptive_avg_pool2d", ref_adaptive_avg, (((1, 2, 5, 7),),), output_size=(3, 4)),
    _spec("adaptive_avg_pool2d[global]", ref_adaptive_avg, (((2, 3, 3, 4),),), output_size=1),
    _spec("adaptive_avg_pool3d", ref_adaptive_avg, (((1, 1, 3, 4, 5),),), output_size=(2, 3, 2)),
    _spec("adaptive_max_pool1d", ref_adaptive_max, (((2, 2, 7),),), output_size=3, return_indices=True),
    _spec("adaptive_max_pool2d", ref_adaptive_max, (((1, 2, 5, 7),),), output_size=(3, 4)),
    _spec("adaptive_max_pool3d", ref_adaptive_max, (((1, 1, 3, 4, 5),),), output_size=(2, 3, 2)),
    OpSpec("max_unpool1d", lambda x: P.max_unpool1d(*P.max_pool1d(x, 2, return_indices=True), 2),
           lambda x: ref_unpool_of_pool(x, 2), (((1, 2, 6),),), atol=1e-9, rtol=1e-7),
    OpSpec("max_unpool2d", lambda x: P.max_unpool2d(*P.max_pool2d(x, 2, return_indices=True), 2),
           lambda x: ref_unpool_of_pool(x, 2), (((1, 2, 4, 6),),), atol=1e-9, rtol=1e-7),
    OpSpec("max_unpool3d", lambda x: P.max_unpool3d(*P.max_pool3d(x, 2, return_indices=True), 2),
           lambda x: ref_unpool_of_pool(x, 2), (((1, 1, 2, 4, 4),),), atol=1e-9, rtol=1e-7),
]

globals().update(op_tests(SPECS))


# ----- float64 values, indices and gradients against PyTorch ------------------------------------
def _data(shape, kind, rng):
    if kind == "ties":  # few distinct values: checks which of equal maxima gets the index and gradient
        return rng.integers(-2, 3, shape).astype(np.float64)
    return rng.standard_normal(shape)


TORCH_CASES = [
    ("max_pool2d", (2, 3, 8, 9), (3, 2, 1), {}, "ties"),
    ("max_pool2d", (2, 3, 9, 9), (3, 2, 1, 2, True), {}, "ties"),
    ("max_pool2d", (2, 3, 9, 10), ((3, 2), (2, 1), (1, 0), (1, 2), True), {}, "normal"),
    ("max_pool2d", (2, 3, 8, 8), (2,), {}, "ties"),
    ("max_pool2d", (3, 7, 7), (3, 2), {"ceil_mode": True}, "ties"),  # unbatched
    ("max_pool1d", (2, 3, 11), (4, 3, 2, 1, True), {}, "ties"),
    ("max_pool1d", (2, 3, 11), (3,), {"stride": 1}, "normal"),  # overlapping windows: gradients accumulate
    ("max_pool3d", (2, 2, 5, 6, 7), (2, 2, 1, 1, True), {}, "ties"),
    ("avg_pool2d", (2, 3, 8, 9), (3, 2, 1), {}, "normal"),
    ("avg_pool2d", (2, 3, 8, 9), (3, 2, 1, True, False), {}, "normal"),
    ("avg_pool2d", (2, 3, 9, 9), (3, 2, 1, True, True), {}, "normal"),
    ("avg_pool2d", (2, 3, 9, 9), ((3, 2), (2, 1), (1, 1), True, True, 5), {}, "normal"),
    ("avg_pool2d", (3, 6, 7), (2,), {}, "normal"),  # unbatched
    ("avg_pool1d", (2, 3, 11), (4, 3, 2, True, False), {}, "normal"),
    ("avg_pool3d", (2, 2, 5, 6, 7), (3, 2, 1, True, False), {}, "normal"),
    ("adaptive_avg_pool2d", (2, 3, 9, 7), ((4, 3),), {}, "normal"),
    ("adaptive_avg_pool2d", (2, 3, 9, 7), ((None, 5),), {}, "normal"),
    ("adaptive_avg_pool2d", (2, 3, 8, 8), (4,), {}, "normal"),
    ("adaptive_avg_pool1d", (2, 3, 10), (4,), {}, "normal"),
    ("adaptive_avg_pool3d", (1, 2, 5, 4, 6), ((2, 3, 4),), {}, "normal"),
    ("adaptive_max_pool2d", (2, 3, 9, 7), ((4, 3),), {"return_indices": True}, "ties"),
    ("adaptive_max_pool2d", (3, 9, 7), ((5, 9),), {"return_indices": True}, "ties"),  # output > input
    ("adaptive_max_pool1d", (2, 3, 10), (4,), {"return_indices": True}, "ties"),
    ("adaptive_max_pool3d", (1, 2, 5, 4, 6), ((2, 3, 4),), {"return_indices": True}, "normal"),
]


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
@pytest.mark.parametrize(("op", "shape", "args", "kw", "kind"), TORCH_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(TORCH_CASES)])
def test_pool_matches_torch_float64(op, shape, args, kw, kind):
    import torch

    rng = np.random.default_rng(0)
    x = _data(shape, kind, rng)
    a, t = ax.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = getattr(P, op)(a, *args, **kw), getattr(torch.nn.functional, op)(t, *args, **kw)
    if isinstance(ty, tuple):
        assert y[1].dtype is ax.int64
        np.testing.assert_array_equal(y[1].numpy(), ty[1].numpy())
        y, ty = y[0], ty[0]
    assert tuple(y.shape) == tuple(ty.shape)
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), atol=1e-12)
    g = rng.standard_normal(tuple(ty.shape))
    (y * ax.tensor(g)).sum().backward()
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), atol=1e-12)


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_max_pool_nan_and_neg_inf_match_torch():
    import torch

    x = np.random.default_rng(3).standard_normal((1, 2, 6, 6))
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = x[0, 1, 4, 4] = np.nan  # the last NaN of a window wins, as in PyTorch
    x[0, 1, :3, :3] = -np.inf  # a window of -inf with padding: the index stays inside the input
    for kw in ({"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1}):
        v, i = P.max_pool2d(ax.tensor(x), return_indices=True, **kw)
        tv, ti = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kw)
        np.testing.assert_array_equal(i.numpy(), ti.numpy())
        np.testing.assert_allclose(v.numpy(), tv.numpy())


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_max_unpool_matches_torch():
    import torch

    rng = np.random.default_rng(4)
    for shape, k, s, p, out_size in [((2, 3, 8, 8), 2, None, 0, None), ((2, 3, 8, 9), 3, 2, 1, (8, 9)),
                                     ((2, 3, 8, 8), 2, None, 0, (9, 9)), ((3, 7, 7), 2, None, 0, (2, 3, 7, 7))]:
        x = rng.standard_normal(shape)
        tv, ti = torch.nn.functional.max_pool2d(torch.tensor(x), k, s, p, return_indices=True)
        v, i = P.max_pool2d(ax.tensor(x), k, s, p, return_indices=True)
        va = ax.tensor(v.numpy(), requires_grad=True)
        tva = tv.clone().requires_grad_(True)
        u = P.max_unpool2d(va, i, k, s, p, output_size=out_size)
        tu = torch.nn.functional.max_unpool2d(tva, ti, k, s, p, output_size=out_size)
        np.testing.assert_allclose(u.detach().numpy(), tu.detach().numpy())
        g = rng.standard_normal(tuple(tu.shape))
        (u * ax.tensor(g)).sum().backward()
        tu.backward(torch.tensor(g))
        np.testing.assert_allclose(va.grad.numpy(), tva.grad.numpy())
    x = rng.standard_normal((2, 3, 9))
    v, i = P.max_pool1d(ax.tensor(x), 3, return_indices=True)
    tv, ti = torch.nn.functional.max_pool1d(torch.tensor(x), 3, return_indices=True)
    np.testing.assert_allclose(P.max_unpool1d(v, i, 3).numpy(), torch.nn.functional.max_unpool1d(tv, ti, 3).numpy())
    x = rng.standard_normal((1, 2, 4, 4, 6))
    v, i = P.max_pool3d(ax.tensor(x), 2, return_indices=True)
    tv, ti = torch.nn.functional.max_pool3d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_allclose(P.max_unpool3d(v, i, 2).numpy(), torch.nn.functional.max_unpool3d(tv, ti, 2).numpy())


def test_max_pool_integer_input():
    x = ax.arange(32).reshape(1, 2, 4, 4)
    v, i = P.max_pool2d(x, 3, 2, 1, return_indices=True)
    assert v.dtype is ax.int64
    np.testing.assert_array_equal(v.numpy()[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(i.numpy()[0, 1], [[5, 7], [13, 15]])


def test_pool_float32_keeps_dtype_and_second_order_is_zero():
    x = ax.randn(2, 3, 6, 6, requires_grad=True)
    for y in (P.max_pool2d(x, 2), P.avg_pool2d(x, 3, 1, 1), P.adaptive_max_pool2d(x, 4)):
        assert y.dtype is ax.float32
        (g,) = ax.autograd.grad((y * y).sum(), [x], create_graph=True)
        (gg,) = ax.autograd.grad(g.sum(), [x])
        assert gg.shape == x.shape and np.isfinite(gg.numpy()).all()


@pytest.mark.parametrize(("call", "err", "match"), [
    (lambda: P.max_pool2d(ax.randn(4, 4), 2), ShapeError, "3-D \\(unbatched\\) or 4-D"),
    (lambda: P.max_pool2d(ax.randn(1, 1, 4, 4), 3, padding=2), ValueError, "half of the kernel size"),
    (lambda: P.max_pool2d(ax.randn(1, 1, 2, 2), 3), ShapeError, "output is too small"),
    (lambda: P.max_pool2d(ax.randn(1, 1, 4, 4), 0), ValueError, "kernel_size must be >= 1"),
    (lambda: P.max_pool2d(ax.randn(1, 1, 4, 4), (2, 2, 2)), ShapeError, "2 values"),
    (lambda: P.max_pool2d(ax.ones(1, 1, 4, 4, dtype=ax.bool), 2), DTypeError, "bool"),
    (lambda: P.avg_pool2d(ax.ones(1, 1, 4, 4, dtype=ax.int64), 2), DTypeError, "int64"),
    (lambda: P.avg_pool2d(ax.randn(1, 1, 4, 4), 2, divisor_override=0), ValueError, "non-zero"),
    (lambda: P.adaptive_avg_pool2d(ax.randn(1, 1, 4, 4), (2, 0)), ShapeError, "positive"),
    (lambda: P.adaptive_max_pool2d(ax.randn(1, 1, 4, 4), (2, 2, 2)), ShapeError, "2 values"),
    (lambda: P.max_unpool2d(ax.randn(1, 1, 2, 2), ax.tensor([[[[0, 1], [2, 16]]]]), 2), IndexingError,
     "invalid max index 16"),
    (lambda: P.max_unpool2d(ax.randn(1, 1, 2, 2), ax.zeros(1, 1, 2, 3, dtype=ax.int64), 2), ShapeError,
     "indices of shape"),
    (lambda: P.max_unpool2d(ax.randn(1, 1, 2, 2), ax.zeros(1, 1, 2, 2), 2), DTypeError, "integer"),
])
def test_pool_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


@pytest.mark.parametrize("dtype", [ax.float16, ax.bfloat16], ids=["f16", "bf16"])
def test_pool_half_precision_keeps_dtype(dtype):
    x32 = ax.randn(2, 3, 7, 7)
    x = x32.to(dtype).requires_grad_()
    calls = [lambda t: P.max_pool2d(t, 3, 2, 1), lambda t: P.avg_pool2d(t, 2, ceil_mode=True),
             lambda t: P.adaptive_avg_pool2d(t, 3), lambda t: P.adaptive_max_pool2d(t, 4)]
    for f in calls:
        y = f(x)
        assert y.dtype is dtype
        np.testing.assert_allclose(y.float().detach().numpy(), f(x32).numpy(), atol=0.05, rtol=0.02)
        (g,) = ax.autograd.grad(y.sum(), [x])
        assert g.dtype is dtype


def test_pool_empty_batch():
    x = ax.zeros(0, 3, 6, 6, requires_grad=True)
    for f, shape in [(lambda t: P.max_pool2d(t, 2), (0, 3, 3, 3)), (lambda t: P.avg_pool2d(t, 3, 1, 1), (0, 3, 6, 6)),
                     (lambda t: P.adaptive_max_pool2d(t, 4), (0, 3, 4, 4)),
                     (lambda t: P.adaptive_avg_pool2d(t, 4), (0, 3, 4, 4)),
                     (lambda t: P.max_unpool2d(*P.max_pool2d(t, 2, return_indices=True), 2), (0, 3, 6, 6))]:
        y = f(x)
        assert y.shape == shape
        (g,) = ax.autograd.grad(y.sum(), [x])
        assert g.shape == x.shape
