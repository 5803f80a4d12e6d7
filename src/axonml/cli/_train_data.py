"""Datasets for ``axonml train``/``eval``: finding the files, splitting, and turning pixels into model inputs.

Array datasets (MNIST, Fashion-MNIST, CIFAR-10/100 and the synthetic ones) stay
as uint8 pixels in a ``TensorDataset``; each batch is turned into the model's
input on its device by :meth:`InputSpec.prepare` (scale to [0, 1] as
``ToTensor`` does, repeat a grey channel when the model wants RGB, then the
dataset's ``Normalize`` preset): less memory, and a quarter of the bytes to move
to a GPU. An ``imagefolder:PATH`` dataset decodes images per sample with
``Resize`` + ``ToTensor`` + ``Normalize`` (its mean and std measured on its
training images), which is where ``--workers`` pays.

``mnist`` found nowhere and not downloadable (offline) falls back, with one line on
stderr, to :class:`~axonml.vision.datasets.Digits`: scikit-learn's 1,797 real
handwritten digits at 28x28 (never to generated noise); ``$AXONML_NO_FALLBACK=1``
(or ``fallback=False``) makes it fail instead. ``digits`` also names them directly.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.creation import from_numpy
from ..core.tensor import Tensor
from ..data import Dataset, Subset, TensorDataset
from ..io.download import DownloadError, axonml_home
from ..vision import datasets as vds
from ..vision import transforms as T
from ._app import CommandError

# dataset name -> (class, Normalize mean, std, folder names looked for under ../shared/data)
_ARRAY_SETS: dict[str, tuple[Any, tuple[float, ...], tuple[float, ...], tuple[str, ...]]] = {
    "mnist": (vds.MNIST, T.MNIST_MEAN, T.MNIST_STD, ("mnist", "MNIST")),
    "fashion-mnist": (vds.FashionMNIST, T.FASHION_MNIST_MEAN, T.FASHION_MNIST_STD, ("fashion-mnist", "FashionMNIST")),
    "cifar10": (vds.CIFAR10, T.CIFAR10_MEAN, T.CIFAR10_STD, ("cifar-10-batches-py", "cifar10")),
    "cifar100": (vds.CIFAR100, T.CIFAR100_MEAN, T.CIFAR100_STD, ("cifar-100-python", "cifar100")),
    "digits": (vds.Digits, vds.DIGITS_MEAN, vds.DIGITS_STD, ()),
    "synthetic-mnist": (vds.SyntheticMNIST, T.MNIST_MEAN, T.MNIST_STD, ()),
    "synthetic-cifar": (vds.SyntheticCIFAR, T.CIFAR10_MEAN, T.CIFAR10_STD, ()),
}
ENV_NO_FALLBACK = "AXONML_NO_FALLBACK"  # set to 1: a missing MNIST is an error, never the digits fallback
_STATS_IMAGES = 256  # images an image folder's mean and std are measured on


@dataclass
class InputSpec:
    """What the model takes: ``shape`` (C, H, W), the normalization, the class names, the data's own channels."""

    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]
    data_channels: int

    def to_meta(self) -> dict[str, Any]:
        """The spec as archive/checkpoint metadata (read back by :meth:`from_meta`)."""
        return {"input_shape": list(self.shape), "mean": list(self.mean), "std": list(self.std),
                "classes": list(self.classes), "data_channels": self.data_channels,
                "image_mode": "L" if self.shape[0] == 1 else "RGB"}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> InputSpec:
        """The spec recorded in metadata by :meth:`to_meta`; CommandError when it is missing."""
        try:
            c, h, w = (int(v) for v in meta["input_shape"])
            return cls((c, h, w), tuple(float(v) for v in meta["mean"]), tuple(float(v) for v in meta["std"]),
                       [str(v) for v in meta["classes"]], int(meta.get("data_channels", c)))
        except (KeyError, TypeError, ValueError):
            raise CommandError("the model file records no input shape, normalization and classes "
                               "(it was not written by `axonml train`)") from None

    def prepare(self, pixels: Tensor) -> Tensor:
        """uint8 pixels (N, C, H, W) (already on the model's device) -> normalized float32 model input."""
        x = pixels.float() / 255.0  # as ToTensor
        if x.shape[1] == 1 and self.shape[0] == 3:
            x = x.expand(x.shape[0], 3, *x.shape[2:])  # grey -> RGB, as Grayscale(num_output_channels=3)
        return T.functional.normalize(x, self.mean, self.std)  # type: ignore[no-any-return]


@dataclass
class DataBundle:
    """The training and validation sets of a run, and how their batches become model inputs."""

    train: Dataset[Any]
    val: Dataset[Any]
    val_source: str
    spec: InputSpec
    pixels: bool  # batches are uint8 pixels for spec.prepare (else ready float inputs)
    info: dict[str, Any] = field(default_factory=dict)


def pixels_nchw(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W) or (N, H, W, C) -> (N, C, H, W), contiguous."""
    if images.ndim == 3:
        return np.ascontiguousarray(images[:, None])
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def find_data_root(dataset: str, root: str) -> Path:
    """Where ``dataset`` is read from: ``root`` if given, else ../shared/data/<name> beside the project
    (the current folder's repository, or the one axonml is installed from) when present, else
    ``$AXONML_HOME/datasets``."""
    if root:
        return Path(root).expanduser()
    names = _ARRAY_SETS[dataset][3] if dataset in _ARRAY_SETS else ()
    for repo in _repo_roots():
        for name in names:
            candidate = repo.parent / "shared" / "data" / name
            if candidate.is_dir():
                return candidate
    return axonml_home() / "datasets"


def _repo_roots() -> list[Path]:
    """The repositories around the current folder and around the axonml sources (with a pyproject.toml)."""
    found: list[Path] = []
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / "pyproject.toml").is_file() and folder not in found:
                found.append(folder)
                break
    return found


def _open_raw(dataset: str, root: Path, train: bool, download: bool, limit: int) -> Any:
    """A split of an array dataset; FileNotFoundError/DownloadError when its files are missing and not fetched."""
    cls = _ARRAY_SETS[dataset][0]
    if dataset.startswith("synthetic-"):
        return cls(train=train, size=limit or None)  # generate only what is used
    if dataset == "digits":
        return cls(train=train)
    try:
        return cls(root, train=train, download=False)
    except FileNotFoundError:
        if not download:
            raise
        return cls(root, train=train, download=True)


def _open_split(dataset: str, root: Path, train: bool, download: bool, limit: int) -> Any:
    """:func:`_open_raw` with its errors as one-line CommandErrors."""
    try:
        return _open_raw(dataset, root, train, download, limit)
    except DownloadError as e:
        raise CommandError(f"dataset {dataset} is not in {root} and could not be downloaded ({e}); "
                           "pass --data-root DIR with its files") from None
    except (FileNotFoundError, ImportError, vds.DatasetFileError) as e:
        raise CommandError(f"dataset {dataset}: {e}") from None


def fallback_enabled(fallback: bool = True) -> bool:
    """Whether a missing MNIST may fall back to the scikit-learn digits: ``fallback`` and not
    ``$AXONML_NO_FALLBACK`` set to a true value, and scikit-learn importable."""
    env = os.environ.get(ENV_NO_FALLBACK, "").strip().lower()
    if not fallback or env not in ("", "0", "false", "no"):
        return False
    return importlib.util.find_spec("sklearn") is not None


def _open_or_fallback(dataset: str, root: Path, train: bool, download: bool, limit: int,
                      fallback: bool, verb: str = "training on") -> tuple[str, Any]:
    """(the dataset actually used, its split): MNIST when found or downloaded, else (if allowed) the digits."""
    if dataset != "mnist" or not fallback_enabled(fallback):
        return dataset, _open_split(dataset, root, train, download, limit)
    try:
        return dataset, _open_raw(dataset, root, train, download, limit)
    except (FileNotFoundError, DownloadError):
        pass  # missing and not fetched: the digits below (a corrupt file is still an error)
    except vds.DatasetFileError as e:
        raise CommandError(f"dataset {dataset}: {e}") from None
    how = "not downloadable (offline)" if download else "downloads are off (data.download = false)"
    print(f"MNIST not found in {root} and {how}: {verb} the 1,797 real scikit-learn digits instead "
          f"(upscaled to 28x28; {ENV_NO_FALLBACK}=1 makes this an error)", file=sys.stderr, flush=True)
    return "digits", _open_split("digits", root, train, download, limit)


def _arrays(ds: Any, limit: int) -> tuple[np.ndarray, np.ndarray]:
    images = ds.data.numpy() if isinstance(ds.data, Tensor) else np.asarray(ds.data)
    targets = ds.targets.numpy() if isinstance(ds.targets, Tensor) else np.asarray(ds.targets)
    if limit:
        images, targets = images[:limit], targets[:limit]
    return pixels_nchw(images), targets.astype(np.int64)


def holdout_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) index arrays: a seeded permutation's first ``fraction`` of ``n`` is held out."""
    n_val = round(n * fraction)
    if n_val < 1 or n_val >= n:
        raise CommandError(f"data.val_split={fraction} of {n} samples leaves no validation or no training "
                           "samples; change it (0 validates on the test split)")
    perm = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def model_channels(model: str, data_channels: int) -> int:
    """The channels the model's input gets: models built for any channel count take the data's own,
    the torchvision-style models (ResNet, VGG, ViT, MobileNet) take RGB."""
    return data_channels if model.lower() in ("mlp", "lenet5", "simple_cnn") else 3


def load_data(dataset: str, root: str, *, model: str, val_split: float, limit: int, seed: int,
              download: bool = True, image_size: int = 32, split: str = "fit",
              norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None, fallback: bool = True) -> DataBundle:
    """The data of a run. ``split='fit'``: training + validation (held out, or the test split when
    ``val_split == 0``); ``'test'``/``'train'``: that split alone in ``val`` (for ``axonml eval``).
    ``norm``: the (mean, std) to normalize an image folder with, instead of measuring them.
    ``fallback``: a missing, undownloadable MNIST becomes the scikit-learn digits (see the module doc)."""
    if dataset.startswith("imagefolder:"):
        return _image_folder(dataset.split(":", 1)[1], model=model, val_split=val_split, limit=limit, seed=seed,
                             image_size=image_size, split=split, norm=norm)
    if dataset not in _ARRAY_SETS:
        raise CommandError(f"unknown dataset {dataset!r}")
    folder = find_data_root(dataset, root)
    want_train = split in ("fit", "train")
    verb = "training on" if split == "fit" else "using"
    dataset, base = _open_or_fallback(dataset, folder, want_train, download, limit, fallback, verb)
    _, mean, std, _ = _ARRAY_SETS[dataset]
    images, targets = _arrays(base, limit)
    classes = [str(c) for c in base.classes]
    channels = images.shape[1]
    c = model_channels(model, channels)
    spec = InputSpec((c, images.shape[2], images.shape[3]), mean * c if len(mean) == 1 and c == 3 else mean,
                     std * c if len(std) == 1 and c == 3 else std, classes, channels)
    info = {"dataset": dataset, "root": "" if dataset.startswith("synthetic-") or dataset == "digits" else str(folder)}

    def tensors(idx: Any = slice(None)) -> TensorDataset:
        return TensorDataset(from_numpy(images[idx]), from_numpy(targets[idx]))

    if split != "fit":
        return DataBundle(tensors(), tensors(), f"the {split} split", spec, True, info)
    if val_split > 0:
        tr, va = holdout_indices(len(targets), val_split, seed)
        source = f"{len(va)} samples held out of the training split (val_split={val_split})"
        return DataBundle(tensors(tr), tensors(va), source, spec, True, info)
    test = _open_split(dataset, folder, train=False, download=download, limit=limit)
    test_images, test_targets = _arrays(test, limit)
    val = TensorDataset(from_numpy(test_images), from_numpy(test_targets))
    return DataBundle(tensors(), val, f"the test split ({len(test_targets)} samples)", spec, True, info)


def _folder_parts(path: Path) -> tuple[Path, Path | None]:
    """(training folder, test folder or None): ``PATH/train`` + ``PATH/val`` (or ``test``) when present."""
    if (path / "train").is_dir():
        for name in ("val", "test"):
            if (path / name).is_dir():
                return path / "train", path / name
        return path / "train", None
    return path, None


def _image_folder(path_text: str, *, model: str, val_split: float, limit: int, seed: int, image_size: int,
                  split: str, norm: tuple[tuple[float, ...], tuple[float, ...]] | None) -> DataBundle:
    path = Path(path_text).expanduser()
    if not path.is_dir():
        raise CommandError(f"imagefolder: {path} is not a folder")
    train_dir, test_dir = _folder_parts(path)
    size = (image_size, image_size)
    try:
        probe = vds.ImageFolder(str(train_dir), transform=T.Compose([T.Resize(size), T.ToTensor()]))
    except FileNotFoundError as e:
        raise CommandError(f"imagefolder: {e}") from None
    c = model_channels(model, 3)
    if norm is not None:
        mean, std = norm
    else:  # mean and std per channel, measured on evenly spaced training images
        picks = np.linspace(0, len(probe) - 1, min(len(probe), _STATS_IMAGES)).astype(int)
        stack = np.stack([probe[int(i)][0].numpy() for i in picks])  # (n, 3, H, W)
        mean = tuple(float(v) for v in stack.mean(axis=(0, 2, 3)))
        std = tuple(max(float(v), 1e-3) for v in stack.std(axis=(0, 2, 3)))
    transform = T.Compose([T.Resize(size), T.ToTensor(), T.Normalize(mean, std)])
    spec = InputSpec((c, image_size, image_size), mean, std, list(probe.classes), 3)
    info = {"dataset": f"imagefolder:{path}", "root": str(path)}

    def folder(p: Path) -> Dataset[Any]:
        ds: Dataset[Any] = vds.ImageFolder(str(p), transform=transform)
        n = len(ds)  # type: ignore[arg-type]
        return Subset(ds, list(range(min(n, limit)))) if limit and limit < n else ds

    if split != "fit":
        chosen = train_dir if split == "train" or test_dir is None else test_dir
        ds = folder(chosen)
        return DataBundle(ds, ds, f"the images in {chosen}", spec, False, info)
    train_ds = folder(train_dir)
    if val_split > 0:
        tr, va = holdout_indices(len(train_ds), val_split, seed)  # type: ignore[arg-type]
        return DataBundle(Subset(train_ds, tr.tolist()), Subset(train_ds, va.tolist()),
                          f"{len(va)} images held out of {train_dir} (val_split={val_split})", spec, False, info)
    if test_dir is None:
        raise CommandError(f"imagefolder: data.val_split=0 needs a {path}/val or {path}/test folder")
    val_ds = folder(test_dir)
    return DataBundle(train_ds, val_ds, f"the images in {test_dir}", spec, False, info)

