"""The training loop behind ``axonml train`` and ``axonml resume``.

A run is reproducible from its configuration: the seed fixes the initial
weights, the held-out split, and each epoch's sample order (a permutation drawn
from ``(seed, epoch)`` alone). A checkpoint holds the model, optimizer, schedule,
grad scaler, every random generator's state, and the loop's own counters (epoch,
batch within the epoch, the epoch's running sums, the best accuracy and the
patience count), so a run resumed from it, even in the middle of an epoch,
continues exactly as if it had never stopped.

Checkpoints go to ``OUTPUT/checkpoints`` through ``CheckpointManager`` after each
epoch (the last two and the best by validation accuracy are kept) and when the
user presses Ctrl-C: the first SIGINT lets the current step finish, saves, and
ends the run with exit code 130; a second one aborts at once.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..amp import autocast
from ..core.random import Generator
from ..data import DataLoader
from ..io import Checkpoint, CheckpointManager, atomic_write
from ..io import load as load_file
from ..nn.functional import cross_entropy
from ..nn.utils import clip_grad_norm_
from ._train_config import TrainConfig
from ._train_eval import loss_and_accuracy, run_inference
from ._train_run import build_run, write_model_archive
from ._train_setup import Reporter, start_wandb

EXIT_INTERRUPTED = 130  # the shell's code for "ended by SIGINT"


@dataclass
class LoopState:
    """The loop's counters, saved in every checkpoint."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # batches done in the current epoch
    step: int = 0  # optimizer steps in all
    loss_sum: float = 0.0  # the current epoch's running training loss (sum over samples)
    correct: int = 0
    seen: int = 0
    best_acc: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the validation accuracy last improved
    stopped_early: bool = False
    planned_epochs: int = 0  # the epochs the learning-rate schedule was laid out for
    wandb_id: str = ""


@dataclass
class RunResult:
    """How a run ended: ``status`` is ``completed``, ``early_stopped`` or ``interrupted``."""

    status: str
    output: str
    epochs_completed: int
    steps: int
    best_val_acc: float | None
    best_epoch: int
    model_path: str | None = None
    checkpoint: str | None = None
    last_epoch: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _InterruptedError(Exception):
    def __init__(self, checkpoint: Path) -> None:
        super().__init__(str(checkpoint))
        self.checkpoint = checkpoint


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the ``n`` training samples in ``epoch``: a permutation drawn from ``(seed, epoch)`` only."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(n)


class Trainer:
    """One run: ``Trainer(cfg, output, reporter).fit()``; ``resume_state`` is a checkpoint's loaded state.

    ``on_step(trainer)`` is called after every optimizer step (``trainer.request_stop()`` ends the run
    there as Ctrl-C does).
    """

    def __init__(self, cfg: TrainConfig, output: Path, reporter: Reporter, *,
                 resume_state: dict[str, Any] | None = None,
                 on_step: Callable[[Trainer], None] | None = None) -> None:
        self.cfg, self.output, self.reporter = cfg, Path(output), reporter
        self.resume_state, self.on_step = resume_state, on_step
        self.state = LoopState()
        if resume_state is not None:
            self.state = LoopState(**resume_state["extra"]["loop"])
        self.stop_requested = False
        self.wandb_run: Any = None

    def request_stop(self) -> None:
        """End the run after the current step, with a resumable checkpoint (what Ctrl-C does)."""
        self.stop_requested = True

    # ----- setup -------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg, t = self.cfg, self.cfg.train
        self.state.planned_epochs = self.state.planned_epochs or t.epochs
        self.run = run = build_run(cfg, self.state.planned_epochs)
        self.device, self.data, self.model, self.model_kwargs = run.device, run.data, run.model, run.model_kwargs
        self.optimizer, self.scheduler, self.scaler, self.meta = run.optimizer, run.scheduler, run.scaler, run.meta
        self.n_train, self.steps_per_epoch = run.n_train, run.steps_per_epoch
        self.amp = t.amp
        self.manager = CheckpointManager(self.output / "checkpoints", keep_last=2, keep_best=1, metric="val_acc",
                                         mode="max")
        self.checkpoint = Checkpoint(self.model, self.optimizer, self.scheduler, self.scaler)
        if self.resume_state is not None:
            self.checkpoint.load_state_dict(self.resume_state)  # weights, optimizer, schedule, RNG states
            self._trim_metrics()

    # ----- checkpoints and records -------------------------------------------------------------
    def _save(self, metrics: dict[str, Any]) -> Path:
        self.checkpoint.epoch, self.checkpoint.metrics = self.state.epoch, dict(metrics)
        self.checkpoint.extra = {"config": self.cfg.to_dict(), "meta": self.meta, "loop": asdict(self.state)}
        return self.manager.save(self.checkpoint, step=self.state.step)

    def _trim_metrics(self) -> None:
        """Drop metrics.jsonl records newer than the checkpoint being resumed, and a torn last line.

        An epoch's record is written just before its checkpoint; a kill between the two (or resuming an
        older checkpoint) would otherwise leave records of steps that the resumed run trains again.
        """
        path = self.output / "metrics.jsonl"
        if not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the kill
            if int(record.get("step", 0)) <= self.state.step:
                kept.append(line + "\n")
        with atomic_write(path) as f:
            f.write("".join(kept).encode("utf-8"))

    def _record(self, record: dict[str, Any]) -> None:
        with open(self.output / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb_run is not None and record.get("event") == "epoch":
            self.wandb_run.log({k: v for k, v in record.items() if isinstance(v, int | float)}, step=record["step"])

    # ----- the loop ----------------------------------------------------------------------------
    def _train_epoch(self) -> None:
        st, cfg = self.state, self.cfg
        bs = cfg.data.batch_size
        order = epoch_order(cfg.train.seed, st.epoch, self.n_train)[st.batch * bs:]
        loader_seed = int(np.random.SeedSequence([cfg.train.seed, st.epoch, 1]).generate_state(1)[0])
        loader = DataLoader(self.data.train, batch_size=bs, sampler=order.tolist(), num_workers=cfg.data.workers,
                            generator=Generator().manual_seed(loader_seed))
        self.reporter.start_epoch(st.epoch + 1, cfg.train.epochs, self.steps_per_epoch, st.batch)
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        for x, y in loader:
            x, y = x.to(self.device), y.to(self.device)
            if self.data.pixels:
                x = self.data.spec.prepare(x)
            with autocast(self.device.type, enabled=self.amp):
                out = self.model(x)
            loss = cross_entropy(out.float(), y, label_smoothing=cfg.train.label_smoothing)
            self.optimizer.zero_grad()
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                if cfg.train.grad_clip:
                    self.scaler.unscale_(self.optimizer)
                    clip_grad_norm_(params, cfg.train.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                if cfg.train.grad_clip:
                    clip_grad_norm_(params, cfg.train.grad_clip)
                self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            n = int(y.shape[0])
            st.loss_sum += float(loss.item()) * n
            st.correct += int((out.argmax(1) == y).sum().item())
            st.seen, st.batch, st.step = st.seen + n, st.batch + 1, st.step + 1
            self.reporter.step(n, st.loss_sum / st.seen, st.correct / st.seen)
            if self.on_step is not None:
                self.on_step(self)
            if self.stop_requested and st.batch < self.steps_per_epoch:
                raise _InterruptedError(self._save({}))  # no val_acc: a mid-epoch checkpoint is never "best"

    def _end_epoch(self, started: float) -> dict[str, Any]:
        st, cfg = self.state, self.cfg
        prepare = self.data.spec.prepare if self.data.pixels else None
        logits, targets = run_inference(self.model, self.data.val, prepare=prepare, device=self.device,
                                        batch_size=cfg.data.eval_batch_size, workers=cfg.data.workers)
        val_loss, val_acc = loss_and_accuracy(logits, targets)
        if val_acc >= st.best_acc:  # ties go to the later epoch, as CheckpointManager ranks them
            st.best_epoch = st.epoch + 1
        st.bad_epochs = 0 if val_acc > st.best_acc else st.bad_epochs + 1
        st.best_acc = max(st.best_acc, val_acc)
        record = {
            "event": "epoch", "epoch": st.epoch + 1, "epochs": cfg.train.epochs, "step": st.step,
            "train_loss": st.loss_sum / max(st.seen, 1), "train_acc": st.correct / max(st.seen, 1),
            "val_loss": val_loss, "val_acc": val_acc, "best_val_acc": st.best_acc, "best_epoch": st.best_epoch,
            "lr": float(self.optimizer.param_groups[0]["lr"]), "epoch_time_s": time.perf_counter() - started,
            "samples_per_s": self.reporter.throughput(),
        }
        st.epoch, st.batch, st.loss_sum, st.correct, st.seen = st.epoch + 1, 0, 0.0, 0, 0
        if cfg.train.patience and st.bad_epochs >= cfg.train.patience:
            st.stopped_early = True
        self._record(record)
        self._save({"val_acc": val_acc, "val_loss": val_loss})
        self.reporter.end_epoch(record)
        return record

    def fit(self) -> RunResult:
        """Train until ``train.epochs`` (or early stopping, or Ctrl-C); returns how the run ended."""
        if self.cfg.wandb.enabled:
            self.wandb_run = start_wandb(self.cfg, self.output, self.state.wandb_id or None, self.reporter.quiet)
            self.state.wandb_id = str(getattr(self.wandb_run, "id", "") or "")
        self._setup()
        st, t = self.state, self.cfg.train
        what = "resuming" if self.resume_state is not None else "training"
        self.reporter.message(
            f"{what} {self.cfg.model.name} on {self.cfg.data.dataset} ({self.n_train} training samples; validation: "
            f"{self.data.val_source}) on {self.device}, epoch {st.epoch + 1}/{t.epochs}"
            + (f" batch {st.batch + 1}" if st.batch else "") + f"; output {self.output}")
        previous = self._install_sigint()
        last: dict[str, Any] = {}
        try:
            while st.epoch < t.epochs and not st.stopped_early:
                started = time.perf_counter()
                self._train_epoch()
                last = self._end_epoch(started)
                if self.stop_requested and st.epoch < t.epochs and not st.stopped_early:
                    raise _InterruptedError(self.manager.latest or self.output)
        except _InterruptedError as stop:
            self.reporter.close()
            self._record({"event": "interrupted", "epoch": st.epoch, "batch": st.batch, "step": st.step,
                          "checkpoint": str(stop.checkpoint)})
            return self._result("interrupted", last, checkpoint=stop.checkpoint)
        finally:
            self.reporter.close()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            if self.wandb_run is not None:
                self.wandb_run.finish()
        status = "early_stopped" if st.stopped_early else "completed"
        self._record({"event": status, "epoch": st.epoch, "step": st.step, "best_val_acc": st.best_acc,
                      "best_epoch": st.best_epoch})
        return self._result(status, last, model_path=self._write_archive())

    def _install_sigint(self) -> Any:
        """Ctrl-C once: stop after the current step with a checkpoint; twice: abort (KeyboardInterrupt)."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum: int, frame: Any) -> None:
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True

        return signal.signal(signal.SIGINT, handler)

    def _write_archive(self) -> Path:
        """``OUTPUT/model.axonml``: the weights of the best epoch, with what eval/predict need to use them."""
        best = self.manager.best
        if best is not None:
            self.model.load_state_dict(load_file(best, map_location="cpu")["model"])
        return write_model_archive(self.output / "model.axonml", self.run, self.state.best_epoch, self.state.best_acc)

    def _result(self, status: str, last: dict[str, Any], *, model_path: Path | None = None,
                checkpoint: Path | None = None) -> RunResult:
        st = self.state
        return RunResult(status=status, output=str(self.output), epochs_completed=st.epoch, steps=st.step,
                         best_val_acc=st.best_acc if st.best_acc >= 0 else None, best_epoch=st.best_epoch,
                         model_path=None if model_path is None else str(model_path),
                         checkpoint=str(checkpoint or self.manager.latest or "") or None, last_epoch=last)
