"""Models for ``axonml train``/``eval``/``predict``: built from the registry, saved and found again.

A model is built by :func:`build_vision_model` (registered as the archive builder
``axonml.vision.get_model``), so a ``model.axonml`` written by ``train`` names the
registry entry and its keyword arguments, and ``eval``/``predict``/``inspect`` or a
plain ``axonml.io.ModelArchive.load`` rebuild it (the archive records this module as
the builder's, and the loader imports it, a trusted ``axonml`` module, on demand).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import grad_mode
from ..core.creation import zeros
from ..io import ModelArchive, register_builder
from ..io import load as load_file
from ..io._common import SerializationError
from ..nn import Module
from ..vision.models import get_model, get_model_builder, list_models
from ._app import CommandError
from ._train_data import InputSpec

BUILDER = "axonml.vision.get_model"
CHECKPOINT_KIND = "axonml.checkpoint"


def build_vision_model(model_name: str, **kwargs: Any) -> Module:
    """``axonml.vision.models.get_model(model_name, **kwargs)``: the builder ``.axonml`` archives name."""
    return get_model(model_name, **kwargs)


register_builder(BUILDER, build_vision_model)


def canonical_model_name(name: str) -> str:
    """The registry's own name of model ``name`` (``"lenet"`` -> ``"lenet5"``, case folded); CommandError
    naming close matches when there is no such model."""
    try:
        builder = get_model_builder(name)
    except ValueError as e:
        raise CommandError(str(e)) from None
    if name.lower() in list_models():
        return name.lower()
    return next((n for n in list_models() if get_model_builder(n) is builder), name.lower())


def model_kwargs(name: str, spec: InputSpec, user_args: dict[str, Any]) -> dict[str, Any]:
    """The builder's keyword arguments: sizes that follow from the data, then the user's ``[model.args]``."""
    c, h, w = spec.shape
    key = name.lower()
    kwargs: dict[str, Any] = {"num_classes": len(spec.classes)}
    if key == "mlp":
        kwargs["in_features"] = c * h * w
    elif key in ("lenet5", "simple_cnn"):
        if h != w:
            raise CommandError(f"{name} takes square images, the data's are {h}x{w}")
        kwargs.update(in_channels=c, image_size=h)
    elif key.startswith(("resnet", "resnext", "wide_resnet")):
        kwargs["cifar_stem"] = h <= 64  # 3x3 stride-1 stem, no max-pool: small images keep their resolution
    elif key.startswith("vit"):
        kwargs["image_size"] = h
    kwargs.update(user_args)
    return kwargs


def create_model(name: str, spec: InputSpec, user_args: dict[str, Any]) -> tuple[Module, dict[str, Any]]:
    """A new model for inputs ``spec`` (and its kwargs), checked by one forward pass of two zero images."""
    try:
        get_model_builder(name)
    except ValueError as e:
        raise CommandError(str(e)) from None
    kwargs = model_kwargs(name, spec, user_args)
    try:
        model = build_vision_model(name, **kwargs)
    except (TypeError, ValueError) as e:
        raise CommandError(f"cannot build model {name} with {kwargs}: {e}") from None
    check_input(model, name, spec)
    return model, kwargs


def check_input(model: Module, name: str, spec: InputSpec) -> None:
    """Run a (2, C, H, W) batch of zeros through ``model``; CommandError when it cannot take that input."""
    was_training = model.training
    model.eval()
    try:
        with grad_mode.no_grad():
            out = model(zeros(2, *spec.shape))
    except Exception as e:  # any failure here means "this model cannot take these images"
        raise CommandError(f"model {name} cannot take inputs of shape {list(spec.shape)}: {e}") from None
    finally:
        model.train(was_training)
    if tuple(out.shape) != (2, len(spec.classes)):
        raise CommandError(f"model {name} gives outputs of shape {list(out.shape)[1:]} for "
                           f"{len(spec.classes)} classes")


@dataclass
class LoadedModel:
    """A model ready for inference, what it expects, and where it came from."""

    model: Module
    spec: InputSpec
    meta: dict[str, Any]
    source: str  # "archive" or "checkpoint"
    path: Path


def resolve_model_path(path: str | Path) -> Path:
    """A model file from a path: a ``.axonml`` archive or a checkpoint, or a run folder (its ``model.axonml``,
    else its latest checkpoint)."""
    p = Path(path)
    if p.is_dir():
        if (p / "model.axonml").is_file():
            return p / "model.axonml"
        from ..io import CheckpointManager

        for folder in (p / "checkpoints", p):
            if folder.is_dir():
                latest = CheckpointManager(folder, keep_last=None).latest
                if latest is not None:
                    return latest
        raise CommandError(f"{p} holds no model.axonml and no checkpoint")
    if not p.is_file():
        raise CommandError(f"model file {p} not found")
    return p


def load_for_inference(path: str | Path) -> LoadedModel:
    """The model in a ``.axonml`` archive, a training checkpoint, or a run folder, in eval mode on the CPU."""
    p = resolve_model_path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(4)
        if head[:2] != b"PK":
            raise CommandError(f"{p} is neither an .axonml archive nor an axonml checkpoint")
        if _is_archive(p):
            archive = ModelArchive.load(p)
            meta = archive.metadata
            loaded = LoadedModel(archive.model, InputSpec.from_meta(meta), meta, "archive", p)
        else:
            loaded = _from_checkpoint(p)
    except SerializationError as e:
        raise CommandError(f"cannot read {p}: {e}") from None
    loaded.model.eval()
    return loaded


def _is_archive(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return "manifest.json" in zf.namelist()
    except zipfile.BadZipFile:
        raise CommandError(f"{path} is not a zip file (a truncated or corrupt model?)") from None


def _from_checkpoint(path: Path) -> LoadedModel:
    state = load_file(path)
    if not isinstance(state, dict) or state.get("kind") != CHECKPOINT_KIND:
        raise CommandError(f"{path} is not an axonml training checkpoint")
    extra = state.get("extra") or {}
    meta = extra.get("meta") if isinstance(extra, dict) else None
    if not isinstance(meta, dict) or "model" not in meta:
        raise CommandError(f"{path}: the checkpoint does not say which model it holds (not from `axonml train`)")
    spec = InputSpec.from_meta(meta)
    model = build_vision_model(meta["model"], **meta.get("model_kwargs", {}))
    model.load_state_dict(state["model"])
    return LoadedModel(model, spec, meta, "checkpoint", path)
