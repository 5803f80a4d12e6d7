"""Reading and writing the model files the CLI handles: ``.axonml`` archives, ``axonml.save`` files,
PyTorch ``.pt/.pth/.bin``, SafeTensors and the JSON view of :func:`axonml.io.state_dict_to_json`.

Input formats are told by content (the first bytes, the zip members), never by
the name alone; output formats by the extension or ``--to``.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core import dtypes as _dt
from ..core.tensor import Tensor
from ..io import ModelArchive, SerializationError, load, load_torch, read_metadata, safe_open
from ..io._common import c_order, wrap_array
from ..io.archive import WEIGHTS
from ..io.safetensors_io import load as st_load
from ..io.torch_format import LEGACY_PREFIX
from ..nn import Module

EXTENSIONS = {".pt": "pt", ".pth": "pt", ".bin": "pt", ".safetensors": "safetensors", ".axonml": "axonml",
              ".json": "json"}
OUTPUT_FORMATS = ("pt", "safetensors", "axonml", "json")
JSON_FORMAT = "state_dict_json"  # what the JSON view's documents are called in messages


def sniff(path: Path) -> str:
    """``axonml-archive``, ``axonml-save``, ``pt``, ``safetensors`` or ``json``, read from the file's content."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(64)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as e:
            raise SerializationError(f"{path}: a corrupt zip file ({e})") from e
        if "manifest.json" in names:
            return "axonml-archive"
        if "axonml.json" in names:
            return "axonml-save"
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "pt"
        raise SerializationError(f"{path}: a zip file, but not a model file axonml knows")
    if head.startswith(LEGACY_PREFIX):
        return "pt"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 30):
        return "safetensors"
    if head.lstrip()[:1] == b"{":
        return "json"
    raise SerializationError(f"{path}: not a model file axonml reads (.axonml, .pt/.pth/.bin, .safetensors, JSON)")


def output_format(path: Path, to: str | None) -> str:
    """The format to write: ``to`` when given, else told by the extension."""
    if to is not None:
        if to not in OUTPUT_FORMATS:
            raise ValueError(f"--to must be one of {', '.join(OUTPUT_FORMATS)}, got {to!r}")
        return to
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the output format from {path.name!r}: use an extension "
                         f"({', '.join(sorted(EXTENSIONS))}) or --to")
    return fmt


def dtype_name(value: Tensor) -> str:
    return str(value.dtype).removeprefix("axonml.")


def flatten(obj: Any, prefix: str = "") -> tuple[OrderedDict[str, Tensor], dict[str, Any]]:
    """Tensors of a nested object under dotted keys, and its other leaves (numbers, strings...) apart."""
    tensors: OrderedDict[str, Tensor] = OrderedDict()
    others: dict[str, Any] = {}

    def walk(x: Any, key: str) -> None:
        if isinstance(x, Tensor):
            tensors[key] = x
        elif isinstance(x, np.ndarray) and x.dtype in _dt._FROM_NP:
            tensors[key] = wrap_array(c_order(x))
        elif isinstance(x, Mapping):
            for k, v in x.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(x, list | tuple) and any(isinstance(v, Tensor | np.ndarray | Mapping | list | tuple)
                                                 for v in x):
            for i, v in enumerate(x):
                walk(v, f"{key}.{i}" if key else str(i))
        else:
            others[key] = x

    walk(obj, prefix)
    return tensors, others


def select(obj: Any, path: str) -> Any:
    """The entry of nested dicts at a dotted ``path`` (a key that itself has dots is matched whole first)."""
    rest = path
    while rest:
        if not isinstance(obj, Mapping):
            raise KeyError(f"--select {path!r}: {type(obj).__name__} has no entries")
        if rest in obj:
            return obj[rest]
        head = next((k for k in sorted(obj, key=lambda k: -len(str(k))) if rest.startswith(f"{k}.")), None)
        if head is None:
            raise KeyError(f"--select {path!r}: no entry {rest.split('.')[0]!r} (there are: "
                           f"{', '.join(map(str, list(obj)[:10]))})")
        obj, rest = obj[head], rest[len(str(head)) + 1:]
    return obj


@dataclass
class Weights:
    """What a model file holds: its format, tensors under flat keys, other entries and metadata."""

    path: Path
    format: str
    tensors: OrderedDict[str, Tensor]
    others: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None  # .axonml archives


def _from_json(path: Path) -> Any:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SerializationError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("tensors"), dict):
        raise SerializationError(f"{path}: not a state-dict JSON document (no 'tensors' object)")
    out: OrderedDict[str, Any] = OrderedDict()
    for key, entry in doc["tensors"].items():
        if not isinstance(entry, dict):
            raise SerializationError(f"{path}: bad entry {key!r}")
        if "shape" not in entry:
            out[key] = entry.get("value")
            continue
        if "values" not in entry:
            raise SerializationError(f"{path}: tensor {key!r} has no values (a description written with "
                                     "--no-values cannot be converted back)")
        out[key] = _tensor_from_json(entry, f"{path}: {key!r}")
    return out


def _unstring(x: Any) -> Any:
    if isinstance(x, list):
        return [_unstring(v) for v in x]
    if isinstance(x, str):
        if x not in ("nan", "inf", "-inf"):
            raise ValueError(f"unexpected string value {x!r}")
        return float(x)
    return x


def _tensor_from_json(entry: dict[str, Any], what: str) -> Tensor:
    try:
        dt = _dt.as_dtype(entry["dtype"]).np
        shape = tuple(int(s) for s in entry["shape"])
        values = _unstring(entry["values"])
        if dt.kind == "f" or dt == _dt._BF16_NP:  # through float64, which holds every narrower float exactly
            arr = np.asarray(values, dtype=np.float64).astype(dt)
        else:
            arr = np.asarray(values, dtype=dt)
        arr = arr.reshape(shape)
    except (KeyError, TypeError, ValueError) as e:
        raise SerializationError(f"{what}: bad tensor entry ({e})") from e
    return wrap_array(c_order(arr))


def read_weights(path: Path, selected: str | None = None) -> Weights:
    """Load a model file's tensors (archives are verified against their SHA-256 first)."""
    fmt = sniff(path)
    metadata: dict[str, Any] = {}
    manifest = None
    if fmt == "axonml-archive":
        manifest = ModelArchive.verify(path)
        with zipfile.ZipFile(path) as zf:
            obj: Any = st_load(zf.read(WEIGHTS))
        metadata = dict(manifest.get("metadata", {}))
    elif fmt == "axonml-save":
        obj = load(path, map_location="cpu")
        metadata = read_metadata(path)
    elif fmt == "pt":
        obj = load_torch(path, map_location="cpu")
    elif fmt == "safetensors":
        with safe_open(path) as f:
            obj = OrderedDict((k, f.get_tensor(k)) for k in f)
            metadata = f.metadata()
    else:
        obj = _from_json(path)
    if selected:
        obj = select(obj, selected)
    tensors, others = flatten(obj)
    return Weights(path, fmt, tensors, others, metadata, manifest)


def tensor_table(path: Path, fmt: str) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """(tensor rows, other entries, metadata) of a weights file; SafeTensors is read from its header only."""
    if fmt == "safetensors":
        rows = []
        with safe_open(path) as f:
            for k in f:
                sl = f.get_slice(k)
                shape = sl.get_shape()
                code = sl.get_dtype()
                dt, itemsize = _ST_DTYPES.get(code, (code.lower(), 1))
                numel = math.prod(shape)
                rows.append({"name": k, "shape": shape, "dtype": dt, "numel": numel, "bytes": numel * itemsize})
            return rows, {}, f.metadata()
    w = read_weights(path)
    rows = [{"name": k, "shape": list(t.shape), "dtype": dtype_name(t), "numel": t.numel(), "bytes": t.nbytes}
            for k, t in w.tensors.items()]
    return rows, w.others, w.metadata


# SafeTensors dtype code -> (our name, bytes per element)
_ST_DTYPES = {"F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
              "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1), "U8": ("uint8", 1),
              "BOOL": ("bool", 1), "U16": ("uint16", 2), "U32": ("uint32", 4), "U64": ("uint64", 8),
              "C64": ("complex64", 8)}


def archive_model(path: Path, manifest: dict[str, Any]) -> Module:
    """Rebuild and load the model of a verified archive, registering a vision-zoo builder it names."""
    ensure_builder(manifest.get("architecture", {}))
    return ModelArchive.load(path, map_location="cpu").model


def ensure_builder(architecture: Mapping[str, Any]) -> None:
    """Make an archive's ``builder`` loadable when it names a model of ``axonml.vision.models``."""
    from ..io import register_builder
    from ..vision.models import get_model_builder, list_models

    name = architecture.get("builder")
    if isinstance(name, str) and name in list_models():
        register_builder(name, get_model_builder(name))


def build_model(name: str, kwargs: dict[str, Any]) -> tuple[Module, dict[str, Any]]:
    """A model from the vision zoo (``resnet18``) or a trusted class path (``axonml.nn:Linear``).

    Returns the model and the ``ModelArchive.save`` arguments that let an archive rebuild it.
    """
    from ..io import register_builder
    from ..vision.models import get_model_builder, list_models

    if ":" in name:
        model = ModelArchive.build({"class": name, "kwargs": kwargs})
        return model, {"config": kwargs}
    try:
        builder = get_model_builder(name)  # aliases too: lenet -> lenet5
    except ValueError:
        raise ValueError(f"unknown model {name!r}: a name from the model zoo ({', '.join(list_models()[:8])}, ...) "
                         "or a class path such as axonml.nn:Linear") from None
    key = next(n for n in list_models() if get_model_builder(n) is builder)
    register_builder(key, builder)
    return builder(**kwargs), {"config": kwargs, "builder": key}


def check_fits(model: Module, tensors: Mapping[str, Tensor]) -> None:
    """Raise unless ``tensors`` match the model's state dict in keys, shapes and dtypes (nothing cast)."""
    state = {k: v for k, v in model.state_dict().items() if isinstance(v, Tensor)}
    missing = sorted(set(state) - set(tensors))
    unexpected = sorted(set(tensors) - set(state))
    if missing or unexpected:
        raise ValueError(f"the weights do not fit {type(model).__name__}: missing keys {missing[:6]}"
                         f"{'...' if len(missing) > 6 else ''}, unexpected keys {unexpected[:6]}"
                         f"{'...' if len(unexpected) > 6 else ''} (map keys with --strip-prefix/--rename)")
    for k, t in state.items():
        src = tensors[k]
        if tuple(src.shape) != tuple(t.shape) or src.dtype != t.dtype:
            raise ValueError(f"the weights do not fit {type(model).__name__}: {k} is {dtype_name(src)} "
                             f"{list(src.shape)} in the file, {dtype_name(t)} {list(t.shape)} in the model")


def metadata_batch_shape(metadata: Any) -> tuple[int, ...] | None:
    """A batch-of-one input shape from an archive's ``metadata["input_shape"]``, or None.

    The metadata holds one sample's shape (as ``axonml train`` writes it and ``axonml bench``
    reads it), so the batch dimension is added here, in one place for every command.
    """
    shape = metadata.get("input_shape") if isinstance(metadata, dict) else None
    if isinstance(shape, list) and shape and all(isinstance(s, int) and s > 0 for s in shape):
        return (1, *shape)
    return None
