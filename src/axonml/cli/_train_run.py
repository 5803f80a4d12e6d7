"""The parts of a run built from its configuration, shared by ``axonml train`` and a generated ``train.py``.

:func:`build_run` turns a :class:`~axonml.cli._train_config.TrainConfig` into the
seeded device, data, model, optimizer, schedule and grad scaler of a run, in one fixed
order (so the same configuration gives the same initial weights and split), and
:func:`write_model_archive` saves a trained model as the ``model.axonml`` that
``axonml eval``/``predict``/``inspect`` read. Both loops, the built-in one
(:class:`~axonml.cli._training.Trainer`) and the one ``axonml new`` writes out, use them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..amp import GradScaler
from ..backend import Device
from ..core.random import manual_seed
from ..core.tensor import Tensor
from ..io import ModelArchive
from ..nn import Module
from ._train_config import TrainConfig
from ._train_data import DataBundle, load_data
from ._train_models import BUILDER, canonical_model_name, create_model
from ._train_setup import make_optimizer, make_scheduler, resolve_device


@dataclass
class RunParts:
    """What a run trains with: see :func:`build_run`."""

    cfg: TrainConfig
    device: Device
    data: DataBundle  # data.train, data.val: datasets of (input, label); data.spec: the input's shape and classes
    model: Module  # on ``device``
    model_kwargs: dict[str, Any]  # the registry builder's keyword arguments
    optimizer: Any
    scheduler: Any  # None for scheduler.name = "none"; stepped after every batch
    scaler: GradScaler | None  # loss scaling: with train.amp on CUDA only
    meta: dict[str, Any]  # what checkpoints and the archive record: model, input shape, normalization, classes

    @property
    def n_train(self) -> int:
        """The number of training samples."""
        return len(self.data.train)  # type: ignore[arg-type]

    @property
    def steps_per_epoch(self) -> int:
        """Batches (optimizer steps) per epoch."""
        return math.ceil(self.n_train / self.cfg.data.batch_size)

    def inputs(self, x: Tensor) -> Tensor:
        """A batch as the model takes it: on the run's device, uint8 pixels scaled and normalized."""
        x = x.to(self.device)
        return self.data.spec.prepare(x) if self.data.pixels else x


def build_run(cfg: TrainConfig, planned_epochs: int | None = None) -> RunParts:
    """Seed every generator with ``train.seed``, then build the run's device, data, model (from the
    ``axonml.vision.models`` registry, sized for the data), optimizer, schedule (laid out over
    ``planned_epochs``, default ``train.epochs``) and grad scaler. ``cfg.model.name`` becomes the registry's
    canonical name (``lenet`` -> ``lenet5``). Problems are CommandErrors with one-line messages."""
    t, d = cfg.train, cfg.data
    cfg.model.name = canonical_model_name(cfg.model.name)
    device = resolve_device(t.device)
    manual_seed(t.seed)
    np.random.seed(t.seed % 2**32)
    random.seed(t.seed)
    data = load_data(d.dataset, d.root, model=cfg.model.name, val_split=d.val_split, limit=d.limit, seed=t.seed,
                     download=d.download, image_size=d.image_size, fallback=d.fallback)
    model, kwargs = create_model(cfg.model.name, data.spec, cfg.model.args)
    model.to(device)
    optimizer = make_optimizer(cfg, model.parameters())
    steps = math.ceil(len(data.train) / d.batch_size)  # type: ignore[arg-type]
    scheduler = make_scheduler(cfg, optimizer, steps, planned_epochs or t.epochs)
    scaler = GradScaler("cuda") if t.amp and device.type == "cuda" else None
    meta = {"task": "image-classification", "model": cfg.model.name, "model_kwargs": kwargs, "builder": BUILDER,
            **data.spec.to_meta(), **data.info, "val_source": data.val_source}
    return RunParts(cfg, device, data, model, kwargs, optimizer, scheduler, scaler, meta)


def write_model_archive(path: str | Path, run: RunParts, epoch: int, val_acc: float) -> Path:
    """Save ``run.model`` (its current weights) as an ``axonml.io.ModelArchive`` at ``path``, naming the
    registry builder and recording the metadata (input shape, normalization, classes, configuration) that
    ``axonml eval``/``predict``/``inspect`` need; ``epoch`` and ``val_acc`` say which weights these are."""
    cfg = run.cfg
    path = Path(path)
    ModelArchive.save(path, run.model, name=f"{cfg.model.name}-{cfg.data.dataset.split(':')[0]}",
                      config=run.model_kwargs, builder=BUILDER, args=[cfg.model.name],
                      metadata={**run.meta, "epoch": epoch, "config": cfg.to_dict()},
                      metrics={"val_acc": val_acc, "epoch": epoch})
    return path
