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


def assert_second_derivatives_match(ours: Callable[..., Any], theirs: Callable[..., Any], arrays: list[Any],
                                    rtol: float = 1e-9, atol: float = 1e-8) -> None:
    """The gradient of ``sum(grad(sum(f(*xs)^3))^2)`` with respect to every float64 input, axonml against PyTorch:
    a second derivative through every input (``ours`` takes axonml tensors, ``theirs`` torch tensors)."""
    import numpy as np

    import axonml as ax

    t = torch()
    xs = [ax.tensor(a, requires_grad=True) for a in arrays]
    ts = [t.tensor(a, requires_grad=True) for a in arrays]
    y, ty = ours(*xs), theirs(*ts)
    g = ax.autograd.grad((y * y * y).sum(), xs, create_graph=True)
    tg = t.autograd.grad((ty * ty * ty).sum(), ts, create_graph=True)
    gg = ax.autograd.grad(sum((a * a).sum() for a in g), xs)
    tgg = t.autograd.grad(sum((a * a).sum() for a in tg), ts)
    for a, b in zip(gg, tgg, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol, atol=atol)
