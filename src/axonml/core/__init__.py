"""L1: Tensor, dtypes, the autograd engine, grad modes, forward mode."""

from . import bind as _bind
from .tensor import Tensor

__all__ = ["Tensor"]
