"""``axonml convert IN OUT`` between model formats, and ``axonml rename MODEL NEW_NAME`` for archives.

Conversion reads every tensor of ``IN`` (format told by content), applies the
key mapping in a fixed order (``--select``, ``--strip-prefix``, each
``--rename`` in turn, ``--add-prefix``), and writes ``OUT`` in the format of
its extension or ``--to``. Values and dtypes pass through untouched: a value
leaves as the same bits it came in as (a ``.axonml`` output refuses weights
whose dtype differs from the model's rather than cast them).
"""

from __future__ import annotations

import json
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import typer

from ..core.tensor import Tensor
from ..io import ModelArchive, add_prefix, rename_keys, save_file, save_torch, state_dict_to_json, strip_prefix
from ..io._common import aligned_zipinfo, atomic_write, open_zip
from ..io.archive import MANIFEST
from ._app import JSON_OPTION, CommandError, app, emit_json, handle_errors
from ._modelfiles import Weights, archive_model, build_model, check_fits, output_format, read_weights
from ._output import reflow_doc


def _rename_rules(rules: list[str]) -> list[tuple[str, str]]:
    out = []
    for rule in rules:
        if "=" not in rule:
            raise typer.BadParameter(f"--rename takes REGEX=REPLACEMENT, got {rule!r}")
        pattern, repl = rule.split("=", 1)
        out.append((pattern, repl))
    return out


def map_keys(tensors: OrderedDict[str, Tensor], strip: str | None, renames: list[tuple[str, str]],
             add: str | None) -> OrderedDict[str, Tensor]:
    """Apply ``--strip-prefix``, the ``--rename`` rules in order, then ``--add-prefix``."""
    out = tensors
    if strip:
        out = strip_prefix(out, strip)
    for pattern, repl in renames:
        out = rename_keys(out, pattern, repl)
    if add:
        out = add_prefix(out, add)
    return out


def _model_for_archive(weights: Weights, model_name: str | None, kwargs: dict[str, Any]) -> tuple[Any, dict]:
    """The model an ``.axonml`` output is built around, and the ``ModelArchive.save`` arguments."""
    if model_name is not None:
        model, save_args = build_model(model_name, kwargs)
        save_args["name"] = model_name
        return model, save_args
    if weights.manifest is not None:  # an archive in: keep its architecture, name and records
        model = archive_model(weights.path, weights.manifest)
        arch = weights.manifest.get("architecture", {})
        save_args = {"config": arch.get("kwargs"), "builder": arch.get("builder"), "args": arch.get("args", ()),
                     "name": weights.manifest.get("name"), "version": weights.manifest.get("version", "1.0"),
                     "metadata": weights.manifest.get("metadata"), "metrics": weights.manifest.get("metrics")}
        return model, save_args
    raise CommandError("writing an .axonml archive needs the architecture: pass --model NAME (a model-zoo name "
                       "such as lenet5, or a class path such as axonml.nn:Linear) and --model-kwargs JSON")


def write_output(tensors: OrderedDict[str, Tensor], weights: Weights, out: Path, fmt: str, *,
                 model_name: str | None, model_kwargs: dict[str, Any], values: bool) -> None:
    """Write ``tensors`` to ``out`` in ``fmt`` (see the module notes)."""
    if fmt == "pt":
        save_torch(tensors, out)
    elif fmt == "safetensors":
        meta = weights.metadata if weights.format == "safetensors" else {"format": "pt"}
        save_file(tensors, out, {str(k): str(v) for k, v in meta.items()})
    elif fmt == "json":
        state_dict_to_json(tensors, out, values=values)
    else:
        model, save_args = _model_for_archive(weights, model_name, model_kwargs)
        check_fits(model, tensors)
        model.load_state_dict(tensors, strict=True)
        ModelArchive.save(out, model, **{k: v for k, v in save_args.items() if v is not None})


# Typer reads a parameter's default to learn its CLI shape; module-level objects keep ruff's B008 quiet
IN_ARG = typer.Argument(..., metavar="IN", help="Input: .axonml, .pt/.pth/.bin, .safetensors, an axonml.save "
                        "file, or state-dict JSON (told by content).")
OUT_ARG = typer.Argument(..., metavar="OUT", help="Output file; its extension gives the format unless --to.")
RENAME_OPT = typer.Option([], "--rename", help="REGEX=REPLACEMENT applied to every key with re.sub (split at the "
                          "first '='); repeat for several, applied in order.")
ARCHIVE_ARG = typer.Argument(..., help="An .axonml model archive.")


@app.command()
@handle_errors
@reflow_doc
def convert(
    src: Path = IN_ARG,
    dst: Path = OUT_ARG,
    to: str | None = typer.Option(None, "--to", help="Output format: pt, safetensors, axonml or json."),
    select: str | None = typer.Option(None, "--select", help="Convert only this entry of a nested checkpoint "
                                      "(dotted path, e.g. model or state.model)."),
    strip: str | None = typer.Option(None, "--strip-prefix", help="Remove this prefix from keys that have it "
                                     "(e.g. 'module.')."),
    add: str | None = typer.Option(None, "--add-prefix", help="Put this prefix in front of every key."),
    rename: list[str] = RENAME_OPT,
    model_name: str | None = typer.Option(None, "--model", help="For .axonml output: the model, a zoo name "
                                          "(lenet5, resnet18, ...) or a class path (axonml.nn:Linear)."),
    model_kwargs: str = typer.Option("{}", "--model-kwargs", help="For .axonml output: JSON keyword arguments "
                                     "of the model, e.g. '{\"num_classes\": 10}'."),
    no_values: bool = typer.Option(False, "--no-values", help="JSON output: describe tensors (shape, dtype, "
                                   "statistics) without their values; such a file cannot be converted back."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary."),
) -> None:
    """Convert a model between .pt/.pth/.bin, .safetensors, .axonml and JSON, with key mapping.

    Keys are mapped in this order: --select, --strip-prefix, each --rename, --add-prefix. Values keep their
    exact bits and dtypes. Example: axonml convert ddp.pt model.safetensors --strip-prefix module.
    """
    renames = _rename_rules(rename)
    try:
        kwargs = json.loads(model_kwargs)
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"--model-kwargs is not valid JSON: {e}") from e
    if not isinstance(kwargs, dict):
        raise typer.BadParameter("--model-kwargs must be a JSON object")
    try:
        fmt = output_format(dst, to)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e
    if fmt != "axonml" and model_name is not None:
        raise typer.BadParameter("--model applies to .axonml output only")
    weights = read_weights(src, select)
    if not weights.tensors:
        raise CommandError(f"{src}: no tensor to convert" + ("" if select else " (pick an entry with --select)"))
    if weights.others and fmt != "json":
        names = ", ".join(list(weights.others)[:6])
        raise CommandError(f"{src} also holds non-tensor entries ({names}) that {fmt} cannot store: pick the state "
                           "dict with --select (e.g. --select model)")
    tensors = map_keys(weights.tensors, strip, renames, add)
    write_output(tensors, weights, dst, fmt, model_name=model_name, model_kwargs=kwargs, values=not no_values)
    summary = {"input": str(src), "input_format": weights.format, "output": str(dst), "output_format": fmt,
               "tensors": len(tensors), "numel": sum(t.numel() for t in tensors.values()),
               "renamed": sum(a != b for a, b in zip(weights.tensors, tensors))}
    if as_json:
        emit_json(summary)
    else:
        typer.echo(f"{src} ({weights.format}) -> {dst} ({fmt}): {summary['tensors']} tensors, "
                   f"{summary['numel']:,} values, {summary['renamed']} keys renamed")


# ----- rename --------------------------------------------------------------------------------------
def rename_archive(path: Path, new_name: str) -> tuple[str, dict[str, Any]]:
    """Set an archive's ``name``, rewriting it atomically; every member stays byte-identical (hashes hold)."""
    manifest = ModelArchive.verify(path)
    old = str(manifest.get("name", ""))
    manifest["name"] = new_name
    text = json.dumps(manifest, indent=2).encode("utf-8")
    what = f"rename({path})"
    with open_zip(path, what) as src, atomic_write(path) as f, zipfile.ZipFile(f, "w", allowZip64=True) as out:
        out.writestr(aligned_zipinfo(out, MANIFEST, len(text)), text)
        for info in src.infolist():
            if info.filename == MANIFEST:
                continue
            new = aligned_zipinfo(out, info.filename, info.file_size)
            new.file_size = info.file_size  # lets zipfile choose ZIP64 headers up front for large members
            with src.open(info) as fin, out.open(new, "w") as fout:
                while chunk := fin.read(1 << 20):
                    fout.write(chunk)
    ModelArchive.verify(path)
    return old, manifest


@app.command(name="rename")
@handle_errors
@reflow_doc
def rename_cmd(
    model: Path = ARCHIVE_ARG,
    new_name: str = typer.Argument(..., help="The new model name stored in the archive's manifest."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Rename the model stored in an .axonml archive (its manifest's name); the file is rewritten atomically."""
    if not new_name.strip():
        raise typer.BadParameter("the new name is empty")
    old, _ = rename_archive(model, new_name)
    if as_json:
        emit_json({"file": str(model), "old_name": old, "new_name": new_name})
    else:
        typer.echo(f"{model}: renamed {old!r} -> {new_name!r}")
