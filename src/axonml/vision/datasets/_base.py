"""What every vision dataset shares: the root folder, the transforms, mirrors, errors and Pillow."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...data import Dataset
from ...errors import AxonmlError
from ...io.download import axonml_home

__all__ = ["ENV_MIRROR", "DatasetFileError", "VisionDataset", "default_root", "resolve_mirrors", "pil_image"]

# A mirror tree holding one folder per dataset class: $AXONML_DATASETS_MIRROR/MNIST/train-images-idx3-ubyte.gz
ENV_MIRROR = "AXONML_DATASETS_MIRROR"


class DatasetFileError(AxonmlError, ValueError):
    """A dataset file is truncated, corrupt, or not in the format its dataset expects."""


def default_root() -> Path:
    """Where datasets live when no ``root`` is given: ``axonml_home()/"datasets"``."""
    return axonml_home() / "datasets"


def resolve_mirrors(name: str, default: Sequence[str], given: Sequence[str] | str | None) -> list[str]:
    """The mirror base URLs for dataset ``name``, by precedence.

    1. ``given`` (the dataset's ``mirrors=`` argument), a URL or a list of URLs;
    2. ``$AXONML_DATASETS_MIRROR``: comma-separated roots of mirror trees, each
       holding one folder per dataset class name (``<root>/MNIST/...``);
    3. the dataset's canonical mirrors (``default``).
    """
    if given is not None:
        return [given] if isinstance(given, str) else list(given)
    env = os.environ.get(ENV_MIRROR, "").strip()
    if env:
        return [b.strip().rstrip("/") + "/" + name for b in env.split(",") if b.strip()]
    return list(default)


def pil_image() -> Any:
    """The ``PIL.Image`` module, or an ImportError saying how to install Pillow."""
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - Pillow is in the vision and dev extras
        raise ImportError("axonml.vision.datasets returns PIL images: install Pillow "
                          "(pip install 'axonml[vision]')") from e
    return Image


class VisionDataset(Dataset[tuple[Any, Any]]):
    """Base of the vision datasets: ``root`` (default :func:`default_root`), ``transform``, ``target_transform``.

    ``transform`` is applied to the image and ``target_transform`` to the target by
    :meth:`_apply`, as in torchvision.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, transform: Callable[[Any], Any] | None = None,
                 target_transform: Callable[[Any], Any] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def _apply(self, image: Any, target: Any) -> tuple[Any, Any]:
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def extra_repr(self) -> str:
        """Extra lines for ``repr``: the split of the datasets with a ``train`` flag (subclasses add more)."""
        train = getattr(self, "train", None)
        return "" if train is None else f"Split: {'Train' if train else 'Test'}"

    def __repr__(self) -> str:
        lines = [f"Number of datapoints: {len(self)}", f"Root location: {self.root}"]
        lines += [x for x in self.extra_repr().splitlines() if x]
        if self.transform is not None:
            lines.append(f"Transform: {self.transform!r}")
        if self.target_transform is not None:
            lines.append(f"Target transform: {self.target_transform!r}")
        return f"Dataset {type(self).__name__}\n" + "\n".join("    " + x for x in lines)


class NamedClasses:
    """Mixin of the datasets with a fixed ``classes`` list: ``class_to_idx`` derived from it."""

    classes: list[str]

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name -> index."""
        return {c: i for i, c in enumerate(self.classes)}
