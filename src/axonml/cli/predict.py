"""``axonml predict``: classify images, ``.npy`` arrays, JSON arrays or CSV rows with a trained model.

Inputs become the model's input as ``axonml train`` recorded it (input shape,
normalization, class names):

* images (PNG, JPEG, BMP, PPM/PGM, TIFF, WebP; or a folder of them): converted to the
  model's colour mode, resized to its size, scaled and normalized as in training;
* arrays (``.npy``, JSON lists, CSV rows): ``uint8`` arrays are pixels (one image
  ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)``, or a batch of them) and get the image
  preprocessing; other arrays are model inputs as they are (already normalized):
  one ``(C, H, W)`` input, a batch ``(N, C, H, W)``, or flat rows of C*H*W features
  (CSV: one sample a row, an optional header line).

Inputs are run in batches of ``--batch-size``; ``.npy`` files are memory-mapped, so
a large one is read one batch at a time.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.table import Table

from ..core import grad_mode
from ..core.creation import from_numpy
from ..vision.datasets import IMG_EXTENSIONS
from ._app import CommandError, app, emit_json, handle_errors
from ._train_data import InputSpec
from ._train_eval import softmax
from ._train_models import load_for_inference
from ._train_setup import resolve_device, stdout_console

ARRAY_SUFFIXES = (".npy", ".json", ".csv")
MODEL_ARG = typer.Argument(..., help="A .axonml archive, a checkpoint (.ckpt), or a run folder.")
INPUTS_ARG = typer.Argument(..., help="Images (or folders of them), .npy, .json or .csv files.")


def pixel_batch(arr: np.ndarray, spec: InputSpec, name: str) -> np.ndarray:
    """uint8 pixels -> (N, C, H, W) uint8 with C the data's channels (1 or the model's), or CommandError."""
    c, h, w = spec.shape
    hw = (h, w)
    if arr.ndim == 2 and arr.shape == hw:
        return arr[None, None]
    if arr.ndim == 3:
        if arr.shape[:2] == hw and arr.shape[2] in (1, c):
            return arr.transpose(2, 0, 1)[None]
        if arr.shape[1:] == hw and arr.shape[0] in (1, c):
            return arr[None]
        if arr.shape[1:] == hw:
            return arr[:, None]  # a batch of grey images
    if arr.ndim == 4:
        if arr.shape[1:3] == hw and arr.shape[3] in (1, c):
            return arr.transpose(0, 3, 1, 2)
        if arr.shape[2:] == hw and arr.shape[1] in (1, c):
            return arr
    raise CommandError(f"{name}: uint8 pixels of shape {list(arr.shape)} are not {h}x{w} images "
                       f"(expected (H, W), (H, W, C), (C, H, W) or a batch of them, C = 1 or {c})")


def input_batch(arr: np.ndarray, spec: InputSpec, name: str) -> np.ndarray:
    """An array of model inputs -> (N, C, H, W) (a view where it can be: cast a batch at a time), or CommandError."""
    c, h, w = spec.shape
    size = c * h * w
    x = arr
    if x.shape == (c, h, w) or (x.ndim == 1 and x.size == size) or (c == 1 and x.shape == (h, w)):
        return x.reshape(1, c, h, w)
    if x.ndim >= 2 and int(np.prod(x.shape[1:])) == size and (x.shape[1:] == (c, h, w) or x.ndim == 2
                                                              or (c == 1 and x.shape[1:] == (h, w))):
        return x.reshape(len(x), c, h, w)
    raise CommandError(f"{name}: an array of shape {list(x.shape)} is neither one input of shape {[c, h, w]} "
                       f"({size} values) nor a batch of them")


class _Source:
    """A named sequence of samples that yields model inputs a batch at a time."""

    def __init__(self, name: str, items: Any, kind: str, labels: list[str]) -> None:
        self.name, self.items, self.kind, self.labels = name, items, kind, labels

    def __len__(self) -> int:
        return len(self.labels)


def _read_array(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "inputs" in data:
                data = data["inputs"]
            return np.asarray(data, dtype=np.float32)
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r and any(v.strip() for v in r)]
        if rows and not _numeric(rows[0]):
            rows = rows[1:]  # a header line
        return np.asarray([[float(v) for v in r] for r in rows], dtype=np.float32)
    except (ValueError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CommandError(f"{path}: cannot read numbers from it ({e})") from None


def _numeric(row: list[str]) -> bool:
    try:
        [float(v) for v in row]
    except ValueError:
        return False
    return True


def gather_sources(inputs: list[Path], spec: InputSpec) -> list[_Source]:
    """The inputs grouped into sources: runs of images, and one source per array file."""
    sources: list[_Source] = []
    images: list[Path] = []
    for path in inputs:
        if path.is_dir():
            images += sorted(p for p in path.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
            continue
        if not path.is_file():
            raise CommandError(f"input {path} not found")
        suffix = path.suffix.lower()
        if suffix in IMG_EXTENSIONS:
            images.append(path)
        elif suffix in ARRAY_SUFFIXES:
            arr = _read_array(path)
            if arr.dtype.kind not in "biuf":
                raise CommandError(f"{path}: holds {arr.dtype} values, not numbers")
            if arr.dtype == np.uint8:
                batch, kind = pixel_batch(arr, spec, str(path)), "pixels"
            else:
                batch, kind = input_batch(arr, spec, str(path)), "inputs"
            labels = [str(path)] if len(batch) == 1 else [f"{path}[{i}]" for i in range(len(batch))]
            sources.append(_Source(str(path), batch, kind, labels))
        else:
            raise CommandError(f"{path}: unsupported input; give images ({', '.join(IMG_EXTENSIONS)}), "
                               f"{', '.join(ARRAY_SUFFIXES)} files or folders of images")
    if images:
        sources.insert(0, _Source("images", images, "images", [str(p) for p in images]))
    if not sources:
        raise CommandError("no inputs found")
    return sources


def _load_images(paths: list[Path], spec: InputSpec) -> np.ndarray:
    """(N, C, H, W) uint8 pixels of the images, in the model's colour mode and size."""
    from PIL import Image, UnidentifiedImageError

    c, h, w = spec.shape
    out = np.empty((len(paths), c, h, w), np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as im:
                im = im.convert("L" if c == 1 else "RGB")
                if im.size != (w, h):
                    im = im.resize((w, h), Image.Resampling.BILINEAR)
                px = np.asarray(im)
        except (OSError, UnidentifiedImageError) as e:
            raise CommandError(f"{path}: cannot read the image ({e})") from None
        out[i] = px[None] if px.ndim == 2 else px.transpose(2, 0, 1)
    return out


def _batches(source: _Source, spec: InputSpec, batch_size: int) -> Iterator[tuple[int, np.ndarray, bool]]:
    """(start, batch, is_pixels) over ``source``."""
    for start in range(0, len(source), batch_size):
        chunk = source.items[start:start + batch_size]
        if source.kind == "images":
            yield start, _load_images(chunk, spec), True
        else:
            pixels = source.kind == "pixels"
            yield start, np.ascontiguousarray(chunk, dtype=np.uint8 if pixels else np.float32), pixels


def predict_inputs(model: Any, spec: InputSpec, sources: list[_Source], *, batch_size: int, top_k: int,
                   device: Any) -> list[dict[str, Any]]:
    """One prediction per sample: class index and name, probability, and the top-k classes."""
    k = min(top_k, len(spec.classes))
    results: list[dict[str, Any]] = []
    model.to(device)
    with grad_mode.no_grad():
        for source in sources:
            for start, batch, pixels in _batches(source, spec, batch_size):
                x = from_numpy(batch).to(device)
                logits = model(spec.prepare(x) if pixels else x)
                probs = softmax(np.asarray(logits.float().cpu().numpy()))
                order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
                for j in range(len(batch)):
                    top = [{"class": int(i), "label": spec.classes[int(i)], "probability": float(probs[j, i])}
                           for i in order[j]]
                    results.append({"input": source.labels[start + j], **top[0], "top_k": top})
    return results


@app.command()
@handle_errors
def predict(
    model: Path = MODEL_ARG,
    inputs: list[Path] = INPUTS_ARG,
    top_k: int = typer.Option(3, "--top-k", "-k", help="How many of the most likely classes to show."),
    batch_size: int = typer.Option(256, "--batch-size", "-b", help="Samples per forward pass."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print the predictions as JSON."),
) -> None:
    """Classify inputs: the predicted class, its probability and the top-k classes for each sample."""
    if top_k < 1 or batch_size < 1:
        raise CommandError("--top-k and --batch-size must be >= 1")
    loaded = load_for_inference(model)
    sources = gather_sources(list(inputs), loaded.spec)
    results = predict_inputs(loaded.model, loaded.spec, sources, batch_size=batch_size, top_k=top_k,
                             device=resolve_device(device))
    if as_json:
        emit_json({"model": str(loaded.path), "predictions": results})
        return
    table = Table(title=f"predictions of {loaded.path}")
    for col in ("input", "class", "probability", f"top-{min(top_k, len(loaded.spec.classes))}"):
        table.add_column(col, justify="right" if col == "probability" else "left")
    for r in results:
        top = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top_k"])
        name = r["label"] if r["label"].startswith(str(r["class"])) else f"{r['class']} {r['label']}"
        table.add_row(r["input"], name, f"{r['probability']:.4f}", top)
    stdout_console().print(table)
