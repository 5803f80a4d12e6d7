"""``axonml zip create|extract|list``: ship a model with its data and config as one verified zip.

The bundle format and its checks live in :mod:`axonml.io.bundle`: a
``bundle.json`` manifest with the role, size and SHA-256 of every member;
extraction verifies all of it and refuses member paths that would escape the
target folder before writing anything in place.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..io.bundle import create_bundle, extract_bundle, list_bundle
from ._app import JSON_OPTION, app, emit_json, handle_errors
from ._output import human_bytes, make_console, reflow_doc

zip_app = typer.Typer(name="zip", help="Bundle a model with its data and config into one zip with SHA-256 "
                      "checksums; extract it verified; list it.", no_args_is_help=True)
app.add_typer(zip_app, name="zip")


# Typer reads a parameter's default to learn its CLI shape; module-level objects keep ruff's B008 quiet
BUNDLE_OUT = typer.Option(..., "-o", "--output", help="The bundle file to write (e.g. model.zip).")
MODELS_OPT = typer.Option(..., "--model", help="A model file to include (repeat for several).")
DATA_OPT = typer.Option([], "--data", help="A data file or folder to include (repeatable).")
CONFIG_OPT = typer.Option([], "--config", help="A config file to include (repeatable).")
EXTRACT_OUT = typer.Option(..., "-o", "--output", help="The folder to extract into (created if needed).")
EXTRACT_ARG = typer.Argument(..., help="The bundle to extract.")
LIST_ARG = typer.Argument(..., help="The bundle to list.")


@zip_app.command("create")
@handle_errors
@reflow_doc
def create(
    output: Path = BUNDLE_OUT,
    model: list[Path] = MODELS_OPT,
    data: list[Path] = DATA_OPT,
    config: list[Path] = CONFIG_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the bundle's manifest as JSON."),
) -> None:
    """Create a bundle: model/, data/ and config/ members plus bundle.json with their SHA-256 sums.

    Example: axonml zip create -o run.zip --model best.axonml --data data/ --config axonml.toml
    """
    manifest = create_bundle(output, models=model, data=data, configs=config)
    if as_json:
        emit_json({"bundle": str(output), **manifest})
        return
    total = sum(e["size"] for e in manifest["files"].values())
    typer.echo(f"{output}: {len(manifest['files'])} files, {human_bytes(total)} "
               f"(compressed to {human_bytes(output.stat().st_size)})")


@zip_app.command("extract")
@handle_errors
@reflow_doc
def extract(
    bundle: Path = EXTRACT_ARG,
    output: Path = EXTRACT_OUT,
    force: bool = typer.Option(False, "--force", help="Overwrite files that already exist there."),
    as_json: bool = typer.Option(False, "--json", help="Print the extracted files as JSON."),
) -> None:
    """Extract a bundle after checking every member's SHA-256 and path; a tampered bundle writes nothing."""
    files = extract_bundle(bundle, output, overwrite=force)
    if as_json:
        emit_json({"bundle": str(bundle), "output": str(output), "files": [str(f) for f in files]})
        return
    typer.echo(f"{bundle}: {len(files)} files verified and extracted into {output}")


@zip_app.command("list")
@handle_errors
@reflow_doc
def list_cmd(
    bundle: Path = LIST_ARG,
    detailed: bool = typer.Option(False, "--detailed", help="Also show SHA-256, compressed sizes, and check "
                                  "each member against its hash (exit 1 when one fails)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List a bundle's members with their roles and sizes (--detailed: hashes, compression, verification)."""
    manifest, members = list_bundle(bundle, verify=detailed)
    bad = [m.name for m in members if m.verified is False]
    if as_json:
        emit_json({"bundle": str(bundle), "created": manifest.get("created"),
                   "axonml_version": manifest.get("axonml_version"), "metadata": manifest.get("metadata", {}),
                   "members": [{"name": m.name, "role": m.role, "size": m.size, "sha256": m.sha256,
                                "compressed_size": m.compressed_size, "compression": m.compression,
                                "verified": m.verified} for m in members]})
    else:
        table = Table(title=f"{bundle} (created {manifest.get('created')}, axonml {manifest.get('axonml_version')})")
        table.add_column("Role")
        table.add_column("Member", overflow="fold")
        table.add_column("Size", justify="right")
        if detailed:
            for col in ("Stored", "Ratio", "SHA-256", "Check"):
                table.add_column(col, justify="right" if col in ("Stored", "Ratio") else "left", overflow="fold")
        for m in members:
            row = [m.role, m.name, human_bytes(m.size)]
            if detailed:
                ratio = m.compressed_size / m.size if m.size else 1.0
                row += [m.compression, f"{ratio:.0%}", m.sha256, "ok" if m.verified else "FAILED"]
            table.add_row(*row)
        make_console().print(table)
        typer.echo(f"{len(members)} files, {human_bytes(sum(m.size for m in members))}")
    if bad:
        typer.echo(f"error: {len(bad)} members do not match their SHA-256: {', '.join(bad)}", err=True)
        raise typer.Exit(1)
