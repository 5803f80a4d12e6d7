"""nn.functional resampling: interpolate/upsample, pixel_shuffle/unshuffle, unfold/fold through the
generic harness (NumPy references from the definitions), and against PyTorch in float64 and float32."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import axonml as ax
from axonml.errors import ShapeError
from axonml.nn.functional import sampling as S
from harness import HAS_TORCH, OpSpec, op_tests

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*is deprecated:UserWarning",  # PyTorch's upsample_* oracles
    "ignore:invalid value encountered:RuntimeWarning",  # 0 * inf in the non-finite tests, as intended
)


# ----- NumPy references ----------------------------------------------------------------------------
def _axis_taps(mode, n_in, n_out, align_corners, scale):
    """Per output index: [(input index, weight)], from PyTorch's documented sampling positions."""
    ratio = (n_in - 1) / (n_out - 1) if align_corners and n_out > 1 else 0.0 if align_corners else (
        1.0 / scale if scale else n_in / n_out)
    taps = []
    for o in range(n_out):
        if mode == "nearest":
            taps.append([(min(int(np.floor(o * ratio)), n_in - 1), 1.0)])
            continue
        if mode == "nearest-exact":
            taps.append([(min(int(np.floor((o + 0.5) * ratio)), n_in - 1), 1.0)])
            continue
        src = o * ratio if align_corners else (o + 0.5) * ratio - 0.5
        if mode == "cubic":
            i0, t = int(np.floor(src)), src - np.floor(src)
            a = -0.75
            w = [((a * x - 5 * a) * x + 8 * a) * x - 4 * a if x > 1 else ((a + 2) * x - (a + 3)) * x * x + 1
                 for x in (t + 1, t, 1 - t, 2 - t)]
            taps.append([(min(max(i0 - 1 + j, 0), n_in - 1), w[j]) for j in range(4)])
            continue
        src = max(src, 0.0)
        i0 = min(int(np.floor(src)), n_in - 1)
        lam = min(max(src - i0, 0.0), 1.0)
        taps.append([(i0, 1 - lam), (min(i0 + 1, n_in - 1), lam)])
    return taps


def ref_interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None):
    n = x.ndim - 2
    if size is not None:
        out = (size,) * n if isinstance(size, int) else tuple(size)
        scales = [None] * n
    else:
        sf = (scale_factor,) * n if not isinstance(scale_factor, tuple) else scale_factor
        out = tuple(int(np.floor(i * s)) for i, s in zip(x.shape[2:], sf))
        scales = list(sf)
    kind = {"linear": "linear", "bilinear": "linear", "trilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    for d in range(n):
        taps = _axis_taps(kind, x.shape[2 + d], out[d], bool(align_corners), scales[d])
        moved = np.moveaxis(x, 2 + d, -1)
        res = np.stack([sum(w * moved[..., i] for i, w in t) for t in taps], -1)
        x = np.moveaxis(res, -1, 2 + d)
    return x


def ref_area(x, size):
    out = np.zeros(x.shape[:2] + size)
    for o in np.ndindex(*size):
        box = tuple(slice((a * n) // m, -((-(a + 1) * n) // m)) for a, n, m in zip(o, x.shape[2:], size))
        out[(..., *o)] = x[(slice(None), slice(None), *box)].mean(axis=(2, 3))
    return out


def ref_pixel_shuffle(x, upscale_factor):
    r = upscale_factor
    b, c, h, w = x.shape
    out = np.zeros((b, c // (r * r), h * r, w * r))
    for ci, i, j in itertools.product(range(c), range(h * r), range(w * r)):
        if ci < c // (r * r):
            out[:, ci, i, j] = x[:, ci * r * r + (i % r) * r + (j % r), i // r, j // r]
    return out


def ref_pixel_unshuffle(x, r):
    b, c, h, w = x.shape
    out = np.zeros((b, c * r * r, h // r, w // r))
    for ci, i, j, hh, ww in itertools.product(range(c), range(r), range(r), range(h // r), range(w // r)):
        out[:, ci * r * r + i * r + j, hh, ww] = x[:, ci, hh * r + i, ww * r + j]
    return out


def ref_unfold(x, kernel_size, dilation=1, padding=0, stride=1):
    kh, kw = kernel_size
    xp = np.pad(x, [(0, 0), (0, 0), (padding, padding), (padding, padding)])
    oh = (xp.shape[2] - dilation * (kh - 1) - 1) // stride + 1
    ow = (xp.shape[3] - dilation * (kw - 1) - 1) // stride + 1
    cols = []
    for i, j in itertools.product(range(oh), range(ow)):
        block = xp[:, :, i * stride: i * stride + dilation * (kh - 1) + 1: dilation,
                   j * stride: j * stride + dilation * (kw - 1) + 1: dilation]
        cols.append(block.reshape(x.shape[0], -1))
    return np.stack(cols, -1)


def ref_fold(cols, output_size, kernel_size, dilation=1, padding=0, stride=1):
    kh, kw = kernel_size
    h, w = output_size
    b, ck, _ = cols.shape
    c = ck // (kh * kw)
    out = np.zeros((b, c, h + 2 * padding, w + 2 * padding))
    ow = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    for n in range(cols.shape[2]):
        i, j = divmod(n, ow)
        out[:, :, i * stride: i * stride + dilation * (kh - 1) + 1: dilation,
            j * stride: j * stride + dilation * (kw - 1) + 1: dilation] += cols[:, :, n].reshape(b, c, kh, kw)
    return out[:, :, padding: padding + h, padding: padding + w]


def _torch(name):
    def call(*args, **kw):
        import torch.nn.functional as F

        return getattr(F, name)(*args, **kw)

    return call


def _interp(name, shapes, **kw):
    return OpSpec(name, S.interpolate, lambda x, **k: ref_interpolate(x, **k), shapes, kwargs=kw,
                  torch_fn=_torch("interpolate"), atol=1e-9, rtol=1e-7)


IMG = (((1, 2, 3, 4),),)
SPECS = [
    _interp("interpolate", IMG, size=(5, 7)),
    _interp("interpolate[nearest-x2]", IMG, scale_factor=2),
    _interp("interpolate[nearest-exact]", IMG, size=(5, 3), mode="nearest-exact"),
    _interp("interpolate[bilinear]", IMG, size=(5, 7), mode="bilinear", align_corners=False),
    _interp("interpolate[bilinear-corners]", IMG, scale_factor=1.5, mode="bilinear", align_corners=True),
    _interp("interpolate[bilinear-down]", (((1, 1, 6, 5),),), size=(4, 2), mode="bilinear"),
    _interp("interpolate[bicubic]", IMG, size=(5, 6), mode="bicubic", align_corners=False),
    _interp("interpolate[linear]", (((2, 2, 4),),), size=7, mode="linear", align_corners=True),
    _interp("interpolate[trilinear]", (((1, 1, 2, 3, 2),),), scale_factor=2, mode="trilinear"),
    OpSpec("interpolate[area]", S.interpolate, lambda x, **k: ref_area(x, (2, 3)), (((1, 2, 5, 7),),),
           kwargs={"size": (2, 3), "mode": "area"}, torch_fn=_torch("interpolate"), atol=1e-9, rtol=1e-7),
    OpSpec("upsample", S.upsample, lambda x, **k: ref_interpolate(x, **k), IMG,
           kwargs={"scale_factor": 2, "mode": "bilinear"}, torch_fn=_torch("interpolate"), atol=1e-9, rtol=1e-7),
    OpSpec("upsample_nearest", S.upsample_nearest, lambda x, **k: ref_interpolate(x, **k), IMG,
           kwargs={"size": (6, 5)}, torch_fn=_torch("upsample_nearest"), atol=1e-9, rtol=1e-7),
    OpSpec("upsample_bilinear", S.upsample_bilinear,
           lambda x, **k: ref_interpolate(x, mode="bilinear", align_corners=True, **k), IMG,
           kwargs={"size": (5, 6)}, torch_fn=_torch("upsample_bilinear"), atol=1e-9, rtol=1e-7),
    OpSpec("pixel_shuffle", S.pixel_shuffle, ref_pixel_shuffle, (((1, 8, 2, 3),),), kwargs={"upscale_factor": 2},
           torch_fn=_torch("pixel_shuffle"), atol=1e-12),
    OpSpec("pixel_unshuffle", S.pixel_unshuffle,
           lambda x, downscale_factor: ref_pixel_unshuffle(x, downscale_factor),
           (((1, 2, 4, 6),),), kwargs={"downscale_factor": 2}, torch_fn=_torch("pixel_unshuffle"), atol=1e-12),
    OpSpec("unfold", S.unfold, ref_unfold, (((1, 2, 5, 4),),),
           kwargs={"kernel_size": (2, 3), "dilation": 1, "padding": 1, "stride": 2}, torch_fn=_torch("unfold"),
           atol=1e-12),
    OpSpec("fold", S.fold, ref_fold, (((1, 12, 9),),),
           kwargs={"output_size": (4, 5), "kernel_size": (2, 3), "dilation": 1, "padding": 1, "stride": 2},
           torch_fn=_torch("fold"), atol=1e-12),
]


globals().update(op_tests(SPECS))


# ----- against PyTorch ------------------------------------------------------------------------------
MODES = [("nearest", None), ("nearest-exact", None), ("bilinear", False), ("bilinear", True), ("bicubic", False),
         ("bicubic", True), ("area", None)]
SIZES = [{"size": (7, 9)}, {"scale_factor": 2}, {"scale_factor": (1.7, 0.6)}, {"size": (3, 2)},
         {"scale_factor": 3}, {"scale_factor": 1.5, "recompute_scale_factor": True}, {"size": (5, 6)}]


def _against_torch(fn, torch_fn, x, dtype, tol, grad=True, **kw):
    import torch

    a = ax.tensor(x.astype(dtype), requires_grad=True)
    t = torch.tensor(x.astype(dtype), requires_grad=True)
    y, ty = fn(a, **kw), torch_fn(t, **kw)
    assert tuple(y.shape) == tuple(ty.shape) and y.dtype.name == str(ty.dtype).split(".")[1]
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), atol=tol, rtol=tol)
    if grad:
        g = np.random.default_rng(5).standard_normal(tuple(ty.shape)).astype(dtype)
        (y * ax.tensor(g)).sum().backward()
        ty.backward(torch.tensor(g))
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), atol=tol * 10, rtol=tol * 10)


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("mode", "corners"), MODES, ids=[f"{m}-{c}" for m, c in MODES])
def test_interpolate_matches_torch(mode, corners, dtype):
    import torch

    x = np.random.default_rng(0).standard_normal((2, 3, 5, 6))
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for kw in SIZES:
        extra = {} if corners is None else {"align_corners": corners}
        _against_torch(S.interpolate, torch.nn.functional.interpolate, x, dtype, tol, mode=mode, **kw, **extra)


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_interpolate_1d_3d_and_nonfinite_match_torch():
    import torch

    F = torch.nn.functional
    rng = np.random.default_rng(1)
    x1, x3 = rng.standard_normal((2, 3, 5)), rng.standard_normal((1, 2, 3, 4, 3))
    for kw in ({"size": 11, "mode": "linear"}, {"scale_factor": 2.5, "mode": "linear", "align_corners": True},
               {"size": 3, "mode": "nearest"}, {"scale_factor": 0.5, "mode": "area"}):
        _against_torch(S.interpolate, F.interpolate, x1, np.float64, 1e-12, **kw)
    for kw in ({"scale_factor": 2, "mode": "trilinear"}, {"size": (3, 5, 7), "mode": "nearest"},
               {"size": (2, 3, 2), "mode": "trilinear", "align_corners": True}):
        _against_torch(S.interpolate, F.interpolate, x3, np.float64, 1e-12, **kw)
    # a NaN / inf only reaches the outputs whose taps touch it (the gather path), as in PyTorch
    x = rng.standard_normal((1, 2, 6, 7))
    x[0, 0, 2, 3], x[0, 1, 4, 1] = np.nan, np.inf
    for mode in ("bilinear", "bicubic"):
        _against_torch(S.interpolate, F.interpolate, x, np.float64, 1e-12, grad=False, size=(9, 13), mode=mode)


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_interpolate_gather_path_gradients(monkeypatch):
    """Large inputs resample by gathers instead of a dense matrix: same values and derivatives."""
    import torch

    monkeypatch.setattr(S, "_MATMUL_MAX_IN", 0)
    x = np.random.default_rng(2).standard_normal((1, 2, 4, 5))
    for mode in ("bilinear", "bicubic"):
        _against_torch(S.interpolate, torch.nn.functional.interpolate, x, np.float64, 1e-12, size=(7, 3), mode=mode)
    a = ax.tensor(x, requires_grad=True)
    t = torch.tensor(x, requires_grad=True)
    (g,) = ax.autograd.grad((S.interpolate(a, size=(7, 3), mode="bilinear") ** 3).sum(), [a], create_graph=True)
    (tg,) = torch.autograd.grad((torch.nn.functional.interpolate(t, size=(7, 3), mode="bilinear") ** 3).sum(), [t],
                                create_graph=True)
    (gg,) = ax.autograd.grad((g * g).sum(), [a])
    (tgg,) = torch.autograd.grad((tg * tg).sum(), [t])
    np.testing.assert_allclose(gg.numpy(), tgg.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_shuffle_unfold_fold_match_torch():
    import torch

    F = torch.nn.functional
    rng = np.random.default_rng(3)
    _against_torch(S.pixel_shuffle, F.pixel_shuffle, rng.standard_normal((2, 18, 3, 4)), np.float64, 0,
                   upscale_factor=3)
    _against_torch(S.pixel_shuffle, F.pixel_shuffle, rng.standard_normal((2, 3, 8, 3, 4)), np.float64, 0,
                   upscale_factor=2)  # extra leading dims
    _against_torch(S.pixel_unshuffle, F.pixel_unshuffle, rng.standard_normal((2, 2, 6, 9)), np.float64, 0,
                   downscale_factor=3)
    for kw in ({"kernel_size": (3, 2), "dilation": (1, 2), "padding": 1, "stride": (2, 1)}, {"kernel_size": 2},
               {"kernel_size": 3, "padding": 1}):
        _against_torch(S.unfold, F.unfold, rng.standard_normal((2, 3, 7, 8)), np.float64, 1e-12, **kw)
    _against_torch(S.unfold, F.unfold, rng.standard_normal((3, 5, 5)), np.float64, 1e-12, kernel_size=2)
    for shape, kw in [((2, 12, 24), {"output_size": (5, 6), "kernel_size": (2, 3), "padding": (1, 0)}),
                      ((2, 12, 20), {"output_size": (7, 8), "kernel_size": 2, "padding": 1, "stride": 2}),
                      ((2, 18, 9), {"output_size": (7, 7), "kernel_size": 3, "dilation": 2, "stride": (1, 1)}),
                      ((12, 20), {"output_size": (7, 8), "kernel_size": 2, "padding": 1, "stride": 2})]:
        _against_torch(S.fold, F.fold, rng.standard_normal(shape), np.float64, 1e-12, **kw)


def test_fold_inverts_unfold_times_counts():
    x = ax.randn(2, 3, 6, 6, dtype=ax.float64)
    cols = S.unfold(x, 3, padding=1)
    counts = S.fold(S.unfold(ax.ones(2, 3, 6, 6, dtype=ax.float64), 3, padding=1), (6, 6), 3, padding=1)
    np.testing.assert_allclose((S.fold(cols, (6, 6), 3, padding=1) / counts).numpy(), x.numpy(), rtol=1e-12)


@pytest.mark.parametrize(("call", "err", "match"), [
    (lambda: S.interpolate(ax.randn(1, 1, 4, 4)), ValueError, "exactly one of size and scale_factor"),
    (lambda: S.interpolate(ax.randn(1, 1, 4, 4), size=2, scale_factor=2), ValueError, "exactly one"),
    (lambda: S.interpolate(ax.randn(1, 1, 4), size=2, mode="bilinear"), ShapeError, "needs 4-D input"),
    (lambda: S.interpolate(ax.randn(1, 1, 4, 4), size=2, mode="cubic"), ValueError, "unknown mode"),
    (lambda: S.interpolate(ax.randn(1, 1, 4, 4), size=2, align_corners=True), ValueError, "align_corners"),
    (lambda: S.interpolate(ax.randn(1, 1, 4, 4), size=2, mode="bilinear", antialias=True), ValueError, "antialias"),
    (lambda: S.interpolate(ax.randn(4, 4), size=2), ShapeError, "3-D, 4-D or 5-D"),
    (lambda: S.interpolate(ax.randn(1, 1, 4, 4), scale_factor=0.1), ShapeError, "must be positive"),
    (lambda: S.interpolate(ax.randn(1, 1, 4, 4), size=(2, 2, 2)), ShapeError, "2 values"),
    (lambda: S.pixel_shuffle(ax.randn(1, 6, 2, 2), 2), ShapeError, "pixel_shuffle"),
    (lambda: S.pixel_unshuffle(ax.randn(1, 1, 5, 4), 2), ShapeError, "divisible by 2"),
    (lambda: S.unfold(ax.randn(2, 3), 2), ShapeError, "3-D or 4-D"),
    (lambda: S.unfold(ax.randn(1, 1, 2, 2), 3), ShapeError, "too small"),
    (lambda: S.fold(ax.randn(1, 12, 5), (4, 5), (2, 3)), ShapeError, "does not match"),
])
def test_sampling_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


@pytest.mark.parametrize("dtype", [ax.float16, ax.bfloat16], ids=["f16", "bf16"])
def test_sampling_half_precision_keeps_dtype(dtype):
    x32 = ax.randn(2, 4, 5, 6)
    x = x32.to(dtype).requires_grad_()
    calls = [lambda t: S.interpolate(t, scale_factor=2), lambda t: S.interpolate(t, size=(7, 9), mode="bilinear"),
             lambda t: S.interpolate(t, size=(7, 9), mode="bicubic"), lambda t: S.interpolate(t, size=3, mode="area"),
             lambda t: S.pixel_shuffle(t, 2), lambda t: S.unfold(t, 2), lambda t: S.fold(S.unfold(t, 2), (5, 6), 2)]
    for f in calls:
        y = f(x)
        assert y.dtype is dtype
        np.testing.assert_allclose(y.float().detach().numpy(), f(x32).numpy(), atol=0.1, rtol=0.03)
        (g,) = ax.autograd.grad(y.sum(), [x])
        assert g.dtype is dtype


def test_sampling_empty_batch():
    x = ax.zeros(0, 3, 6, 6, requires_grad=True)
    for f, shape in [(lambda t: S.interpolate(t, scale_factor=2, mode="bilinear"), (0, 3, 12, 12)),
                     (lambda t: S.interpolate(t, size=(4, 5)), (0, 3, 4, 5)), (lambda t: S.unfold(t, 2), (0, 12, 25)),
                     (lambda t: S.pixel_unshuffle(t, 2), (0, 12, 3, 3))]:
        y = f(x)
        assert y.shape == shape
        (g,) = ax.autograd.grad(y.sum(), [x])
        assert g.shape == x.shape
