"""The model registry: builders by name, as ``torchvision.models.get_model`` / ``list_models``.

A builder is a function returning a fresh :class:`~axonml.nn.Module` (``resnet18(**kw)``);
``@register_model`` files it under its own name (or the one given), lower case, and
``get_model(name, **kw)`` calls it with ``kw``. A few other spellings are aliases
(``"lenet"`` for ``"lenet5"``): ``get_model``/``get_model_builder`` accept them,
``list_models`` gives the canonical names only.
"""

from __future__ import annotations

import difflib
import fnmatch
import types
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from ...io import register_builder
from ...nn import Module

__all__ = ["get_model", "get_model_builder", "list_models", "register_model"]

F = TypeVar("F", bound=Callable[..., Module])

_BUILDERS: dict[str, Callable[..., Module]] = {}
# other names of registered models (lower case -> canonical name); never listed by list_models
_ALIASES: dict[str, str] = {"lenet": "lenet5"}


@overload
def register_model(name: F) -> F: ...


@overload
def register_model(name: str | None = None) -> Callable[[F], F]: ...


def register_model(name: Any = None) -> Any:
    """Register a model builder: ``@register_model``, ``@register_model()`` or ``@register_model("my_net")``.

    The name (the function's own name by default) is stored lower case; registering a
    name twice raises ``ValueError``. The function is returned unchanged.
    """
    if callable(name):  # used bare: @register_model
        return register_model(None)(name)
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"register_model: the name must be a non-empty string, got {name!r}")

    def wrap(fn: F) -> F:
        key = (name or fn.__name__).lower()
        if key in _BUILDERS:
            raise ValueError(f"register_model: a model named {key!r} is already registered "
                             f"(by {_BUILDERS[key].__module__}.{_BUILDERS[key].__qualname__})")
        _BUILDERS[key] = fn
        register_builder(key, fn)  # archives can name it: ModelArchive.save(..., builder=key, config=kw)
        return fn

    return wrap


def _patterns(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def list_models(module: types.ModuleType | str | None = None, include: str | Iterable[str] | None = None,
                exclude: str | Iterable[str] | None = None) -> list[str]:
    """The sorted names of the registered models.

    ``module`` keeps the builders defined in that module (or package, e.g.
    ``axonml.vision.models``; a module object or its dotted name). ``include`` keeps names
    matching any of its Unix-shell patterns (``"resnet*"``), ``exclude`` drops names matching any.
    """
    prefix = module.__name__ if isinstance(module, types.ModuleType) else module
    names = sorted(n for n, fn in _BUILDERS.items()
                   if prefix is None or fn.__module__ == prefix or fn.__module__.startswith(prefix + "."))
    inc, exc = _patterns(include), _patterns(exclude)
    if inc:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in inc)]
    if exc:
        names = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in exc)]
    return names


def get_model_builder(name: str) -> Callable[..., Module]:
    """The builder registered as ``name`` or one of its aliases (case-insensitive); ``ValueError`` naming close
    matches otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"get_model_builder: the name must be a string, got {type(name).__name__}")
    key = name.lower()
    key = key if key in _BUILDERS else _ALIASES.get(key, key)
    if key not in _BUILDERS:
        close = difflib.get_close_matches(key, list(_BUILDERS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; list_models() gives every name"
        raise ValueError(f"Unknown model {name!r}{hint}")
    return _BUILDERS[key]


def get_model(name: str, **config: Any) -> Module:
    """A new model ``name`` built with the keyword arguments ``config`` (e.g. ``num_classes=10``)."""
    return get_model_builder(name)(**config)
