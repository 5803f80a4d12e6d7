"""State-dict key surgery (prefixes, regex renames, explicit maps) and a JSON view for inspection.

Checkpoints from other code often differ only in names: ``module.`` in front of
every key (``DataParallel``/``DistributedDataParallel``), ``model.`` from a
Lightning module, ``_orig_mod.`` from ``torch.compile``, or a renamed layer.
These helpers return a new ``OrderedDict`` (the values are the same objects)
and keep a state dict's ``_metadata`` in step with its keys. Two keys that
would end up under one name raise an error instead of silently dropping one.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..core.tensor import Tensor
from ._common import PathLike, atomic_write, host_array


def _rebuild(state_dict: Mapping[str, Any], rename: Callable[[str], str | None], what: str) -> OrderedDict[str, Any]:
    out: OrderedDict[str, Any] = OrderedDict()
    origin: dict[str, str] = {}
    for key, value in state_dict.items():
        new = rename(key)
        if new is None:
            continue
        if new in out:
            raise KeyError(f"{what}: keys {origin[new]!r} and {key!r} both map to {new!r}")
        out[new] = value
        origin[new] = key
    meta = getattr(state_dict, "_metadata", None)
    if isinstance(meta, Mapping):
        # module paths are keys without the parameter name: "" is the root, "0" the first child
        new_meta: OrderedDict[str, Any] = OrderedDict()
        for path, info in meta.items():
            renamed = rename(path + ".") if path else rename("")
            if renamed is None:
                continue
            new_meta[renamed[:-1] if renamed.endswith(".") else renamed] = info
        out._metadata = new_meta  # type: ignore[attr-defined]
    return out


def strip_prefix(state_dict: Mapping[str, Any], prefix: str = "module.") -> OrderedDict[str, Any]:
    """Remove ``prefix`` from every key that has it (``module.fc.weight`` -> ``fc.weight``)."""
    return _rebuild(state_dict, lambda k: k[len(prefix):] if k.startswith(prefix) else k, "strip_prefix")


def add_prefix(state_dict: Mapping[str, Any], prefix: str = "module.") -> OrderedDict[str, Any]:
    """Put ``prefix`` in front of every key (what a ``DataParallel`` wrapper expects)."""
    return _rebuild(state_dict, lambda k: prefix + k, "add_prefix")


def rename_keys(state_dict: Mapping[str, Any], pattern: str | re.Pattern[str], repl: str | Callable[[Any], str],
                count: int = 0) -> OrderedDict[str, Any]:
    """Rename keys with ``re.sub(pattern, repl, key, count)`` (e.g. ``r"^encoder\\.layer\\.(\\d+)"`` ->
    ``r"layers.\\1"``)."""
    rx = re.compile(pattern)
    return _rebuild(state_dict, lambda k: rx.sub(repl, k, count=count), "rename_keys")


def map_state_dict(state_dict: Mapping[str, Any], mapping: Mapping[str, str | None] | Callable[[str], str | None],
                   *, drop_unmapped: bool = False, strict: bool = False) -> OrderedDict[str, Any]:
    """Rename keys by an explicit ``{old: new}`` map (``None`` drops a key) or a function of the key.

    Keys the map does not name are kept as they are, or dropped with
    ``drop_unmapped=True``. ``strict=True`` raises if a name in the map is not
    in the state dict (a typo in a conversion table).
    """
    if callable(mapping):
        return _rebuild(state_dict, mapping, "map_state_dict")
    if strict:
        absent = [k for k in mapping if k not in state_dict]
        if absent:
            raise KeyError(f"map_state_dict: keys not in the state dict: {absent}")

    def rename(key: str) -> str | None:
        if key in mapping:
            return mapping[key]
        if key.endswith(".") or key == "":  # a _metadata module path: follow the parameters it holds
            return key
        return None if drop_unmapped else key

    return _rebuild(state_dict, rename, "map_state_dict")


# ----- JSON inspection ------------------------------------------------------------------------------
def _finite(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)


def _flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(obj, list | tuple) and any(isinstance(v, Tensor | np.ndarray | Mapping | list | tuple)
                                               for v in obj):
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}.{i}" if prefix else str(i), out)
    else:
        out[prefix] = obj


def describe_tensor(value: Tensor | np.ndarray, *, stats: bool = True, values: bool = False) -> dict[str, Any]:
    """Shape, dtype, element count, bytes and (for numeric data) min/max/mean/std/NaN/Inf counts."""
    arr = host_array(value) if isinstance(value, Tensor) else np.asarray(value)
    info: dict[str, Any] = {
        "shape": list(arr.shape),
        "dtype": str(value.dtype).removeprefix("axonml.") if isinstance(value, Tensor) else arr.dtype.name,
        "numel": int(arr.size),
        "bytes": int(arr.nbytes),
    }
    if isinstance(value, Tensor):
        info["device"] = str(value.device)
        info["requires_grad"] = bool(value.requires_grad)
    if stats and arr.size and (arr.dtype.kind in "biuf" or arr.dtype.name == "bfloat16"):
        x = arr.astype(np.float64)
        finite = x[np.isfinite(x)]
        info["nan"] = int(np.isnan(x).sum())
        info["inf"] = int(np.isinf(x).sum())
        if finite.size:
            info.update(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean()),
                        std=float(finite.std()), zeros=int((x == 0).sum()))
    if values:
        flat = arr.astype(np.float64) if arr.dtype.name == "bfloat16" else arr
        info["values"] = _jsonable(flat.tolist())
    return info


def _jsonable(x: Any) -> Any:
    if isinstance(x, float):
        return _finite(x)
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    return x


def state_dict_to_json(state_dict: Mapping[str, Any], path: PathLike | None = None, *, stats: bool = True,
                       values: bool = False, indent: int | None = 2) -> str:
    """A JSON description of a state dict (nested dicts flattened to dotted keys), written to ``path`` if given.

    Each tensor gets shape, dtype, element count, bytes, device and, with
    ``stats``, min/max/mean/std and NaN/Inf/zero counts; ``values=True`` adds
    the values themselves (non-finite ones as strings). Other entries are
    shown as JSON when they are, else by ``repr``. Totals close the document.
    """
    flat: dict[str, Any] = {}
    _flatten(state_dict, "", flat)
    entries: dict[str, Any] = {}
    total_numel = total_bytes = 0
    for key, value in flat.items():
        if isinstance(value, Tensor | np.ndarray):
            info = describe_tensor(value, stats=stats, values=values)
            total_numel += info["numel"]
            total_bytes += info["bytes"]
            entries[key] = info
        else:
            try:
                json.dumps(value, allow_nan=False)
                entries[key] = {"value": value}
            except (TypeError, ValueError):
                entries[key] = {"value": repr(value), "type": type(value).__name__}
    doc = {"tensors": entries, "num_tensors": sum("numel" in e for e in entries.values()),
           "total_numel": total_numel, "total_bytes": total_bytes}
    text = json.dumps(doc, indent=indent, allow_nan=False)
    if path is not None:
        with atomic_write(path) as f:
            f.write(text.encode("utf-8"))
    return text
