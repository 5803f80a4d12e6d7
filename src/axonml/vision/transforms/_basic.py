"""Containers and conversions: Compose, Lambda, RandomApply/RandomChoice/RandomOrder, ToTensor,
PILToTensor, ToPILImage, ConvertImageDtype and Normalize (with dataset presets)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...core.random import Generator
from . import _rng
from ._convert import convert_image_dtype, normalize, pil_to_tensor, to_pil_image, to_tensor

# Per-channel statistics of the training sets, for images scaled to [0, 1] (ToTensor):
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)  # 60,000 training digits
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # 50,000 training images
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's pretrained models


def check_p(p: float, owner: str) -> float:
    """A probability in [0, 1]."""
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{owner}: p must be in [0, 1], got {p}")
    return p


def fmt(obj: Any, **fields: Any) -> str:
    """``Name(field=value, ...)`` for ``__repr__``."""
    inner = ", ".join(f"{k}={v!r}" for k, v in fields.items())
    return f"{type(obj).__name__}({inner})"


class Compose:
    """Apply ``transforms`` in order: ``Compose([Resize(32), ToTensor(), Normalize.cifar10()])``."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: every transform must be callable, got {type(t).__name__}")

    def __call__(self, img: Any) -> Any:
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        lines = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"Compose({lines}\n)"


class Lambda:
    """Apply a user function as a transform."""

    def __init__(self, lambd: Callable[[Any], Any]) -> None:
        if not callable(lambd):
            raise TypeError(f"Lambda: expected a callable, got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, img: Any) -> Any:
        return self.lambd(img)

    def __repr__(self) -> str:
        return f"Lambda({getattr(self.lambd, '__name__', self.lambd)!r})"


class RandomApply:
    """Apply the list of ``transforms`` (in order) with probability ``p``, else return the input."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]], p: float = 0.5, *,
                 generator: Generator | None = None) -> None:
        self.transforms = list(transforms)
        self.p = check_p(p, "RandomApply")
        self.generator = _rng.check_generator(generator, "RandomApply")

    def __call__(self, img: Any) -> Any:
        if not _rng.rand_below(self.p, self.generator):
            return img
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        return fmt(self, transforms=self.transforms, p=self.p)


class RandomChoice:
    """Apply one transform picked at random (with probabilities ``p``, uniform by default)."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]], p: Sequence[float] | None = None, *,
                 generator: Generator | None = None) -> None:
        self.transforms = list(transforms)
        if not self.transforms:
            raise ValueError("RandomChoice: needs at least one transform")
        if p is not None and len(p) != len(self.transforms):
            raise ValueError(f"RandomChoice: {len(p)} probabilities for {len(self.transforms)} transforms")
        weights = [1.0] * len(self.transforms) if p is None else [float(v) for v in p]
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"RandomChoice: probabilities must be non-negative with a positive sum, got {p}")
        total = sum(weights)
        self.p = [w / total for w in weights]
        self.generator = _rng.check_generator(generator, "RandomChoice")

    def __call__(self, img: Any) -> Any:
        u, acc = _rng.uniform(0.0, 1.0, self.generator), 0.0
        for t, w in zip(self.transforms, self.p):
            acc += w
            if u < acc:
                return t(img)
        return self.transforms[-1](img)

    def __repr__(self) -> str:
        return fmt(self, transforms=self.transforms, p=self.p)


class RandomOrder:
    """Apply ``transforms`` in a random order."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]], *, generator: Generator | None = None) -> None:
        self.transforms = list(transforms)
        self.generator = _rng.check_generator(generator, "RandomOrder")

    def __call__(self, img: Any) -> Any:
        for i in _rng.permutation(len(self.transforms), self.generator):
            img = self.transforms[i](img)
        return img

    def __repr__(self) -> str:
        return fmt(self, transforms=self.transforms)


class ToTensor:
    """PIL image or (H, W[, C]) array -> (C, H, W) tensor; uint8 becomes float in [0, 1]."""

    def __call__(self, pic: Any) -> Any:
        return to_tensor(pic)

    def __repr__(self) -> str:
        return "ToTensor()"


class PILToTensor:
    """PIL image -> (C, H, W) tensor of the image's own pixel type, not rescaled."""

    def __call__(self, pic: Any) -> Any:
        return pil_to_tensor(pic)

    def __repr__(self) -> str:
        return "PILToTensor()"


class ToPILImage:
    """(C, H, W) tensor or (H, W[, C]) array -> PIL image (floats are scaled by 255 unless mode='F')."""

    def __init__(self, mode: str | None = None) -> None:
        self.mode = mode

    def __call__(self, pic: Any) -> Any:
        return to_pil_image(pic, self.mode)

    def __repr__(self) -> str:
        return fmt(self, mode=self.mode)


class ConvertImageDtype:
    """Convert a tensor image to ``dtype``, rescaling between [0, 1] floats and [0, max] integers."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype

    def __call__(self, image: Any) -> Any:
        return convert_image_dtype(image, self.dtype)

    def __repr__(self) -> str:
        return fmt(self, dtype=self.dtype)


class Normalize:
    """``(x - mean) / std`` per channel of a float tensor (differentiable; see ``functional.normalize``).

    Presets for images scaled to [0, 1]: ``Normalize.mnist()``, ``.fashion_mnist()``, ``.cifar10()``,
    ``.cifar100()``, ``.imagenet()`` (the statistics are the module constants ``MNIST_MEAN``/``MNIST_STD``,
    ``CIFAR10_MEAN``, ``IMAGENET_STD``, ...).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> None:
        self.mean, self.std, self.inplace = tuple(float(m) for m in mean), tuple(float(s) for s in std), inplace
        if any(s == 0 for s in self.std):
            raise ValueError(f"Normalize: std {self.std} contains a zero, which would divide by zero")

    def __call__(self, tensor: Any) -> Any:
        return normalize(tensor, self.mean, self.std, self.inplace)

    @classmethod
    def mnist(cls, inplace: bool = False) -> Normalize:
        return cls(MNIST_MEAN, MNIST_STD, inplace)

    @classmethod
    def fashion_mnist(cls, inplace: bool = False) -> Normalize:
        return cls(FASHION_MNIST_MEAN, FASHION_MNIST_STD, inplace)

    @classmethod
    def cifar10(cls, inplace: bool = False) -> Normalize:
        return cls(CIFAR10_MEAN, CIFAR10_STD, inplace)

    @classmethod
    def cifar100(cls, inplace: bool = False) -> Normalize:
        return cls(CIFAR100_MEAN, CIFAR100_STD, inplace)

    @classmethod
    def imagenet(cls, inplace: bool = False) -> Normalize:
        return cls(IMAGENET_MEAN, IMAGENET_STD, inplace)

    def __repr__(self) -> str:
        return fmt(self, mean=self.mean, std=self.std, inplace=self.inplace)
