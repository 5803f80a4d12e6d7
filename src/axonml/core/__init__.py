"""L1: Tensor, dtypes, the autograd engine, grad modes, forward mode."""

from . import bind as _bind  # noqa: F401  (attaches methods and operators to Tensor)
from .tensor import Tensor

__all__ = ["Tensor"]
