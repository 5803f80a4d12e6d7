"""The persistent settings of a working folder: ``.axonml/config.json``.

One JSON object per folder (the current directory unless ``root`` is given), e.g.
``{"default_device": "cuda:1"}`` written by ``axonml gpu select 1``. Known keys:

* ``default_device``: the device commands use when none is given (``"cpu"`` or
  ``"cuda:N"``); read it with :func:`get_default_device`.

Other keys are kept as they are, so commands may add their own. Writes are atomic
(a temporary file in the same folder, then a rename), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONFIG_DIR = ".axonml"
CONFIG_FILE = "config.json"
DEFAULT_DEVICE = "default_device"


def config_path(root: str | os.PathLike[str] | None = None) -> Path:
    """``<root>/.axonml/config.json`` (``root`` defaults to the current directory)."""
    return Path.cwd() / CONFIG_DIR / CONFIG_FILE if root is None else Path(root) / CONFIG_DIR / CONFIG_FILE


def load_config(root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The settings of ``root`` (default: the current directory); ``{}`` when there is no config file.

    Raises ``ValueError`` naming the file when it exists but is not a JSON object.
    """
    path = config_path(root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); fix or delete it") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, found {type(value).__name__}; fix or delete it")
    return value


def save_config(config: Mapping[str, Any], root: str | os.PathLike[str] | None = None) -> Path:
    """Write ``config`` (the whole object) to ``<root>/.axonml/config.json`` atomically; returns the path."""
    path = config_path(root)
    text = json.dumps(dict(config), indent=2, sort_keys=True) + "\n"  # fails before touching the file if not JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def update_config(root: str | os.PathLike[str] | None = None, **values: Any) -> dict[str, Any]:
    """Set ``values`` in the folder's config (other keys kept), save it, and return the new config."""
    config = load_config(root)
    config.update(values)
    save_config(config, root)
    return config


def get_default_device(root: str | os.PathLike[str] | None = None) -> str | None:
    """The ``default_device`` saved by ``axonml gpu select`` (e.g. ``"cuda:1"``), or ``None`` when unset."""
    value = load_config(root).get(DEFAULT_DEVICE)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{config_path(root)}: {DEFAULT_DEVICE} must be a string like 'cuda:0', got {value!r}")
    return value
