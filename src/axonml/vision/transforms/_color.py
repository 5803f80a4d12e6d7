"""Photometric transforms: ColorJitter, Grayscale, RandomGrayscale, GaussianBlur, RandomErasing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...core.random import Generator
from . import _rng
from . import functional as F
from ._basic import check_p, fmt
from ._geometry import _range
from ._kinds import ArrayImage, get_dimensions, is_pil, max_value


def _factor_range(value: Any, name: str, center: float, bound: float | None = None) -> tuple[float, float] | None:
    """A jitter amount as its (min, max) factor range; None when it leaves the image unchanged."""
    lo, hi = _range(value, name, "ColorJitter", center=center, low=None if name == "hue" else 0.0)
    if name == "hue" and (lo < -0.5 or hi > 0.5):
        raise ValueError(f"ColorJitter: hue must stay within [-0.5, 0.5], got {value!r}")
    if name != "hue" and lo < 0:
        raise ValueError(f"ColorJitter: {name} factors must be non-negative, got {value!r}")
    return None if lo == hi == center else (lo, hi)


class ColorJitter:
    """Randomly change brightness, contrast, saturation and hue, in a random order.

    Each of ``brightness``, ``contrast``, ``saturation`` is a number b (factor uniform in
    [max(0, 1 - b), 1 + b]) or a (min, max) factor range; ``hue`` is h in [0, 0.5] (shift uniform
    in [-h, h] turns) or a range within [-0.5, 0.5].
    """

    def __init__(self, brightness: Any = 0, contrast: Any = 0, saturation: Any = 0, hue: Any = 0, *,
                 generator: Generator | None = None) -> None:
        self.brightness = _factor_range(brightness, "brightness", 1.0)
        self.contrast = _factor_range(contrast, "contrast", 1.0)
        self.saturation = _factor_range(saturation, "saturation", 1.0)
        self.hue = _factor_range(hue, "hue", 0.0)
        self.generator = _rng.check_generator(generator, "ColorJitter")

    @staticmethod
    def get_params(brightness: Sequence[float] | None, contrast: Sequence[float] | None,
                   saturation: Sequence[float] | None, hue: Sequence[float] | None,
                   generator: Generator | None = None) -> tuple[list[int], float | None, float | None,
                                                                  float | None, float | None]:
        """(order of the four ops, brightness, contrast, saturation, hue factors; None = skipped)."""
        order = _rng.permutation(4, generator)
        factors = [None if r is None else _rng.uniform(r[0], r[1], generator)
                   for r in (brightness, contrast, saturation, hue)]
        return order, factors[0], factors[1], factors[2], factors[3]

    def __call__(self, img: Any) -> Any:
        order, *factors = self.get_params(self.brightness, self.contrast, self.saturation, self.hue, self.generator)
        ops = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
        for i in order:
            factor = factors[i]
            if factor is not None:
                img = ops[i](img, factor)
        return img

    def __repr__(self) -> str:
        return fmt(self, brightness=self.brightness, contrast=self.contrast, saturation=self.saturation,
                   hue=self.hue)


class Grayscale:
    """ITU-R 601-2 luma with ``num_output_channels`` = 1 or 3."""

    def __init__(self, num_output_channels: int = 1) -> None:
        if num_output_channels not in (1, 3):
            raise ValueError(f"Grayscale: num_output_channels must be 1 or 3, got {num_output_channels}")
        self.num_output_channels = num_output_channels

    def __call__(self, img: Any) -> Any:
        return F.rgb_to_grayscale(img, self.num_output_channels)

    def __repr__(self) -> str:
        return fmt(self, num_output_channels=self.num_output_channels)


class RandomGrayscale:
    """Grayscale with probability ``p``, keeping the channel count (3 identical channels for RGB)."""

    def __init__(self, p: float = 0.1, *, generator: Generator | None = None) -> None:
        self.p = check_p(p, "RandomGrayscale")
        self.generator = _rng.check_generator(generator, "RandomGrayscale")

    def __call__(self, img: Any) -> Any:
        channels = get_dimensions(img)[0]
        if _rng.rand_below(self.p, self.generator):
            return F.rgb_to_grayscale(img, channels)
        return img

    def __repr__(self) -> str:
        return fmt(self, p=self.p)


class GaussianBlur:
    """Gaussian blur with ``kernel_size`` (odd; int or (kx, ky)) and ``sigma``: a fixed number or a
    (min, max) range to draw from uniformly for each image (same sigma on both axes)."""

    def __init__(self, kernel_size: Any, sigma: Any = (0.1, 2.0), *, generator: Generator | None = None) -> None:
        ks = F.size_pair(kernel_size, "kernel_size", "GaussianBlur")
        if any(k <= 0 or k % 2 == 0 for k in ks):
            raise ValueError(f"GaussianBlur: kernel_size must be positive and odd, got {kernel_size!r}")
        self.kernel_size = ks
        if isinstance(sigma, int | float | np.number):
            if sigma <= 0:
                raise ValueError(f"GaussianBlur: sigma must be positive, got {sigma}")
            self.sigma = (float(sigma), float(sigma))
        elif isinstance(sigma, Sequence) and len(sigma) == 2 and 0 < sigma[0] <= sigma[1]:
            self.sigma = (float(sigma[0]), float(sigma[1]))
        else:
            raise ValueError(f"GaussianBlur: sigma must be a positive number or a (min, max) range, got {sigma!r}")
        self.generator = _rng.check_generator(generator, "GaussianBlur")

    @staticmethod
    def get_params(sigma_min: float, sigma_max: float, generator: Generator | None = None) -> float:
        return _rng.uniform(sigma_min, sigma_max, generator)

    def __call__(self, img: Any) -> Any:
        s = self.get_params(self.sigma[0], self.sigma[1], self.generator)
        return F.gaussian_blur(img, self.kernel_size, (s, s))

    def __repr__(self) -> str:
        return fmt(self, kernel_size=self.kernel_size, sigma=self.sigma)


class RandomErasing:
    """With probability ``p``, erase a random rectangle of a tensor (or array) image.

    The rectangle covers a fraction ``scale`` of the area with aspect ``ratio`` (log-uniform);
    ``value`` is a number, one number per channel, or ``'random'`` (standard normal noise for float
    images, uniform integers over the dtype's range for integer ones). PIL images are refused.
    """

    def __init__(self, p: float = 0.5, scale: tuple[float, float] = (0.02, 0.33),
                 ratio: tuple[float, float] = (0.3, 3.3), value: Any = 0, inplace: bool = False, *,
                 generator: Generator | None = None) -> None:
        self.p = check_p(p, "RandomErasing")
        if not (0.0 <= scale[0] <= scale[1] <= 1.0) or not (0.0 < ratio[0] <= ratio[1]):
            raise ValueError(f"RandomErasing: scale must be in [0, 1] and ratio positive, as (min, max); "
                             f"got {scale}, {ratio}")
        if isinstance(value, str) and value != "random":
            raise ValueError(f"RandomErasing: value must be a number, a sequence or 'random', got {value!r}")
        self.scale, self.ratio, self.value, self.inplace = tuple(scale), tuple(ratio), value, inplace
        self.generator = _rng.check_generator(generator, "RandomErasing")

    @staticmethod
    def get_params(img: Any, scale: Sequence[float], ratio: Sequence[float], value: Any = 0,
                   generator: Generator | None = None) -> tuple[int, int, int, int, Any]:
        """(i, j, h, w, v): ten tries at a rectangle that fits; ``v`` is None when none fitted (no erasing)."""
        view = ArrayImage(img, "RandomErasing")
        c, height, width = (int(s) for s in view.data.shape[-3:])
        area = height * width
        log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
        for _ in range(10):
            erase_area = area * _rng.uniform(scale[0], scale[1], generator)
            aspect = math.exp(_rng.uniform(log_lo, log_hi, generator))
            h = round(math.sqrt(erase_area * aspect))
            w = round(math.sqrt(erase_area / aspect))
            if not (h < height and w < width):
                continue
            if isinstance(value, str):  # 'random'
                if np.dtype(view.data.dtype).kind in "iu":
                    v: Any = _rng.integers(0, int(max_value(view.data.dtype)) + 1, (c, h, w), generator)
                else:
                    v = _rng.normal((c, h, w), generator)
            else:
                v = np.asarray(value, dtype=np.float64)
                if v.ndim == 1:
                    if v.size not in (1, c):
                        raise ValueError(f"RandomErasing: value has {v.size} entries but the image has {c} channels")
                    v = v.reshape(-1, 1, 1)
            i = _rng.integer(0, height - h + 1, generator)
            j = _rng.integer(0, width - w + 1, generator)
            return i, j, h, w, v
        return 0, 0, height, width, None

    def __call__(self, img: Any) -> Any:
        if is_pil(img):
            raise TypeError("RandomErasing: expected a Tensor or an ndarray, got a PIL image (apply ToTensor first)")
        if not _rng.rand_below(self.p, self.generator):
            return img
        i, j, h, w, v = self.get_params(img, self.scale, self.ratio, self.value, self.generator)
        if v is None:
            return img
        return F.erase(img, i, j, h, w, v, self.inplace)

    def __repr__(self) -> str:
        return fmt(self, p=self.p, scale=self.scale, ratio=self.ratio, value=self.value, inplace=self.inplace)
