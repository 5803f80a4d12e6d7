"""``axonml version``."""

from __future__ import annotations

import platform

import numpy as np
import typer

from .._version import __version__
from ..backend.cuda import device_count
from ._app import JSON_OPTION, app, emit_json


@app.command()
def version(as_json: bool = JSON_OPTION) -> None:
    """Print the versions of axonml, Python and NumPy, and the CUDA devices seen."""
    info = {
        "axonml": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cuda_devices": device_count(),
    }
    if as_json:
        emit_json(info)
        return
    for key, value in info.items():
        typer.echo(f"{key}: {value}")
