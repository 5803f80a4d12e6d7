"""``Module.state_dict`` and ``Module.load_state_dict``, as PyTorch's (keys, metadata, errors).

Loading copies values into the existing parameters and buffers in place, so the
objects an optimizer holds keep working. A value may be an axonml Tensor, a
NumPy array, or anything with ``__array__`` (a CPU ``torch.Tensor`` among them).
Layers whose keys changed between versions override ``_load_from_state_dict``
(same signature as PyTorch's) and read ``local_metadata["version"]``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from itertools import chain
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..backend.helpers import move_array
from ..core.tensor import Tensor

if TYPE_CHECKING:
    from .module import Module


class _IncompatibleKeys(NamedTuple):
    """What ``load_state_dict`` returns: the keys the module wanted but did not get, and the extra ones."""

    missing_keys: list[str]
    unexpected_keys: list[str]

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return f"_IncompatibleKeys(missing_keys={self.missing_keys}, unexpected_keys={self.unexpected_keys})"


def save_to_state_dict(self: Module, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
    """Put this module's own parameters and persistent buffers (not its children's) into ``destination``."""
    for name, p in self._parameters.items():
        if p is not None:
            destination[prefix + name] = p if keep_vars else p.detach()
    for name, b in self._buffers.items():
        if b is not None and name not in self._non_persistent_buffers_set:
            destination[prefix + name] = b if keep_vars else b.detach()
    if _has_extra_state(self):
        destination[prefix + "_extra_state"] = self.get_extra_state()


def _has_extra_state(m: Module) -> bool:
    from .module import Module

    return type(m).get_extra_state is not Module.get_extra_state


def state_dict(self: Module, *, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
    """An ``OrderedDict`` of every parameter and persistent buffer under dotted keys (``"0.weight"``).

    Values are detached tensors sharing memory with the module's (the objects
    themselves with ``keep_vars``). ``_metadata`` holds each module's version.
    """
    if destination is None:
        destination = OrderedDict()
        destination._metadata = OrderedDict()  # type: ignore[attr-defined]
    metadata = getattr(destination, "_metadata", None)
    if metadata is not None:
        metadata[prefix[:-1]] = {"version": self._version}
    self._save_to_state_dict(destination, prefix, keep_vars)
    for name, m in self._modules.items():
        if m is not None:
            m.state_dict(destination=destination, prefix=prefix + name + ".", keep_vars=keep_vars)
    return destination


def _source_array(value: Any) -> tuple[Any, tuple[int, ...]] | None:
    """(array, shape) of a checkpoint value, or None if it is not tensor-like."""
    if isinstance(value, Tensor):
        return value._data, tuple(value.shape)
    if isinstance(value, np.ndarray) or hasattr(value, "__cuda_array_interface__"):
        return value, tuple(value.shape)
    if hasattr(value, "__array__"):
        try:
            arr = np.asarray(value)
        except Exception:  # e.g. a bfloat16 torch tensor, which NumPy cannot hold: reported with its key
            return None
        if arr.dtype != object:
            return arr, tuple(arr.shape)
    return None


def _assign(old: Tensor, value: Any, array: Any) -> Tensor:
    """The replacement for ``old`` under ``assign=True``: the checkpoint's tensor, of ``old``'s kind."""
    from .parameter import Buffer, Parameter

    src = value if isinstance(value, Tensor) else Tensor._make(np.asarray(array), old._device)
    if isinstance(old, Parameter):
        return Parameter(src, requires_grad=old._requires_grad)
    if isinstance(old, Buffer):
        return Buffer(src, persistent=old.persistent)
    return src


def load_from_state_dict(self: Module, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any],
                         strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                         error_msgs: list[str]) -> None:
    """Load this module's own entries from ``state_dict``, collecting missing/unexpected keys and errors."""
    persistent = {k: v for k, v in self._buffers.items() if k not in self._non_persistent_buffers_set}
    local = {k: v for k, v in chain(self._parameters.items(), persistent.items()) if v is not None}
    assign = bool(local_metadata.get("assign_to_params_buffers", False))
    for name, target in local.items():
        key = prefix + name
        if key not in state_dict:
            if strict:
                missing_keys.append(key)
            continue
        value = state_dict[key]
        found = _source_array(value)
        if found is None:
            error_msgs.append(
                f'While copying the parameter named "{key}", expected a tensor or an array from the checkpoint '
                f"but received {type(value).__name__}"
            )
            continue
        array, shape = found
        if shape != tuple(target.shape):
            error_msgs.append(
                f"size mismatch for {key}: copying a param with shape {shape} from checkpoint, "
                f"the shape in current model is {tuple(target.shape)}."
            )
            continue
        try:
            if assign:
                store = self._parameters if name in self._parameters else self._buffers
                store[name] = _assign(target, value, array)
            else:
                xp = target._device.xp
                xp.copyto(target._data, move_array(array, target._device), casting="unsafe")
                target._version[0] += 1
        except Exception as e:  # reported with the key, together with every other problem
            error_msgs.append(
                f'While copying the parameter named "{key}", whose dimensions in the model are {tuple(target.shape)} '
                f"and whose dimensions in the checkpoint are {shape}, an exception occurred: {e!r}."
            )
    extra_key = prefix + "_extra_state"
    if _has_extra_state(self):
        if extra_key in state_dict:
            self.set_extra_state(state_dict[extra_key])
        elif strict:
            missing_keys.append(extra_key)
    elif strict and extra_key in state_dict:
        unexpected_keys.append(extra_key)
    if strict:
        for key in state_dict:
            if key.startswith(prefix) and key != extra_key:
                head = key[len(prefix):].split(".", 1)[0]
                if head not in self._modules and head not in local:
                    unexpected_keys.append(key)


def load_state_dict(self: Module, state_dict: Mapping[str, Any], strict: bool = True,
                    assign: bool = False) -> _IncompatibleKeys:
    """Copy ``state_dict``'s values into this module's parameters and buffers, in place.

    Returns ``(missing_keys, unexpected_keys)``. With ``strict`` (the default)
    any missing or unexpected key raises; a shape mismatch always raises,
    naming the key and both shapes. ``assign=True`` replaces the tensors
    with the checkpoint's instead of copying (keeping Parameter/Buffer kinds).
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict).__name__}.")
    missing: list[str] = []
    unexpected: list[str] = []
    errors: list[str] = []
    metadata = getattr(state_dict, "_metadata", None)
    sd: dict[str, Any] = OrderedDict(state_dict)

    def load(module: Module, local_sd: dict[str, Any], prefix: str = "") -> None:
        local_metadata = dict(metadata.get(prefix[:-1], {})) if metadata is not None else {}
        if assign:
            local_metadata["assign_to_params_buffers"] = True
        module._load_from_state_dict(local_sd, prefix, local_metadata, True, missing, unexpected, errors)
        for name, child in module._modules.items():
            if child is not None:
                child_prefix = prefix + name + "."
                load(child, {k: v for k, v in local_sd.items() if k.startswith(child_prefix)}, child_prefix)

    load(self, sd)
    if strict:
        if unexpected:
            errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in unexpected)))
        if missing:
            errors.insert(0, "Missing key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in missing)))
    if errors:
        raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors))
    return _IncompatibleKeys(missing, unexpected)
