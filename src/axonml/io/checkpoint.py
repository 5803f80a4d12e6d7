"""Training checkpoints that resume bit-for-bit, and a manager that keeps the last and the best.

A :class:`Checkpoint` gathers what a run needs to continue exactly where it
stopped: the model's, optimizer's, LR scheduler's and grad scaler's state
dicts, the epoch and step counters, metrics, and the state of every random
generator that can influence the next step (axonml's default generator of
each device, extra ``Generator`` objects you name, NumPy's global generator
and Python's ``random``). It is written with the safe :func:`axonml.save`
format, atomically: a temporary file, fsync, rename, fsync of the folder.

:class:`CheckpointManager` names files ``<prefix>-<step>.ckpt`` in one folder,
finds the latest and the best (by a metric, ``mode='min'`` or ``'max'``),
keeps ``keep_last`` recent and ``keep_best`` best ones, and ignores anything
that is not a complete checkpoint: a writer killed mid-write leaves only a
hidden ``.tmp`` file, which the manager never reads (and deletes once its
writer process is gone).
"""

from __future__ import annotations

import math
import random
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core import random as _random
from ..core.tensor import Tensor
from ..nn.module import Module
from ._common import PathLike, SerializationError, is_stale_temp
from .serialization import load, read_metadata, save

KIND = "axonml.checkpoint"


# ----- random state ------------------------------------------------------------------------------------
def get_rng_state(generators: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The state of every random generator a training step may draw from (see the module notes)."""
    return {
        "axonml": {str(dev): gen.get_state() for dev, gen in list(_random._DEFAULTS.items())},
        "axonml_seed": int(_random._last_seed[0]),
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: Mapping[str, Any], generators: Mapping[str, Any] | None = None) -> None:
    """Restore what :func:`get_rng_state` returned (named ``generators`` are matched by name)."""
    for dev, gen_state in state.get("axonml", {}).items():
        _random.default_for(dev).set_state(gen_state)
    if "axonml_seed" in state:
        _random._last_seed[0] = int(state["axonml_seed"])
    saved = state.get("generators", {})
    for name, gen in (generators or {}).items():
        if name not in saved:
            raise KeyError(f"the checkpoint has no state for generator {name!r} (it has {sorted(saved)})")
        gen.set_state(saved[name])
    if "numpy" in state:
        np.random.set_state(tuple(state["numpy"]))  # type: ignore[arg-type]
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))


def _scalar(v: Any) -> Any:
    """A metric as a plain JSON number (tensors and NumPy scalars included), or ``None``."""
    if isinstance(v, Tensor):
        v = v.item()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return v if math.isfinite(v) else None


# ----- one checkpoint ----------------------------------------------------------------------------------
class Checkpoint:
    """The live objects of a run, saved and restored together.

    ``Checkpoint(model, optimizer, scheduler, scaler, epoch=, step=, metrics=,
    extra=, generators={"name": gen})``; any part may be ``None``. Update
    ``epoch``/``step``/``metrics`` as training goes, then :meth:`save`; after a
    restart, build the same objects and :meth:`load` into them.
    """

    def __init__(self, model: Module | None = None, optimizer: Any = None, scheduler: Any = None,
                 scaler: Any = None, *, epoch: int = 0, step: int = 0, metrics: Mapping[str, Any] | None = None,
                 extra: Any = None, generators: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler
        self.epoch = epoch
        self.step = step
        self.metrics: dict[str, Any] = dict(metrics or {})
        self.extra = extra
        self.generators: dict[str, Any] = dict(generators or {})

    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`save` writes, as one nested dict."""
        return {
            "kind": KIND,
            "epoch": int(self.epoch),
            "step": int(self.step),
            "metrics": dict(self.metrics),
            "model": None if self.model is None else self.model.state_dict(),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "rng": get_rng_state(self.generators),
            "extra": self.extra,
        }

    def load_state_dict(self, state: Mapping[str, Any], *, restore_rng: bool = True, strict: bool = True) -> None:
        """Restore from :meth:`state_dict`: into the attached objects, counters, metrics and RNGs."""
        if state.get("kind") != KIND:
            raise SerializationError(f"not a checkpoint state (kind {state.get('kind')!r})")
        for name in ("model", "optimizer", "scheduler", "scaler"):
            target, saved = getattr(self, name), state.get(name)
            if target is None:
                continue
            if saved is None:
                raise KeyError(f"the checkpoint has no {name} state, but a {name} is attached")
            if name == "model":
                target.load_state_dict(saved, strict=strict)
            else:
                target.load_state_dict(saved)
        self.epoch = int(state.get("epoch", 0))
        self.step = int(state.get("step", 0))
        self.metrics = dict(state.get("metrics", {}))
        self.extra = state.get("extra")
        if restore_rng and state.get("rng") is not None:
            set_rng_state(state["rng"], self.generators)

    def save(self, path: PathLike) -> Path:
        """Write the checkpoint to ``path`` atomically; returns the path."""
        meta = {"kind": KIND, "epoch": int(self.epoch), "step": int(self.step),
                "metrics": {k: _scalar(v) for k, v in self.metrics.items()}}
        save(self.state_dict(), path, metadata=meta)
        return Path(path)

    def load(self, path: PathLike, *, map_location: Any = None, restore_rng: bool = True,
             strict: bool = True) -> Checkpoint:
        """Read ``path`` (checked in full) and restore into the attached objects; returns ``self``."""
        state = load(path, map_location=map_location)
        if not isinstance(state, dict):
            raise SerializationError(f"{path}: not a checkpoint")
        self.load_state_dict(state, restore_rng=restore_rng, strict=strict)
        return self


# ----- the manager -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointInfo:
    """A complete checkpoint file found by the manager."""

    path: Path
    step: int
    epoch: int
    metrics: dict[str, Any] = field(default_factory=dict)


class CheckpointManager:
    """Save checkpoints into ``directory``, keep the ``keep_last`` newest and ``keep_best`` best.

    ``metric``/``mode``: which value of ``Checkpoint.metrics`` ranks "best" and
    whether lower (``'min'``) or higher (``'max'``) wins. ``keep_last=None``
    keeps every checkpoint. Files that are not complete checkpoints (partial
    writes, foreign files) are never returned.
    """

    def __init__(self, directory: PathLike, keep_last: int | None = 3, keep_best: int = 0,
                 metric: str | None = None, mode: str = "min", prefix: str = "checkpoint") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"CheckpointManager: mode must be 'min' or 'max', got {mode!r}")
        if keep_last is not None and keep_last < 1:
            raise ValueError(f"CheckpointManager: keep_last must be >= 1 or None, got {keep_last}")
        if keep_best < 0:
            raise ValueError(f"CheckpointManager: keep_best must be >= 0, got {keep_best}")
        if keep_best and metric is None:
            raise ValueError("CheckpointManager: keep_best needs a metric to rank checkpoints by")
        self.directory = Path(directory)
        self.keep_last, self.keep_best, self.metric, self.mode, self.prefix = keep_last, keep_best, metric, mode, prefix
        self._pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)\.ckpt$")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.clean_stale_temp_files()

    def path_for(self, step: int) -> Path:
        """The file name a checkpoint of ``step`` gets."""
        return self.directory / f"{self.prefix}-{int(step):010d}.ckpt"

    def clean_stale_temp_files(self) -> list[Path]:
        """Delete temporary files left by writers that died (their process no longer exists)."""
        removed = []
        for p in self.directory.glob(f".{self.prefix}-*.tmp"):
            if is_stale_temp(p):
                try:
                    p.unlink()
                    removed.append(p)
                except OSError:
                    pass
        return removed

    def checkpoints(self) -> list[CheckpointInfo]:
        """The complete checkpoints in the folder, oldest step first."""
        found = []
        for p in self.directory.iterdir():
            m = self._pattern.match(p.name)
            if m is None or not p.is_file():
                continue
            try:
                meta = read_metadata(p)
            except (SerializationError, OSError) as e:
                warnings.warn(f"CheckpointManager: skipping {p.name}, not a complete checkpoint ({e})", stacklevel=2)
                continue
            if meta.get("kind") != KIND:
                continue
            found.append(CheckpointInfo(p, int(meta.get("step") or m.group(1)), int(meta.get("epoch", 0)),
                                        dict(meta.get("metrics", {}))))
        return sorted(found, key=lambda c: (c.step, c.path.name))

    def _ranked(self, infos: list[CheckpointInfo]) -> list[CheckpointInfo]:
        """Checkpoints with the metric, best first (a later step wins a tie)."""
        scored = [c for c in infos if self.metric is not None and _scalar(c.metrics.get(self.metric)) is not None]
        sign = 1.0 if self.mode == "min" else -1.0
        return sorted(scored, key=lambda c: (sign * c.metrics[self.metric], -c.step))  # type: ignore[index]

    @property
    def latest(self) -> Path | None:
        """The complete checkpoint with the highest step, or ``None``."""
        infos = self.checkpoints()
        return infos[-1].path if infos else None

    @property
    def best(self) -> Path | None:
        """The complete checkpoint with the best metric, or ``None``."""
        ranked = self._ranked(self.checkpoints())
        return ranked[0].path if ranked else None

    def save(self, checkpoint: Checkpoint, step: int | None = None,
             metrics: Mapping[str, Any] | None = None) -> Path:
        """Save ``checkpoint`` (its ``step`` unless given; ``metrics`` merged in), then prune old ones."""
        if step is not None:
            checkpoint.step = int(step)
        if metrics:
            checkpoint.metrics.update(metrics)
        path = checkpoint.save(self.path_for(checkpoint.step))
        self._prune()
        return path

    def _prune(self) -> None:
        infos = self.checkpoints()
        if self.keep_last is None:
            return
        keep = {c.path for c in infos[-self.keep_last:]}
        keep |= {c.path for c in self._ranked(infos)[: self.keep_best]}
        for c in infos:
            if c.path not in keep:
                try:
                    c.path.unlink()
                except OSError as e:
                    warnings.warn(f"CheckpointManager: could not delete {c.path} ({e})", stacklevel=3)

    def _load_first(self, candidates: list[CheckpointInfo], checkpoint: Checkpoint, **kwargs: Any) -> Path | None:
        for info in candidates:
            try:
                checkpoint.load(info.path, **kwargs)
                return info.path
            except SerializationError as e:  # damaged after it was written: fall back to the one before
                warnings.warn(f"CheckpointManager: {info.path.name} is damaged ({e}); trying an older one",
                              stacklevel=3)
        return None

    def load_latest(self, checkpoint: Checkpoint, **kwargs: Any) -> Path | None:
        """Restore the newest loadable checkpoint into ``checkpoint``; returns its path (``None``: none yet)."""
        return self._load_first(self.checkpoints()[::-1], checkpoint, **kwargs)

    def load_best(self, checkpoint: Checkpoint, **kwargs: Any) -> Path | None:
        """Restore the best loadable checkpoint into ``checkpoint``; returns its path (``None``: none)."""
        return self._load_first(self._ranked(self.checkpoints()), checkpoint, **kwargs)
