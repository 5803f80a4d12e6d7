"""``axonml.nn``: modules, containers, parameters, initializers and utilities, as ``torch.nn``."""

from __future__ import annotations

from . import functional, init, modules, utils
from .containers import ModuleDict, ModuleList, Sequential
from .module import Module
from .modules import *  # noqa: F403  (every layer: Linear, Conv2d, ReLU, CrossEntropyLoss, ...)
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
