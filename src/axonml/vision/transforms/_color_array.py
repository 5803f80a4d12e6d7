"""Colour operations, blur, erasing and dtype conversion on ``(..., C, H, W)`` arrays.

Formulas (torchvision's, on values in ``[0, bound]``; bound = 1 for float images,
the dtype maximum for integer ones; integer results are rounded to nearest):

- grayscale (ITU-R 601-2 luma): ``L = 0.299 R + 0.587 G + 0.114 B``
- blend(a, b, r) = ``clip(r * a + (1 - r) * b, 0, bound)``
- brightness f: blend(img, 0, f); contrast f: blend(img, mean(grayscale(img)), f);
  saturation f: blend(img, grayscale(img), f)
- hue h: RGB -> HSV, ``H = (H + h) mod 1``, HSV -> RGB
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._kinds import cast_like, float_dtype_for, max_value

LUMA = (0.299, 0.587, 0.114)


def _channels(x: Any, op: str, allowed: tuple[int, ...]) -> int:
    c = int(x.shape[-3])
    if c not in allowed:
        raise ValueError(f"{op}: expected an image with {' or '.join(map(str, allowed))} channels, got {c} "
                         f"(shape {tuple(x.shape)})")
    return c


def _luma(xf: Any) -> Any:
    """(..., 1, H, W) float luma of a float (..., 3, H, W) image."""
    return LUMA[0] * xf[..., 0:1, :, :] + LUMA[1] * xf[..., 1:2, :, :] + LUMA[2] * xf[..., 2:3, :, :]


def grayscale(x: Any, xp: Any, num_output_channels: int = 1) -> Any:
    """The luma of an RGB image with 1 or 3 (identical) channels; a 1-channel image passes through."""
    if num_output_channels not in (1, 3):
        raise ValueError(f"grayscale: num_output_channels must be 1 or 3, got {num_output_channels}")
    c = _channels(x, "grayscale", (1, 3))
    gray = x if c == 1 else cast_like(_luma(x.astype(float_dtype_for(x.dtype))), xp, x.dtype)
    if num_output_channels == 3:
        return xp.concatenate([gray, gray, gray], axis=-3)
    return gray.copy() if c == 1 else gray


def blend(a: Any, b: Any, ratio: float, xp: Any, dtype: Any) -> Any:
    """``clip(ratio * a + (1 - ratio) * b, 0, bound)`` in ``dtype`` (a and b are float arrays)."""
    out = xp.clip(ratio * a + (1.0 - ratio) * b, 0.0, max_value(dtype))
    return cast_like(out, xp, dtype)


def _check_factor(factor: float, op: str) -> float:
    factor = float(factor)
    if factor < 0:
        raise ValueError(f"{op}: the factor must be non-negative, got {factor}")
    return factor


def adjust_brightness(x: Any, xp: Any, factor: float) -> Any:
    """Brightness scaled by ``factor`` (0 gives black, 1 the original)."""
    factor = _check_factor(factor, "adjust_brightness")
    _channels(x, "adjust_brightness", (1, 3))
    return blend(x.astype(float_dtype_for(x.dtype)), 0.0, factor, xp, x.dtype)


def adjust_contrast(x: Any, xp: Any, factor: float) -> Any:
    """Contrast scaled by ``factor`` around the mean luma (0 gives a uniform gray image)."""
    factor = _check_factor(factor, "adjust_contrast")
    c = _channels(x, "adjust_contrast", (1, 3))
    xf = x.astype(float_dtype_for(x.dtype))
    gray = xf if c == 1 else _luma(xf)
    mean = gray.mean(axis=(-3, -2, -1), keepdims=True)
    return blend(xf, mean, factor, xp, x.dtype)


def adjust_saturation(x: Any, xp: Any, factor: float) -> Any:
    """Saturation scaled by ``factor`` (0 gives the grayscale image); 1-channel images pass through."""
    factor = _check_factor(factor, "adjust_saturation")
    if _channels(x, "adjust_saturation", (1, 3)) == 1:
        return x.copy()
    xf = x.astype(float_dtype_for(x.dtype))
    return blend(xf, _luma(xf), factor, xp, x.dtype)


def rgb_to_hsv(rgb: Any, xp: Any) -> Any:
    """(..., 3, H, W) RGB in [0, 1] -> HSV in [0, 1] (the hexcone model of ``colorsys``)."""
    r, g, b = rgb[..., 0, :, :], rgb[..., 1, :, :], rgb[..., 2, :, :]
    maxc = xp.maximum(xp.maximum(r, g), b)
    minc = xp.minimum(xp.minimum(r, g), b)
    delta = maxc - minc
    gray = delta == 0
    safe = xp.where(gray, 1.0, delta)
    s = xp.where(maxc > 0, delta / xp.where(maxc > 0, maxc, 1.0), 0.0)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = xp.where(maxc == r, bc - gc, xp.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = h / 6.0
    h = xp.where(gray, 0.0, h - xp.floor(h))  # mod 1
    return xp.stack([h, s, maxc], axis=-3).astype(rgb.dtype, copy=False)


def hsv_to_rgb(hsv: Any, xp: Any) -> Any:
    """(..., 3, H, W) HSV in [0, 1] -> RGB in [0, 1].

    Closed form of the hexcone model: channel n (R: 5, G: 3, B: 1) is
    ``v - v * s * clip(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 h) mod 6``.
    """
    h6 = hsv[..., 0:1, :, :] * 6.0
    s, v = hsv[..., 1:2, :, :], hsv[..., 2:3, :, :]
    n = xp.asarray(np.array([5.0, 3.0, 1.0], dtype=hsv.dtype).reshape(3, 1, 1))
    k = n + h6  # (..., 3, H, W), in [1, 11) for h in [0, 1)
    k = k - 6.0 * (k >= 6.0)  # mod 6 (xp.mod is several times slower)
    return v - v * s * xp.clip(xp.minimum(k, 4.0 - k), 0.0, 1.0)


def adjust_hue(x: Any, xp: Any, hue_factor: float) -> Any:
    """Hue rotated by ``hue_factor`` turns (in [-0.5, 0.5]); 1-channel images pass through."""
    if not -0.5 <= float(hue_factor) <= 0.5:
        raise ValueError(f"adjust_hue: hue_factor must be in [-0.5, 0.5], got {hue_factor}")
    if _channels(x, "adjust_hue", (1, 3)) == 1:
        return x.copy()
    bound = max_value(x.dtype)
    xf = x.astype(float_dtype_for(x.dtype)) / bound
    hsv = rgb_to_hsv(xf, xp)
    hue = hsv[..., 0, :, :] + float(hue_factor)
    hsv[..., 0, :, :] = hue - xp.floor(hue)  # mod 1
    return cast_like(hsv_to_rgb(hsv, xp) * bound, xp, x.dtype)


def gaussian_kernel1d(size: int, sigma: float) -> np.ndarray:
    """The normalized 1-D Gaussian of ``size`` taps (odd) and standard deviation ``sigma``."""
    half = (size - 1) * 0.5
    k = np.exp(-0.5 * ((np.arange(size) - half) / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: Any, xp: Any, kernel_size: Sequence[int], sigma: Sequence[float]) -> Any:
    """Separable Gaussian blur, kernel ``(kx, ky)`` and sigma ``(sx, sy)``, reflect padding at the borders."""
    kx, ky = (int(k) for k in kernel_size)
    ft = float_dtype_for(x.dtype)
    out = x.astype(ft)
    for axis, size, s in ((-1, kx, sigma[0]), (-2, ky, sigma[1])):
        weights = gaussian_kernel1d(size, float(s)).astype(ft)
        half = size // 2
        widths = [(0, 0)] * out.ndim
        widths[axis] = (half, half)
        padded = xp.pad(out, widths, mode="reflect")
        n = out.shape[axis]
        acc = xp.zeros_like(out)
        for k in range(size):
            window = padded[..., k : k + n] if axis == -1 else padded[..., k : k + n, :]
            acc += weights[k] * window
        out = acc
    return cast_like(out, xp, x.dtype)


def erase(x: Any, xp: Any, i: int, j: int, h: int, w: int, value: Any, inplace: bool = False) -> Any:
    """``x`` with the window (i, j, h, w) set to ``value`` (a number, or an array broadcasting to (C, h, w))."""
    out = x if inplace else x.copy()
    v = value if hasattr(value, "shape") else np.asarray(value)
    out[..., i : i + h, j : j + w] = cast_like(xp.asarray(v, dtype=np.float64), xp, x.dtype)
    return out


def convert_dtype(x: Any, xp: Any, dtype: Any) -> Any:
    """torchvision's ``convert_image_dtype`` rules: floats are in [0, 1], integers in [0, max]."""
    src, dst = np.dtype(x.dtype), np.dtype(dtype)
    src_int, dst_int = src.kind in "iu", dst.kind in "iu"
    if src == dst:
        return x.copy()
    if not src_int and not dst_int:
        return x.astype(dst)
    if not src_int:
        if (src == np.float32 and dst in (np.int32, np.int64)) or (src == np.float64 and dst == np.int64):
            raise TypeError(f"convert_image_dtype: {src} -> {dst} cannot be done safely (too few mantissa bits)")
        eps = 1e-3  # keeps 1.0 from landing on max + 1 before truncation
        top = float(np.iinfo(dst).max)
        return (x.astype(np.float64) * (top + 1.0 - eps)).astype(dst)
    top_src = float(np.iinfo(src).max)
    if not dst_int:
        return (x.astype(dst) / dst.type(top_src)).astype(dst)
    top_dst = int(np.iinfo(dst).max)
    if int(top_src) > top_dst:
        factor = (int(top_src) + 1) // (top_dst + 1)
        return (x // factor).astype(dst)
    factor = (top_dst + 1) // (int(top_src) + 1)
    return x.astype(dst) * dst.type(factor)
