"""``axonml inspect MODEL``: what a model file holds.

For an ``.axonml`` archive: the model rebuilt from its manifest, its
architecture tree, per-layer output shapes and parameters (one real forward
pass through ``Module.summary``), totals, dtypes, a memory estimate, and the
archive's format, metadata and checksums. For weights files (``.pt``,
``.safetensors``, ``axonml.save`` files, the JSON view): every tensor's name,
shape, dtype and size, with totals, format and metadata.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from ..core.tensor import Tensor
from ..io import SerializationError
from ..nn import Module
from ._app import JSON_OPTION, CommandError, app, emit_json, fail, handle_errors
from ._modelfiles import archive_model, dtype_name, metadata_batch_shape, sniff, tensor_table
from ._output import human_bytes, make_console, reflow_doc

FORMAT_NAMES = {"axonml-archive": "axonml model archive (.axonml)", "axonml-save": "axonml.save file",
                "pt": "PyTorch checkpoint", "safetensors": "SafeTensors", "json": "state-dict JSON"}


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``"1,3,32,32"`` -> ``(1, 3, 32, 32)``; a bad shape is a usage error (exit 2)."""
    if text is None:
        return None
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise typer.BadParameter(f"expected positive integers separated by commas, e.g. 1,3,32,32; got {text!r}")
    return shape


def _tree(module: Module, name: str) -> dict[str, Any]:
    own = sum(p.numel() for p in module.parameters(recurse=False))
    total = sum(p.numel() for p in module.parameters())
    return {"name": name, "type": type(module).__name__, "extra": module.extra_repr(), "params": total,
            "own_params": own, "children": [_tree(m, n) for n, m in module.named_children()]}


def _guess_input_shape(model: Module, manifest: dict[str, Any]) -> tuple[tuple[int, ...] | None, str]:
    """An input shape from the archive's metadata, or from a first Linear layer; else None."""
    shape = metadata_batch_shape(manifest.get("metadata"))
    if shape is not None:
        return shape, "archive metadata"
    for m in model.modules():
        if any(True for _ in m.parameters(recurse=False)):
            if type(m).__name__ == "Linear":
                return (1, int(m.in_features)), "the first layer (Linear)"
            break
    return None, ""


def describe_archive(path: Path, input_shape: tuple[int, ...] | None) -> dict[str, Any]:
    """The report of an ``.axonml`` archive (see the module notes)."""
    from ..io import ModelArchive

    manifest = ModelArchive.verify(path)  # SHA-256 of every member before anything is used
    header = {
        "file": str(path), "format": "axonml-archive", "file_size": path.stat().st_size, "verified": True,
        "name": manifest.get("name"), "version": manifest.get("version"), "created": manifest.get("created"),
        "axonml_version": manifest.get("axonml_version"), "architecture": manifest.get("architecture"),
        "metadata": manifest.get("metadata", {}), "metrics": manifest.get("metrics", {}),
        "members": manifest.get("files", {}),
    }
    try:
        model = archive_model(path, manifest)
    except SerializationError as e:  # no config, or an untrusted class: the weights can still be shown
        if input_shape is not None:
            raise CommandError(f"--input-shape: the archive's model cannot be rebuilt: {e}") from e
        weights = describe_weights(path, "axonml-archive")
        return {**header, "model": None, "rebuild_error": str(e), "layers": None, "tensors": weights["tensors"],
                "totals": weights["totals"], "dtypes": weights["dtypes"],
                "memory": {"weights_bytes": weights["totals"]["bytes"]}}
    source = "--input-shape"
    if input_shape is None:
        input_shape, source = _guess_input_shape(model, manifest)
    params = list(model.parameters())
    buffers = list(model.buffers())
    dtypes: Counter[str] = Counter()
    for t in params + buffers:
        dtypes[dtype_name(t)] += t.numel()
    param_bytes = sum(p.nbytes for p in params)
    buffer_bytes = sum(b.nbytes for b in buffers)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    report: dict[str, Any] = {
        **header, "model": _tree(model, ""),
        "totals": {"parameters": sum(p.numel() for p in params), "trainable": trainable,
                   "non_trainable": sum(p.numel() for p in params) - trainable,
                   "buffers": sum(b.numel() for b in buffers), "tensors": len(params) + len(buffers)},
        "dtypes": dict(dtypes), "input_shape": list(input_shape) if input_shape else None,
        "input_shape_from": source if input_shape else None, "layers": None,
        "tensors": [{"name": k, "shape": list(v.shape), "dtype": dtype_name(v), "numel": v.numel(),
                     "bytes": v.nbytes} for k, v in model.state_dict().items() if isinstance(v, Tensor)],
    }
    memory: dict[str, Any] = {"param_bytes": param_bytes, "buffer_bytes": buffer_bytes}
    if input_shape is not None:
        try:
            summary = model.summary(input_shape)
        except Exception as e:  # the model's own error on a wrong shape, said in one line
            raise CommandError(f"cannot run {type(model).__name__} on an input of shape {list(input_shape)} "
                               f"(from {source}): {type(e).__name__}: {e}") from e
        report["layers"] = [{"name": r.name, "type": r.type, "depth": r.depth, "output_shape": r.output_shape,
                             "params": r.num_params, "trainable": r.trainable} for r in summary.layers]
        memory.update(input_bytes=summary.input_bytes, activation_bytes=summary.activation_bytes,
                      forward_total_bytes=summary.total_bytes)
    # Adam keeps weights, gradients and two moments per parameter; backward keeps the forward's activations
    memory["training_adam_bytes"] = 4 * param_bytes + buffer_bytes + memory.get("activation_bytes", 0)
    report["memory"] = memory
    return report


def describe_weights(path: Path, fmt: str) -> dict[str, Any]:
    """The report of a weights file: its tensors, totals, format and metadata."""
    rows, others, metadata = tensor_table(path, fmt)
    dtypes: Counter[str] = Counter()
    for r in rows:
        dtypes[r["dtype"]] += r["numel"]
    return {"file": str(path), "format": fmt, "file_size": path.stat().st_size, "metadata": metadata,
            "tensors": rows, "other_entries": {k: v if isinstance(v, int | float | str | bool | None) else repr(v)
                                               for k, v in others.items()},
            "totals": {"tensors": len(rows), "numel": sum(r["numel"] for r in rows),
                       "bytes": sum(r["bytes"] for r in rows)}, "dtypes": dict(dtypes)}


def _add_tree(node: Tree, info: dict[str, Any]) -> None:
    for child in info["children"]:
        extra = f": {child['extra']}" if child["extra"] else ""
        branch = node.add(f"[bold]{child['name']}[/] ({child['type']}{extra}) [dim]{child['params']:,} params[/]")
        _add_tree(branch, child)


def _print_tensors(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title="Tensors", show_lines=False)
    for col, just in (("Name", "left"), ("Shape", "right"), ("Dtype", "left"), ("Numel", "right"),
                      ("Bytes", "right")):
        table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for r in rows:
        table.add_row(r["name"], str(r["shape"]), r["dtype"], f"{r['numel']:,}", human_bytes(r["bytes"]))
    console.print(table)


def _print_archive(console: Console, r: dict[str, Any]) -> None:
    console.print(f"[bold]{r['file']}[/]: {FORMAT_NAMES['axonml-archive']}, {human_bytes(r['file_size'])}, "
                  "every member's SHA-256 verified")
    console.print(f"name: {r['name']}   version: {r['version']}   created: {r['created']}   "
                  f"written by axonml {r['axonml_version']}")
    arch = r["architecture"] or {}
    how = f"builder {arch['builder']!r}" if arch.get("builder") else f"class {arch.get('class')}"
    console.print(f"architecture: {how}, kwargs {arch.get('kwargs')}")
    if r["metadata"]:
        console.print(f"metadata: {r['metadata']}")
    if r["metrics"]:
        console.print(f"metrics: {r['metrics']}")
    if r["model"] is None:
        console.print(f"[yellow]the model cannot be rebuilt[/] ({r['rebuild_error']}); its weights:")
        _print_tensors(console, r["tensors"])
        t = r["totals"]
        console.print(f"tensors: {t['tensors']}, values: {t['numel']:,}, size: {human_bytes(t['bytes'])}")
        return
    tree = Tree(f"[bold]{r['model']['type']}[/] [dim]{r['model']['params']:,} params[/]")
    _add_tree(tree, r["model"])
    console.print(tree)
    if r["layers"] is not None:
        table = Table(title=f"Layers (input {r['input_shape']}, from {r['input_shape_from']})")
        for col, just in (("Layer", "left"), ("Type", "left"), ("Output shape", "right"), ("Params", "right"),
                          ("Trainable", "right")):
            table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
        for layer in r["layers"]:
            indent = "  " * max(layer["depth"] - 1, 0)
            table.add_row(indent + layer["name"], layer["type"], str(layer["output_shape"] or "--"),
                          f"{layer['params']:,}", layer["trainable"])
        console.print(table)
    else:
        console.print("[dim]per-layer output shapes: pass --input-shape (e.g. 1,3,32,32) to run the model once[/]")
    t = r["totals"]
    console.print(f"parameters: {t['parameters']:,} (trainable {t['trainable']:,}, non-trainable "
                  f"{t['non_trainable']:,}); buffers: {t['buffers']:,} values; tensors: {t['tensors']}")
    console.print("dtypes: " + ", ".join(f"{k} {v:,}" for k, v in r["dtypes"].items()))
    m = r["memory"]
    parts = [f"parameters {human_bytes(m['param_bytes'])}", f"buffers {human_bytes(m['buffer_bytes'])}"]
    if "activation_bytes" in m:
        parts += [f"forward activations {human_bytes(m['activation_bytes'])}",
                  f"forward total {human_bytes(m['forward_total_bytes'])}"]
    parts.append(f"training with Adam ~{human_bytes(m['training_adam_bytes'])}")
    console.print("memory: " + ", ".join(parts))


def _print_weights(console: Console, r: dict[str, Any]) -> None:
    console.print(f"[bold]{r['file']}[/]: {FORMAT_NAMES.get(r['format'], r['format'])}, "
                  f"{human_bytes(r['file_size'])} (weights only: no architecture)")
    if r["metadata"]:
        console.print(f"metadata: {r['metadata']}")
    _print_tensors(console, r["tensors"])
    if r["other_entries"]:
        console.print("other entries: " + ", ".join(f"{k}={v}" for k, v in r["other_entries"].items()))
    t = r["totals"]
    console.print(f"tensors: {t['tensors']}, values: {t['numel']:,}, size: {human_bytes(t['bytes'])}")
    console.print("dtypes: " + ", ".join(f"{k} {v:,}" for k, v in r["dtypes"].items()))


MODEL_ARG = typer.Argument(..., help="A model file: .axonml archive, .pt/.pth/.bin, .safetensors, an axonml.save "
                           "file or state-dict JSON.")  # module level: Typer reads it, ruff's B008 stays quiet


@app.command()
@handle_errors
@reflow_doc
def inspect(
    model: Path = MODEL_ARG,
    as_json: bool = JSON_OPTION,
    input_shape: str | None = typer.Option(
        None, "--input-shape", help="Input shape with the batch, e.g. 1,3,32,32, to run an archive's model once "
        "for per-layer output shapes (default: the archive's metadata 'input_shape', or a first Linear layer)."),
) -> None:
    """Show what a model file holds: architecture, layers, shapes, parameters, memory, format and metadata.

    Archives (.axonml) are checked against their SHA-256 sums and their model is rebuilt from the manifest;
    weights files list their tensors.
    """
    shape = parse_shape(input_shape)
    fmt = sniff(model)
    if fmt == "axonml-archive":
        report = describe_archive(model, shape)
    else:
        if shape is not None:
            fail(f"--input-shape needs an .axonml archive: a {FORMAT_NAMES[fmt]} holds no architecture")
        report = describe_weights(model, fmt)
    if as_json:
        emit_json(report)
        return
    console = make_console()
    if fmt == "axonml-archive":
        _print_archive(console, report)
    else:
        _print_weights(console, report)
