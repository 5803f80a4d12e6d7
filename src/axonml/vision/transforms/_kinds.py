"""The three kinds of image a transform accepts, and the one array layout the array code works on.

- PIL images: handled by Pillow itself (see ``_pil.py``), as torchvision does.
- NumPy arrays in HWC (or HW) layout, any dtype: copied to a contiguous CHW array,
  transformed, and returned in HWC (or HW) layout with the input's dtype.
- axonml Tensors in ``(..., C, H, W)`` (or ``(H, W)``) layout on any device: the raw
  array is transformed with the device's array module (NumPy or CuPy), so a CUDA
  image stays on the GPU. The result is a new tensor that carries no autograd
  history (augmentation is data preparation; ``Normalize`` alone is differentiable).

The array code sees ``(..., C, H, W)`` arrays and an array module ``xp``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import numpy as np

from ...backend import CPU, Device
from ...core.tensor import Tensor


class InterpolationMode(enum.Enum):
    """Interpolation for resizing and warping, as ``torchvision.transforms.InterpolationMode``.

    ``NEAREST`` picks source index ``floor(i * in / out)`` (PyTorch's legacy nearest),
    ``NEAREST_EXACT`` picks ``floor((i + 0.5) * in / out)`` (Pillow's nearest).
    ``BOX``, ``HAMMING`` and ``LANCZOS`` are Pillow's filters (resize only).
    """

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def as_mode(mode: Any) -> InterpolationMode:
    """An InterpolationMode from the enum or its string value (``"bilinear"``)."""
    if isinstance(mode, InterpolationMode):
        return mode
    if isinstance(mode, str):
        try:
            return InterpolationMode(mode.lower())
        except ValueError:
            pass
    names = ", ".join(m.value for m in InterpolationMode)
    raise ValueError(f"unknown interpolation {mode!r}: expected an InterpolationMode or one of {names}")


def is_pil(img: Any) -> bool:
    """Whether ``img`` is a PIL image (without importing Pillow when it is not loaded)."""
    import sys

    image_mod = sys.modules.get("PIL.Image")
    return image_mod is not None and isinstance(img, image_mod.Image)


def pil_image() -> Any:
    """The ``PIL.Image`` module, or a clear error when Pillow is missing."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow is in the vision extra
        raise ImportError("this transform needs Pillow: pip install 'axonml[vision]'") from exc
    return Image


def describe(img: Any) -> str:
    """A short description of an image for error messages."""
    if is_pil(img):
        return f"PIL image mode={img.mode} size={img.size}"
    if isinstance(img, Tensor):
        return f"Tensor shape={tuple(img.shape)} dtype={img.dtype}"
    if isinstance(img, np.ndarray):
        return f"ndarray shape={img.shape} dtype={img.dtype}"
    return type(img).__name__


class ArrayImage:
    """A non-PIL image seen as a ``(..., C, H, W)`` array ``data`` with its module ``xp``.

    ``wrap(out)`` turns a result array (same layout) back into the caller's kind.
    """

    __slots__ = ("data", "xp", "_kind", "_squeeze", "_device")

    def __init__(self, img: Any, op: str) -> None:
        if isinstance(img, Tensor):
            if img.ndim < 2:
                raise ValueError(f"{op}: a tensor image needs shape (..., C, H, W) or (H, W), got {describe(img)}")
            self._kind, self._device = "tensor", img._device
            self.xp = img._device.xp
            self._squeeze = img.ndim == 2
            self.data = img._data[None] if self._squeeze else img._data
        elif isinstance(img, np.ndarray):
            if img.ndim not in (2, 3):
                raise ValueError(f"{op}: an ndarray image needs shape (H, W) or (H, W, C), got {describe(img)}")
            self._kind, self._device, self.xp = "ndarray", CPU, np
            self._squeeze = img.ndim == 2
            # a contiguous (C, H, W) copy: every op after it runs on unit-stride planes
            self.data = img[None] if self._squeeze else np.ascontiguousarray(np.moveaxis(img, -1, 0))
        else:
            raise TypeError(f"{op}: expected a PIL image, an ndarray (H, W, C) or a Tensor (..., C, H, W), "
                            f"got {describe(img)}")

    @property
    def device(self) -> Device:
        return self._device

    def wrap(self, out: Any) -> Any:
        """The result array (..., C, H, W) in the caller's kind and layout."""
        if self._squeeze:
            out = out[0]
        if self._kind == "ndarray":
            return np.ascontiguousarray(out if self._squeeze else np.moveaxis(out, 0, -1))
        return Tensor._make(self.xp.ascontiguousarray(out), self._device)


def apply_array(img: Any, op: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(data, xp, *args, **kwargs)`` on a non-PIL image and return the caller's kind."""
    view = ArrayImage(img, op)
    return view.wrap(fn(view.data, view.xp, *args, **kwargs))


def get_dimensions(img: Any) -> list[int]:
    """``[channels, height, width]`` of a PIL image, an HWC ndarray or a CHW tensor."""
    if is_pil(img):
        return [len(img.getbands()), img.size[1], img.size[0]]
    if isinstance(img, Tensor | np.ndarray):
        view = ArrayImage(img, "get_dimensions")
        c, h, w = view.data.shape[-3:]
        return [int(c), int(h), int(w)]
    raise TypeError(f"get_dimensions: expected a PIL image, an ndarray or a Tensor, got {describe(img)}")


def float_dtype_for(dtype: Any) -> Any:
    """The float dtype the array code computes in: float64 stays, everything else uses float32."""
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


def max_value(dtype: Any) -> float:
    """The brightest value of an image dtype: 1.0 for floats, the integer maximum otherwise."""
    d = np.dtype(dtype)
    return float(np.iinfo(d).max) if d.kind in "iu" else 1.0


def cast_like(x: Any, xp: Any, dtype: Any) -> Any:
    """A float result back in ``dtype``: integers are rounded (half to even) and clipped to their range."""
    d = np.dtype(dtype)
    if d.kind in "iu":
        info = np.iinfo(d)
        return xp.clip(xp.rint(x), info.min, info.max).astype(d)
    if d.kind == "b":
        return x > 0.5
    return x.astype(d, copy=False)


def channel_values(value: Any, channels: int, xp: Any, dtype: Any, op: str) -> Any:
    """A fill value (a number or one per channel) as a ``(C, 1, 1)`` array of ``dtype``."""
    vals = np.atleast_1d(np.asarray(value, dtype=np.float64)).ravel()
    if vals.size == 1:
        vals = np.repeat(vals, channels)
    if vals.size != channels:
        raise ValueError(f"{op}: fill has {vals.size} values but the image has {channels} channels")
    return cast_like(xp.asarray(vals.reshape(channels, 1, 1)), xp, dtype)
