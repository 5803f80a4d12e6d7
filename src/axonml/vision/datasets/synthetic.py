"""SYNTHETIC stand-ins for MNIST and CIFAR-10: procedurally drawn images with learnable structure, for quick tests.

These are not real data and say so in their names. Each is generated in memory,
deterministically from ``seed`` (train and test draw from different streams), in
the same shapes, dtypes and sample format as the real dataset, so a pipeline can
be tried end to end in seconds without any file. A model that learns them shows
that the pipeline works; it says nothing about accuracy on real images.

- :class:`SyntheticMNIST`: 28x28 grey seven-segment digits 0-9, each with its own
  random size, position, slant, stroke width, contrast and noise.
- :class:`SyntheticCIFAR`: 32x32 RGB images of 10 classes = 5 shapes (disk, square,
  triangle, cross, ring) x 2 palettes (warm, cool), randomly placed and sized, on
  random noisy backgrounds.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ...core.creation import from_numpy
from ...core.tensor import Tensor
from ._base import NamedClasses, VisionDataset, pil_image
from .mnist import MNIST, Transform

__all__ = ["SyntheticMNIST", "SyntheticCIFAR"]

_CHUNK = 256  # images drawn per vectorised step: temporaries stay in cache

# Seven-segment centre lines in a unit box (x right, y down): (u0, u1, v0, v1)
_SEGMENTS = {
    "a": (0.0, 1.0, 0.0, 0.0), "d": (0.0, 1.0, 1.0, 1.0), "g": (0.0, 1.0, 0.5, 0.5),
    "b": (1.0, 1.0, 0.0, 0.5), "c": (1.0, 1.0, 0.5, 1.0), "f": (0.0, 0.0, 0.0, 0.5), "e": (0.0, 0.0, 0.5, 1.0),
}
_DIGITS = ["abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg"]
_ON = np.array([[s in d for s in _SEGMENTS] for d in _DIGITS])  # (10, 7) which segments light up


def _rng(seed: int, train: bool) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, 0 if train else 1]))


def _draw_digits(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 28, 28) uint8 seven-segment digits with random geometry, stroke and noise."""
    n = len(labels)
    col = lambda lo, hi: rng.uniform(lo, hi, n).astype(np.float32)[:, None, None]  # (N, 1, 1)
    w, h = col(9, 14), col(15, 20)
    cx, cy = 14 + col(-2.5, 2.5), 14 + col(-2, 2)
    slant, stroke, contrast = col(-0.3, 0.3), col(1.6, 3.2), col(0.7, 1.0)
    noise = rng.standard_normal((n, 28, 28), dtype=np.float32)
    py, px = np.mgrid[0:28, 0:28].astype(np.float32) + 0.5  # pixel centres (28, 28)
    out = np.empty((n, 28, 28), np.uint8)
    for s in range(0, n, _CHUNK):
        sl = slice(s, s + _CHUNK)
        # position in the digit's own (slanted) unit box
        u = (px - slant[sl] * (py - cy[sl]) - (cx[sl] - w[sl] / 2)) / w[sl]
        v = (py - (cy[sl] - h[sl] / 2)) / h[sl]
        ink = np.zeros(u.shape, np.float32)
        for k, (u0, u1, v0, v1) in enumerate(_SEGMENTS.values()):
            half = stroke[sl] / 2
            # distance in pixels from the segment's centre line, then a 1-pixel soft edge
            du = np.maximum(np.maximum(u0 - u, u - u1), 0) * w[sl]
            dv = np.maximum(np.maximum(v0 - v, v - v1), 0) * h[sl]
            d = np.sqrt(du * du + dv * dv) - half
            seg = np.clip(0.5 - d, 0, 1) * _ON[labels[sl], k][:, None, None]
            np.maximum(ink, seg, out=ink)
        value = ink * (255 * contrast[sl] + 10 * noise[sl])
        out[sl] = np.clip(value, 0, 255).astype(np.uint8)
    return out


_SHAPES = ("disk", "square", "triangle", "cross", "ring")
_PALETTES = {"warm": ((180, 255), (40, 160), (0, 60)), "cool": ((0, 60), (60, 180), (170, 255))}


def _shape_distance(shape: int, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Approximate signed distance (pixels, negative inside) to a shape of size ``r`` centred at 0."""
    if shape == 0:
        return np.sqrt(dx * dx + dy * dy) - r
    if shape == 1:
        return np.maximum(np.abs(dx), np.abs(dy)) - 0.85 * r
    if shape == 2:  # apex up at -r, base at +0.8 r
        return np.maximum(np.maximum(dy - 0.8 * r, -r - dy), (np.abs(dx) - (dy + r) * 0.55) * 0.87)
    if shape == 3:
        bar_h = np.maximum(np.abs(dx) - r, np.abs(dy) - 0.3 * r)
        bar_v = np.maximum(np.abs(dx) - 0.3 * r, np.abs(dy) - r)
        return np.minimum(bar_h, bar_v)
    return np.abs(np.sqrt(dx * dx + dy * dy) - 0.72 * r) - 0.25 * r


def _draw_shapes(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 32, 32, 3) uint8 coloured shapes on noisy backgrounds; label = palette * 5 + shape."""
    n = len(labels)

    def f32(lo: float, hi: float, size: Any = n) -> np.ndarray:
        return np.asarray(rng.uniform(lo, hi, size), np.float32)

    cx, cy, r = 16 + f32(-5, 5), 16 + f32(-5, 5), f32(6, 10)
    shape, palette = labels % 5, labels // 5
    ranges = np.array(list(_PALETTES.values()), np.float64)  # (2, 3 channels, lo/hi)
    colour = rng.uniform(ranges[palette, :, 0], ranges[palette, :, 1]).astype(np.float32)  # (N, 3)
    grey = f32(60, 190, (n, 1)) + f32(-25, 25, (n, 3))  # background (N, 3)
    slope = f32(-2, 2, (n, 2))  # background gradient, grey levels per pixel
    py, px = np.mgrid[0:32, 0:32].astype(np.float32) + 0.5
    out = np.empty((n, 32, 32, 3), np.uint8)
    for kind in range(len(_SHAPES)):  # one distance function per shape, vectorised over its images
        ids = np.flatnonzero(shape == kind)
        for s in range(0, len(ids), _CHUNK):
            i = ids[s:s + _CHUNK]
            dist = _shape_distance(kind, px - cx[i, None, None], py - cy[i, None, None], r[i, None, None])
            alpha = np.clip(0.5 - dist, 0, 1)[..., None]  # (n, 32, 32, 1) soft 1-pixel edge
            ramp = slope[i, 0, None, None] * (px - 16) + slope[i, 1, None, None] * (py - 16)  # (n, 32, 32)
            bg = grey[i, None, None, :] + ramp[..., None]
            noise = rng.standard_normal((len(i), 32, 32, 3), dtype=np.float32)
            img = bg * (1 - alpha) + colour[i, None, None, :] * alpha + 6 * noise
            out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


class SyntheticMNIST(NamedClasses, VisionDataset):
    """SYNTHETIC MNIST look-alike (not real data): seven-segment digits, 28x28 grey, labels 0-9.

    Same format as :class:`MNIST`: ``data`` uint8 tensor (N, 28, 28), ``targets`` int64
    tensor (N,), ``ds[i] = (PIL image "L", int)``. ``size`` defaults to 10,000 train /
    2,000 test images; ``seed`` fixes the draw. ``root`` and ``download`` are accepted
    so it drops in where MNIST goes; nothing is read or written.
    """

    classes = MNIST.classes

    def __init__(self, root: str | os.PathLike[str] | None = None, train: bool = True, transform: Transform = None,
                 target_transform: Transform = None, download: bool = False, *, size: int | None = None,
                 seed: int = 0) -> None:
        super().__init__(root, transform, target_transform)
        self.train, self.seed = train, seed
        n = (10_000 if train else 2_000) if size is None else size
        if n < 0:
            raise ValueError(f"SyntheticMNIST: size must be >= 0, got {n}")
        rng = _rng(seed, train)
        labels = rng.integers(0, 10, n)
        self.data: Tensor = from_numpy(_draw_digits(labels, rng))
        self.targets: Tensor = from_numpy(labels.astype(np.int64))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self._apply(pil_image().fromarray(self.data.numpy()[index]), int(self.targets.numpy()[index]))

    def extra_repr(self) -> str:
        return super().extra_repr() + f"\nSYNTHETIC (seed {self.seed})"


class SyntheticCIFAR(NamedClasses, VisionDataset):
    """SYNTHETIC CIFAR-10 look-alike (not real data): 10 classes of coloured shapes, 32x32 RGB.

    Same format as :class:`CIFAR10`: ``data`` uint8 NumPy array (N, 32, 32, 3),
    ``targets`` list of ints, ``ds[i] = (PIL RGB image, int)``. Class ``k`` is the
    shape ``k % 5`` (disk, square, triangle, cross, ring) in the palette ``k // 5``
    (warm, cool). ``size`` defaults to 5,000 train / 1,000 test images; ``seed`` fixes
    the draw; ``root`` and ``download`` are accepted and unused.
    """

    classes = [f"{p} {s}" for p in _PALETTES for s in _SHAPES]  # noqa: RUF012 - a list, as CIFAR10's

    def __init__(self, root: str | os.PathLike[str] | None = None, train: bool = True, transform: Transform = None,
                 target_transform: Transform = None, download: bool = False, *, size: int | None = None,
                 seed: int = 0) -> None:
        super().__init__(root, transform, target_transform)
        self.train, self.seed = train, seed
        n = (5_000 if train else 1_000) if size is None else size
        if n < 0:
            raise ValueError(f"SyntheticCIFAR: size must be >= 0, got {n}")
        rng = _rng(seed, train)
        labels = rng.integers(0, 10, n)
        self.data: np.ndarray = _draw_shapes(labels, rng)
        self.targets: list[int] = labels.tolist()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self._apply(pil_image().fromarray(self.data[index]), int(self.targets[index]))

    def extra_repr(self) -> str:
        return super().extra_repr() + f"\nSYNTHETIC (seed {self.seed})"
