"""MNIST, Fashion-MNIST, Kuzushiji-MNIST and EMNIST from their IDX files (gzipped or not), as torchvision's.

Files are looked for, under their names with or without ``.gz``, in
``root/<ClassName>/raw`` (where ``download=True`` puts them, as torchvision does),
then ``root/<ClassName>``, then ``root`` itself (so ``root`` may be a folder that
simply holds the four files). ``data`` is a uint8 tensor (N, 28, 28) and
``targets`` an int64 tensor (N,); ``ds[i]`` is ``(PIL image of mode "L", int)``.
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...core.creation import from_numpy
from ...core.tensor import Tensor
from ...io.download import download_file, extract_archive
from ._base import DatasetFileError, NamedClasses, VisionDataset, pil_image, resolve_mirrors
from .idx import read_idx

__all__ = ["MNIST", "FashionMNIST", "KMNIST", "EMNIST"]

Transform = Callable[[Any], Any] | None


def _as_numpy(x: Any) -> np.ndarray:
    return x.numpy() if isinstance(x, Tensor) else np.asarray(x)


class MNIST(NamedClasses, VisionDataset):
    """The MNIST handwritten digits: 60,000 training and 10,000 test images of 28x28 grey pixels.

    Args (as torchvision's): ``root`` (default ``$AXONML_HOME/datasets``), ``train``,
    ``transform`` (applied to the PIL image), ``target_transform``, ``download``
    (fetch the files missing from ``root/<ClassName>/raw``, checksums verified).
    ``mirrors`` (keyword, axonml's own): base URLs to fetch from instead of the
    class's canonical ``mirrors``; ``$AXONML_DATASETS_MIRROR`` does the same for
    every dataset (see :func:`resolve_mirrors`).
    """

    mirrors: ClassVar[list[str]] = [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ]
    # (file, MD5 of the published .gz, MD5 of its decompressed content): a mirror may recompress
    resources: ClassVar[list[tuple[str, str, str | None]]] = [
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
    ]
    # a list, as torchvision's; EMNIST sets its own per split on the instance
    classes: list[str] = [  # noqa: RUF012
        "0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven", "8 - eight",
        "9 - nine",
    ]

    def __init__(self, root: str | os.PathLike[str] | None = None, train: bool = True, transform: Transform = None,
                 target_transform: Transform = None, download: bool = False, *,
                 mirrors: Sequence[str] | str | None = None) -> None:
        super().__init__(root, transform, target_transform)
        self.train = train
        self._mirror_override = mirrors
        if download:
            self.download()
        images, labels = self._load_data()
        self.data: Tensor = from_numpy(images)  # (N, 28, 28) uint8
        self.targets: Tensor = from_numpy(labels.astype(np.int64))  # (N,)

    # ---- files
    @property
    def raw_folder(self) -> Path:
        """``root/<ClassName>/raw``: where downloads go."""
        return self.root / type(self).__name__ / "raw"

    def _search_dirs(self) -> list[Path]:
        return [self.raw_folder, self.root / type(self).__name__, self.root]

    def _split_files(self) -> tuple[str, str]:
        """The (images, labels) file names of this split, without ``.gz``."""
        prefix = "train" if self.train else "t10k"
        return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"

    def _find(self, name: str) -> Path | None:
        for d in self._search_dirs():
            for candidate in (d / name, d / (name + ".gz")):
                if candidate.is_file():
                    return candidate
        return None

    def _check_exists(self) -> bool:
        return all(self._find(n) is not None for n in self._split_files())

    def _locate(self, name: str) -> Path:
        path = self._find(name)
        if path is None:
            where = ", ".join(str(d) for d in self._search_dirs())
            raise FileNotFoundError(f"{type(self).__name__}: {name} (or {name}.gz) not found in {where}; "
                                    "pass download=True to fetch it")
        return path

    def _load_data(self) -> tuple[np.ndarray, np.ndarray]:
        images_name, labels_name = self._split_files()
        images_path, labels_path = self._locate(images_name), self._locate(labels_name)
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise DatasetFileError(f"{images_path}: expected uint8 images (N, H, W), found {images.dtype} "
                                   f"of shape {images.shape}")
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DatasetFileError(f"{labels_path}: expected uint8 labels (N,), found {labels.dtype} "
                                   f"of shape {labels.shape}")
        if len(images) != len(labels):
            raise DatasetFileError(f"{type(self).__name__}: {images_path} holds {len(images)} images but "
                                   f"{labels_path} holds {len(labels)} labels")
        if len(labels) and int(labels.max()) >= len(self.classes):
            raise DatasetFileError(f"{labels_path}: label {int(labels.max())} is out of range for "
                                   f"{len(self.classes)} classes (corrupt, or the wrong file?)")
        return images, labels

    def download(self) -> None:
        """Fetch the files not already present into :attr:`raw_folder`, checksums verified."""
        mirrors = resolve_mirrors(type(self).__name__, self.mirrors, self._mirror_override)
        for filename, md5, raw_md5 in self.resources:
            if self._find(filename.removesuffix(".gz")) is None:
                download_file(filename, mirrors, self.raw_folder, md5=md5, gunzip_md5=raw_md5)

    # ---- dataset protocol
    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image = pil_image().fromarray(_as_numpy(self.data)[index])
        return self._apply(image, int(_as_numpy(self.targets)[index]))


class FashionMNIST(MNIST):
    """Fashion-MNIST (Zalando): 28x28 grey images of 10 kinds of clothing, MNIST's format and sizes."""

    mirrors: ClassVar[list[str]] = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
    resources: ClassVar[list[tuple[str, str, str | None]]] = [
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", None),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", None),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", None),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", None),
    ]
    classes: list[str] = [  # noqa: RUF012
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]


class KMNIST(MNIST):
    """Kuzushiji-MNIST (ROIS-CODH): 28x28 grey images of 10 cursive Japanese characters, MNIST's format."""

    mirrors: ClassVar[list[str]] = ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"]
    resources: ClassVar[list[tuple[str, str, str | None]]] = [
        ("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7", None),
        ("train-labels-idx1-ubyte.gz", "e144d726b3acfaa3e44228e80efcd344", None),
        ("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7", None),
        ("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134", None),
    ]
    classes: list[str] = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]  # noqa: RUF012


_MERGED = set("cijklmopsuvwxyz")  # lowercase letters EMNIST merges into their uppercase twins
_ALL = string.digits + string.ascii_uppercase + string.ascii_lowercase


class EMNIST(MNIST):
    """EMNIST (NIST SD 19 in MNIST's format): handwritten digits and letters, six ``split``\\ s.

    ``split`` is ``"byclass"`` (62 classes), ``"bymerge"`` and ``"balanced"`` (47:
    similar upper/lower case letters merged), ``"letters"`` (labels 1-26; class 0 is
    ``"N/A"``), ``"digits"`` or ``"mnist"`` (10). The original files store every
    image transposed; like torchvision, ``data`` keeps them as stored unless
    ``upright=True`` (axonml's keyword), which transposes them back so that letters
    read normally. ``download=True`` fetches NIST's ``gzip.zip`` (all splits, 536 MB)
    into ``root/EMNIST/raw`` and extracts it there.
    """

    mirrors: ClassVar[list[str]] = ["https://biometrics.nist.gov/cs_links/EMNIST/"]
    archive: ClassVar[tuple[str, str]] = ("gzip.zip", "58c8d27c78d21e728a6bc7b3cc06412e")
    splits = ("byclass", "bymerge", "balanced", "letters", "digits", "mnist")
    classes_split_dict: ClassVar[dict[str, list[str]]] = {
        "byclass": list(_ALL),
        "bymerge": [c for c in _ALL if c not in _MERGED],
        "balanced": [c for c in _ALL if c not in _MERGED],
        "letters": ["N/A", *string.ascii_lowercase],
        "digits": list(string.digits),
        "mnist": list(string.digits),
    }

    def __init__(self, root: str | os.PathLike[str] | None = None, split: str = "balanced", train: bool = True,
                 transform: Transform = None, target_transform: Transform = None, download: bool = False, *,
                 upright: bool = False, mirrors: Sequence[str] | str | None = None) -> None:
        if split not in self.splits:
            raise ValueError(f"EMNIST: unknown split {split!r}; expected one of {', '.join(self.splits)}")
        self.split = split
        self.classes = self.classes_split_dict[split]
        self.upright = upright
        super().__init__(root, train, transform, target_transform, download, mirrors=mirrors)
        if upright:
            self.data = from_numpy(np.ascontiguousarray(self.data.numpy().transpose(0, 2, 1)))

    def _search_dirs(self) -> list[Path]:
        return [self.raw_folder / "gzip", *super()._search_dirs()]

    def _split_files(self) -> tuple[str, str]:
        prefix = f"emnist-{self.split}-{'train' if self.train else 'test'}"
        return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"

    def download(self) -> None:
        """Fetch and extract NIST's archive of every split when this split's files are missing."""
        if self._check_exists():
            return
        filename, md5 = self.archive
        mirrors = resolve_mirrors(type(self).__name__, self.mirrors, self._mirror_override)
        archive = download_file(filename, mirrors, self.raw_folder, md5=md5)
        extract_archive(archive, self.raw_folder)
        archive.unlink()  # the extracted .gz files hold the same data

    def extra_repr(self) -> str:
        return f"Split: {self.split} ({'Train' if self.train else 'Test'})"
