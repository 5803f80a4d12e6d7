"""Entry point of the ``axonml`` command: imports every command module, then runs the app."""

from __future__ import annotations

# each module registers its commands on the app when imported
from . import (  # noqa: F401
    analyze,
    bench,
    bundle,
    convert,
    data_cmd,
    evaluate,
    gpu,
    inspect_cmd,
    predict,
    project,
    train,
    version,
    workspace,
)
from ._app import app


def main() -> None:
    """Run the ``axonml`` command line (named ``axonml`` also under ``python -m``, for shell completion)."""
    app(prog_name="axonml")


if __name__ == "__main__":
    main()
