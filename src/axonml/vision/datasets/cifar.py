"""CIFAR-10 and CIFAR-100 from the original Python-pickle batches, read with a restricted unpickler.

The batches live in ``root/cifar-10-batches-py`` (``root/cifar-100-python``), or
``root`` may be that folder itself. Each batch is a dict: ``data`` (N, 3072) uint8
holding the red, green then blue 32x32 planes of each image, and its labels
(``labels``; CIFAR-100: ``fine_labels`` and ``coarse_labels``). As torchvision's,
``data`` is a NumPy array (N, 32, 32, 3) uint8 (HWC) and ``targets`` a list of
ints; ``ds[i]`` is ``(PIL RGB image, int)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...io.download import download_file, extract_archive
from ._base import DatasetFileError, NamedClasses, VisionDataset, pil_image, resolve_mirrors
from .mnist import Transform
from .safe_pickle import load_pickle

__all__ = ["CIFAR10", "CIFAR100"]


class CIFAR10(NamedClasses, VisionDataset):
    """CIFAR-10: 50,000 training and 10,000 test 32x32 colour images of 10 classes.

    Args (as torchvision's): ``root`` (default ``$AXONML_HOME/datasets``), ``train``,
    ``transform``, ``target_transform``, ``download`` (fetch and extract the archive,
    checksum verified, when the batches are missing). ``mirrors`` (keyword): base
    URLs to fetch from instead of :attr:`mirrors` (see ``MNIST``).
    """

    base_folder = "cifar-10-batches-py"
    mirrors: ClassVar[list[str]] = ["https://www.cs.toronto.edu/~kriz/"]
    filename = "cifar-10-python.tar.gz"
    tgz_md5 = "c58f30108f718f92721af3b95e74349a"
    # MD5s of the complete original batches (checked by tests when the full set is present)
    train_list: ClassVar[list[tuple[str, str]]] = [
        ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
        ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
        ("data_batch_4", "634d18415352ddfa80567beed471001a"),
        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    ]
    test_list: ClassVar[list[tuple[str, str]]] = [("test_batch", "40351d587109b95175f43aff81a1287e")]
    meta: ClassVar[dict[str, str]] = {"filename": "batches.meta", "key": "label_names",
                                      "md5": "5ff9c542aee3614f3951f8cda6e48888"}
    label_keys: ClassVar[tuple[str, ...]] = ("labels",)

    def __init__(self, root: str | os.PathLike[str] | None = None, train: bool = True, transform: Transform = None,
                 target_transform: Transform = None, download: bool = False, *,
                 mirrors: Sequence[str] | str | None = None) -> None:
        super().__init__(root, transform, target_transform)
        self.train = train
        self._mirror_override = mirrors
        if download:
            self.download()
        folder = self.folder
        if not self._check_exists():
            missing = [n for n in self._needed() if not (folder / n).is_file()]
            raise FileNotFoundError(f"{type(self).__name__}: {', '.join(missing)} not found in {folder}; "
                                    "pass download=True to fetch them")
        self.data, labels = self._load_batches(folder)  # (N, 32, 32, 3) uint8
        self.targets: list[int] = labels[self.label_keys[0]]
        self._extra_labels = labels
        self._load_meta(folder)

    # ---- files
    @property
    def folder(self) -> Path:
        """The folder holding the batches: ``root/<base_folder>``, or ``root`` itself when it holds them."""
        inside = self.root / self.base_folder
        if not inside.is_dir() and (self.root / self.meta["filename"]).is_file():
            return self.root
        return inside

    def _needed(self) -> list[str]:
        batches = self.train_list if self.train else self.test_list
        return [n for n, _ in batches] + [self.meta["filename"]]

    def _check_exists(self) -> bool:
        return all((self.folder / n).is_file() for n in self._needed())

    def _load_batches(self, folder: Path) -> tuple[np.ndarray, dict[str, list[int]]]:
        parts: list[np.ndarray] = []
        labels: dict[str, list[int]] = {k: [] for k in self.label_keys}
        for name, _ in self.train_list if self.train else self.test_list:
            path = folder / name
            batch = load_pickle(path)
            rows = batch.get("data") if isinstance(batch, dict) else None
            if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3072:
                got = f"{rows.dtype} {rows.shape}" if isinstance(rows, np.ndarray) else type(rows).__name__
                raise DatasetFileError(f"{path}: expected 'data' as uint8 (N, 3072), found {got}")
            for key in self.label_keys:
                values = batch.get(key)
                if not isinstance(values, list | np.ndarray) or len(values) != len(rows):
                    raise DatasetFileError(f"{path}: expected {len(rows)} '{key}', found "
                                           f"{len(values) if hasattr(values, '__len__') else type(values).__name__}")
                labels[key].extend(int(v) for v in values)
            parts.append(rows)
        data = np.empty((sum(len(p) for p in parts), 32, 32, 3), np.uint8)
        at = 0
        for rows in parts:  # (n, 3072) planes R, G, B -> (n, 32, 32, 3) in one copy
            data[at:at + len(rows)] = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            at += len(rows)
        return data, labels

    def _load_meta(self, folder: Path) -> None:
        path = folder / self.meta["filename"]
        meta = load_pickle(path)
        names = meta.get(self.meta["key"]) if isinstance(meta, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str | bytes) for n in names):
            raise DatasetFileError(f"{path}: expected a list of class names under {self.meta['key']!r}")
        self.classes: list[str] = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
        for key, values in self._extra_labels.items():
            if values and (min(values) < 0 or max(values) >= self._num_classes(key)):
                raise DatasetFileError(f"{type(self).__name__}: a '{key}' label is out of range "
                                       f"[0, {self._num_classes(key)}) (corrupt batch?)")

    def _num_classes(self, key: str) -> int:
        return len(self.classes)

    def download(self) -> None:
        """Fetch and extract the archive into ``root`` when the batches are missing (checksum verified)."""
        if self._check_exists():
            return
        mirrors = resolve_mirrors(type(self).__name__, self.mirrors, self._mirror_override)
        archive = download_file(self.filename, mirrors, self.root, md5=self.tgz_md5)
        extract_archive(archive, self.root)

    # ---- dataset protocol
    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image = pil_image().fromarray(np.asarray(self.data[index]))
        return self._apply(image, int(self.targets[index]))


class CIFAR100(CIFAR10):
    """CIFAR-100: CIFAR-10's images and sizes with 100 fine classes grouped into 20 coarse superclasses.

    ``label_type="fine"`` (default, as torchvision) makes ``targets`` the fine labels
    and ``classes`` the fine names; ``"coarse"`` the superclasses. Both stay available
    as ``fine_targets``/``coarse_targets`` and ``fine_classes``/``coarse_classes``.
    """

    base_folder = "cifar-100-python"
    filename = "cifar-100-python.tar.gz"
    tgz_md5 = "eb9058c3a382ffc7106e4002c42a8d85"
    train_list: ClassVar[list[tuple[str, str]]] = [("train", "16019d7e3df5f24257cddd939b257f8d")]
    test_list: ClassVar[list[tuple[str, str]]] = [("test", "f0ef6b0ae62326f3e7ffdfab6717acfc")]
    meta: ClassVar[dict[str, str]] = {"filename": "meta", "key": "fine_label_names",
                                      "md5": "7973b15100ade9c7d40fb424638fde48"}
    label_keys: ClassVar[tuple[str, ...]] = ("fine_labels", "coarse_labels")

    def __init__(self, root: str | os.PathLike[str] | None = None, train: bool = True, transform: Transform = None,
                 target_transform: Transform = None, download: bool = False, *, label_type: str = "fine",
                 mirrors: Sequence[str] | str | None = None) -> None:
        if label_type not in ("fine", "coarse"):
            raise ValueError(f"CIFAR100: label_type must be 'fine' or 'coarse', got {label_type!r}")
        self.label_type = label_type
        super().__init__(root, train, transform, target_transform, download, mirrors=mirrors)
        self.fine_targets: list[int] = self._extra_labels["fine_labels"]
        self.coarse_targets: list[int] = self._extra_labels["coarse_labels"]
        if label_type == "coarse":
            self.targets = self.coarse_targets
            self.classes = self.coarse_classes

    def _load_meta(self, folder: Path) -> None:
        meta = load_pickle(folder / self.meta["filename"])
        coarse = meta.get("coarse_label_names") if isinstance(meta, dict) else None
        if not isinstance(coarse, list):
            raise DatasetFileError(f"{folder / self.meta['filename']}: expected a list under 'coarse_label_names'")
        self.coarse_classes: list[str] = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in coarse]
        super()._load_meta(folder)
        self.fine_classes: list[str] = list(self.classes)

    def _num_classes(self, key: str) -> int:
        return len(self.coarse_classes) if key == "coarse_labels" else len(self.classes)

    def extra_repr(self) -> str:
        return super().extra_repr() + f"\nLabels: {self.label_type}"
