"""The layers: one module per family (linear.py, flatten.py, ...); each class is re-exported by ``axonml.nn``."""

from __future__ import annotations

from .flatten import Flatten, Unflatten
from .linear import Bilinear, Identity, Linear

__all__ = ["Bilinear", "Flatten", "Identity", "Linear", "Unflatten"]
