"""Gradient modes as context variables: correct per thread and per asyncio task.

Each mode is a context manager and a decorator (``@no_grad`` or ``@no_grad()``).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

GRAD_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("axonml_grad_enabled", default=True)
INFERENCE: contextvars.ContextVar[bool] = contextvars.ContextVar("axonml_inference_mode", default=False)


def is_grad_enabled() -> bool:
    """Whether ops record a graph for autograd in the current context."""
    return GRAD_ENABLED.get()


def is_inference_mode_enabled() -> bool:
    """Whether the current context is inside ``inference_mode()``."""
    return INFERENCE.get()


class _Mode:
    """A scoped setting of the grad mode; usable as ``with`` block or decorator."""

    _grad: bool = True
    _inference: bool | None = None

    def __init__(self) -> None:
        self._tokens: list[tuple[contextvars.Token[bool], contextvars.Token[bool] | None]] = []

    def __enter__(self) -> None:
        g = GRAD_ENABLED.set(self._grad)
        i = INFERENCE.set(self._inference) if self._inference is not None else None
        self._tokens.append((g, i))

    def __exit__(self, *exc: object) -> None:
        g, i = self._tokens.pop()
        if i is not None:
            INFERENCE.reset(i)
        GRAD_ENABLED.reset(g)

    def clone(self) -> _Mode:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._tokens = []
        return new

    def __call__(self, fn: F) -> F:
        mode = self

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with mode.clone():
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                gen = fn(*args, **kwargs)
                value = None
                while True:
                    with mode.clone():  # the mode holds only while the generator runs
                        try:
                            value = gen.send(value)
                        except StopIteration as stop:
                            return stop.value
                    value = yield value

            return gen_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with mode.clone():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class _DecoratorOrInstance(type):
    """Lets ``@no_grad`` (without parentheses) decorate a function directly."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and callable(args[0]) and not isinstance(args[0], bool):
            return super().__call__()(args[0])
        return super().__call__(*args, **kwargs)


class no_grad(_Mode, metaclass=_DecoratorOrInstance):  # noqa: N801 - PyTorch's name
    """Disable graph recording: ops inside produce tensors with no ``grad_fn``."""

    _grad = False


class enable_grad(_Mode, metaclass=_DecoratorOrInstance):  # noqa: N801
    """Re-enable graph recording inside a ``no_grad`` block."""

    _grad = True


class set_grad_enabled(_Mode):  # noqa: N801
    """Set recording on or off; takes effect at once, and as a context manager is undone on exit."""

    def __init__(self, mode: bool) -> None:
        super().__init__()
        self._grad = bool(mode)
        # Like PyTorch, calling it as a plain function switches the mode right away.
        self._immediate: contextvars.Token[bool] | None = GRAD_ENABLED.set(self._grad)

    def __enter__(self) -> None:
        if self._immediate is not None:
            self._tokens.append((self._immediate, None))
            self._immediate = None
        else:
            super().__enter__()

    def clone(self) -> _Mode:
        new = super().clone()
        new._immediate = None  # type: ignore[attr-defined]
        return new

    def __call__(self, fn: F) -> F:
        # Used as a decorator, the mode applies only inside calls of ``fn``.
        if self._immediate is not None:
            GRAD_ENABLED.reset(self._immediate)
            self._immediate = None
        return super().__call__(fn)


class inference_mode(_Mode, metaclass=_DecoratorOrInstance):  # noqa: N801
    """Like ``no_grad``, and marks the context as inference-only (``inference_mode(False)`` undoes it)."""

    def __init__(self, mode: bool = True) -> None:
        super().__init__()
        self._grad = not mode
        self._inference = bool(mode)
