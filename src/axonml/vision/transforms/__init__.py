"""``axonml.vision.transforms``: image transforms, as ``torchvision.transforms``.

Every transform accepts three kinds of image and returns the same kind:

- a PIL image (Pillow does the work: resize, rotate, affine, enhance, convert);
- a NumPy array in HWC (or HW) layout of any dtype (uint8 images stay uint8);
- an axonml Tensor in ``(..., C, H, W)`` (or ``(H, W)``) layout, on any device: the
  array code runs with the tensor's array module (NumPy or CuPy), so CUDA images
  stay on the GPU. Results carry no autograd history, except ``Normalize``, which
  is written with tensor ops and is differentiable.

Random transforms draw their parameters from axonml's default CPU generator
(``axonml.manual_seed(s)`` makes a pipeline repeat; DataLoader workers seed it per
worker) or from the CPU ``axonml.Generator`` given as ``generator=``.

Dataset statistics for ``Normalize``: ``MNIST_MEAN``/``MNIST_STD``, ``FASHION_MNIST_*``,
``CIFAR10_*``, ``CIFAR100_*``, ``IMAGENET_*``, or ``Normalize.mnist()``, ``.cifar10()``, ...
"""

from __future__ import annotations

from . import functional
from ._basic import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MNIST_MEAN,
    MNIST_STD,
    Compose,
    ConvertImageDtype,
    Lambda,
    Normalize,
    PILToTensor,
    RandomApply,
    RandomChoice,
    RandomOrder,
    ToPILImage,
    ToTensor,
)
from ._color import ColorJitter, GaussianBlur, Grayscale, RandomErasing, RandomGrayscale
from ._geometry import (
    CenterCrop,
    Pad,
    RandomAffine,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomRotation,
    RandomVerticalFlip,
    Resize,
)
from ._kinds import InterpolationMode

__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD",
    "IMAGENET_MEAN", "IMAGENET_STD", "MNIST_MEAN", "MNIST_STD",
    "CenterCrop", "ColorJitter", "Compose", "ConvertImageDtype", "GaussianBlur", "Grayscale", "InterpolationMode",
    "Lambda", "Normalize", "PILToTensor", "Pad", "RandomAffine", "RandomApply", "RandomChoice", "RandomCrop",
    "RandomErasing", "RandomGrayscale", "RandomHorizontalFlip", "RandomOrder", "RandomResizedCrop",
    "RandomRotation", "RandomVerticalFlip", "Resize", "ToPILImage", "ToTensor", "functional",
]
