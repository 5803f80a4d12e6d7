"""Output helpers shared by the inspect, convert, zip and data commands: consoles, sizes, help text."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])


def make_console() -> Console:
    """A Rich console for reports; piped output gets 160 columns so tables and hashes are not folded."""
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = max(console.width, 160)
    return console


def human_bytes(n: float) -> str:
    """``n`` bytes in binary units (``1.50 MiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"  # pragma: no cover - the loop returns at GiB


def reflow_doc(fn: F) -> F:
    """Join the wrapped lines of each docstring paragraph, so ``--help`` reflows them to the terminal's width.

    Put it innermost (just above ``def``): the decorators above copy the docstring Typer reads.
    """
    doc = inspect.cleandoc(fn.__doc__ or "")
    fn.__doc__ = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))
    return fn
