"""Functional transforms, as ``torchvision.transforms.functional``.

Each function takes a PIL image, an HWC/HW NumPy array or a ``(..., C, H, W)``
Tensor and returns the same kind. PIL images are handled by Pillow (resize,
rotate, affine, enhance, convert), arrays and tensors by one NumPy/CuPy
implementation (``_geom_array``, ``_color_array``) on the image's own device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...core.tensor import Tensor
from . import _color_array as C
from . import _geom_array as G
from . import _pil as P
from ._convert import convert_image_dtype, normalize, pil_to_tensor, to_pil_image, to_tensor
from ._kinds import (
    ArrayImage,
    InterpolationMode,
    apply_array,
    as_mode,
    cast_like,
    describe,
    get_dimensions,
    is_pil,
)

__all__ = [
    "InterpolationMode", "get_dimensions", "to_tensor", "pil_to_tensor", "to_pil_image", "convert_image_dtype",
    "normalize", "resize", "crop", "center_crop", "resized_crop", "pad", "hflip", "vflip", "rotate", "affine",
    "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue", "rgb_to_grayscale",
    "to_grayscale", "gaussian_blur", "erase",
]

PADDING_MODES = ("constant", "edge", "reflect", "symmetric")


def size_pair(value: Any, name: str, op: str) -> tuple[int, int]:
    """An int or a sequence of one or two ints as (first, second)."""
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    if isinstance(value, Sequence) and len(value) in (1, 2):
        vals = [int(v) for v in value]
        return (vals[0], vals[0]) if len(vals) == 1 else (vals[0], vals[1])
    raise ValueError(f"{op}: {name} must be an int or a sequence of 1 or 2 ints, got {value!r}")


def resized_output_size(height: int, width: int, size: Any, max_size: int | None) -> tuple[int, int]:
    """(h, w) that ``resize`` produces: an int (or 1-sequence) sets the shorter edge, keeping the aspect
    ratio, with the longer edge capped at ``max_size``; a pair is (h, w) exactly."""
    if isinstance(size, Sequence) and len(size) == 2:
        if max_size is not None:
            raise ValueError("resize: max_size is only allowed when size is a single int")
        return int(size[0]), int(size[1])
    short_req = size_pair(size, "size", "resize")[0]
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = short_req, int(short_req * long / short)
    if max_size is not None:
        if max_size <= short_req:
            raise ValueError(f"resize: max_size ({max_size}) must be greater than the requested size ({short_req})")
        if new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_long, new_short) if width <= height else (new_short, new_long)


def resize(img: Any, size: Any, interpolation: Any = InterpolationMode.BILINEAR, max_size: int | None = None,
           antialias: bool = True) -> Any:
    """Resize to ``size``: an int scales the shorter edge to it, ``(h, w)`` gives the size exactly.

    ``antialias`` widens bilinear/bicubic filters when downscaling (Pillow's resampling, the default);
    with ``antialias=False`` arrays and tensors follow ``interpolate(align_corners=False)``.
    PIL images always use Pillow's resize (antialiased).
    """
    mode = as_mode(interpolation)
    _, h, w = get_dimensions(img)
    out_size = resized_output_size(h, w, size, max_size)
    if min(out_size) <= 0:
        raise ValueError(f"resize: the output size {out_size} of {describe(img)} must be positive")
    if is_pil(img):
        return P.resize(img, out_size, mode)
    return apply_array(img, "resize", G.resize, out_size, mode, antialias)


def crop(img: Any, top: int, left: int, height: int, width: int) -> Any:
    """The window at (top, left) of (height, width); parts outside the image are zero (black)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"crop: height and width must be positive, got ({height}, {width})")
    if is_pil(img):
        return P.crop(img, top, left, height, width)
    return apply_array(img, "crop", G.crop, int(top), int(left), int(height), int(width))


def center_crop(img: Any, output_size: Any) -> Any:
    """The centred (h, w) window; an image smaller than the window is padded with zeros around it."""
    ch, cw = size_pair(output_size, "output_size", "center_crop")
    _, h, w = get_dimensions(img)
    top = -((ch - h) // 2) if ch > h else round((h - ch) / 2.0)
    left = -((cw - w) // 2) if cw > w else round((w - cw) / 2.0)
    return crop(img, top, left, ch, cw)


def resized_crop(img: Any, top: int, left: int, height: int, width: int, size: Any,
                 interpolation: Any = InterpolationMode.BILINEAR, antialias: bool = True) -> Any:
    """``crop`` then ``resize`` to ``size``."""
    return resize(crop(img, top, left, height, width), size, interpolation, antialias=antialias)


def parse_padding(padding: Any, op: str = "pad") -> tuple[int, int, int, int]:
    """An int, (left/right, top/bottom) or (left, top, right, bottom) as (left, top, right, bottom)."""
    if isinstance(padding, int | np.integer):
        p = int(padding)
        return p, p, p, p
    if isinstance(padding, Sequence) and len(padding) in (1, 2, 4):
        vals = [int(v) for v in padding]
        if len(vals) == 1:
            return vals[0], vals[0], vals[0], vals[0]
        if len(vals) == 2:
            return vals[0], vals[1], vals[0], vals[1]
        return vals[0], vals[1], vals[2], vals[3]
    raise ValueError(f"{op}: padding must be an int or a sequence of 1, 2 or 4 ints, got {padding!r}")


def pad(img: Any, padding: Any, fill: Any = 0, padding_mode: str = "constant") -> Any:
    """Pad the borders: ``constant`` (with ``fill``), ``edge``, ``reflect`` (no edge repeat) or
    ``symmetric`` (edge repeated), the modes of ``numpy.pad``. Negative padding crops."""
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"pad: padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    ltrb = parse_padding(padding)
    if is_pil(img):
        return P.pad(img, ltrb, fill, padding_mode)
    return apply_array(img, "pad", G.pad, ltrb, fill, padding_mode)


def hflip(img: Any) -> Any:
    """Mirror left-right."""
    if is_pil(img):
        return P.hflip(img)
    return apply_array(img, "hflip", lambda x, xp: x[..., ::-1])


def vflip(img: Any) -> Any:
    """Mirror top-bottom."""
    if is_pil(img):
        return P.vflip(img)
    return apply_array(img, "vflip", lambda x, xp: x[..., ::-1, :])


def _center(center: Sequence[float] | None, h: int, w: int) -> tuple[float, float]:
    if center is None:
        return w * 0.5, h * 0.5
    if len(center) != 2:
        raise ValueError(f"center must be (x, y), got {center!r}")
    return float(center[0]), float(center[1])


def rotate(img: Any, angle: float, interpolation: Any = InterpolationMode.NEAREST, expand: bool = False,
           center: Sequence[float] | None = None, fill: Any = None) -> Any:
    """Rotate counter-clockwise by ``angle`` degrees about ``center`` (x, y; default the image centre).

    ``expand`` grows the canvas to hold the whole rotated image (Pillow's rule: it assumes rotation about
    the centre); uncovered pixels take ``fill`` (default 0).
    """
    mode = as_mode(interpolation)
    if is_pil(img):
        return P.rotate(img, float(angle), mode, expand, center, fill)
    view = ArrayImage(img, "rotate")
    h, w = view.data.shape[-2:]
    # the inverse map (output -> input) of a counter-clockwise turn is a clockwise one
    inverse = G.affine_forward(float(angle), (0.0, 0.0), 1.0, (0.0, 0.0), _center(center, h, w))
    oh, ow = G.expanded_size(inverse, h, w) if expand else (h, w)
    shift = np.eye(3)
    shift[:2, 2] = [-(ow - w) / 2.0, -(oh - h) / 2.0]
    return view.wrap(G.warp(view.data, view.xp, inverse @ shift, (oh, ow), mode, fill))


def affine_inverse(angle: float, translate: Sequence[float], scale: float, shear: Any,
                   center: tuple[float, float]) -> np.ndarray:
    """The 3x3 output -> input map of ``affine`` (see :func:`affine`)."""
    if scale <= 0:
        raise ValueError(f"affine: scale must be positive, got {scale}")
    if len(translate) != 2:
        raise ValueError(f"affine: translate must be (tx, ty), got {translate!r}")
    if isinstance(shear, int | float | np.number):
        shear = (float(shear), 0.0)
    shear = [float(s) for s in shear]
    if len(shear) == 1:
        shear = [shear[0], 0.0]
    if len(shear) != 2:
        raise ValueError(f"affine: shear must be a number or (sx, sy), got {shear!r}")
    forward = G.affine_forward(float(angle), [float(t) for t in translate], float(scale), shear, center)
    return np.linalg.inv(forward)


def affine(img: Any, angle: float, translate: Sequence[float], scale: float, shear: Any,
           interpolation: Any = InterpolationMode.NEAREST, fill: Any = None,
           center: Sequence[float] | None = None) -> Any:
    """Affine warp about ``center`` (default the image centre): rotate clockwise by ``angle`` degrees,
    scale, shear by ``shear`` degrees (x, y), then translate by ``translate`` pixels (as torchvision)."""
    mode = as_mode(interpolation)
    _, h, w = get_dimensions(img)
    inverse = affine_inverse(angle, translate, scale, shear, _center(center, h, w))
    if is_pil(img):
        return P.affine(img, inverse, mode, fill)
    return apply_array(img, "affine", G.warp, inverse, (h, w), mode, fill)


def _color_op(img: Any, name: str, factor: float) -> Any:
    if is_pil(img):
        if name != "adjust_hue" and factor < 0:
            raise ValueError(f"{name}: the factor must be non-negative, got {factor}")
        if name == "adjust_hue" and not -0.5 <= factor <= 0.5:
            raise ValueError(f"adjust_hue: hue_factor must be in [-0.5, 0.5], got {factor}")
        return getattr(P, name)(img, float(factor))
    return apply_array(img, name, getattr(C, name), float(factor))


def adjust_brightness(img: Any, brightness_factor: float) -> Any:
    """Multiply by ``brightness_factor`` (clipped to the valid range)."""
    return _color_op(img, "adjust_brightness", brightness_factor)


def adjust_contrast(img: Any, contrast_factor: float) -> Any:
    """Blend with the mean luma: 0 gives a uniform gray image, 1 the original."""
    return _color_op(img, "adjust_contrast", contrast_factor)


def adjust_saturation(img: Any, saturation_factor: float) -> Any:
    """Blend with the grayscale image: 0 gives grayscale, 1 the original, 2 doubles saturation."""
    return _color_op(img, "adjust_saturation", saturation_factor)


def adjust_hue(img: Any, hue_factor: float) -> Any:
    """Rotate the hue by ``hue_factor`` turns, in [-0.5, 0.5]."""
    return _color_op(img, "adjust_hue", hue_factor)


def rgb_to_grayscale(img: Any, num_output_channels: int = 1) -> Any:
    """ITU-R 601-2 luma (0.299 R + 0.587 G + 0.114 B) with 1 or 3 identical channels."""
    if is_pil(img):
        return P.grayscale(img, num_output_channels)
    return apply_array(img, "rgb_to_grayscale", C.grayscale, num_output_channels)


to_grayscale = rgb_to_grayscale


def _blur_params(kernel_size: Any, sigma: Any) -> tuple[tuple[int, int], tuple[float, float]]:
    ks = size_pair(kernel_size, "kernel_size", "gaussian_blur")
    if any(k <= 0 or k % 2 == 0 for k in ks):
        raise ValueError(f"gaussian_blur: kernel_size must be positive and odd, got {kernel_size!r}")
    if sigma is None:
        sig = tuple(0.3 * ((k - 1) * 0.5 - 1) + 0.8 for k in ks)
    elif isinstance(sigma, int | float | np.number):
        sig = (float(sigma), float(sigma))
    elif isinstance(sigma, Sequence) and len(sigma) in (1, 2):
        sig = (float(sigma[0]), float(sigma[-1]))
    else:
        raise ValueError(f"gaussian_blur: sigma must be a number or a pair, got {sigma!r}")
    if min(sig) <= 0:
        raise ValueError(f"gaussian_blur: sigma must be positive, got {sigma!r}")
    return ks, (float(sig[0]), float(sig[1]))


def gaussian_blur(img: Any, kernel_size: Any, sigma: Any = None) -> Any:
    """Blur with a Gaussian of ``kernel_size`` (kx, ky; odd) and ``sigma`` (sx, sy), reflecting at the
    borders. ``sigma=None`` derives it from the kernel size as torchvision does."""
    ks, sig = _blur_params(kernel_size, sigma)
    if is_pil(img):
        arr = P.to_array(img)
        return P.from_array(apply_array(arr, "gaussian_blur", C.gaussian_blur, ks, sig), img)
    return apply_array(img, "gaussian_blur", C.gaussian_blur, ks, sig)


def erase(img: Any, i: int, j: int, h: int, w: int, v: Any, inplace: bool = False) -> Any:
    """Set the window (i, j, h, w) to ``v`` (a number or an array broadcasting to (C, h, w)).

    ``inplace=True`` writes into a tensor's or array's memory (no new image).
    """
    if is_pil(img):
        raise TypeError("erase: expected a Tensor or an ndarray, got a PIL image (convert it with to_tensor first)")
    view = ArrayImage(img, "erase")
    if not inplace:
        return view.wrap(C.erase(view.data, view.xp, i, j, h, w, v))
    if isinstance(img, np.ndarray):  # write through a (C, H, W) view of the caller's array
        C.erase(img[None] if img.ndim == 2 else np.moveaxis(img, -1, 0), np, i, j, h, w, v, inplace=True)
        return img
    # through Tensor.__setitem__: it bumps the version and keeps autograd's rules for in-place writes
    value = cast_like(view.xp.asarray(v, dtype=np.float64), view.xp, view.data.dtype)
    if img.ndim == 2 and value.ndim == 3:  # an (H, W) image: drop the channel axis of the value
        value = value.reshape(value.shape[1:])
    img[..., i : i + h, j : j + w] = Tensor._make(value, view.device)
    return img
