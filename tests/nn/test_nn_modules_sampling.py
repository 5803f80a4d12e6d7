"""Resampling modules against torch.nn: Upsample (every mode, size or scale_factor, align_corners),
UpsamplingNearest2d, UpsamplingBilinear2d, PixelShuffle, PixelUnshuffle, Unfold and Fold: outputs and
input gradients in float64, reprs and attributes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml.errors import ShapeError
from axonml.nn.modules import sampling as S


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def _pair_up(torch: Any, name: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    m, tm = getattr(S, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    assert repr(m) == repr(tm)
    assert list(m.state_dict()) == list(tm.state_dict()) == []
    return m, tm


def _compare(torch: Any, m: Any, tm: Any, shape: tuple[int, ...], seed: int = 0, tol: float = 1e-12) -> None:
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(shape)
    x, tx = ax.tensor(x0, requires_grad=True), torch.tensor(x0, requires_grad=True)
    y, ty = m(x), tm(tx)
    assert y.shape == tuple(ty.shape) and y.dtype == ax.float64
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=tol, atol=tol)
    g0 = rng.standard_normal(tuple(ty.shape))
    y.backward(ax.tensor(g0))
    ty.backward(torch.tensor(g0))
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=tol, atol=tol)


# (kwargs, input shape)
UPSAMPLE_CASES = [
    ({"scale_factor": 2}, (2, 3, 5)),
    ({"size": 7}, (2, 2, 4)),
    ({"scale_factor": 1.5, "mode": "nearest-exact"}, (2, 2, 5)),
    ({"scale_factor": 2, "mode": "linear"}, (2, 2, 5)),
    ({"size": 9, "mode": "linear", "align_corners": True}, (1, 2, 4)),
    ({"scale_factor": 2}, (2, 2, 3, 4)),
    ({"size": (5, 7)}, (2, 2, 3, 4)),
    ({"scale_factor": (2, 3), "mode": "nearest-exact"}, (1, 2, 3, 4)),
    ({"scale_factor": 2, "mode": "bilinear"}, (2, 2, 4, 5)),
    ({"size": (7, 5), "mode": "bilinear", "align_corners": True}, (2, 2, 4, 3)),
    ({"scale_factor": 0.5, "mode": "bilinear"}, (1, 2, 8, 6)),  # downsampling
    ({"scale_factor": 1.7, "mode": "bilinear", "recompute_scale_factor": True}, (1, 2, 5, 4)),
    ({"scale_factor": 1.7, "mode": "bilinear"}, (1, 2, 5, 4)),
    ({"scale_factor": 2, "mode": "bicubic"}, (2, 2, 4, 5)),
    ({"size": (6, 9), "mode": "bicubic", "align_corners": True}, (1, 2, 4, 5)),
    ({"size": (3, 2), "mode": "area"}, (2, 2, 7, 5)),
    ({"scale_factor": 2, "mode": "trilinear"}, (1, 2, 3, 4, 3)),
    ({"size": (4, 5, 6), "mode": "trilinear", "align_corners": True}, (1, 1, 3, 3, 4)),
    ({"scale_factor": (1, 2, 2)}, (1, 2, 2, 3, 4)),
]


@pytest.mark.torch
@pytest.mark.parametrize("case", UPSAMPLE_CASES, ids=[f"{c[0].get('mode', 'nearest')}-{i}"
                                                      for i, c in enumerate(UPSAMPLE_CASES)])
def test_upsample_matches_torch(torch: Any, case: tuple[Any, ...]) -> None:
    kw, shape = case
    m, tm = _pair_up(torch, "Upsample", **kw)
    for attr in ("name", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor"):
        assert getattr(m, attr) == getattr(tm, attr), attr
    _compare(torch, m, tm, shape, tol=1e-10)


@pytest.mark.torch
@pytest.mark.parametrize("name", ["UpsamplingNearest2d", "UpsamplingBilinear2d"])
@pytest.mark.parametrize("kw", [{"scale_factor": 2}, {"size": (5, 7)}, {"scale_factor": (1.5, 2)}])
def test_fixed_mode_upsampling_matches_torch(torch: Any, name: str, kw: dict[str, Any]) -> None:
    m, tm = _pair_up(torch, name, **kw)
    assert (m.mode, m.align_corners, m.name) == (tm.mode, tm.align_corners, tm.name)
    _compare(torch, m, tm, (2, 3, 4, 5), tol=1e-10)


@pytest.mark.torch
@pytest.mark.parametrize("r, shape", [(2, (2, 8, 3, 4)), (3, (9, 2, 2)), (1, (1, 3, 2, 2)), (2, (2, 1, 4, 3, 2))])
def test_pixel_shuffle_and_unshuffle_match_torch(torch: Any, r: int, shape: tuple[int, ...]) -> None:
    m, tm = _pair_up(torch, "PixelShuffle", r)
    assert m.upscale_factor == r
    _compare(torch, m, tm, shape)
    *lead, c, h, w = shape
    u, tu = _pair_up(torch, "PixelUnshuffle", r)
    assert u.downscale_factor == r
    _compare(torch, u, tu, (*lead, c // (r * r), h * r, w * r), seed=1)
    x = ax.randn(*shape)
    np.testing.assert_array_equal(u(m(x)).numpy(), x.numpy())  # inverse of each other


# (kernel_size, dilation, padding, stride, spatial size)
FOLD_CASES = [
    (2, 1, 0, 1, (4, 5)),
    ((3, 2), 1, 1, (2, 1), (6, 5)),
    (3, (2, 1), (1, 0), 2, (7, 6)),
    (2, 2, 1, (1, 2), (5, 5)),
]


@pytest.mark.torch
@pytest.mark.parametrize("case", FOLD_CASES, ids=[str(i) for i in range(len(FOLD_CASES))])
def test_unfold_and_fold_match_torch(torch: Any, case: tuple[Any, ...]) -> None:
    k, d, p, s, size = case
    u, tu = _pair_up(torch, "Unfold", k, dilation=d, padding=p, stride=s)
    assert (u.kernel_size, u.dilation, u.padding, u.stride) == (tu.kernel_size, tu.dilation, tu.padding, tu.stride)
    _compare(torch, u, tu, (2, 3, *size))
    _compare(torch, u, tu, (3, *size), seed=1)  # unbatched
    f, tf = _pair_up(torch, "Fold", size, k, dilation=d, padding=p, stride=s)
    assert f.output_size == tf.output_size
    cols = tuple(tu(torch.zeros(2, 3, *size)).shape)
    _compare(torch, f, tf, cols, seed=2)
    _compare(torch, f, tf, cols[1:], seed=3)  # unbatched


@pytest.mark.torch
def test_reprs_match_torch(torch: Any) -> None:
    configs: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("Upsample", (), {"scale_factor": 2}), ("Upsample", (), {"size": (3, 4), "mode": "bilinear"}),
        ("Upsample", (), {"scale_factor": (2, 1.5), "mode": "bicubic", "align_corners": True}),
        ("Upsample", (), {"size": 5}), ("Upsample", (), {}), ("UpsamplingNearest2d", (), {"size": 4}),
        ("UpsamplingBilinear2d", (), {"scale_factor": 3}), ("PixelShuffle", (3,), {}), ("PixelUnshuffle", (2,), {}),
        ("Unfold", ((2, 3),), {"stride": 2}), ("Fold", ((4, 5), 2), {"padding": (1, 0), "dilation": 2}),
    ]
    for name, args, kw in configs:
        _pair_up(torch, name, *args, **kw)


def test_sampling_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        S.Upsample()(ax.zeros(1, 1, 4))
    with pytest.raises(ShapeError, match="bilinear"):
        S.Upsample(scale_factor=2, mode="bilinear")(ax.zeros(1, 1, 4))
    with pytest.raises(ShapeError, match="pixel_shuffle"):
        S.PixelShuffle(2)(ax.zeros(1, 3, 2, 2))
    with pytest.raises(ShapeError, match="fold"):
        S.Fold((4, 4), 2)(ax.zeros(1, 4, 10))
