"""``Digits``: scikit-learn's 1,797 real handwritten digits (UCI), as 28x28 grey images in MNIST's format.

The images are the UCI "Optical Recognition of Handwritten Digits" test set that
ships inside the scikit-learn wheel (``sklearn.datasets.load_digits``), so they are
there on an offline machine. Each 8x8 image (pixel values 0-16) is scaled to 0-255,
enlarged 3x by nearest neighbour to 24x24 and padded by 2 pixels to 28x28, which
puts the digit in a centred box as MNIST's 20x20 boxes are. A fixed permutation
(independent of any training seed) holds out 300 images as the test split.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ...core.creation import from_numpy
from ...core.tensor import Tensor
from ._base import NamedClasses, VisionDataset, pil_image
from .mnist import MNIST, Transform

__all__ = ["Digits", "DIGITS_MEAN", "DIGITS_STD"]

TEST_SIZE = 300  # images held out of the 1,797 as the test split
_SPLIT_SEED = 12345  # the split must not depend on the training seed
# mean and std of all 1,797 images at 28x28 scaled to [0, 1] (measured once; a test re-measures them)
DIGITS_MEAN = (0.2243,)
DIGITS_STD = (0.3492,)


def _load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float64 in 0..16, labels (1797,)) from scikit-learn, or an ImportError saying how."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("Digits needs scikit-learn, whose wheel ships the digits: "
                          "pip install 'axonml[examples]' (or pip install scikit-learn)") from e
    d = load_digits()
    return np.asarray(d.images), np.asarray(d.target)


def digits_28() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as (N, 28, 28) uint8 images and (N,) int64 labels."""
    small, labels = _load_sklearn_digits()
    pixels = np.rint(small * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8)
    big = pixels.repeat(3, axis=1).repeat(3, axis=2)  # (N, 24, 24), nearest neighbour
    return np.pad(big, ((0, 0), (2, 2), (2, 2))), labels.astype(np.int64)  # (N, 28, 28)


class Digits(NamedClasses, VisionDataset):
    """Real handwritten digits 0-9 from scikit-learn (1,497 train / 300 test), 28x28 grey as :class:`MNIST`.

    Same format as MNIST: ``data`` uint8 tensor (N, 28, 28), ``targets`` int64 tensor
    (N,), ``ds[i] = (PIL image "L", int)``. ``root`` and ``download`` are accepted so it
    drops in where MNIST goes; nothing is read from or written to ``root``.
    """

    classes = MNIST.classes

    def __init__(self, root: str | os.PathLike[str] | None = None, train: bool = True, transform: Transform = None,
                 target_transform: Transform = None, download: bool = False) -> None:
        super().__init__(root, transform, target_transform)
        self.train = train
        images, labels = digits_28()
        perm = np.random.default_rng(_SPLIT_SEED).permutation(len(labels))
        idx = np.sort(perm[TEST_SIZE:] if train else perm[:TEST_SIZE])
        self.data: Tensor = from_numpy(np.ascontiguousarray(images[idx]))
        self.targets: Tensor = from_numpy(labels[idx])

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self._apply(pil_image().fromarray(self.data.numpy()[index]), int(self.targets.numpy()[index]))

    def extra_repr(self) -> str:
        return super().extra_repr() + "\nscikit-learn digits (UCI), 8x8 scaled to 28x28"
