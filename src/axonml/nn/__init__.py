"""``axonml.nn``: modules, containers, parameters, initializers and utilities, as ``torch.nn``."""

from __future__ import annotations

from . import functional, init, modules, utils
from .containers import ModuleDict, ModuleList, Sequential
from .module import Module

# every layer (Linear, Conv2d, ReLU, CrossEntropyLoss, ...), star-imported per family so that
# type checkers see each family's literal __all__
from .modules.activation import *  # noqa: F403
from .modules.activation_attention import *  # noqa: F403
from .modules.conv import *  # noqa: F403
from .modules.dropout import *  # noqa: F403
from .modules.flatten import *  # noqa: F403
from .modules.linear import *  # noqa: F403
from .modules.loss import *  # noqa: F403
from .modules.normalization import *  # noqa: F403
from .modules.pooling import *  # noqa: F403
from .modules.rnn import *  # noqa: F403
from .modules.sampling import *  # noqa: F403
from .modules.sparse import *  # noqa: F403
from .modules.transformer import *  # noqa: F403
from .param_containers import ParameterDict, ParameterList
from .parameter import Buffer, Parameter

__all__ = [
    *modules.__all__,
    "Buffer",
    "Module",
    "ModuleDict",
    "ModuleList",
    "Parameter",
    "ParameterDict",
    "ParameterList",
    "Sequential",
    "functional",
    "init",
    "utils",
]
