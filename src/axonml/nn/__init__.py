"""``axonml.nn``: modules, containers, parameters, initializers and utilities, as ``torch.nn``."""

from __future__ import annotations

from . import functional, init, utils
from .containers import ModuleDict, ModuleList, Sequential
from .module import Module
from .modules.flatten import Flatten, Unflatten
from .modules.linear import Bilinear, Identity, Linear
from .param_containers import ParameterDict, ParameterList
from .parameter import Buffer, Parameter

__all__ = [
    "Bilinear",
    "Buffer",
    "Flatten",
    "Identity",
    "Linear",
    "Module",
    "ModuleDict",
    "ModuleList",
    "Parameter",
    "ParameterDict",
    "ParameterList",
    "Sequential",
    "Unflatten",
    "functional",
    "init",
    "utils",
]
