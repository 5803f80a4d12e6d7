"""``axonml train`` and ``axonml resume``: train an image classifier from a TOML config and options.

Exit codes: 0 the run completed (or stopped early), 1 an error (one line on
stderr), 2 bad usage, 130 interrupted by Ctrl-C after saving a resumable checkpoint.

The building blocks are public here for the ``train.py`` that ``axonml new`` writes:
:func:`load_config` (the schema of docs/cli-train.md), :func:`build_run` (the seeded
data, model, optimizer and schedule of a configuration), :func:`write_model_archive`,
:func:`start_wandb` and :class:`CommandError`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from ..io import CheckpointManager
from ..io import load as load_file
from ..io._common import SerializationError
from ._app import CommandError, app, emit_json, fail, handle_errors
from ._train_config import OPTIMIZERS, SCHEDULERS, TrainConfig, load_config
from ._train_models import canonical_model_name
from ._train_run import RunParts, build_run, write_model_archive
from ._train_setup import Reporter, prepare_output, start_wandb
from ._training import EXIT_INTERRUPTED, RunResult, Trainer

__all__ = ["CommandError", "RunParts", "TrainConfig", "build_run", "load_config", "resume", "start_wandb", "train",
           "write_model_archive"]

CONFIG_ARG = typer.Argument(None, help="A TOML config file (schema: docs/cli-train.md); options override it.")
CHECKPOINT_ARG = typer.Argument(..., help="A checkpoint file, or a run folder (its latest checkpoint).")
F = TypeVar("F", bound=Callable[..., Any])
_DATASET_HELP = "mnist, fashion-mnist, cifar10, cifar100, digits, synthetic-mnist, synthetic-cifar or imagefolder:PATH."


def exit_code(fn: F) -> F:
    """Exit with the code the command returns (non-zero). Applied outside ``handle_errors``, which would
    otherwise turn a ``typer.Exit`` (a RuntimeError) into exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        code = fn(*args, **kwargs)
        if code:
            raise typer.Exit(code)

    return wrapper  # type: ignore[return-value]


def _finish(result: RunResult, reporter: Reporter, as_json: bool) -> int:
    """Report the end of a run; the exit code is 130 when it was interrupted."""
    if as_json:
        emit_json(result.to_dict())
    if result.status == "interrupted":
        reporter.console.print(f"interrupted: saved {result.checkpoint}; continue with `axonml resume "
                               f"{result.output}`", markup=False, highlight=False)
        return EXIT_INTERRUPTED
    best = "n/a" if result.best_val_acc is None else f"{result.best_val_acc:.4f}"
    ending = "stopped early" if result.status == "early_stopped" else "done"
    reporter.message(f"{ending}: {result.epochs_completed} epochs, best val_acc {best} (epoch {result.best_epoch}); "
                     f"model saved to {result.model_path}")
    return 0


def _run(trainer: Trainer, reporter: Reporter, as_json: bool) -> int:
    try:
        result = trainer.fit()
    except KeyboardInterrupt:
        latest = getattr(getattr(trainer, "manager", None), "latest", None)
        reporter.console.print(f"aborted: the last checkpoint is {latest or 'none'}", markup=False, highlight=False)
        return EXIT_INTERRUPTED
    return _finish(result, reporter, as_json)


@app.command()
@exit_code
@handle_errors
def train(
    config: Path | None = CONFIG_ARG,
    model: str | None = typer.Option(None, "--model", "-m", help="Model name from axonml.vision.models "
                                     "(lenet5 alias lenet, mlp, simple_cnn, resnet18, vit_tiny, ...)."),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help=_DATASET_HELP),
    data_root: str | None = typer.Option(None, "--data-root", help="Folder holding the dataset's files "
                                         "(default: ../shared/data/<name> if present, else $AXONML_HOME/datasets)."),
    epochs: int | None = typer.Option(None, "--epochs", "-e", help="Epochs to train."),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", help="Training batch size."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (default: the optimizer's usual one)."),
    optimizer: str | None = typer.Option(None, "--optimizer", help=f"One of {', '.join(OPTIMIZERS)}."),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="Weight decay."),
    scheduler: str | None = typer.Option(None, "--scheduler", help=f"One of {', '.join(SCHEDULERS)}."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (weights, split, order)."),
    workers: int | None = typer.Option(None, "--workers", help="DataLoader worker processes."),
    amp: bool | None = typer.Option(None, "--amp/--no-amp", help="Mixed precision (autocast; loss scaling on CUDA)."),
    output: str | None = typer.Option(None, "--output", "-o", help="Run folder (default runs/<model>-<dataset>)."),
    patience: int | None = typer.Option(None, "--patience", help="Stop after N epochs without a better "
                                        "validation accuracy (0: never)."),
    limit: int | None = typer.Option(None, "--limit", help="Use at most N samples of each split (0: all)."),
    val_split: float | None = typer.Option(None, "--val-split", help="Fraction of the training split held out "
                                           "for validation (0: validate on the test split)."),
    wandb: bool | None = typer.Option(None, "--wandb/--no-wandb", help="Log to Weights & Biases."),
    force: bool = typer.Option(False, "--force", help="Replace a run already in --output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary of the run on stdout."),
    no_fallback: bool = typer.Option(False, "--no-fallback", help="Fail when MNIST is missing and cannot be "
                                     "downloaded, instead of training on scikit-learn's real digits."),
) -> int:
    """Train an image classifier; checkpoints, metrics.jsonl and model.axonml go to the run folder.

    Validation runs after every epoch on a held-out part of the training split (--val-split, default 0.1) or, with --val-split 0, on the test split. Ctrl-C saves a resumable checkpoint and exits with code 130. The config schema is in docs/cli-train.md.
    """  # noqa: E501 - one paragraph per line: Typer keeps a docstring's line breaks
    cfg = load_config(config)
    cfg.override({
        "model.name": model, "data.dataset": dataset, "data.root": data_root, "train.epochs": epochs,
        "data.batch_size": batch_size, "optimizer.lr": lr, "optimizer.name": optimizer,
        "optimizer.weight_decay": weight_decay, "scheduler.name": scheduler, "train.device": device,
        "train.seed": seed, "data.workers": workers, "train.amp": amp, "train.output": output,
        "train.patience": patience, "data.limit": limit, "data.val_split": val_split, "wandb.enabled": wandb,
        "data.fallback": False if no_fallback else None,
    })
    cfg.model.name = canonical_model_name(cfg.model.name)  # lenet -> lenet5, before it names the run folder
    out = prepare_output(cfg, force)
    cfg.train.output = str(out.resolve())  # config.toml's paths are relative to its own folder
    (out / "config.toml").write_text(cfg.to_toml(), encoding="utf-8")
    reporter = Reporter(quiet)
    return _run(Trainer(cfg, out, reporter), reporter, as_json)


def find_checkpoint(path: Path) -> Path:
    """A checkpoint file from a path: the file itself, or the latest checkpoint of a run (or checkpoints) folder."""
    if path.is_file():
        return path
    if path.is_dir():
        for folder in (path / "checkpoints", path):
            if folder.is_dir():
                latest = CheckpointManager(folder, keep_last=None).latest
                if latest is not None:
                    return latest
        raise CommandError(f"{path} holds no checkpoint")
    raise CommandError(f"{path} not found")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The loaded state of a checkpoint written by ``axonml train`` (CommandError otherwise)."""
    try:
        state = load_file(path, map_location="cpu")
    except SerializationError as e:
        raise CommandError(f"cannot read {path}: {e}") from None
    extra = state.get("extra") if isinstance(state, dict) else None
    if not isinstance(extra, dict) or not {"config", "meta", "loop"} <= set(extra):
        raise CommandError(f"{path} is not a checkpoint written by `axonml train`")
    return state  # type: ignore[no-any-return]


@app.command()
@exit_code
@handle_errors
def resume(
    checkpoint: Path = CHECKPOINT_ARG,
    epochs: int | None = typer.Option(None, "--epochs", "-e", help="Train until this many epochs in all "
                                      "(default: the run's own)."),
    patience: int | None = typer.Option(None, "--patience", help="New early-stopping patience (also restarts a "
                                        "run that stopped early)."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto."),
    workers: int | None = typer.Option(None, "--workers", help="DataLoader worker processes."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary of the run on stdout."),
) -> int:
    """Continue a run from a checkpoint, exactly where it stopped (mid-epoch included), in its run folder."""
    path = find_checkpoint(checkpoint)
    state = read_checkpoint(path)
    extra = state["extra"]
    cfg = TrainConfig.from_dict(extra["config"], f"{path} (config)")
    loop = extra["loop"]
    cfg.override({"train.epochs": epochs, "train.patience": patience, "train.device": device,
                  "data.workers": workers})
    planned = int(loop.get("planned_epochs") or cfg.train.epochs)
    if cfg.train.epochs > planned and cfg.scheduler.name in ("cosine", "onecycle"):
        fail(f"the {cfg.scheduler.name} schedule of this run was laid out for {planned} epochs and cannot be "
             f"stretched to {cfg.train.epochs}; start a new run (or use --scheduler none/step)")
    if patience is not None and loop.get("stopped_early"):
        loop.update(stopped_early=False, bad_epochs=0)
    reporter = Reporter(quiet)
    done = int(loop.get("epoch", 0))
    if done >= cfg.train.epochs or loop.get("stopped_early"):
        early = bool(loop.get("stopped_early"))
        why = "stopped early (pass --patience N" if early else f"has completed {done} epochs (pass --epochs N"
        reporter.message(f"nothing to do: the run {why} to train further)")
        if as_json:
            emit_json({"status": "nothing_to_do", "checkpoint": str(path), "epochs_completed": done})
        return 0
    out = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    cfg.train.output = str(out)
    return _run(Trainer(cfg, out, reporter, resume_state=state), reporter, as_json)
