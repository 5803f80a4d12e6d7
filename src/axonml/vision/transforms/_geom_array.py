"""Geometric operations on ``(..., C, H, W)`` arrays with the array module ``xp`` (NumPy or CuPy).

Coordinates are continuous with pixel ``i`` covering ``[i, i + 1)`` (its centre at
``i + 0.5``), the convention of Pillow and of ``align_corners=False``. Resampling
weights and sampling positions are built on the CPU in float64 and moved to the
image's device; integer images are computed in float32 and rounded back.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._kinds import InterpolationMode, cast_like, channel_values, float_dtype_for

# ----- resampling filters (Pillow's definitions) -----------------------------------------------


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.maximum(1.0 - np.abs(x), 0.0)


def _cubic(a: float) -> Callable[[np.ndarray], np.ndarray]:
    """Keys' cubic convolution kernel with parameter ``a`` (Pillow: -0.5, PyTorch: -0.75)."""

    def f(x: np.ndarray) -> np.ndarray:
        x = np.abs(x)
        near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
        return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))

    return f


def _box(x: np.ndarray) -> np.ndarray:
    return ((x > -0.5) & (x <= 0.5)).astype(np.float64)


def _hamming(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 1.0, np.sinc(x) * (0.54 + 0.46 * np.cos(np.pi * x)), 0.0)


def _lanczos(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0)


# mode -> (kernel, support in input pixels at scale 1)
_FILTERS: dict[InterpolationMode, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    InterpolationMode.BILINEAR: (_triangle, 1.0),
    InterpolationMode.BICUBIC: (_cubic(-0.5), 2.0),
    InterpolationMode.BOX: (_box, 0.5),
    InterpolationMode.HAMMING: (_hamming, 1.0),
    InterpolationMode.LANCZOS: (_lanczos, 3.0),
}


def filter_weights(n_in: int, n_out: int, mode: InterpolationMode) -> np.ndarray:
    """(n_out, n_in) weights of Pillow's separable resampling: the filter widens by the
    downscale factor (antialiasing) and each row is renormalized (borders are truncated)."""
    kernel, support = _FILTERS[mode]
    scale = n_in / n_out
    stretch = max(scale, 1.0)
    centers = (np.arange(n_out) + 0.5) * scale  # (n_out,)
    offsets = (np.arange(n_in)[None, :] + 0.5 - centers[:, None]) / stretch  # (n_out, n_in)
    w = np.where(np.abs(offsets) < support, kernel(offsets), 0.0)
    total = w.sum(axis=1, keepdims=True)
    return w / np.where(total == 0.0, 1.0, total)


def _interp_weights(n_in: int, n_out: int, mode: InterpolationMode) -> np.ndarray:
    """(n_out, n_in) weights of PyTorch's ``interpolate(align_corners=False, antialias=False)``."""
    scale = n_in / n_out
    src = (np.arange(n_out) + 0.5) * scale - 0.5  # (n_out,)
    rows = np.arange(n_out)
    w = np.zeros((n_out, n_in))
    if mode is InterpolationMode.BILINEAR:
        src = np.maximum(src, 0.0)
        i0 = np.floor(src).astype(np.int64)
        frac = src - i0
        np.add.at(w, (rows, np.minimum(i0, n_in - 1)), 1.0 - frac)
        np.add.at(w, (rows, np.minimum(i0 + 1, n_in - 1)), frac)
        return w
    # bicubic: four taps with a = -0.75, indices clamped to the border
    i0 = np.floor(src).astype(np.int64)
    frac = src - i0
    kernel = _cubic(-0.75)
    for k in (-1, 0, 1, 2):
        np.add.at(w, (rows, np.clip(i0 + k, 0, n_in - 1)), kernel(frac - k))
    return w


def _band(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A (n_out, n_in) weight matrix whose rows are non-zero on one contiguous run, as (index, weight)
    pairs (n_out, K) with K the longest run (short runs are padded with zero weights)."""
    n_in = weights.shape[1]
    nz = weights != 0
    first = np.where(nz.any(axis=1), nz.argmax(axis=1), 0)
    last = np.where(nz.any(axis=1), n_in - 1 - nz[:, ::-1].argmax(axis=1), 0)
    taps = int((last - first).max()) + 1
    idx = first[:, None] + np.arange(taps)[None, :]  # (n_out, K)
    inside = idx <= last[:, None]
    idx = np.minimum(idx, n_in - 1)
    return idx, np.where(inside, np.take_along_axis(weights, idx, axis=1), 0.0)


# A band of up to this many taps is summed tap by tap; wider ones (strong downscaling) use a matmul.
_MAX_TAPS = 32


@functools.lru_cache(maxsize=256)
def _axis_weights(n_in: int, n_out: int, mode: InterpolationMode, pil_style: bool) -> tuple[np.ndarray, ...]:
    """(dense, index, weight) of one axis, cached: pipelines resize to the same sizes again and again."""
    dense = (filter_weights if pil_style else _interp_weights)(n_in, n_out, mode)
    idx, w = _band(dense)
    for a in (dense, idx, w):
        a.setflags(write=False)
    return dense, idx, w


def _resample_axis(x: Any, xp: Any, weights: tuple[np.ndarray, ...], axis: int, ft: Any) -> Any:
    """``x`` (float) resampled along ``axis`` (-1 or -2) by (dense, index, weight) from ``_axis_weights``."""
    dense, idx, w = weights
    if idx.shape[1] > _MAX_TAPS:
        wx = xp.asarray(dense.astype(ft))
        return xp.matmul(x, wx.T) if axis == -1 else xp.matmul(wx, x)
    out = None
    for k in range(idx.shape[1]):  # each output takes K neighbouring inputs: K gathers, no dense product
        cols = xp.asarray(idx[:, k])
        wk = xp.asarray(w[:, k].astype(ft))
        term = (x[..., cols] * wk) if axis == -1 else (x[..., cols, :] * wk[:, None])
        out = term if out is None else out + term
    return out


def resize(x: Any, xp: Any, size: tuple[int, int], mode: InterpolationMode, antialias: bool) -> Any:
    """``x`` (..., C, H, W) resized to ``size`` = (h, w)."""
    h, w = x.shape[-2:]
    oh, ow = size
    if (oh, ow) == (h, w):
        return x.copy()
    if mode in (InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT):
        shift = 0.0 if mode is InterpolationMode.NEAREST else 0.5
        rows = np.minimum(np.floor((np.arange(oh) + shift) * (h / oh)).astype(np.int64), h - 1)
        cols = np.minimum(np.floor((np.arange(ow) + shift) * (w / ow)).astype(np.int64), w - 1)
        return x[..., xp.asarray(rows)[:, None], xp.asarray(cols)[None, :]]
    pil_style = antialias or mode not in (InterpolationMode.BILINEAR, InterpolationMode.BICUBIC)
    ft = float_dtype_for(x.dtype)
    # Pillow's order: the horizontal pass first; integer images are rounded to the dtype in between
    tmp = x.astype(ft)
    if ow != w:
        tmp = _resample_axis(tmp, xp, _axis_weights(w, ow, mode, pil_style), -1, ft)  # (..., H, ow)
    integer = np.dtype(x.dtype).kind in "iu"
    if integer and pil_style:
        tmp = cast_like(tmp, xp, x.dtype).astype(ft)
    out = tmp
    if oh != h:
        out = _resample_axis(tmp, xp, _axis_weights(h, oh, mode, pil_style), -2, ft)  # (..., oh, ow)
    return cast_like(out, xp, x.dtype) if integer else out.astype(x.dtype, copy=False)


def crop(x: Any, xp: Any, top: int, left: int, height: int, width: int) -> Any:
    """The window (top, left, height, width) of ``x``; parts outside the image are zero."""
    h, w = x.shape[-2:]
    if top >= 0 and left >= 0 and top + height <= h and left + width <= w:
        return x[..., top : top + height, left : left + width].copy()
    out = xp.zeros((*x.shape[:-2], height, width), dtype=x.dtype)
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + height, h), min(left + width, w)
    if t1 > t0 and l1 > l0:
        out[..., t0 - top : t1 - top, l0 - left : l1 - left] = x[..., t0:t1, l0:l1]
    return out


def pad(x: Any, xp: Any, padding: Sequence[int], fill: Any, mode: str) -> Any:
    """``x`` padded by (left, top, right, bottom); negative amounts crop, as in torchvision."""
    left, top, right, bottom = (int(p) for p in padding)
    h, w = x.shape[-2:]
    x = x[..., max(-top, 0) : h - max(-bottom, 0), max(-left, 0) : w - max(-right, 0)]
    left, top, right, bottom = max(left, 0), max(top, 0), max(right, 0), max(bottom, 0)
    widths = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    if mode != "constant":
        return xp.pad(x, widths, mode=mode)
    c, h, w = x.shape[-3:]
    out = xp.empty((*x.shape[:-2], h + top + bottom, w + left + right), dtype=x.dtype)
    out[...] = channel_values(0 if fill is None else fill, c, xp, x.dtype, "pad")
    out[..., top : top + h, left : left + w] = x
    return out


# ----- affine warps --------------------------------------------------------------------------


def _rotation(angle_deg: float) -> np.ndarray:
    """2x2 rotation in image coordinates (y down), visually clockwise for positive angles.

    Entries are rounded to 15 decimals, as Pillow does, so quarter turns are exact."""
    a = math.radians(angle_deg)
    c, s = round(math.cos(a), 15), round(math.sin(a), 15)
    return np.array([[c, -s], [s, c]])


def affine_forward(angle: float, translate: Sequence[float], scale: float, shear: Sequence[float],
                   center: Sequence[float]) -> np.ndarray:
    """3x3 map from input to output coordinates: T(translate) C R(angle) S(scale) Sh_y Sh_x C^-1.

    ``angle`` is clockwise in degrees (torchvision's ``affine``); shear angles in degrees, x then y.
    """
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    shear_x = np.array([[1.0, -math.tan(sx)], [0.0, 1.0]])
    shear_y = np.array([[1.0, 0.0], [-math.tan(sy), 1.0]])
    lin = _rotation(angle) @ (scale * np.eye(2)) @ shear_y @ shear_x
    cx, cy = center
    m = np.eye(3)
    m[:2, :2] = lin
    m[:2, 2] = np.array([cx, cy]) - lin @ np.array([cx, cy]) + np.asarray(translate, dtype=np.float64)
    return m


def expanded_size(forward: np.ndarray, h: int, w: int) -> tuple[int, int]:
    """(h, w) of the canvas holding the whole transformed image (Pillow's ``expand`` rule)."""
    corners = np.array([[0.0, 0.0, 1.0], [w, 0.0, 1.0], [w, h, 1.0], [0.0, h, 1.0]]) @ forward.T
    nw = math.ceil(corners[:, 0].max()) - math.floor(corners[:, 0].min())
    nh = math.ceil(corners[:, 1].max()) - math.floor(corners[:, 1].min())
    return int(nh), int(nw)


def recenter(forward: np.ndarray, h: int, w: int, oh: int, ow: int) -> np.ndarray:
    """``forward`` shifted so a canvas of (oh, ow) stays centred on the (h, w) image's centre."""
    shift = np.eye(3)
    shift[:2, 2] = [(ow - w) / 2.0, (oh - h) / 2.0]
    return shift @ forward


def _taps(mode: InterpolationMode, pos: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(index, weight) pairs that sample continuous coordinates ``pos`` along one axis."""
    if mode in (InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT):
        return [(np.floor(pos).astype(np.int64), np.ones_like(pos))]
    p = pos - 0.5  # index space: pixel i centred at i
    i0 = np.floor(p).astype(np.int64)
    t = p - i0
    if mode is InterpolationMode.BILINEAR:
        return [(i0, 1.0 - t), (i0 + 1, t)]
    if mode is InterpolationMode.BICUBIC:
        kernel = _cubic(-1.0)  # Pillow's bicubic for rotate/affine (grid_sample uses -0.75)
        return [(i0 + k, kernel(t - k)) for k in (-1, 0, 1, 2)]
    raise ValueError(f"rotate/affine: interpolation {mode.value!r} is not supported (nearest, bilinear, bicubic)")


def warp(x: Any, xp: Any, inverse: np.ndarray, out_size: tuple[int, int], mode: InterpolationMode,
         fill: Any) -> Any:
    """Sample ``x`` (..., C, H, W) at ``inverse`` @ (output pixel centre): an (oh, ow) image.

    Points outside the input take ``fill`` (a number or one per channel); with bilinear
    and bicubic sampling the taps outside blend towards ``fill``.
    """
    h, w = x.shape[-2:]
    oh, ow = out_size
    ys, xs = np.meshgrid(np.arange(oh) + 0.5, np.arange(ow) + 0.5, indexing="ij")  # (oh, ow)
    src_x = (inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]).ravel()
    src_y = (inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]).ravel()
    ft = float_dtype_for(x.dtype)
    flat = x.reshape(*x.shape[:-2], h * w)  # gathers along one flat axis are cheaper than 2-D fancy indexing
    acc = xp.zeros((*x.shape[:-2], oh * ow), dtype=ft)
    covered = np.zeros(oh * ow)
    for iy, wy in _taps(mode, src_y):
        for ix, wx in _taps(mode, src_x):
            valid = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
            weight = np.where(valid, wy * wx, 0.0)
            covered += weight
            where = xp.asarray(np.clip(iy, 0, h - 1) * w + np.clip(ix, 0, w - 1))
            acc += xp.asarray(weight.astype(ft)) * xp.take(flat, where, axis=-1).astype(ft)
    fill_v = channel_values(0.0 if fill is None else fill, x.shape[-3], xp, ft, "warp").reshape(-1, 1)
    acc += xp.asarray((1.0 - covered).astype(ft)) * fill_v
    acc = acc.reshape(*x.shape[:-2], oh, ow)
    return cast_like(acc, xp, x.dtype)
