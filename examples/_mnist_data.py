"""Data for examples/mnist.py: MNIST from its IDX files, or scikit-learn's bundled real digits.

Kept small and local to the examples (a dataset package comes later). Images come
back as float32 arrays of shape (N, 1, 28, 28) scaled to [0, 1], labels as int64 (N,).

Sources, in order (``find_source``):
1. the folder given with ``--data`` (or ``--data digits`` for source 3);
2. ``../shared/data/mnist`` beside the repository, when present;
3. scikit-learn's ``load_digits``: 1,797 real 8x8 handwritten digits (the UCI
   "Optical Recognition of Handwritten Digits" test set) that ship inside the
   scikit-learn wheel, so they are there offline. They are scaled up 3x (nearest
   neighbour, 24x24) and padded by 2 pixels to MNIST's 28x28, which puts the digit
   in a centred box the way MNIST's 20x20 boxes are; a fixed 300-image test split.
With none of these, ``find_source`` raises ``DataNotFoundError`` saying how to get data:
the example never trains on random numbers presented as data.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# IDX type byte -> big-endian NumPy dtype (the format's header says which)
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

DIGITS_TEST = 300  # images held out of the 1,797 scikit-learn digits


class DataNotFoundError(RuntimeError):
    """No MNIST files and no scikit-learn: the message says how to get data."""


@dataclass
class Split:
    """A dataset split: images (N, 1, 28, 28) float32 in [0, 1] and labels (N,) int64."""

    images: np.ndarray
    labels: np.ndarray


@dataclass
class Source:
    """Where the data comes from: ``kind`` is "mnist" or "digits"; ``path`` the MNIST folder."""

    kind: str
    path: Path | None
    description: str


def read_idx(path: Path) -> np.ndarray:
    """The array stored in an IDX file (gzipped when the name ends in .gz), in its native dtype."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    count = int(np.prod(dims, dtype=np.int64))
    start = 4 + 4 * ndim
    if len(raw) - start != count * dtype.itemsize:
        raise ValueError(f"{path}: header says {dims} of {dtype}, but the file holds {len(raw) - start} data bytes")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=start).reshape(dims).astype(dtype.newbyteorder("="))


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def has_mnist(folder: Path) -> bool:
    """Whether ``folder`` holds the four MNIST IDX files (gzipped or not)."""
    return all(_idx_file(folder, stem) is not None for stem in FILES.values())


def has_digits() -> bool:
    """Whether scikit-learn (and so its bundled digits) can be imported."""
    import importlib.util

    return importlib.util.find_spec("sklearn") is not None


def _digits_source(reason: str) -> Source:
    return Source("digits", None, "scikit-learn's bundled digits (1,797 real 8x8 handwritten digits, UCI), "
                                  f"scaled to 28x28{reason}")


def find_source(data: str | Path | None = None) -> Source:
    """The first available source: ``data`` (a folder holding MNIST, or "digits"), ../shared/data/mnist, digits."""
    if data == "digits":
        if not has_digits():
            raise DataNotFoundError("--data digits needs scikit-learn: `pip install -e '.[examples]'`")
        return _digits_source("")
    if data is not None:
        folder = Path(data)
        if not has_mnist(folder):
            raise DataNotFoundError(f"--data {folder}: expected the four MNIST IDX files ({', '.join(FILES.values())}, "
                               "optionally .gz) in that folder")
        return Source("mnist", folder, f"MNIST from {folder}")
    if has_mnist(SHARED_MNIST):
        return Source("mnist", SHARED_MNIST, f"MNIST from {SHARED_MNIST}")
    if has_digits():
        return _digits_source(": no MNIST found (pass --data DIR for MNIST)")
    raise DataNotFoundError("no data: pass --data DIR with the four MNIST IDX files (train-images-idx3-ubyte.gz, ...), "
                       "or `pip install -e '.[examples]'` for scikit-learn's bundled digits")


def load_mnist(folder: Path) -> tuple[Split, Split]:
    """MNIST's 60,000 training and 10,000 test images from the IDX files in ``folder``."""
    parts = {}
    for key, stem in FILES.items():
        path = _idx_file(folder, stem)
        if path is None:
            raise DataNotFoundError(f"{folder}: {stem}(.gz) is missing")
        parts[key] = read_idx(path)
    splits = []
    for which in ("train", "test"):
        images, labels = parts[f"{which}_images"], parts[f"{which}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"{folder}: {which} images {images.shape} and labels {labels.shape} do not match")
        x = (images.astype(np.float32) / 255.0)[:, None]  # (N, 1, 28, 28)
        splits.append(Split(x, labels.astype(np.int64)))
    return splits[0], splits[1]


def load_digits_28() -> tuple[Split, Split]:
    """scikit-learn's 1,797 digits as 28x28 images: a fixed split of 1,497 training and 300 test images."""
    from sklearn.datasets import load_digits

    d = load_digits()
    small = d.images.astype(np.float32) / 16.0  # (N, 8, 8), pixel values 0..16
    big = small.repeat(3, axis=1).repeat(3, axis=2)  # (N, 24, 24), nearest-neighbour upscaling
    x = np.pad(big, ((0, 0), (2, 2), (2, 2)))[:, None]  # (N, 1, 28, 28)
    y = d.target.astype(np.int64)
    # the split must not depend on the training seed: a fixed permutation
    perm = np.random.default_rng(12345).permutation(len(y))
    test, train = perm[:DIGITS_TEST], perm[DIGITS_TEST:]
    return Split(x[train], y[train]), Split(x[test], y[test])


def load(source: Source) -> tuple[Split, Split]:
    """The (train, test) splits of ``source``."""
    if source.kind == "mnist":
        assert source.path is not None
        return load_mnist(source.path)
    return load_digits_28()
