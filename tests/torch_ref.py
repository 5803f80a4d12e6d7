"""PyTorch as an optional oracle: functions that import it lazily."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def torch() -> Any:
    return importlib.import_module("torch")


def fn(name: str) -> Callable[..., Any]:
    """``torch.<name>``, resolved when called (PyTorch may be absent)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(torch(), name)(*args, **kwargs)

    call.__name__ = f"torch.{name}"
    return call
