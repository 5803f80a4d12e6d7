"""``axonml.vision.datasets``: MNIST and its kin, CIFAR, image folders and synthetic sets, as ``torchvision.datasets``.

Every dataset takes ``root`` (default ``$AXONML_HOME/datasets``), ``train``,
``transform``, ``target_transform`` and ``download`` as torchvision's, and
``ds[i]`` returns ``(PIL image, target)``; convert with a transform (e.g.
``axonml.vision.transforms.ToTensor``). ``download=True`` fetches from the
canonical mirrors with checksums verified (:mod:`axonml.io.download`); the
``mirrors=`` keyword or ``$AXONML_DATASETS_MIRROR`` (a mirror tree with one folder
per dataset class name) point it elsewhere. Pickled CIFAR batches go through a
restricted unpickler that cannot run code.
"""

from ._base import ENV_MIRROR, DatasetFileError, VisionDataset, default_root
from .cifar import CIFAR10, CIFAR100
from .digits import DIGITS_MEAN, DIGITS_STD, Digits
from .folder import IMG_EXTENSIONS, DatasetFolder, ImageFolder, default_loader, pil_loader
from .idx import read_idx
from .mnist import EMNIST, KMNIST, MNIST, FashionMNIST
from .safe_pickle import UnsafePickleError, load_pickle
from .synthetic import SyntheticCIFAR, SyntheticMNIST

__all__ = [
    "CIFAR10", "CIFAR100", "DIGITS_MEAN", "DIGITS_STD", "EMNIST", "ENV_MIRROR", "IMG_EXTENSIONS", "KMNIST", "MNIST",
    "DatasetFileError", "DatasetFolder", "Digits", "FashionMNIST", "ImageFolder", "SyntheticCIFAR", "SyntheticMNIST",
    "UnsafePickleError", "VisionDataset", "default_loader", "default_root", "load_pickle", "pil_loader", "read_idx",
]
