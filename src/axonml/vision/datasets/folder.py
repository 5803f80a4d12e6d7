"""Datasets from a folder tree with one sub-folder per class: ``DatasetFolder`` and ``ImageFolder``, as torchvision's.

``root/cat/001.png, root/cat/x/002.jpg, root/dog/003.png`` gives classes
``["cat", "dog"]`` (sorted folder names), ``class_to_idx`` ``{"cat": 0, "dog": 1}``
and ``samples`` ``[(path, class index), ...]`` in sorted order, walking each class
folder recursively (following links).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ._base import DatasetFileError, VisionDataset, pil_image
from .mnist import Transform

__all__ = ["IMG_EXTENSIONS", "DatasetFolder", "ImageFolder", "default_loader", "find_classes",
           "has_file_allowed_extension", "is_image_file", "make_dataset", "pil_loader"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def has_file_allowed_extension(filename: str, extensions: str | tuple[str, ...]) -> bool:
    """Whether ``filename`` ends with one of ``extensions`` (case-insensitive)."""
    exts = (extensions,) if isinstance(extensions, str) else tuple(extensions)
    return filename.lower().endswith(tuple(e.lower() for e in exts))


def is_image_file(filename: str) -> bool:
    """Whether ``filename`` has one of :data:`IMG_EXTENSIONS`."""
    return has_file_allowed_extension(filename, IMG_EXTENSIONS)


def find_classes(directory: str | os.PathLike[str]) -> tuple[list[str], dict[str, int]]:
    """The class folders of ``directory``, sorted, and their indices; FileNotFoundError when there are none."""
    classes = sorted(e.name for e in os.scandir(directory) if e.is_dir())
    if not classes:
        raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
    return classes, {c: i for i, c in enumerate(classes)}


def make_dataset(directory: str | os.PathLike[str], class_to_idx: dict[str, int] | None = None,
                 extensions: str | tuple[str, ...] | None = None,
                 is_valid_file: Callable[[str], bool] | None = None,
                 allow_empty: bool = False) -> list[tuple[str, int]]:
    """``(path, class index)`` for every valid file under each class folder, in sorted order.

    Exactly one of ``extensions`` and ``is_valid_file`` says which files count. A
    class folder with no valid file raises FileNotFoundError unless ``allow_empty``.
    """
    directory = os.path.expanduser(os.fspath(directory))
    if class_to_idx is None:
        _, class_to_idx = find_classes(directory)
    elif not class_to_idx:
        raise ValueError("'class_to_idx' must have at least one entry to collect any samples.")
    if (extensions is None) == (is_valid_file is None):
        raise ValueError("Both extensions and is_valid_file cannot be None or not None at the same time")
    if extensions is not None:
        exts = extensions

        def is_valid_file(path: str) -> bool:
            return has_file_allowed_extension(path, exts)

    assert is_valid_file is not None
    samples: list[tuple[str, int]] = []
    found: set[str] = set()
    for cls in sorted(class_to_idx):
        target_dir = os.path.join(directory, cls)
        if not os.path.isdir(target_dir):
            continue
        for folder, _, names in sorted(os.walk(target_dir, followlinks=True)):
            for name in sorted(names):
                path = os.path.join(folder, name)
                if is_valid_file(path):
                    samples.append((path, class_to_idx[cls]))
                    found.add(cls)
    empty = set(class_to_idx) - found
    if empty and not allow_empty:
        msg = f"Found no valid file for the classes {', '.join(sorted(empty))}. "
        if extensions is not None:
            msg += f"Supported extensions are: {extensions if isinstance(extensions, str) else ', '.join(extensions)}"
        raise FileNotFoundError(msg)
    return samples


def pil_loader(path: str) -> Any:
    """Open ``path`` with Pillow and convert to RGB; an unreadable image raises DatasetFileError naming it."""
    Image = pil_image()
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")  # convert() decodes now, while the file is open
    except FileNotFoundError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DatasetFileError(f"cannot decode the image {path}: {e}") from e


def default_loader(path: str) -> Any:
    """The loader :class:`ImageFolder` uses by default: :func:`pil_loader`."""
    return pil_loader(path)


class DatasetFolder(VisionDataset):
    """A dataset of files in per-class folders, read by ``loader`` (as torchvision's ``DatasetFolder``).

    Args: ``root``, ``loader`` (path -> sample), ``extensions`` or ``is_valid_file``
    (exactly one: which files count), ``transform``, ``target_transform``,
    ``allow_empty`` (accept class folders with no valid file). Attributes:
    ``classes``, ``class_to_idx``, ``samples`` (path, class index), ``targets``.
    Override :meth:`find_classes` for another folder-to-class rule.
    """

    def __init__(self, root: str | os.PathLike[str], loader: Callable[[str], Any],
                 extensions: str | tuple[str, ...] | None = None, transform: Transform = None,
                 target_transform: Transform = None, is_valid_file: Callable[[str], bool] | None = None,
                 allow_empty: bool = False) -> None:
        super().__init__(root, transform, target_transform)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{type(self).__name__}: {self.root} is not a folder")
        classes, class_to_idx = self.find_classes(self.root)
        self.samples = self.make_dataset(self.root, class_to_idx, extensions, is_valid_file, allow_empty)
        self.loader = loader
        self.extensions = extensions
        self.classes = classes
        self.class_to_idx = class_to_idx
        self.targets = [t for _, t in self.samples]

    @staticmethod
    def make_dataset(directory: str | os.PathLike[str], class_to_idx: dict[str, int],
                     extensions: str | tuple[str, ...] | None = None,
                     is_valid_file: Callable[[str], bool] | None = None,
                     allow_empty: bool = False) -> list[tuple[str, int]]:
        """The samples of ``directory`` (see :func:`make_dataset`)."""
        if class_to_idx is None:
            raise ValueError("The class_to_idx parameter cannot be None.")
        return make_dataset(directory, class_to_idx, extensions, is_valid_file, allow_empty)

    def find_classes(self, directory: str | os.PathLike[str]) -> tuple[list[str], dict[str, int]]:
        """The class names and indices of ``directory`` (see :func:`find_classes`)."""
        return find_classes(directory)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        path, target = self.samples[index]
        return self._apply(self.loader(path), target)


class ImageFolder(DatasetFolder):
    """Images in per-class folders, decoded with Pillow as RGB (as torchvision's ``ImageFolder``).

    Files count when they have one of :data:`IMG_EXTENSIONS`, unless ``is_valid_file``
    is given. ``imgs`` is the same list as ``samples``.
    """

    def __init__(self, root: str | os.PathLike[str], transform: Transform = None, target_transform: Transform = None,
                 loader: Callable[[str], Any] = default_loader, is_valid_file: Callable[[str], bool] | None = None,
                 allow_empty: bool = False) -> None:
        super().__init__(root, loader, IMG_EXTENSIONS if is_valid_file is None else None, transform=transform,
                         target_transform=target_transform, is_valid_file=is_valid_file, allow_empty=allow_empty)
        self.imgs = self.samples

