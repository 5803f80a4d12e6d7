"""The same operations on PIL images, done by Pillow itself (as torchvision does).

Pillow is imported lazily so ``import axonml`` never needs it. Padding with the
edge/reflect/symmetric modes and Gaussian blur go through NumPy (Pillow has neither).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._kinds import InterpolationMode, pil_image

_RESIZE_FILTERS = {
    InterpolationMode.NEAREST: "NEAREST",
    InterpolationMode.NEAREST_EXACT: "NEAREST",  # Pillow's nearest samples pixel centres already
    InterpolationMode.BILINEAR: "BILINEAR",
    InterpolationMode.BICUBIC: "BICUBIC",
    InterpolationMode.BOX: "BOX",
    InterpolationMode.HAMMING: "HAMMING",
    InterpolationMode.LANCZOS: "LANCZOS",
}
_WARP_FILTERS = ("NEAREST", "BILINEAR", "BICUBIC")


def _resampling(mode: InterpolationMode, warp: bool, op: str) -> Any:
    name = _RESIZE_FILTERS[mode]
    if warp and name not in _WARP_FILTERS:
        raise ValueError(f"{op}: interpolation {mode.value!r} is not supported (nearest, bilinear, bicubic)")
    return getattr(pil_image().Resampling, name)


def fill_color(img: Any, fill: Any, op: str) -> Any:
    """A ``fill`` (None, a number, or one value per band) as the colour Pillow expects for ``img``."""
    bands = len(img.getbands())
    vals = [0] if fill is None else (list(fill) if isinstance(fill, Sequence) else [fill])
    if len(vals) == 1:
        vals = vals * bands
    if len(vals) != bands:
        raise ValueError(f"{op}: fill has {len(vals)} values but the image has {bands} bands ({img.mode})")
    vals = [float(v) if img.mode == "F" else round(float(v)) for v in vals]
    return tuple(vals) if bands > 1 else vals[0]


def to_array(img: Any) -> np.ndarray:
    """The pixels of ``img`` as an (H, W) or (H, W, C) array (Pillow's own dtype)."""
    return np.asarray(img)


def from_array(arr: np.ndarray, like: Any) -> Any:
    """An image of ``like``'s mode (and palette) holding ``arr``."""
    image = pil_image()
    out = image.fromarray(np.ascontiguousarray(arr))
    if like.mode == "P":
        out.putpalette(like.getpalette())
    elif out.mode != like.mode:
        out = out.convert(like.mode)
    return out


def resize(img: Any, size: tuple[int, int], mode: InterpolationMode) -> Any:
    h, w = size
    return img.resize((w, h), _resampling(mode, False, "resize"))


def crop(img: Any, top: int, left: int, height: int, width: int) -> Any:
    return img.crop((left, top, left + width, top + height))


def pad(img: Any, padding: Sequence[int], fill: Any, mode: Any) -> Any:
    left, top, right, bottom = (int(p) for p in padding)
    if min(left, top, right, bottom) < 0:  # negative padding crops
        w, h = img.size
        img = img.crop((max(-left, 0), max(-top, 0), w - max(-right, 0), h - max(-bottom, 0)))
        left, top, right, bottom = max(left, 0), max(top, 0), max(right, 0), max(bottom, 0)
    if mode == "constant":
        w, h = img.size
        out = pil_image().new(img.mode, (w + left + right, h + top + bottom), fill_color(img, fill, "pad"))
        if img.mode == "P":
            out.putpalette(img.getpalette())
        out.paste(img, (left, top))
        return out
    arr = to_array(img)
    widths = [(top, bottom), (left, right)] + [(0, 0)] * (arr.ndim - 2)
    return from_array(np.pad(arr, widths, mode=mode), img)


def hflip(img: Any) -> Any:
    return img.transpose(pil_image().Transpose.FLIP_LEFT_RIGHT)


def vflip(img: Any) -> Any:
    return img.transpose(pil_image().Transpose.FLIP_TOP_BOTTOM)


def rotate(img: Any, angle: float, mode: InterpolationMode, expand: bool, center: Sequence[float] | None,
           fill: Any) -> Any:
    return img.rotate(angle, _resampling(mode, True, "rotate"), expand=expand,
                      center=None if center is None else tuple(center), fillcolor=fill_color(img, fill, "rotate"))


def affine(img: Any, inverse: np.ndarray, mode: InterpolationMode, fill: Any) -> Any:
    """Pillow's affine transform: ``inverse`` maps output coordinates to input ones (pixel centres at +0.5)."""
    data = tuple(float(v) for v in inverse[:2].ravel())
    return img.transform(img.size, pil_image().Transform.AFFINE, data, _resampling(mode, True, "affine"),
                         fillcolor=fill_color(img, fill, "affine"))


def _enhance(img: Any, kind: str, factor: float) -> Any:
    from PIL import ImageEnhance

    return getattr(ImageEnhance, kind)(img).enhance(factor)


def adjust_brightness(img: Any, factor: float) -> Any:
    return _enhance(img, "Brightness", factor)


def adjust_contrast(img: Any, factor: float) -> Any:
    return _enhance(img, "Contrast", factor)


def adjust_saturation(img: Any, factor: float) -> Any:
    return _enhance(img, "Color", factor)


def adjust_hue(img: Any, hue_factor: float) -> Any:
    """Hue rotated through Pillow's 8-bit HSV (the hue channel wraps around at 256)."""
    if img.mode in ("L", "1", "I", "F", "I;16", "P", "LA"):
        return img.copy()
    image = pil_image()
    alpha = img.getchannel("A") if "A" in img.getbands() else None
    h, s, v = img.convert("RGB").convert("HSV").split()
    shift = round(hue_factor * 255) % 256
    hue = ((np.asarray(h).astype(np.int32) + shift) % 256).astype(np.uint8)
    out = image.merge("HSV", (image.fromarray(hue), s, v)).convert("RGB")
    if alpha is not None:
        out.putalpha(alpha)
    return out.convert(img.mode)


def grayscale(img: Any, num_output_channels: int) -> Any:
    """Pillow's 'L' conversion (ITU-R 601-2 luma), 1 or 3 channels."""
    if num_output_channels not in (1, 3):
        raise ValueError(f"grayscale: num_output_channels must be 1 or 3, got {num_output_channels}")
    gray = img.convert("L")
    if num_output_channels == 3:
        return pil_image().merge("RGB", (gray, gray, gray))
    return gray
