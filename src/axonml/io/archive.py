"""``.axonml`` model archives: one zip with the weights, how to rebuild the model, and checksums.

Members:

* ``manifest.json``: format and version, the model's ``name`` and ``version``,
  the axonml version that wrote it, ``architecture`` (how to rebuild the
  model: a class path or a registered builder, with JSON arguments),
  ``metadata``, ``metrics``, the parameter count, and the SHA-256 and size of
  every other member;
* ``weights.safetensors``: the ``state_dict()``;
* ``optimizer.axonml`` / ``scheduler.axonml`` (optional): their state dicts in
  the safe :func:`axonml.save` format.

Loading checks every member against the manifest before using it, so a
tampered or corrupt member raises :class:`IntegrityError`. (The manifest
itself is not signed: the checksums catch corruption and edits of the data,
not someone who rewrites the manifest too.)

Rebuilding runs only what the loader trusts: an ``nn.Module`` subclass from a
module under a trusted prefix (``axonml`` plus the ``trusted_modules`` a
caller passes), or a builder registered with :func:`register_builder`. A
manifest naming anything else is refused, never imported and called.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import zipfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..nn.module import Module
from ._common import IntegrityError, PathLike, SerializationError, aligned_zipinfo, atomic_write, open_zip
from .serialization import axonml_version, dumps, loads

FORMAT = "axonml.archive"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.axonml"
SCHEDULER = "scheduler.axonml"

_BUILDERS: dict[str, Callable[..., Module]] = {}


def register_builder(name: str, builder: Callable[..., Module] | None = None) -> Any:
    """Register a function that builds a model, so archives can name it (``builder=name`` in save).

    Use as ``register_builder("resnet", get_model)`` or as a decorator
    ``@register_builder("my_net")``. Loading calls ``builder(*args, **kwargs)``
    and checks that it returns an ``nn.Module``.
    """
    def add(fn: Callable[..., Module]) -> Callable[..., Module]:
        if not callable(fn):
            raise TypeError(f"register_builder: {fn!r} is not callable")
        _BUILDERS[name] = fn
        return fn

    return add if builder is None else add(builder)


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _json_checked(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise SerializationError(f"ModelArchive: {what} must be JSON (numbers, strings, lists, dicts): {e}") from e


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _trusted(module: str, trusted: Sequence[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in ("axonml", *trusted))


class ModelArchive:
    """A loaded archive: ``model``, ``manifest`` and the optimizer/scheduler state dicts (or ``None``).

    Save with :meth:`ModelArchive.save`, load with :meth:`ModelArchive.load`;
    :meth:`read_manifest` and :meth:`verify` inspect a file without building it.
    """

    def __init__(self, model: Module, manifest: dict[str, Any], optimizer_state: Any = None,
                 scheduler_state: Any = None) -> None:
        self.model = model
        self.manifest = manifest
        self.optimizer_state = optimizer_state
        self.scheduler_state = scheduler_state

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", ""))

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", ""))

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.manifest.get("metadata", {}))

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.manifest.get("metrics", {}))

    def __repr__(self) -> str:
        return f"ModelArchive(name={self.name!r}, version={self.version!r}, model={type(self.model).__name__})"

    # ----- saving ---------------------------------------------------------------------------
    @staticmethod
    def save(path: PathLike, model: Module, *, name: str | None = None, version: str = "1.0",
             config: Mapping[str, Any] | None = None, builder: str | None = None, args: Sequence[Any] = (),
             metadata: Mapping[str, Any] | None = None, metrics: Mapping[str, Any] | None = None,
             optimizer: Any = None, scheduler: Any = None) -> Path:
        """Write ``model`` (and optionally an optimizer's and a scheduler's state) to ``path``, atomically.

        ``config``: the keyword arguments that rebuild the model, by
        ``type(model)(**config)`` or, with ``builder`` (a name given to
        :func:`register_builder`), by ``builder(*args, **config)``. Without
        ``config`` the archive still loads into a model you pass to
        :meth:`load`. ``metadata`` and ``metrics`` are JSON; ``optimizer`` and
        ``scheduler`` are objects with ``state_dict()`` (or state dicts).
        """
        from .safetensors_io import save as st_save

        if not isinstance(model, Module):
            raise TypeError(f"ModelArchive.save expects an nn.Module, got {type(model).__name__}")
        if builder is not None and builder not in _BUILDERS:
            raise KeyError(f"ModelArchive.save: builder {builder!r} is not registered (see register_builder)")
        architecture: dict[str, Any] = {"class": _class_path(type(model))}
        if builder is not None:
            architecture["builder"] = builder
            architecture["builder_module"] = getattr(_BUILDERS[builder], "__module__", None)
            architecture["args"] = _json_checked(list(args), "args")
        architecture["kwargs"] = None if config is None else _json_checked(dict(config), "config")
        state = model.state_dict()
        tensors = {k: v for k, v in state.items() if hasattr(v, "_data")}
        members: dict[str, bytes] = {WEIGHTS: st_save(tensors, {"format": "pt"})}
        for member, obj in ((OPTIMIZER, optimizer), (SCHEDULER, scheduler)):
            if obj is not None:
                sd = obj.state_dict() if hasattr(obj, "state_dict") else obj
                members[member] = dumps(sd)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": name if name is not None else type(model).__name__,
            "version": str(version),
            "axonml_version": axonml_version(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "architecture": architecture,
            "metadata": _json_checked(dict(metadata or {}), "metadata"),
            "metrics": _json_checked(dict(metrics or {}), "metrics"),
            "num_parameters": int(sum(p.numel() for p in model.parameters())),
            "files": {m: {"sha256": _sha256(b), "size": len(b)} for m, b in members.items()},
        }
        text = json.dumps(manifest, indent=2).encode("utf-8")
        out = Path(path)
        with atomic_write(out) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(aligned_zipinfo(zf, MANIFEST, len(text)), text)
            for member, data in members.items():
                zf.writestr(aligned_zipinfo(zf, member, len(data)), data)
        return out

    # ----- reading --------------------------------------------------------------------------
    @staticmethod
    def _manifest(zf: zipfile.ZipFile, what: str) -> dict[str, Any]:
        try:
            manifest = json.loads(zf.read(MANIFEST))
        except KeyError:
            raise SerializationError(f"{what}: not an axonml archive, or truncated (no {MANIFEST})") from None
        except (json.JSONDecodeError, UnicodeDecodeError, zipfile.BadZipFile) as e:
            raise SerializationError(f"{what}: {MANIFEST} is corrupt ({e})") from e
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise SerializationError(f"{what}: not an axonml archive (format {manifest.get('format')!r})")
        if not isinstance(manifest.get("format_version"), int) or manifest["format_version"] > FORMAT_VERSION:
            raise SerializationError(f"{what}: archive format {manifest.get('format_version')!r} is newer than "
                                     f"this axonml reads ({FORMAT_VERSION}); upgrade axonml")
        if not isinstance(manifest.get("files"), dict):
            raise SerializationError(f"{what}: manifest lists no files")
        return manifest

    @staticmethod
    def _verified(zf: zipfile.ZipFile, manifest: dict[str, Any], what: str) -> dict[str, bytes]:
        """Every listed member's bytes, each checked against its SHA-256; extra members are refused."""
        listed = manifest["files"]
        extra = sorted(set(zf.namelist()) - set(listed) - {MANIFEST})
        if extra:
            raise IntegrityError(f"{what}: members not listed in the manifest: {extra}")
        out: dict[str, bytes] = {}
        for member, info in listed.items():
            try:
                data = zf.read(member)
            except KeyError:
                raise IntegrityError(f"{what}: member {member!r} listed in the manifest is missing") from None
            except zipfile.BadZipFile as e:  # zipfile's own CRC-32 check failed
                raise IntegrityError(f"{what}: member {member!r} is corrupt ({e})") from e
            if not isinstance(info, dict) or _sha256(data) != info.get("sha256") or len(data) != info.get("size"):
                raise IntegrityError(
                    f"{what}: member {member!r} does not match its SHA-256 in the manifest "
                    "(the archive was modified or is corrupt)"
                )
            out[member] = data
        if WEIGHTS not in out:
            raise SerializationError(f"{what}: the archive has no {WEIGHTS}")
        return out

    @staticmethod
    def read_manifest(path: PathLike) -> dict[str, Any]:
        """The manifest alone (nothing else is read or checked)."""
        what = f"ModelArchive({path!s})"
        with open_zip(path, what) as zf:
            return ModelArchive._manifest(zf, what)

    @staticmethod
    def verify(path: PathLike) -> dict[str, Any]:
        """Check every member against the manifest's SHA-256 (raises :class:`IntegrityError`); returns it."""
        what = f"ModelArchive({path!s})"
        with open_zip(path, what) as zf:
            manifest = ModelArchive._manifest(zf, what)
            ModelArchive._verified(zf, manifest, what)
        return manifest

    @staticmethod
    def build(architecture: Mapping[str, Any], trusted_modules: Sequence[str] = ()) -> Module:
        """Instantiate the model an archive's ``architecture`` describes (see the module notes on trust)."""
        kwargs = architecture.get("kwargs")
        if kwargs is None:
            raise SerializationError("the archive has no constructor config; pass model= to ModelArchive.load")
        if not isinstance(kwargs, dict):
            raise SerializationError("the archive's constructor config is not a JSON object")
        builder_name = architecture.get("builder")
        if builder_name is not None:
            fn = _BUILDERS.get(builder_name)
            module = architecture.get("builder_module")
            if fn is None and isinstance(module, str) and _trusted(module, trusted_modules):
                importlib.import_module(module)  # a trusted package registers its builders on import
                fn = _BUILDERS.get(builder_name)
            if fn is None:
                raise SerializationError(
                    f"model builder {builder_name!r} is not registered; import the package that registers it "
                    "(axonml.io.register_builder) or pass model= to ModelArchive.load"
                )
            model = fn(*architecture.get("args", []), **kwargs)
        else:
            path = architecture.get("class")
            if not isinstance(path, str) or ":" not in path:
                raise SerializationError(f"bad architecture class {path!r} in the archive")
            module_name, qualname = path.split(":", 1)
            if not _trusted(module_name, trusted_modules):
                raise SerializationError(
                    f"refusing to import {module_name!r} named by the archive: not a trusted module "
                    "(pass trusted_modules=[...] or model= to ModelArchive.load)"
                )
            obj: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part, None)
            if not (isinstance(obj, type) and issubclass(obj, Module)):
                raise SerializationError(f"{path} is not an nn.Module class")
            model = obj(**kwargs)
        if not isinstance(model, Module):
            raise SerializationError(f"the archive's builder returned a {type(model).__name__}, not an nn.Module")
        return model

    @classmethod
    def load(cls, path: PathLike, *, model: Module | None = None, map_location: Any = None, strict: bool = True,
             trusted_modules: Sequence[str] = ()) -> ModelArchive:
        """Verify every member's SHA-256, rebuild the model (or use ``model``) and load its weights.

        ``map_location`` places the optimizer/scheduler state tensors (as
        :func:`axonml.load`); the weights go into the model's own parameters.
        """
        from .safetensors_io import load as st_load

        what = f"ModelArchive({path!s})"
        with open_zip(path, what) as zf:
            manifest = cls._manifest(zf, what)
            members = cls._verified(zf, manifest, what)
        if model is None:
            model = cls.build(manifest.get("architecture", {}), trusted_modules)
        model.load_state_dict(st_load(members[WEIGHTS]), strict=strict)
        opt = loads(members[OPTIMIZER], map_location) if OPTIMIZER in members else None
        sched = loads(members[SCHEDULER], map_location) if SCHEDULER in members else None
        return cls(model, manifest, opt, sched)
