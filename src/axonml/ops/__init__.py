"""L2: the functional API. Primitive-backed functions come from core; composed ops live here."""

from ..core.bind import FUNCTIONS as _PRIM_FUNCTIONS

globals().update(_PRIM_FUNCTIONS)

__all__ = sorted(_PRIM_FUNCTIONS)
