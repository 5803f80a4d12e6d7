"""The Typer application every command module registers on, and the shared error handling.

Exit codes: 0 success, 1 failure (a clear one-line message on stderr), 2 bad usage
(Typer/Click's own code for wrong options and arguments).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

app = typer.Typer(
    name="axonml",
    help="axonml: train, evaluate, inspect, convert and ship models from one command.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


class CommandError(Exception):
    """A failure to report as one line on stderr with exit code 1."""


def fail(message: str) -> None:
    """Stop the command: print ``error: message`` to stderr and exit with code 1."""
    raise CommandError(message)


def handle_errors(fn: F) -> F:
    """Turn CommandError and the expected library errors into one line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise  # a deliberate exit code (typer.Exit subclasses RuntimeError)
        except CommandError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        except (OSError, ValueError, RuntimeError, TypeError, KeyError) as e:
            typer.echo(f"error: {type(e).__name__}: {e}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")  # the commands' shared --json


def emit_json(obj: Any) -> None:
    """Write ``obj`` as JSON on stdout (for ``--json`` output that feeds other programs)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


@app.callback()
def _root() -> None:
    """axonml: train, evaluate, inspect, convert and ship models from one command."""
