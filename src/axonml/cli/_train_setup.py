"""The parts of a run ``axonml train`` builds from its configuration: device, optimizer, schedule,
output folder, Weights & Biases, and the progress display."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..backend import Device
from ..backend.cuda import is_available as cuda_available
from ..errors import DeviceError
from ..optim import (
    LAMB,
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Lion,
    NAdam,
    RAdam,
    RMSprop,
    lr_scheduler,
)
from ._app import CommandError
from ._config import get_default_device
from ._train_config import TrainConfig

# the usual learning rate of each optimizer, used when optimizer.lr is 0
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3, "adamw": 1e-3, "adamax": 2e-3, "nadam": 2e-3, "radam": 1e-3,
              "rmsprop": 1e-3, "adagrad": 0.01, "adadelta": 1.0, "lamb": 1e-3, "lion": 1e-4}
_CLASSES: dict[str, Any] = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "adamax": Adamax, "nadam": NAdam,
                             "radam": RAdam, "rmsprop": RMSprop, "adagrad": Adagrad, "adadelta": Adadelta,
                             "lamb": LAMB, "lion": Lion}


def resolve_device(name: str) -> Device:
    """The device of a run: ``auto`` = the folder's ``default_device`` (``axonml gpu select``, kept in
    ``.axonml/config.json``), else ``cuda:0`` when a GPU is usable, else ``cpu``. A CUDA device without a
    GPU is a CommandError."""
    if name == "auto":
        name = get_default_device() or ("cuda:0" if cuda_available() else "cpu")
    try:
        device = Device(name)
    except DeviceError as e:
        raise CommandError(str(e)) from None
    if device.type == "cuda" and not cuda_available():
        raise CommandError(f"device {device} was asked for, but no CUDA GPU is usable here (CuPy and an NVIDIA GPU "
                           "are needed); use --device cpu")
    return device


def make_optimizer(cfg: TrainConfig, params: Any) -> Any:
    """The optimizer of ``cfg.optimizer`` over ``params``."""
    o = cfg.optimizer
    kwargs: dict[str, Any] = {"lr": o.lr or DEFAULT_LR[o.name], "weight_decay": o.weight_decay}
    if o.name in ("sgd", "rmsprop"):
        kwargs["momentum"] = o.momentum
    return _CLASSES[o.name](params, **kwargs)


def make_scheduler(cfg: TrainConfig, optimizer: Any, steps_per_epoch: int, planned_epochs: int) -> Any:
    """The per-batch learning-rate schedule of ``cfg.scheduler`` (None for ``none``), over ``planned_epochs``."""
    s, total = cfg.scheduler, max(1, steps_per_epoch * planned_epochs)
    if s.name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=s.min_lr)
    if s.name == "step":
        return lr_scheduler.StepLR(optimizer, step_size=s.step_size * steps_per_epoch, gamma=s.gamma)
    if s.name == "onecycle":
        lr = cfg.optimizer.lr or DEFAULT_LR[cfg.optimizer.name]
        return lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total, pct_start=s.pct_start,
                                       cycle_momentum=cfg.optimizer.name in ("sgd", "rmsprop"))
    return None


RUN_FILES = ("metrics.jsonl", "model.axonml", "config.toml")


def prepare_output(cfg: TrainConfig, force: bool) -> Path:
    """The run's folder: ``train.output``, or a fresh ``runs/<model>-<dataset>[-N]``.

    A given folder that already holds a run is refused unless ``force``, which deletes that run's files
    (checkpoints, metrics, model, config) and nothing else.
    """
    if not cfg.train.output:
        slug = cfg.data.dataset.split(":", 1)[0]
        base = Path("runs") / f"{cfg.model.name}-{slug}"
        out, n = base, 1
        while out.exists():
            n += 1
            out = base.with_name(f"{base.name}-{n}")
        out.mkdir(parents=True)
        return out
    out = Path(cfg.train.output)
    ckpts = out / "checkpoints"
    taken = [out / f for f in RUN_FILES if (out / f).exists()]
    if ckpts.is_dir() and any(ckpts.iterdir()):
        taken.append(ckpts)
    if taken and not force:
        raise CommandError(f"{out} already holds a run ({', '.join(p.name for p in taken)}); continue it with "
                           f"`axonml resume {out}`, or pass --force to replace it")
    for p in taken:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def start_wandb(cfg: TrainConfig, output: Path, run_id: str | None = None, quiet: bool = False) -> Any:
    """A Weights & Biases run (resuming ``run_id``), its files in ``$WANDB_DIR/wandb`` when that is set, else
    in ``OUTPUT/wandb``; ``quiet`` silences wandb's own messages. CommandError when ``wandb`` is not installed
    or cannot start."""
    try:
        import wandb
    except ImportError:
        raise CommandError("--wandb needs the wandb package: pip install wandb") from None
    folder = os.environ.get("WANDB_DIR") or str(output)
    Path(folder).mkdir(parents=True, exist_ok=True)  # wandb warns about a folder that does not exist yet
    try:
        return wandb.init(project=cfg.wandb.project, name=cfg.wandb.name or None, config=cfg.to_dict(),
                          dir=folder, id=run_id, resume="allow" if run_id else None,
                          settings=wandb.Settings(silent=True) if quiet else None)
    except Exception as e:  # wandb raises its own error types (no login, no network, bad settings)
        raise CommandError(f"wandb could not start a run ({type(e).__name__}: {e}); WANDB_MODE=offline logs "
                           "without an account") from None


def stdout_console() -> Console:
    """A console for tables on stdout: the terminal's width, or up to 200 columns when piped (no wrapped paths)."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


class Reporter:
    """What the user sees: a Rich progress bar on a terminal, one line per epoch otherwise, nothing with quiet.

    Everything goes to stderr, so stdout holds only ``--json`` output.
    """

    def __init__(self, quiet: bool, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.quiet = quiet
        self.live = self.console.is_terminal and not quiet
        self.progress: Progress | None = None
        self.task: Any = None
        self._t0 = 0.0
        self._seen = 0

    def message(self, text: str) -> None:
        """One line of information (hidden with quiet)."""
        if not self.quiet:
            self.console.print(text, markup=False, highlight=False)

    def start_epoch(self, epoch: int, epochs: int, total_batches: int, done_batches: int) -> None:
        """Open the progress bar of an epoch (numbered from 1), ``done_batches`` already done."""
        self._t0, self._seen = time.perf_counter(), 0
        if not self.live:
            return
        self.progress = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.3f}  {task.fields[speed]:.0f} samples/s"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=total_batches, completed=done_batches, loss=0.0, acc=0.0,
                                           speed=0.0)

    def step(self, batch_size: int, loss: float, acc: float) -> None:
        """After each batch: the epoch's running loss and accuracy so far."""
        self._seen += batch_size
        if self.progress is not None:
            self.progress.update(self.task, advance=1, loss=loss, acc=acc, speed=self.throughput())

    def throughput(self) -> float:
        """Training samples per second in this epoch so far."""
        elapsed = time.perf_counter() - self._t0
        return self._seen / elapsed if elapsed > 0 else 0.0

    def end_epoch(self, record: dict[str, Any]) -> None:
        """Close the bar and summarize the epoch in one line."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.quiet:
            return
        line = (f"epoch {record['epoch']}/{record['epochs']}  train_loss {record['train_loss']:.4f}  "
                f"train_acc {record['train_acc']:.4f}  val_loss {record['val_loss']:.4f}  "
                f"val_acc {record['val_acc']:.4f}  lr {record['lr']:.3g}  "
                f"{record['samples_per_s']:.0f} samples/s  {record['epoch_time_s']:.1f}s")
        self.console.print(line, markup=False, highlight=False)

    def close(self) -> None:
        """Stop a bar left open (an interrupted epoch)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

