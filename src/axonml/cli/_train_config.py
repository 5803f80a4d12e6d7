"""The ``axonml train`` configuration: dataclasses, TOML reading and writing, CLI overrides.

The schema (documented in docs/cli-train.md) has seven tables: ``[project]``,
``[model]`` (with ``[model.args]``), ``[data]``, ``[optimizer]``, ``[scheduler]``,
``[train]`` and ``[wandb]``. Every key has a default, unknown keys and wrong types are
refused with one clear message, and command-line options override the file. Relative
paths in a file (``data.root``, ``train.output``, ``imagefolder:PATH``) are relative to
the file's folder; ``axonml new``/``init``/``scaffold`` write their ``axonml.toml`` in
this schema.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the tomli backport
    import tomli as tomllib

from ._app import CommandError

OPTIMIZERS = ("sgd", "adam", "adamw", "adamax", "nadam", "radam", "rmsprop", "adagrad", "adadelta", "lamb", "lion")
SCHEDULERS = ("none", "cosine", "step", "onecycle")
DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100", "digits", "synthetic-mnist", "synthetic-cifar",
            "imagefolder:PATH")


@dataclass
class ProjectConfig:
    """``[project]``: what ``axonml new``/``init``/``scaffold`` record about the project (not used in training)."""

    name: str = ""
    template: str = ""


@dataclass
class ModelConfig:
    """``[model]``: a name from ``axonml.vision.models.list_models()`` and extra builder arguments."""

    name: str = "lenet5"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """``[data]``: which dataset, where it lives, how it is split and batched."""

    dataset: str = "mnist"
    root: str = ""  # "" = ../shared/data/<name> when present, else $AXONML_HOME/datasets
    val_split: float = 0.1  # fraction of the training set held out for validation; 0 = validate on the test split
    limit: int = 0  # use at most this many samples of each split (0 = all)
    batch_size: int = 64
    eval_batch_size: int = 256
    workers: int = 0
    image_size: int = 32  # imagefolder: images are resized to image_size x image_size
    download: bool = True
    fallback: bool = True  # mnist only: missing and undownloadable -> train on scikit-learn's real digits


@dataclass
class OptimizerConfig:
    """``[optimizer]``: the optimizer and its hyperparameters (``lr = 0`` picks the optimizer's usual default)."""

    name: str = "adam"
    lr: float = 0.0
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd and rmsprop only


@dataclass
class SchedulerConfig:
    """``[scheduler]``: the learning-rate schedule, stepped after every batch."""

    name: str = "none"
    step_size: int = 1  # step: epochs between decays
    gamma: float = 0.1  # step: the decay factor
    min_lr: float = 0.0  # cosine: the final learning rate
    pct_start: float = 0.3  # onecycle: the fraction of steps spent warming up


@dataclass
class TrainSection:
    """``[train]``: the loop itself."""

    epochs: int = 10
    seed: int = 0
    device: str = "auto"  # auto = .axonml/config.json's device, else cuda:0 when present, else cpu
    amp: bool = False
    patience: int = 0  # stop after this many epochs without a better validation accuracy (0 = never)
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # clip the gradients' global L2 norm to this (0 = off)
    output: str = ""  # "" = runs/<model>-<dataset>, numbered when taken


@dataclass
class WandbConfig:
    """``[wandb]``: Weights & Biases logging (``WANDB_MODE=offline`` works)."""

    enabled: bool = False
    project: str = "axonml"
    name: str = ""


@dataclass
class TrainConfig:
    """The whole configuration of a run."""

    project: ProjectConfig = field(default_factory=ProjectConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    train: TrainSection = field(default_factory=TrainSection)
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain nested dicts (JSON and TOML friendly)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build and check a configuration from nested dicts; unknown keys and wrong types raise CommandError."""
        if not isinstance(raw, dict):
            raise CommandError(f"{source}: the configuration must be a table of tables")
        cfg = cls()
        sections = {f.name: f for f in dataclasses.fields(cls)}
        for name, value in raw.items():
            if name not in sections:
                raise CommandError(f"{source}: unknown table [{name}] (known: {', '.join(sections)})")
            if not isinstance(value, dict):
                raise CommandError(f"{source}: [{name}] must be a table, got {_kind(value)}")
            _fill(getattr(cfg, name), value, f"{source}: {name}")
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "config") -> None:
        """Check the values' ranges and choices; raises CommandError naming the key."""
        d, o, s, t = self.data, self.optimizer, self.scheduler, self.train
        checks = [
            (bool(self.model.name), "model.name must not be empty"),
            (d.dataset in DATASETS[:-1] or d.dataset.startswith("imagefolder:"),
             f"data.dataset must be one of {', '.join(DATASETS)}, got {d.dataset!r}"),
            (0.0 <= d.val_split < 1.0, f"data.val_split must be in [0, 1), got {d.val_split}"),
            (d.limit >= 0, f"data.limit must be >= 0, got {d.limit}"),
            (d.batch_size >= 1 and d.eval_batch_size >= 1, "data.batch_size and data.eval_batch_size must be >= 1"),
            (d.workers >= 0, f"data.workers must be >= 0, got {d.workers}"),
            (d.image_size >= 1, f"data.image_size must be >= 1, got {d.image_size}"),
            (o.name in OPTIMIZERS, f"optimizer.name must be one of {', '.join(OPTIMIZERS)}, got {o.name!r}"),
            (o.lr >= 0 and math.isfinite(o.lr), f"optimizer.lr must be >= 0, got {o.lr}"),
            (o.weight_decay >= 0, f"optimizer.weight_decay must be >= 0, got {o.weight_decay}"),
            (s.name in SCHEDULERS, f"scheduler.name must be one of {', '.join(SCHEDULERS)}, got {s.name!r}"),
            (s.step_size >= 1, f"scheduler.step_size must be >= 1, got {s.step_size}"),
            (0.0 < s.pct_start < 1.0, f"scheduler.pct_start must be in (0, 1), got {s.pct_start}"),
            (t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}"),
            (t.patience >= 0, f"train.patience must be >= 0, got {t.patience}"),
            (0.0 <= t.label_smoothing < 1.0, f"train.label_smoothing must be in [0, 1), got {t.label_smoothing}"),
            (t.grad_clip >= 0, f"train.grad_clip must be >= 0, got {t.grad_clip}"),
        ]
        for ok, message in checks:
            if not ok:
                raise CommandError(f"{source}: {message}")

    def override(self, values: dict[str, Any]) -> None:
        """Set ``{"section.key": value}`` entries whose value is not None (command-line options win)."""
        for dotted, value in values.items():
            if value is None:
                continue
            section, key = dotted.split(".", 1)
            _fill(getattr(self, section), {key: value}, f"--{key.replace('_', '-')}")
        self.validate("options")

    def to_toml(self) -> str:
        """The configuration as TOML text that :func:`load_config` reads back to an equal configuration."""
        return dumps_toml(self.to_dict())


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def _fill(target: Any, values: dict[str, Any], where: str) -> None:
    """Copy ``values`` onto the dataclass ``target``, checking names and types (ints may stand for floats)."""
    fields = {f.name: f for f in dataclasses.fields(target)}
    for key, value in values.items():
        if key not in fields:
            raise CommandError(f"{where}: unknown key {key!r} (known: {', '.join(fields)})")
        current = getattr(target, key)
        if isinstance(current, dict):
            if not isinstance(value, dict):
                raise CommandError(f"{where}.{key} must be a table, got {_kind(value)}")
            value = dict(value)
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                raise CommandError(f"{where}.{key} must be true or false, got {value!r}")
        elif isinstance(current, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise CommandError(f"{where}.{key} must be an integer, got {value!r}")
        elif isinstance(current, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CommandError(f"{where}.{key} must be a number, got {value!r}")
            value = float(value)
        elif isinstance(current, str) and not isinstance(value, str):
            raise CommandError(f"{where}.{key} must be a string, got {value!r}")
        setattr(target, key, value)


def load_config(path: str | Path | None) -> TrainConfig:
    """The configuration in the TOML (or JSON) file ``path``, or the defaults when ``path`` is None."""
    if path is None:
        return TrainConfig()
    p = Path(path)
    if not p.is_file():
        raise CommandError(f"config file {p} not found")
    try:
        text = p.read_text(encoding="utf-8")
        raw = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CommandError(f"{p}: not valid {'JSON' if p.suffix == '.json' else 'TOML'} ({e})") from None
    cfg = TrainConfig.from_dict(raw, str(p))
    resolve_paths(cfg, p.parent)
    return cfg


def resolve_paths(cfg: TrainConfig, base: Path) -> None:
    """Make the relative paths of a config file (``data.root``, ``train.output``, ``imagefolder:PATH``)
    relative to ``base``, the file's folder, as absolute paths; empty ones keep their defaults."""

    def absolute(text: str) -> str:
        path = Path(text).expanduser()
        return str(path if path.is_absolute() else (base / path).resolve())

    d = cfg.data
    if d.root:
        d.root = absolute(d.root)
    if cfg.train.output:
        cfg.train.output = absolute(cfg.train.output)
    if d.dataset.startswith("imagefolder:") and d.dataset.split(":", 1)[1]:
        d.dataset = "imagefolder:" + absolute(d.dataset.split(":", 1)[1])


# ----- a small TOML writer (tomllib only reads) ---------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes (\" \\ \n \uXXXX) are valid TOML basic-string escapes
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise CommandError(f"cannot write {type(value).__name__} {value!r} to TOML")


def _toml_key(key: str) -> str:
    bare = key and all(c.isalnum() or c in "-_" for c in key) and key.isascii()
    return key if bare else json.dumps(key)


def dumps_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Nested dicts of TOML values as TOML text: scalars first, then one ``[table]`` per nested dict."""
    lines: list[str] = []
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    for key, value in data.items():
        if key not in tables:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in tables.items():
        name = f"{prefix}{_toml_key(key)}"
        body = dumps_toml(value, name + ".")
        lines.append(f"\n[{name}]\n{body}".rstrip("\n") if body.strip() else f"\n[{name}]")
    return "\n".join(lines).lstrip("\n") + "\n"
