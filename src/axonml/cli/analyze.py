"""``axonml analyze model|data|both|report``: measure a model and a dataset, and recommend from the measurements.

The model analysis lists every layer that owns parameters (type, count, share of
the total, output shape from one ``Module.summary`` pass when an input shape is
known), the parameter share per layer type, totals and memory. A bare state dict
(.pt/.safetensors) is grouped by key prefix and its layer types inferred from
the weights' shapes. The data analysis reuses ``axonml.vision.datasets.inspect``.
Every recommendation quotes the number that triggered it.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import typer

from ..io import ModelArchive, SerializationError
from ..nn import Module
from ..vision.datasets.inspect import describe, open_dataset
from ._app import app, emit_json, fail, handle_errors
from ._modelfiles import archive_model, metadata_batch_shape, sniff, tensor_table
from ._report import FORMATS, render
from .inspect_cmd import parse_shape
from .workspace import read_workspace

analyze_app = typer.Typer(help="Analyze the loaded (or given) model and dataset; write a report.",
                          no_args_is_help=True)
app.add_typer(analyze_app, name="analyze")

IMBALANCE_LIMIT = 2.0
CONCENTRATION = 0.8  # "most parameters sit in a few layers" when the top layers hold this share


def _rebuild(path: Path, fmt: str) -> tuple[Module | None, dict[str, Any], str | None]:
    """(model or None, archive metadata, why it could not be rebuilt)."""
    if fmt != "axonml-archive":
        return None, {}, "a state dict holds no architecture"
    manifest = ModelArchive.verify(path)
    try:
        return archive_model(path, manifest), dict(manifest.get("metadata", {})), None
    except SerializationError as e:
        return None, dict(manifest.get("metadata", {})), str(e)


def _infer_type(tensors: dict[str, list[int]]) -> str:
    """A layer type from its tensors' names and shapes (a state dict carries no class names)."""
    w = tensors.get("weight")
    if "running_mean" in tensors:
        return "BatchNorm"
    if w is None:
        return "Other"
    return {1: "Norm/Scale", 2: "Linear", 3: "Conv1d", 4: "Conv2d", 5: "Conv3d"}.get(len(w), "Other")


def analyze_model(path: Path, input_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Layer breakdown, shares by type, totals and memory of a model file."""
    fmt = sniff(path)
    model, metadata, why = _rebuild(path, fmt)
    layers: list[dict[str, Any]] = []
    source = None
    if model is not None:
        total = sum(p.numel() for p in model.parameters())
        for name, m in model.named_modules():
            own = sum(p.numel() for p in m.parameters(recurse=False))
            if own:
                layers.append({"name": name or "(root)", "type": type(m).__name__, "params": own})
        param_bytes = sum(p.nbytes for p in model.parameters())
        buffer_bytes = sum(b.nbytes for b in model.buffers())
        if input_shape is None and metadata_batch_shape(metadata) is not None:
            input_shape, source = metadata_batch_shape(metadata), "archive metadata"
        elif input_shape is not None:
            source = "--input-shape"
    else:
        rows, _, _ = tensor_table(path, fmt)
        groups: OrderedDict[str, dict[str, list[int]]] = OrderedDict()
        counts: dict[str, int] = {}
        param_bytes = buffer_bytes = 0
        for r in rows:
            prefix, _, leaf = r["name"].rpartition(".")
            is_buffer = leaf in ("running_mean", "running_var", "num_batches_tracked")
            groups.setdefault(prefix or "(root)", {})[leaf] = r["shape"]
            if is_buffer:
                buffer_bytes += r["bytes"]
            else:
                counts[prefix or "(root)"] = counts.get(prefix or "(root)", 0) + r["numel"]
                param_bytes += r["bytes"]
        total = sum(counts.values())
        layers = [{"name": n, "type": _infer_type(groups[n]), "params": c} for n, c in counts.items() if c]
        if input_shape is not None:
            fail("--input-shape needs a model that can be rebuilt (an .axonml archive with its config): "
                 f"{path} is {why}")
    for row in layers:
        row["share"] = row["params"] / total if total else 0.0
        row["output_shape"] = None
    memory: dict[str, Any] = {"param_bytes": param_bytes, "buffer_bytes": buffer_bytes}
    if model is not None and input_shape is not None:
        try:
            summary = model.summary(input_shape)
        except Exception as e:  # the model's own error on a wrong shape, in one line
            fail(f"cannot run {type(model).__name__} on an input of shape {list(input_shape)} (from {source}): "
                 f"{type(e).__name__}: {e}")
        shapes = {r.name: r.output_shape for r in summary.layers}
        for row in layers:
            row["output_shape"] = shapes.get(row["name"])
        memory.update(activation_bytes=summary.activation_bytes, forward_total_bytes=summary.total_bytes)
    # Adam keeps weights, gradients and two moments per parameter, plus the activations for backward
    memory["training_adam_bytes"] = 4 * param_bytes + buffer_bytes + memory.get("activation_bytes", 0)
    by_type: dict[str, dict[str, Any]] = {}
    for row in layers:
        t = by_type.setdefault(row["type"], {"layers": 0, "params": 0})
        t["layers"] += 1
        t["params"] += row["params"]
    for t in by_type.values():
        t["share"] = t["params"] / total if total else 0.0
    last_linear = None
    if model is not None:
        linears = [m for m in model.modules() if type(m).__name__ == "Linear"]
        last_linear = int(linears[-1].out_features) if linears else None
    return {"path": str(path), "format": fmt, "rebuilt": model is not None, "rebuild_note": why,
            "model_class": type(model).__name__ if model is not None else None,
            "input_shape": list(input_shape) if input_shape else None, "input_shape_from": source,
            "layers": layers, "by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1]["params"])),
            "totals": {"parameters": total, "layers_with_parameters": len(layers)}, "memory": memory,
            "output_features": last_linear}


def analyze_data(path: Path) -> dict[str, Any]:
    """``describe`` of the dataset plus the class imbalance ratio (largest class / smallest class)."""
    if not path.exists():
        fail(f"{path}: no such file or folder")
    info = describe(open_dataset(path, tolerant=True))
    counts = info.get("class_counts") or {}
    values = list(counts.values())
    if values:
        lo, hi = min(values), max(values)
        info["imbalance_ratio"] = (hi / lo) if lo > 0 else None
        info["empty_classes"] = [k for k, v in counts.items() if v == 0]
        info["largest_class"] = max(counts, key=counts.__getitem__)
        info["smallest_class"] = min(counts, key=counts.__getitem__)
    else:
        info["imbalance_ratio"] = None
    return info


def recommend(model: dict[str, Any] | None, data: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Recommendations, each with the measurement (``metric``, ``value``) that triggered it."""
    recs: list[dict[str, Any]] = []

    def add(metric: str, value: Any, text: str) -> None:
        recs.append({"metric": metric, "value": value, "text": text})

    if model is not None and model["layers"]:
        rows = sorted(model["layers"], key=lambda r: -r["params"])
        acc, top = 0.0, []
        for r in rows:
            acc += r["share"]
            top.append(r)
            if acc >= CONCENTRATION:
                break
        if len(top) < len(rows) and len(top) <= max(2, len(rows) // 3):
            types = sorted({r["type"] for r in top})
            add("parameter_concentration_pct", round(100 * acc, 1),
                f"{100 * acc:.1f}% of parameters in {len(top)} {'/'.join(types)} layer(s) "
                f"({', '.join(r['name'] for r in top)}): shrink those first to cut size")
    if data is not None:
        ratio = data.get("imbalance_ratio")
        if ratio is not None and ratio > IMBALANCE_LIMIT:
            add("imbalance_ratio", round(ratio, 3),
                f"class imbalance ratio {ratio:.2f} > {IMBALANCE_LIMIT:g} ({data['largest_class']} vs "
                f"{data['smallest_class']}): consider WeightedRandomSampler or class weights in the loss")
        if data.get("empty_classes"):
            add("empty_classes", len(data["empty_classes"]),
                f"{len(data['empty_classes'])} class(es) have no samples ({', '.join(data['empty_classes'][:5])})")
        px = data.get("pixel_stats") or {}
        if px.get("mean") and px.get("max") and max(v or 0 for v in px["max"]) > 1.5:
            mean = [round(v, 1) for v in px["mean"]]
            if px.get("mean_scaled"):
                norm = (f"use ToTensor() then Normalize(mean={[round(v, 4) for v in px['mean_scaled']]}, "
                        f"std={[round(v, 4) for v in px['std_scaled']]})")
            else:
                norm = f"use Normalize(mean={mean}, std={[round(v, 1) for v in px['std']]})"
            scale = "0-255" if px.get("mean_scaled") else f"0-{max(v or 0 for v in px['max']):g} (observed)"
            add("pixel_mean", mean, f"input not normalized: mean {', '.join(map(str, mean))} on a {scale} scale: "
                f"{norm}")
        fs = data.get("feature_stats") or {}
        stds = [s for s in fs.get("std") or [] if s]
        if len(stds) > 1 and max(stds) / min(stds) > 10:
            spread = max(stds) / min(stds)
            add("feature_std_spread", round(spread, 2), f"feature standard deviations differ {spread:.1f}x "
                f"({min(stds):.3g} to {max(stds):.3g}): standardize features (subtract mean, divide by std)")
    if model is not None and data is not None:
        n, p = data.get("num_samples") or 0, model["totals"]["parameters"]
        if n and p / n > 100:
            add("params_per_sample", round(p / n, 1), f"{p:,} parameters for {n:,} samples ({p / n:.0f} per "
                "sample): high risk of overfitting; use augmentation, weight decay or a smaller model")
        k, out = data.get("num_classes"), model.get("output_features")
        if k and out and k != out:
            add("output_features", out, f"the model's last Linear has {out} outputs but the data has {k} classes")
    return recs


def _resolve(path: Path | None, key: str) -> Path:
    if path is not None:
        return path
    entry = read_workspace().get(key)
    if not entry:
        fail(f"no {key} given and none loaded (use `axonml load {key} PATH` or pass a path)")
    assert entry is not None
    return Path(entry["path"])


_SHAPE_HELP = "Input shape with batch, e.g. 1,784 (default: the archive metadata's input_shape)."
_MODEL_ARG = typer.Argument(None, help="Model file (default: the loaded model).")
_DATA_ARG = typer.Argument(None, help="Dataset path (default: the loaded data).")
_OUTPUT_OPT = typer.Option(None, "--output", "-o", help="File to write (default: stdout).")


@analyze_app.command("model")
@handle_errors
def analyze_model_cmd(path: Path | None = _MODEL_ARG,
                      input_shape: str | None = typer.Option(None, "--input-shape", help=_SHAPE_HELP),
                      json_out: bool = typer.Option(False, "--json", help="Print the analysis as JSON.")) -> None:
    """Layer breakdown (type, parameters, share, output shape), shares by layer type, totals, memory."""
    m = analyze_model(_resolve(path, "model"), parse_shape(input_shape))
    result = {"model": m, "data": None, "recommendations": recommend(m, None)}
    emit_json(m) if json_out else typer.echo(render(result, "text"), nl=False)


@analyze_app.command("data")
@handle_errors
def analyze_data_cmd(path: Path | None = _DATA_ARG,
                     json_out: bool = typer.Option(False, "--json", help="Print the analysis as JSON.")) -> None:
    """Dataset statistics, class distribution, imbalance ratio, pixel or feature statistics."""
    d = analyze_data(_resolve(path, "data"))
    result = {"model": None, "data": d, "recommendations": recommend(None, d)}
    emit_json(d) if json_out else typer.echo(render(result, "text"), nl=False)


def _both(input_shape: str | None) -> dict[str, Any]:
    m = analyze_model(_resolve(None, "model"), parse_shape(input_shape))
    d = analyze_data(_resolve(None, "data"))
    return {"model": m, "data": d, "recommendations": recommend(m, d)}


@analyze_app.command("both")
@handle_errors
def analyze_both_cmd(input_shape: str | None = typer.Option(None, "--input-shape", help=_SHAPE_HELP),
                     json_out: bool = typer.Option(False, "--json", help="Print the analysis as JSON.")) -> None:
    """Analyze the loaded model and the loaded data together, with recommendations."""
    result = _both(input_shape)
    emit_json(result) if json_out else typer.echo(render(result, "text"), nl=False)


@analyze_app.command("report")
@handle_errors
def analyze_report_cmd(fmt: str = typer.Option("html", "--format", "-f", help=f"One of {', '.join(FORMATS)}."),
                       output: Path | None = _OUTPUT_OPT,
                       input_shape: str | None = typer.Option(None, "--input-shape", help=_SHAPE_HELP)) -> None:
    """A full report of what is loaded (model, data or both) with recommendations drawn from the measurements."""
    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    state = read_workspace()
    if not state.get("model") and not state.get("data"):
        fail("nothing loaded: use `axonml load model|data|both` first")
    m = analyze_model(Path(state["model"]["path"]), parse_shape(input_shape)) if state.get("model") else None
    d = analyze_data(Path(state["data"]["path"])) if state.get("data") else None
    text = render({"model": m, "data": d, "recommendations": recommend(m, d)}, fmt)
    if output is None:
        typer.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output} ({fmt}, {len(text):,} bytes)", err=True)


__all__ = ["analyze_data", "analyze_model", "recommend"]
