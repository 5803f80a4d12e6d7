"""The layers: one module per family (linear.py, conv.py, ...); each class is re-exported by ``axonml.nn``."""

from __future__ import annotations

from . import activation, conv, dropout, flatten, linear, loss, pooling, sampling
from .activation import *  # noqa: F403
from .conv import *  # noqa: F403
from .dropout import *  # noqa: F403
from .flatten import *  # noqa: F403
from .linear import *  # noqa: F403
from .loss import *  # noqa: F403
from .pooling import *  # noqa: F403
from .sampling import *  # noqa: F403

_FAMILIES = (activation, conv, dropout, flatten, linear, loss, pooling, sampling)
__all__ = sorted(name for family in _FAMILIES for name in family.__all__)
