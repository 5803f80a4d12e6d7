"""Conversions between PIL images, HWC arrays and CHW tensors; dtype conversion; normalization."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...backend import CPU
from ...core import dtypes
from ...core.tensor import Tensor
from ...errors import DTypeError
from ._color_array import convert_dtype
from ._kinds import apply_array, describe, is_pil, pil_image

# Pillow modes a tensor or an array can become: mode -> (channels, dtype of the pixels)
_MODES: dict[str, tuple[int, Any]] = {
    "1": (1, np.bool_), "L": (1, np.uint8), "P": (1, np.uint8), "I": (1, np.int32), "I;16": (1, np.uint16),
    "F": (1, np.float32), "LA": (2, np.uint8), "RGB": (3, np.uint8), "YCbCr": (3, np.uint8),
    "HSV": (3, np.uint8), "LAB": (3, np.uint8), "RGBA": (4, np.uint8), "CMYK": (4, np.uint8), "RGBX": (4, np.uint8),
}
_DEFAULT_MODE = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
_SINGLE_BAND = {np.dtype(np.uint8): "L", np.dtype(np.int16): "I;16", np.dtype(np.uint16): "I;16",
                np.dtype(np.int32): "I", np.dtype(np.float32): "F", np.dtype(np.bool_): "1"}


def _pil_pixels(pic: Any) -> np.ndarray:
    """An (H, W, C) array of a PIL image's pixels; 16-bit images widen to int32 (no uint16 tensors)."""
    arr = np.asarray(pic)
    if pic.mode == "1":
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16 or arr.dtype.byteorder == ">":
        arr = arr.astype(np.int32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def pil_to_tensor(pic: Any) -> Tensor:
    """A PIL image as a (C, H, W) tensor of its own pixel type (uint8 for 8-bit modes), not rescaled."""
    if not is_pil(pic):
        raise TypeError(f"pil_to_tensor: expected a PIL image, got {describe(pic)}")
    arr = np.asarray(pic)
    if arr.dtype == np.uint16 or arr.dtype.byteorder == ">":
        arr = arr.astype(np.int32)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return Tensor._make(np.ascontiguousarray(arr.transpose(2, 0, 1)), CPU)


def to_tensor(pic: Any) -> Tensor:
    """A PIL image or an (H, W[, C]) array as a (C, H, W) tensor; uint8 is scaled to float in [0, 1]
    (the default float dtype), other dtypes keep their values. Mode '1' images become 0/1 floats."""
    if is_pil(pic):
        arr = _pil_pixels(pic)
    elif isinstance(pic, np.ndarray):
        if pic.ndim not in (2, 3):
            raise ValueError(f"to_tensor: expected an (H, W) or (H, W, C) array, got {describe(pic)}")
        arr = pic[:, :, None] if pic.ndim == 2 else pic
    else:
        raise TypeError(f"to_tensor: expected a PIL image or an ndarray, got {describe(pic)}")
    chw = arr.transpose(2, 0, 1)
    if chw.dtype == np.uint8:
        ft = dtypes.get_default_dtype().np
        return Tensor._make((chw.astype(ft) / ft.type(255)).astype(ft), CPU)
    return Tensor._make(np.ascontiguousarray(chw), CPU)


def to_pil_image(pic: Any, mode: str | None = None) -> Any:
    """A (C, H, W) tensor or an (H, W[, C]) array as a PIL image.

    Float data (in [0, 1]) is scaled by 255 and rounded to uint8 unless ``mode='F'``; ``mode`` defaults
    from the channel count and dtype (L, LA, RGB, RGBA; I;16, I, F for one-channel 16/32-bit data).
    """
    if isinstance(pic, Tensor):
        if pic.ndim not in (2, 3):
            raise ValueError(f"to_pil_image: expected a (C, H, W) or (H, W) tensor, got {describe(pic)}")
        arr = np.asarray(pic.detach()._host())
        arr = arr[:, :, None] if arr.ndim == 2 else arr.transpose(1, 2, 0)
    elif isinstance(pic, np.ndarray):
        if pic.ndim not in (2, 3):
            raise ValueError(f"to_pil_image: expected an (H, W) or (H, W, C) array, got {describe(pic)}")
        arr = pic[:, :, None] if pic.ndim == 2 else pic
    else:
        raise TypeError(f"to_pil_image: expected a Tensor or an ndarray, got {describe(pic)}")
    channels = arr.shape[2]
    if arr.dtype.kind == "f" and mode != "F":
        arr = np.clip(np.rint(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if mode is None:
        mode = _SINGLE_BAND.get(arr.dtype) if channels == 1 else _DEFAULT_MODE.get(channels)
        if mode is None or (channels > 1 and arr.dtype != np.uint8):
            raise TypeError(f"to_pil_image: no PIL mode for {channels} channels of {arr.dtype}; pass mode=")
    if mode not in _MODES:
        raise ValueError(f"to_pil_image: unsupported mode {mode!r}; supported: {sorted(_MODES)}")
    want_c, want_dtype = _MODES[mode]
    if channels != want_c:
        raise ValueError(f"to_pil_image: mode {mode} needs {want_c} channels, got {channels}")
    want = np.dtype(want_dtype)
    # int16 -> I;16 and uint8 -> 1 are accepted as torchvision does; otherwise the cast must be lossless
    if not (np.can_cast(arr.dtype, want, "safe") or (mode, arr.dtype) in (("I;16", np.int16), ("1", np.uint8))):
        raise TypeError(f"to_pil_image: {arr.dtype} data does not fit mode {mode} ({want})")
    data = np.ascontiguousarray(arr[:, :, 0] if want_c == 1 else arr).astype(want_dtype)
    h, w = data.shape[:2]
    raw = np.packbits(data, axis=1) if mode == "1" else data
    rawmode = "I;16" if mode == "I;16" else None
    image = pil_image()
    if rawmode is None:
        return image.frombytes(mode, (w, h), raw.tobytes())
    return image.frombytes(mode, (w, h), raw.astype("<u2").tobytes(), "raw", rawmode)


def convert_image_dtype(image: Any, dtype: Any = None) -> Any:
    """Convert a tensor (or an array) to ``dtype``, rescaling between the ranges [0, 1] (floats) and
    [0, max] (integers): uint8 255 -> float 1.0 -> uint8 255. Float -> int32/int64 (and float64 -> int64)
    is refused: the mantissa cannot hold every integer."""
    d = dtypes.float32 if dtype is None else dtypes.as_dtype(dtype)
    if is_pil(image):
        raise TypeError("convert_image_dtype: expected a Tensor or an ndarray, got a PIL image")
    return apply_array(image, "convert_image_dtype", convert_dtype, d.np)


def _stats(values: Sequence[float] | float, channels: int, name: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64)).ravel()
    if arr.size not in (1, channels):
        raise ValueError(f"normalize: {name} has {arr.size} values but the image has {channels} channels")
    return arr


def normalize(tensor: Any, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> Any:
    """``(x - mean) / std`` per channel of a float (..., C, H, W) tensor (or an HWC float array).

    On tensors it is written with tensor ops, so it is differentiable and runs on the tensor's device.
    """
    if isinstance(tensor, Tensor):
        if not tensor.dtype.is_floating_point:
            raise DTypeError(f"normalize: expected a floating point tensor, got {tensor.dtype} "
                             "(convert it with to_tensor or convert_image_dtype first)")
        if tensor.ndim < 3:
            raise ValueError(f"normalize: expected a (..., C, H, W) tensor, got {describe(tensor)}")
        c = int(tensor.shape[-3])
        m, s = _stats(mean, c, "mean"), _stats(std, c, "std")
        if np.any(s == 0):
            raise ValueError(f"normalize: std {tuple(s)} contains a zero, which would divide by zero")
        xp, dev = tensor._device.xp, tensor._device
        mt = Tensor._make(xp.asarray(m.reshape(-1, 1, 1).astype(tensor.dtype.np)), dev)
        st = Tensor._make(xp.asarray(s.reshape(-1, 1, 1).astype(tensor.dtype.np)), dev)
        if inplace:
            return tensor.sub_(mt).div_(st)
        return (tensor - mt) / st
    if isinstance(tensor, np.ndarray):
        if tensor.dtype.kind != "f" or tensor.ndim != 3:
            raise DTypeError(f"normalize: expected a float (H, W, C) array, got {describe(tensor)}")
        c = tensor.shape[-1]
        m, s = _stats(mean, c, "mean"), _stats(std, c, "std")
        if np.any(s == 0):
            raise ValueError(f"normalize: std {tuple(s)} contains a zero, which would divide by zero")
        m, s = m.astype(tensor.dtype), s.astype(tensor.dtype)
        if inplace:
            tensor -= m
            tensor /= s
            return tensor
        return (tensor - m) / s
    raise TypeError(f"normalize: expected a Tensor or a float ndarray, got {describe(tensor)}")
