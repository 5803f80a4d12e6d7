"""Geometric transforms: Resize, CenterCrop, Pad, RandomCrop, RandomResizedCrop, flips,
RandomRotation and RandomAffine. Random ones take ``generator=`` (a CPU axonml.Generator;
default: the default generator, seeded by ``axonml.manual_seed``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...core.random import Generator
from . import _rng
from . import functional as F
from ._basic import check_p, fmt
from ._kinds import InterpolationMode, as_mode, get_dimensions


def _size_hw(size: Any, owner: str) -> tuple[int, int]:
    h, w = F.size_pair(size, "size", owner)
    if h <= 0 or w <= 0:
        raise ValueError(f"{owner}: size must be positive, got {size!r}")
    return h, w


def _range(value: Any, name: str, owner: str, center: float = 0.0, low: float | None = None) -> tuple[float, float]:
    """A number v -> (center - v, center + v) (v >= 0); a pair -> itself (ordered)."""
    if isinstance(value, int | float | np.number):
        if value < 0:
            raise ValueError(f"{owner}: {name} must be non-negative when a single number, got {value}")
        lo, hi = center - float(value), center + float(value)
        return (lo if low is None else max(lo, low)), hi
    if isinstance(value, Sequence) and len(value) == 2:
        lo, hi = float(value[0]), float(value[1])
        if lo > hi:
            raise ValueError(f"{owner}: {name} range must be (min, max), got {value!r}")
        return lo, hi
    raise ValueError(f"{owner}: {name} must be a number or a (min, max) pair, got {value!r}")


class Resize:
    """Resize to ``size`` (an int scales the shorter edge, keeping the aspect ratio; (h, w) is exact)."""

    def __init__(self, size: Any, interpolation: Any = InterpolationMode.BILINEAR, max_size: int | None = None,
                 antialias: bool = True) -> None:
        self.size, self.interpolation = size, as_mode(interpolation)
        self.max_size, self.antialias = max_size, antialias

    def __call__(self, img: Any) -> Any:
        return F.resize(img, self.size, self.interpolation, self.max_size, self.antialias)

    def __repr__(self) -> str:
        return fmt(self, size=self.size, interpolation=self.interpolation.value, max_size=self.max_size,
                   antialias=self.antialias)


class CenterCrop:
    """Crop the centre (h, w) window (zero-padding an image that is smaller)."""

    def __init__(self, size: Any) -> None:
        self.size = _size_hw(size, "CenterCrop")

    def __call__(self, img: Any) -> Any:
        return F.center_crop(img, self.size)

    def __repr__(self) -> str:
        return fmt(self, size=self.size)


class Pad:
    """Pad the borders (see ``functional.pad`` for the padding forms and modes)."""

    def __init__(self, padding: Any, fill: Any = 0, padding_mode: str = "constant") -> None:
        F.parse_padding(padding, "Pad")
        if padding_mode not in F.PADDING_MODES:
            raise ValueError(f"Pad: padding_mode must be one of {F.PADDING_MODES}, got {padding_mode!r}")
        self.padding, self.fill, self.padding_mode = padding, fill, padding_mode

    def __call__(self, img: Any) -> Any:
        return F.pad(img, self.padding, self.fill, self.padding_mode)

    def __repr__(self) -> str:
        return fmt(self, padding=self.padding, fill=self.fill, padding_mode=self.padding_mode)


class RandomCrop:
    """Crop a random (h, w) window, after optional ``padding``; ``pad_if_needed`` pads a smaller image
    by the missing amount on both sides first (as torchvision)."""

    def __init__(self, size: Any, padding: Any = None, pad_if_needed: bool = False, fill: Any = 0,
                 padding_mode: str = "constant", *, generator: Generator | None = None) -> None:
        self.size = _size_hw(size, "RandomCrop")
        if padding is not None:
            F.parse_padding(padding, "RandomCrop")
        if padding_mode not in F.PADDING_MODES:
            raise ValueError(f"RandomCrop: padding_mode must be one of {F.PADDING_MODES}, got {padding_mode!r}")
        self.padding, self.pad_if_needed, self.fill, self.padding_mode = padding, pad_if_needed, fill, padding_mode
        self.generator = _rng.check_generator(generator, "RandomCrop")

    @staticmethod
    def get_params(img: Any, output_size: tuple[int, int],
                   generator: Generator | None = None) -> tuple[int, int, int, int]:
        """(top, left, h, w) of a random window of ``output_size`` inside ``img``."""
        _, h, w = get_dimensions(img)
        th, tw = output_size
        if h < th or w < tw:
            raise ValueError(f"RandomCrop: crop size {(th, tw)} is larger than the image size {(h, w)}")
        if (h, w) == (th, tw):
            return 0, 0, h, w
        return _rng.integer(0, h - th + 1, generator), _rng.integer(0, w - tw + 1, generator), th, tw

    def __call__(self, img: Any) -> Any:
        if self.padding is not None:
            img = F.pad(img, self.padding, self.fill, self.padding_mode)
        _, h, w = get_dimensions(img)
        th, tw = self.size
        if self.pad_if_needed and w < tw:
            img = F.pad(img, [tw - w, 0], self.fill, self.padding_mode)
        if self.pad_if_needed and h < th:
            img = F.pad(img, [0, th - h], self.fill, self.padding_mode)
        return F.crop(img, *self.get_params(img, self.size, self.generator))

    def __repr__(self) -> str:
        return fmt(self, size=self.size, padding=self.padding, pad_if_needed=self.pad_if_needed, fill=self.fill,
                   padding_mode=self.padding_mode)


class RandomResizedCrop:
    """Crop a random window of ``scale`` (fraction of the area) and aspect ``ratio``, resized to ``size``."""

    def __init__(self, size: Any, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
                 interpolation: Any = InterpolationMode.BILINEAR, antialias: bool = True, *,
                 generator: Generator | None = None) -> None:
        self.size = _size_hw(size, "RandomResizedCrop")
        if scale[0] > scale[1] or ratio[0] > ratio[1] or scale[0] <= 0 or ratio[0] <= 0:
            raise ValueError(f"RandomResizedCrop: scale and ratio must be positive (min, max), got {scale}, {ratio}")
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.interpolation, self.antialias = as_mode(interpolation), antialias
        self.generator = _rng.check_generator(generator, "RandomResizedCrop")

    @staticmethod
    def get_params(img: Any, scale: Sequence[float], ratio: Sequence[float],
                   generator: Generator | None = None) -> tuple[int, int, int, int]:
        """(top, left, h, w): ten tries at a random area and log-uniform aspect, else the centre crop
        with the aspect clamped into ``ratio``."""
        _, height, width = get_dimensions(img)
        area = height * width
        log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
        for _ in range(10):
            target_area = area * _rng.uniform(scale[0], scale[1], generator)
            aspect = math.exp(_rng.uniform(log_lo, log_hi, generator))
            w = round(math.sqrt(target_area * aspect))
            h = round(math.sqrt(target_area / aspect))
            if 0 < w <= width and 0 < h <= height:
                return _rng.integer(0, height - h + 1, generator), _rng.integer(0, width - w + 1, generator), h, w
        in_ratio = width / height
        if in_ratio < min(ratio):
            w, h = width, round(width / min(ratio))
        elif in_ratio > max(ratio):
            h, w = height, round(height * max(ratio))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img: Any) -> Any:
        top, left, h, w = self.get_params(img, self.scale, self.ratio, self.generator)
        return F.resized_crop(img, top, left, h, w, self.size, self.interpolation, self.antialias)

    def __repr__(self) -> str:
        return fmt(self, size=self.size, scale=self.scale, ratio=self.ratio,
                   interpolation=self.interpolation.value, antialias=self.antialias)


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5, *, generator: Generator | None = None) -> None:
        self.p = check_p(p, "RandomHorizontalFlip")
        self.generator = _rng.check_generator(generator, "RandomHorizontalFlip")

    def __call__(self, img: Any) -> Any:
        return F.hflip(img) if _rng.rand_below(self.p, self.generator) else img

    def __repr__(self) -> str:
        return fmt(self, p=self.p)


class RandomVerticalFlip:
    """Mirror top-bottom with probability ``p``."""

    def __init__(self, p: float = 0.5, *, generator: Generator | None = None) -> None:
        self.p = check_p(p, "RandomVerticalFlip")
        self.generator = _rng.check_generator(generator, "RandomVerticalFlip")

    def __call__(self, img: Any) -> Any:
        return F.vflip(img) if _rng.rand_below(self.p, self.generator) else img

    def __repr__(self) -> str:
        return fmt(self, p=self.p)


class RandomRotation:
    """Rotate counter-clockwise by an angle uniform in ``degrees`` (d means (-d, d))."""

    def __init__(self, degrees: Any, interpolation: Any = InterpolationMode.NEAREST, expand: bool = False,
                 center: Sequence[float] | None = None, fill: Any = 0, *, generator: Generator | None = None) -> None:
        self.degrees = _range(degrees, "degrees", "RandomRotation")
        self.interpolation, self.expand, self.center, self.fill = as_mode(interpolation), expand, center, fill
        self.generator = _rng.check_generator(generator, "RandomRotation")

    @staticmethod
    def get_params(degrees: Sequence[float], generator: Generator | None = None) -> float:
        return _rng.uniform(degrees[0], degrees[1], generator)

    def __call__(self, img: Any) -> Any:
        angle = self.get_params(self.degrees, self.generator)
        return F.rotate(img, angle, self.interpolation, self.expand, self.center, self.fill)

    def __repr__(self) -> str:
        return fmt(self, degrees=self.degrees, interpolation=self.interpolation.value, expand=self.expand,
                   center=self.center, fill=self.fill)


class RandomAffine:
    """Random affine warp about the centre: angle uniform in ``degrees``, translation up to
    ``translate`` = (fx, fy) of the width/height, ``scale`` = (min, max), ``shear`` = s, (min, max)
    along x, or (xmin, xmax, ymin, ymax) in degrees."""

    def __init__(self, degrees: Any, translate: Sequence[float] | None = None, scale: Sequence[float] | None = None,
                 shear: Any = None, interpolation: Any = InterpolationMode.NEAREST, fill: Any = 0,
                 center: Sequence[float] | None = None, *, generator: Generator | None = None) -> None:
        self.degrees = _range(degrees, "degrees", "RandomAffine")
        if translate is not None and (len(translate) != 2 or not all(0.0 <= t <= 1.0 for t in translate)):
            raise ValueError(f"RandomAffine: translate must be two fractions in [0, 1], got {translate!r}")
        if scale is not None and (len(scale) != 2 or min(scale) <= 0 or scale[0] > scale[1]):
            raise ValueError(f"RandomAffine: scale must be a positive (min, max) pair, got {scale!r}")
        self.translate, self.scale = translate, scale
        self.shear: tuple[float, ...] | None = None
        if shear is not None:
            if isinstance(shear, Sequence) and len(shear) == 4:
                self.shear = tuple(float(s) for s in shear)
            else:
                self.shear = _range(shear, "shear", "RandomAffine")
        self.interpolation, self.fill, self.center = as_mode(interpolation), fill, center
        self.generator = _rng.check_generator(generator, "RandomAffine")

    @staticmethod
    def get_params(degrees: Sequence[float], translate: Sequence[float] | None,
                   scale_ranges: Sequence[float] | None, shears: Sequence[float] | None, img_size: Sequence[int],
                   generator: Generator | None = None) -> tuple[float, tuple[int, int], float, tuple[float, float]]:
        """(angle, (tx, ty), scale, (shear_x, shear_y)) for an image of ``img_size`` = (w, h)."""
        angle = _rng.uniform(degrees[0], degrees[1], generator)
        tx = ty = 0
        if translate is not None:
            max_dx, max_dy = float(translate[0] * img_size[0]), float(translate[1] * img_size[1])
            tx = round(_rng.uniform(-max_dx, max_dx, generator))
            ty = round(_rng.uniform(-max_dy, max_dy, generator))
        scale = 1.0 if scale_ranges is None else _rng.uniform(scale_ranges[0], scale_ranges[1], generator)
        shear_x = shear_y = 0.0
        if shears is not None:
            shear_x = _rng.uniform(shears[0], shears[1], generator)
            if len(shears) == 4:
                shear_y = _rng.uniform(shears[2], shears[3], generator)
        return angle, (tx, ty), scale, (shear_x, shear_y)

    def __call__(self, img: Any) -> Any:
        _, h, w = get_dimensions(img)
        angle, translate, scale, shear = self.get_params(self.degrees, self.translate, self.scale, self.shear,
                                                         (w, h), self.generator)
        return F.affine(img, angle, translate, scale, shear, self.interpolation, self.fill, self.center)

    def __repr__(self) -> str:
        return fmt(self, degrees=self.degrees, translate=self.translate, scale=self.scale, shear=self.shear,
                   interpolation=self.interpolation.value, fill=self.fill, center=self.center)
