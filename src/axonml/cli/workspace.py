"""``axonml load``: remember a model and/or a dataset in ``.axonml/workspace.json`` of the current folder.

``axonml analyze`` uses what is loaded when no path is given. The file is
written atomically (a temporary file renamed over the old one), so a crash
never leaves half a workspace.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import typer

from ..vision.datasets.inspect import detect_format, open_dataset
from ._app import app, emit_json, fail, handle_errors
from ._modelfiles import sniff

WORKSPACE_DIR = ".axonml"
WORKSPACE_FILE = "workspace.json"
MODEL_FORMATS = ("axonml-archive", "axonml-save", "pt", "safetensors")

load_app = typer.Typer(help="Load a model and/or a dataset into the workspace (.axonml/workspace.json).",
                       no_args_is_help=True)
app.add_typer(load_app, name="load")
_MODEL_ARG = typer.Argument(..., help="An .axonml archive, or a .pt/.safetensors state dict.")
_DATA_ARG = typer.Argument(..., help="A dataset: IDX folder, CIFAR batch folder, ImageFolder or CSV file.")


def workspace_path(root: Path | None = None) -> Path:
    """``<root or cwd>/.axonml/workspace.json``."""
    return (root or Path.cwd()) / WORKSPACE_DIR / WORKSPACE_FILE


def read_workspace(root: Path | None = None) -> dict[str, Any]:
    """The workspace state (``{}`` when nothing was loaded); a corrupt file is an error."""
    path = workspace_path(root)
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable workspace file ({e}); run `axonml load clear`") from e
    if not isinstance(state, dict):
        raise ValueError(f"{path}: the workspace file is not a JSON object; run `axonml load clear`")
    return state


def write_workspace(state: dict[str, Any], root: Path | None = None) -> Path:
    """Write ``state`` atomically: to a temporary file in the same folder, then renamed over the old one."""
    path = workspace_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".workspace-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def model_entry(path: Path) -> dict[str, Any]:
    """What ``load model`` records: absolute path, format (from the content), size and SHA-256."""
    fmt = sniff(path)
    if fmt not in MODEL_FORMATS:
        fail(f"{path}: a {fmt} file, not a model (.axonml archive, .pt or .safetensors)")
    return {"path": str(path.resolve()), "format": fmt, "size": path.stat().st_size, "sha256": _sha256(path),
            "loaded_at": _now()}


def data_entry(path: Path) -> dict[str, Any]:
    """What ``load data`` records: absolute path, detected format, samples and classes (the dataset is read)."""
    if not path.exists():
        fail(f"{path}: no such file or folder")
    fmt = detect_format(path)
    ds = open_dataset(path, format=fmt, tolerant=True)
    if ds.num_samples == 0:
        fail(f"{path}: a {fmt} dataset with no samples")
    return {"path": str(path.resolve()), "format": fmt, "num_samples": ds.num_samples,
            "num_classes": len(ds.classes) if ds.classes is not None else None,
            "parts": [p.name for p in ds.parts], "loaded_at": _now()}


def _say(entry: dict[str, Any], what: str) -> None:
    if what == "model":
        typer.echo(f"model: {entry['path']} ({entry['format']}, {entry['size']:,} bytes, "
                   f"sha256 {entry['sha256'][:12]})")
    else:
        classes = f", {entry['num_classes']} classes" if entry.get("num_classes") else ""
        typer.echo(f"data: {entry['path']} ({entry['format']}, {entry['num_samples']:,} samples{classes})")


def _record(what: str, entry: dict[str, Any], json_out: bool) -> None:
    """Store ``entry`` as the workspace's ``what`` ("model" or "data") and report it."""
    state = read_workspace()
    state[what] = entry
    write_workspace(state)
    emit_json(entry) if json_out else _say(entry, what)


@load_app.command("model")
@handle_errors
def load_model(path: Path = _MODEL_ARG,
               json_out: bool = typer.Option(False, "--json", help="Print the recorded entry as JSON.")) -> None:
    """Record a model file (path, format, size, SHA-256) as the workspace's model."""
    _record("model", model_entry(path), json_out)


@load_app.command("data")
@handle_errors
def load_data(path: Path = _DATA_ARG,
              json_out: bool = typer.Option(False, "--json", help="Print the recorded entry as JSON.")) -> None:
    """Record a dataset (path, detected format, sample and class counts) as the workspace's data."""
    _record("data", data_entry(path), json_out)


@load_app.command("both")
@handle_errors
def load_both(model: Path = _MODEL_ARG,
              data: Path = _DATA_ARG,
              json_out: bool = typer.Option(False, "--json", help="Print the recorded entries as JSON.")) -> None:
    """Record a model and a dataset together (nothing is written unless both are valid)."""
    m, d = model_entry(model), data_entry(data)
    state = read_workspace()
    state.update(model=m, data=d)
    write_workspace(state)
    if json_out:
        emit_json({"model": m, "data": d})
    else:
        _say(m, "model")
        _say(d, "data")


@load_app.command("status")
@handle_errors
def load_status(json_out: bool = typer.Option(False, "--json", help="Print the workspace state as JSON.")) -> None:
    """Show what is loaded, and whether each file still exists and (models) still has its SHA-256."""
    state = read_workspace()
    for key in ("model", "data"):
        entry = state.get(key)
        if entry:
            p = Path(entry["path"])
            entry["exists"] = p.exists()
            if key == "model" and p.is_file():
                entry["unchanged"] = _sha256(p) == entry.get("sha256")
    if json_out:
        emit_json({"workspace": str(workspace_path()), "model": state.get("model"), "data": state.get("data")})
        return
    if not state.get("model") and not state.get("data"):
        typer.echo("nothing loaded (use `axonml load model PATH` / `axonml load data PATH`)")
        return
    for key in ("model", "data"):
        entry = state.get(key)
        if not entry:
            typer.echo(f"{key}: (none)")
            continue
        _say(entry, key)
        if not entry["exists"]:
            typer.echo(f"  warning: {entry['path']} no longer exists")
        elif entry.get("unchanged") is False:
            typer.echo("  warning: the file changed since it was loaded (SHA-256 differs)")


@load_app.command("clear")
@handle_errors
def load_clear() -> None:
    """Forget the loaded model and data (removes .axonml/workspace.json)."""
    path = workspace_path()
    if path.exists():
        path.unlink()
        typer.echo(f"cleared {path}")
    else:
        typer.echo("nothing to clear")
