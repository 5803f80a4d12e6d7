"""``axonml.io``: saving and loading models and training state, safely, in axonml's and others' formats.

``save``/``load`` (axonml's safe zip format, and PyTorch/SafeTensors files on
load), SafeTensors (``save_file``, ``load_file``, ``safe_open``,
``save_model``, ``load_model``), PyTorch checkpoints without PyTorch
(``load_torch``, ``save_torch``), ``.axonml`` model archives
(``ModelArchive``), training checkpoints (``Checkpoint``,
``CheckpointManager``), and state-dict key mapping and JSON inspection.
"""

from __future__ import annotations

from . import download
from ._common import IntegrityError, SerializationError, UnsafePickleError, atomic_write
from .archive import ModelArchive, register_builder
from .checkpoint import Checkpoint, CheckpointInfo, CheckpointManager, get_rng_state, set_rng_state
from .keymap import add_prefix, describe_tensor, map_state_dict, rename_keys, state_dict_to_json, strip_prefix
from .pickle_globals import builtin_globals, numpy_globals
from .safetensors_io import load_file, load_metadata, load_model, safe_open, save_file, save_model
from .serialization import dumps, load, loads, read_metadata, save, verify
from .torch_format import load_torch
from .torch_pickle import RestrictedUnpickler, restricted_loads
from .torch_writer import dumps_torch, save_torch

__all__ = [
    "Checkpoint", "CheckpointInfo", "CheckpointManager", "IntegrityError", "ModelArchive", "RestrictedUnpickler",
    "SerializationError", "UnsafePickleError", "add_prefix", "atomic_write", "builtin_globals", "describe_tensor",
    "dumps", "dumps_torch", "get_rng_state", "load", "load_file", "load_metadata", "load_model", "load_torch",
    "loads", "map_state_dict", "numpy_globals", "read_metadata", "register_builder", "rename_keys",
    "restricted_loads", "safe_open", "save", "save_file", "save_model", "save_torch", "set_rng_state",
    "state_dict_to_json", "strip_prefix", "verify",
]
