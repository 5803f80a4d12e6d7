"""nn.functional convolutions: the generic harness (NumPy references, gradients, second derivatives,
forward mode, PyTorch parity) on small shapes, and float64 values and gradients against PyTorch
over many configurations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import axonml as ax
from axonml.errors import DTypeError, ShapeError
from axonml.nn.functional.conv import conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d
from harness import HAS_TORCH, OpSpec, op_tests
from torch_ref import assert_second_derivatives_match

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")  # PyTorch's, on even kernels


# ----- NumPy float64 references (written from the definitions) ------------------------------
def _tup(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


def ref_conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    n = x.ndim - 2
    s, d, k = _tup(stride, n), _tup(dilation, n), w.shape[2:]
    if padding == "valid":
        lo = hi = (0,) * n
    elif padding == "same":
        lo = tuple(dd * (kk - 1) // 2 for dd, kk in zip(d, k))
        hi = tuple(dd * (kk - 1) - a for dd, kk, a in zip(d, k, lo))
    else:
        lo = hi = _tup(padding, n)
    xp = np.pad(x, [(0, 0), (0, 0), *list(zip(lo, hi))])
    out_sz = [(xp.shape[2 + i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(n)]
    cg, cog = x.shape[1] // groups, w.shape[0] // groups
    out = np.zeros((x.shape[0], w.shape[0], *out_sz))
    for g in range(groups):
        for off in itertools.product(*[range(kk) for kk in k]):
            sl = tuple(slice(o * dd, o * dd + ss * (m - 1) + 1, ss) for o, dd, ss, m in zip(off, d, s, out_sz))
            patch = xp[:, g * cg:(g + 1) * cg][(slice(None), slice(None), *sl)]
            wk = w[g * cog:(g + 1) * cog][(slice(None), slice(None), *off)]
            out[:, g * cog:(g + 1) * cog] += np.einsum("bc...,oc->bo...", patch, wk)
    if b is not None:
        out += b.reshape((1, -1) + (1,) * n)
    return out


def ref_conv_transpose(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    n = x.ndim - 2
    s, p, op, d = (_tup(v, n) for v in (stride, padding, output_padding, dilation))
    k, size = w.shape[2:], x.shape[2:]
    full = [(i - 1) * ss + dd * (kk - 1) + 1 + o for i, ss, dd, kk, o in zip(size, s, d, k, op)]
    cig, cog = x.shape[1] // groups, w.shape[1]
    out = np.zeros((x.shape[0], cog * groups, *full))
    for g in range(groups):
        for off in itertools.product(*[range(kk) for kk in k]):
            sl = tuple(slice(o * dd, o * dd + ss * (i - 1) + 1, ss) for o, dd, ss, i in zip(off, d, s, size))
            wk = w[g * cig:(g + 1) * cig][(slice(None), slice(None), *off)]  # (cig, cog)
            out[:, g * cog:(g + 1) * cog][(slice(None), slice(None), *sl)] += np.einsum(
                "bc...,co->bo...", x[:, g * cig:(g + 1) * cig], wk)
    out = out[(slice(None), slice(None), *tuple(slice(pp, f - pp) for pp, f in zip(p, full)))]
    if b is not None:
        out = out + b.reshape((1, -1) + (1,) * n)
    return out


def _torch(name):
    def call(*args, **kw):
        import torch.nn.functional as F

        return getattr(F, name)(*args, **kw)

    return call


# ----- the harness ---------------------------------------------------------------------------
def _conv_spec(name, fn, ref, shapes, **kw):
    return OpSpec(name, fn, ref, shapes, kwargs=kw, torch_fn=_torch(name.split("[")[0]), atol=1e-9, rtol=1e-7)


SPECS = [
    _conv_spec("conv1d", conv1d, ref_conv, (((2, 2, 7), (3, 2, 3), (3,)),), stride=2, padding=1),
    _conv_spec("conv2d", conv2d, ref_conv, (((1, 2, 5, 4), (3, 2, 3, 2), (3,)), ((2, 2, 4, 4), (2, 2, 1, 1), (2,)))),
    _conv_spec("conv2d[strided]", conv2d, ref_conv, (((1, 2, 6, 5), (2, 2, 3, 3), (2,)),),
               stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
    _conv_spec("conv2d[groups]", conv2d, ref_conv, (((1, 4, 5, 5), (4, 1, 3, 3), (4,)),), padding="same", groups=4),
    _conv_spec("conv2d[unbatched]", conv2d, lambda x, w, **kw: ref_conv(x[None], w, **kw)[0],
               (((2, 4, 4), (2, 2, 2, 2)),), padding=1),
    _conv_spec("conv3d", conv3d, ref_conv, (((1, 2, 3, 4, 3), (2, 2, 2, 2, 2), (2,)),), padding=(1, 0, 1)),
    _conv_spec("conv_transpose1d", conv_transpose1d, ref_conv_transpose, (((2, 2, 4), (2, 3, 3), (3,)),),
               stride=2, padding=1, output_padding=1),
    _conv_spec("conv_transpose2d", conv_transpose2d, ref_conv_transpose, (((1, 4, 3, 3), (4, 1, 2, 3), (2,)),),
               stride=(2, 1), padding=(0, 1), groups=2, dilation=(1, 2)),
    _conv_spec("conv_transpose3d", conv_transpose3d, ref_conv_transpose, (((1, 2, 2, 3, 2), (2, 2, 2, 2, 2)),),
               stride=2),
]

globals().update(op_tests(SPECS))


# ----- float64 values and gradients against PyTorch over many configurations -----------------
CONV_CASES = [
    # (op, x shape, w shape, bias, kwargs)
    ("conv1d", (2, 3, 11), (5, 3, 4), True, {"stride": 3, "padding": 2}),
    ("conv1d", (3, 4, 9), (4, 1, 3), False, {"padding": "same", "groups": 4, "dilation": 3}),
    ("conv1d", (2, 4, 8), (6, 2, 4), True, {"padding": "same", "groups": 2}),  # even kernel: extra pad after
    ("conv2d", (2, 3, 7, 8), (4, 3, 3, 3), True, {}),
    ("conv2d", (2, 3, 7, 8), (4, 3, 3, 2), True, {"stride": 2, "padding": 1}),
    ("conv2d", (2, 4, 9, 8), (6, 2, 3, 3), True,
     {"stride": (2, 1), "padding": (1, 2), "dilation": (2, 1), "groups": 2}),
    ("conv2d", (2, 4, 9, 8), (8, 1, 4, 2), False, {"padding": "same", "groups": 4, "dilation": 2}),
    ("conv2d", (2, 6, 8, 8), (6, 1, 3, 3), True, {"padding": 1, "groups": 6}),  # depthwise
    ("conv2d", (2, 6, 9, 7), (12, 1, 3, 3), True, {"stride": 2, "padding": 1, "groups": 6}),  # depthwise, multiplier 2
    ("conv2d", (3, 5, 6, 6), (7, 5, 1, 1), True, {}),  # pointwise
    ("conv2d", (3, 5, 6, 6), (7, 5, 1, 1), True, {"stride": 2}),
    ("conv2d", (1, 2, 5, 5), (3, 2, 5, 5), True, {"padding": "valid"}),  # kernel = input
    ("conv2d", (2, 3, 10, 9), (4, 3, 3, 3), True, {"stride": 3, "padding": 2, "dilation": 2}),
    ("conv2d", (2, 2, 7, 5), (2, 2, 2, 3), True, {"stride": (3, 2)}),  # strides that leave inputs unused
    ("conv2d", (3, 7, 7), (4, 3, 2, 2), True, {"padding": 1}),  # unbatched
    ("conv2d", (2, 1, 70, 70), (3, 1, 3, 3), True, {}),  # long reduction: the weight gradient sums in pieces
    ("conv3d", (2, 2, 5, 6, 4), (3, 2, 2, 3, 2), True, {"stride": (1, 2, 1), "padding": 1}),
    ("conv3d", (1, 4, 4, 5, 5), (4, 2, 3, 3, 3), False, {"padding": "same", "groups": 2}),
    ("conv_transpose1d", (2, 4, 5), (4, 2, 3), True, {"stride": 1, "padding": 1, "output_padding": 1, "dilation": 2}),
    ("conv_transpose1d", (2, 3, 6), (3, 4, 4), True, {"stride": 3, "padding": 2, "output_padding": 2}),
    ("conv_transpose2d", (2, 4, 5, 6), (4, 3, 3, 3), True, {"stride": 2, "padding": 1, "output_padding": 1}),
    ("conv_transpose2d", (2, 4, 5, 6), (4, 2, 3, 2), True,
     {"stride": (2, 3), "padding": (0, 1), "output_padding": (1, 2), "groups": 2, "dilation": (1, 2)}),
    ("conv_transpose2d", (2, 4, 5, 6), (4, 2, 3, 3), True, {"stride": 1, "padding": 2}),
    ("conv_transpose2d", (2, 6, 4, 4), (6, 1, 3, 3), False, {"stride": 2, "groups": 6}),  # depthwise
    ("conv_transpose2d", (4, 3, 3), (4, 2, 2, 2), True, {"stride": 2}),  # unbatched
    ("conv_transpose3d", (1, 2, 3, 2, 3), (2, 3, 2, 3, 2), True, {"stride": (2, 1, 2), "padding": (0, 1, 1)}),
]
FNS = {f.__name__: f for f in (conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d)}


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
@pytest.mark.parametrize(("op", "xs", "ws", "bias", "kw"), CONV_CASES, ids=[f"{c[0]}-{i}" for i, c in
                                                                            enumerate(CONV_CASES)])
def test_conv_matches_torch_float64(op, xs, ws, bias, kw):
    import torch

    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    cout = ws[1] * kw.get("groups", 1) if "transpose" in op else ws[0]
    arrays = [x, w] + ([rng.standard_normal(cout)] if bias else [])
    ours = [ax.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y, ty = FNS[op](*ours, **kw), getattr(torch.nn.functional, op)(*theirs, **kw)
    assert tuple(y.shape) == tuple(ty.shape)
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), atol=1e-10, rtol=1e-10)
    g = rng.standard_normal(tuple(ty.shape))
    (y * ax.tensor(g)).sum().backward()
    ty.backward(torch.tensor(g))
    for a, t in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), atol=1e-10, rtol=1e-10)


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
@pytest.mark.parametrize("grid", [True, False], ids=["grid-columns", "output-columns"])
def test_both_column_layouts_match_torch(monkeypatch, grid):
    """Stride-1 convolutions pick their column layout by cost: both layouts give the same results."""
    from axonml.nn.prims import conv as prims

    monkeypatch.setattr(prims, "_grid_pays", lambda ratio, cog: grid)
    cases = [c for c in CONV_CASES if all(s == 1 for s in np.atleast_1d(c[4].get("stride", 1)))]
    assert len(cases) > 10
    for case in cases:
        test_conv_matches_torch_float64(*case)
    test_conv_second_derivative_matches_torch()


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_conv_second_derivative_matches_torch():
    """Hessian-vector products through conv and conv_transpose (the adjoints' own backwards)."""
    import torch

    rng = np.random.default_rng(1)
    for op, xs, ws, kw in [("conv2d", (2, 4, 6, 5), (4, 2, 3, 2), {"stride": (2, 1), "padding": 1, "groups": 2}),
                           ("conv2d", (2, 4, 6, 5), (4, 2, 3, 2), {"padding": 1, "groups": 2, "dilation": (1, 2)}),
                           ("conv_transpose2d", (2, 4, 4, 5), (4, 1, 3, 3), {"padding": 1, "groups": 2}),
                           ("conv_transpose2d", (2, 4, 3, 4), (4, 3, 3, 2),
                            {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2})]:
        cout = ws[1] * 2 if "transpose" in op else ws[0]
        arrays = [rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(cout)]
        assert_second_derivatives_match(lambda *a, op=op, kw=kw: FNS[op](*a, **kw),
                                        lambda *a, op=op, kw=kw: getattr(torch.nn.functional, op)(*a, **kw), arrays)


def test_conv_float32_and_empty_batch():
    rng = np.random.default_rng(2)
    x = ax.tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    w = ax.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    y = conv2d(x, w, padding=1)
    assert y.dtype is ax.float32 and y.shape == (2, 4, 6, 6)
    np.testing.assert_allclose(y.numpy(), ref_conv(x.numpy().astype(np.float64), w.numpy().astype(np.float64),
                                                   padding=1), rtol=1e-4, atol=1e-4)
    empty = ax.zeros((0, 3, 6, 6), requires_grad=True)
    w64 = ax.tensor(rng.standard_normal((4, 3, 3, 3)), dtype=ax.float32, requires_grad=True)
    out = conv2d(empty, w64, stride=2)
    assert out.shape == (0, 4, 2, 2)
    out.sum().backward()
    assert empty.grad.shape == (0, 3, 6, 6) and float(w64.grad.abs().sum()) == 0.0


def test_conv_output_is_contiguous_and_fresh():
    # scratch buffers are reused between calls: outputs must never alias them
    x = ax.randn(1, 2, 5, 5)
    w = ax.randn(3, 2, 1, 1)
    a = conv2d(x, w)
    a_copy = a.numpy().copy()
    conv2d(ax.randn(1, 2, 5, 5), w)
    np.testing.assert_array_equal(a.numpy(), a_copy)
    assert a.is_contiguous()


# ----- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("call", "err", "match"), [
    (lambda: conv2d(ax.randn(2, 3, 5, 5), ax.randn(4, 2, 3, 3)), ShapeError, "expects input with 2 channels"),
    (lambda: conv2d(ax.randn(2, 4, 5, 5), ax.randn(3, 2, 3, 3), groups=2), ShapeError, "not divisible by groups"),
    (lambda: conv2d(ax.randn(3, 5, 5), ax.randn(4, 3, 3)), ShapeError, "4-D weight"),
    (lambda: conv2d(ax.randn(5, 5), ax.randn(4, 1, 3, 3)), ShapeError, "3-D \\(unbatched\\) or 4-D"),
    (lambda: conv2d(ax.randn(1, 3, 2, 2), ax.randn(4, 3, 3, 3)), ShapeError, "smaller than the \\(dilated\\) kernel"),
    (lambda: conv2d(ax.randn(1, 3, 5, 5), ax.randn(4, 3, 3, 3), ax.randn(3)), ShapeError, "bias of shape"),
    (lambda: conv2d(ax.randn(1, 3, 5, 5), ax.randn(4, 3, 3, 3), stride=2, padding="same"), ValueError, "strided"),
    (lambda: conv2d(ax.randn(1, 3, 5, 5), ax.randn(4, 3, 3, 3), padding="full"), ValueError, "invalid padding"),
    (lambda: conv2d(ax.randn(1, 3, 5, 5), ax.randn(4, 3, 3, 3), stride=0), ValueError, "stride must be >= 1"),
    (lambda: conv2d(ax.randn(1, 3, 5, 5), ax.randn(4, 3, 3, 3), padding=(1, 2, 3)), ShapeError, "2 values"),
    (lambda: conv2d(ax.randn(1, 3, 5, 5, dtype=ax.float64), ax.randn(4, 3, 3, 3)), DTypeError, "one dtype"),
    (lambda: conv2d(ax.ones(1, 3, 5, 5, dtype=ax.int64), ax.ones(4, 3, 3, 3, dtype=ax.int64)), DTypeError,
     "floating-point"),
    (lambda: conv_transpose2d(ax.randn(1, 3, 5, 5), ax.randn(4, 2, 3, 3)), ShapeError, "expects input with 4"),
    (lambda: conv_transpose2d(ax.randn(1, 4, 5, 5), ax.randn(4, 2, 3, 3), stride=2, output_padding=2), ValueError,
     "output padding"),
    (lambda: conv_transpose2d(ax.randn(1, 4, 1, 1), ax.randn(4, 2, 1, 1), padding=1), ShapeError, "too small"),
    (lambda: conv_transpose2d(ax.randn(1, 4, 5, 5), ax.randn(4, 2, 3, 3), ax.randn(3)), ShapeError, "bias"),
])
def test_conv_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


@pytest.mark.parametrize("dtype", [ax.float16, ax.bfloat16], ids=["f16", "bf16"])
def test_conv_half_precision_keeps_dtype(dtype):
    rng = np.random.default_rng(5)
    x32 = ax.tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    w32 = ax.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3)
    x, w = x32.to(dtype).requires_grad_(), w32.to(dtype).requires_grad_()
    for y, y32 in ((conv2d(x, w, padding=1), conv2d(x32, w32, padding=1)),
                   (conv_transpose2d(x, w.transpose(0, 1), stride=2), conv_transpose2d(x32, w32.transpose(0, 1),
                                                                                       stride=2))):
        assert y.dtype is dtype
        np.testing.assert_allclose(y.float().detach().numpy(), y32.numpy(), atol=0.15, rtol=0.05)
        gx, gw = ax.autograd.grad(y.sum(), [x, w])
        assert gx.dtype is dtype and gw.dtype is dtype
