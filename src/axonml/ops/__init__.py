"""L2: the functional API. Primitive-backed functions come from core; composed ops live here.

Each module lists its public functions in ``__all__`` and the Tensor methods
it adds in ``METHODS``; this package re-exports the first and binds the second.
"""

from __future__ import annotations

from ..core.bind import FUNCTIONS as _PRIM_FUNCTIONS
from ..core.tensor import Tensor as _Tensor
from . import indexing, linalg_ops, math, random, reduction, shape

globals().update(_PRIM_FUNCTIONS)
_MODULES = (math, reduction, shape, indexing, linalg_ops, random)
for _m in _MODULES:
    globals().update({name: getattr(_m, name) for name in _m.__all__})
    for _name, _fn in _m.METHODS.items():
        setattr(_Tensor, _name, _fn)

__all__ = sorted(set(_PRIM_FUNCTIONS) | {n for m in _MODULES for n in m.__all__})
