"""The layers: one module per family (linear.py, conv.py, ...); each class is re-exported by ``axonml.nn``."""

from __future__ import annotations

from . import (
    activation,
    activation_attention,
    conv,
    dropout,
    flatten,
    linear,
    loss,
    normalization,
    pooling,
    rnn,
    sampling,
    sparse,
    transformer,
)
from .activation import *  # noqa: F403
from .activation_attention import *  # noqa: F403
from .conv import *  # noqa: F403
from .dropout import *  # noqa: F403
from .flatten import *  # noqa: F403
from .linear import *  # noqa: F403
from .loss import *  # noqa: F403
from .normalization import *  # noqa: F403
from .pooling import *  # noqa: F403
from .rnn import *  # noqa: F403
from .sampling import *  # noqa: F403
from .sparse import *  # noqa: F403
from .transformer import *  # noqa: F403

_FAMILIES = (
    activation, activation_attention, conv, dropout, flatten, linear, loss, normalization, pooling, rnn, sampling,
    sparse, transformer,
)
__all__ = sorted(name for family in _FAMILIES for name in family.__all__)
