"""Issue 4's acceptance: LeNet-5 on real MNIST, checkpointed every epoch, hard-killed (SIGKILL), resumed, and
ending with the same bits as an uninterrupted run.

Three scenarios, each against an uninterrupted run of the same configuration:

* the real ``axonml train`` command in a subprocess, SIGKILLed as soon as the test sees its epoch-1
  checkpoint, then ``axonml resume`` SIGKILLed 10 steps into epoch 3 (a hook in the child pauses there), then
  resumed to the end. The killed runs use a DataLoader worker process (the uninterrupted one none: the
  result must not depend on it); the worker must exit by itself and leave no shared memory behind;
* ``axonml train`` SIGKILLed while it writes its epoch-2 checkpoint (a hook in the child kills it after a
  part of the file is written): the partial file must never load as a checkpoint;
* the library alone (no CLI): a LeNet-5 loop written with ``axonml.nn``/``optim``/``data``/``vision`` and
  ``axonml.io.CheckpointManager``, run in a child process that is SIGKILLed in the middle of epoch 2, resumed
  in this process from ``manager.load_latest`` — what a library user does.

The comparisons cover the whole final checkpoint (weights, optimizer moments, schedule, every random
generator's state), bit for bit. tests/io/test_io_checkpoint.py already tests the writer killed in a bare
``CheckpointManager`` loop and in-process resume, and tests/cli/test_cli_train.py resume after Ctrl-C and a
requested stop on synthetic data; here the kills are hard ones, on real data, with real model and run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml import nn, optim
from axonml.data import DataLoader, Subset
from axonml.io import Checkpoint, CheckpointManager, ModelArchive, SerializationError
from axonml.vision import datasets
from axonml.vision import transforms as T

try:  # comes with scikit-learn (the dev extra); without it both sides of a comparison keep the default threads
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

NONDIFF_NAMES: list[str] = []
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL, sessions and /proc are POSIX")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CLI = [sys.executable, "-m", "axonml.cli.main"]
EPOCHS = 3
# LeNet-5 on 3,000 real MNIST images (2,700 trained on, 300 held out): 54 AdamW steps per epoch under a
# cosine schedule, about 0.5 s an epoch on one core, so a kill lands well inside an epoch
RUN = ["--model", "lenet5", "--dataset", "mnist", "--limit", "3000", "--batch-size", "50", "--seed", "7",
       "--optimizer", "adamw", "--scheduler", "cosine", "--epochs", str(EPOCHS), "-q"]
DETERMINISTIC = ("epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "best_val_acc", "lr")
# what may differ between two checkpoints of the same run: where it was written and how many workers it used
RUN_SPECIFIC = {"extra.config.train.output", "extra.config.data.workers"}
POLL_S = 0.01
# OpenBLAS threads busy-wait after each call; on a shared 2-core machine that makes a small model's steps
# ~15x slower (see PERF-NOTES). Every run of a comparison uses the same setting.
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ----- helpers -----------------------------------------------------------------------------------------
def _env(tmp: Path) -> dict[str, str]:
    """The child's environment: this checkout's axonml, and a private (empty) $AXONML_HOME."""
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "AXONML_HOME": str(tmp / "home"), **ONE_THREAD}


def _assert_same(a: Any, b: Any, where: str = "", ignore: frozenset[str] | set[str] = frozenset()) -> None:
    """``a`` and ``b`` hold the same structure and the same values; tensors and arrays compared bit for bit."""
    if where in ignore:
        return
    if isinstance(a, Mapping):
        assert isinstance(b, Mapping), (where, type(b))
        assert set(a) == set(b), (where, sorted(set(a) ^ set(b)))
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}" if where else str(k), ignore)
    elif isinstance(a, ax.Tensor | np.ndarray):
        x = a.numpy() if isinstance(a, ax.Tensor) else a
        y = b.numpy() if isinstance(b, ax.Tensor) else np.asarray(b)
        assert type(a) is type(b) and x.dtype == y.dtype and x.shape == y.shape, (where, x.dtype, y.dtype)
        same = np.array_equal(np.ascontiguousarray(x).view(np.uint8), np.ascontiguousarray(y).view(np.uint8))
        assert same, f"{where}: the values differ (max |diff| {np.max(np.abs(x.astype(float) - y)):.3g})"
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            _assert_same(u, v, f"{where}[{i}]", ignore)
    else:
        assert a == b or (a != a and b != b), (where, a, b)  # NaN == NaN here


def _ckpt_files(folder: Path) -> list[Path]:
    """The files under a final checkpoint name, by step (what a reader may pick up)."""
    return sorted(folder.glob("checkpoint-*.ckpt"))


def _check_folder_after_kill(folder: Path) -> None:
    """Every file under a checkpoint name is complete and verified; anything else (a writer's temp file) is
    refused by the loader, and ``CheckpointManager`` ignores it and deletes it (its writer is dead)."""
    for p in folder.iterdir():
        if p.name.startswith("checkpoint-") and p.suffix == ".ckpt":
            ax.io.verify(p)
            assert ax.io.load(p)["kind"] == "axonml.checkpoint"
        else:
            with pytest.raises(SerializationError):
                ax.io.load(p)
    infos = CheckpointManager(folder, keep_last=None).checkpoints()
    assert [i.path for i in infos] == _ckpt_files(folder)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "a dead writer's temp file was kept"


def _epochs(run: Path) -> list[dict[str, Any]]:
    """The deterministic part of each epoch record of a run's metrics.jsonl, in file order."""
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: r[k] for k in DETERMINISTIC} for r in lines if r["event"] == "epoch"]


def _final_state(run: Path) -> dict[str, Any]:
    latest = CheckpointManager(run / "checkpoints", keep_last=None).latest
    assert latest is not None
    state = ax.io.load(latest)
    assert isinstance(state, dict)
    return state


def _group_alive(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` still running (zombies excluded: a container's init may not reap)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


@contextlib.contextmanager
def _session(cmd: list[str], env: dict[str, str], **kw: Any) -> Iterator[subprocess.Popen[str]]:
    """Start ``cmd`` in its own session (so its worker processes can be found and, at worst, cleaned up)."""
    proc = subprocess.Popen(cmd, env=env, text=True, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)
    try:
        yield proc
    finally:
        if proc.poll() is None or _group_alive(proc.pid):  # a failed test: end the group started above
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def _expect_lines(proc: subprocess.Popen[str], expected: list[str]) -> None:
    """The child's next stdout lines are ``expected`` (else it is killed and its stderr shown)."""
    assert proc.stdout is not None and proc.stderr is not None
    got = [proc.stdout.readline().strip() for _ in expected]
    if got != expected:
        proc.kill()
        pytest.fail(f"expected {expected} from the child, got {got}; stderr: {proc.stderr.read()[-2000:]}")


def _wait_for(predicate: Any, proc: subprocess.Popen[str], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the run ended (code {proc.returncode}) before {what}: {err[-2000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL_S)


def _hard_kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the main process only (as the OOM killer would); its workers must go by themselves."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10  # an idle worker checks its parent every second
    while _group_alive(proc.pid):
        assert time.monotonic() < deadline, f"worker processes outlived their killed parent: {_group_alive(proc.pid)}"
        time.sleep(0.05)
    shm = Path("/dev/shm")
    if shm.is_dir():  # a DataLoader's segments are named /ax<pid in hex>-...
        leaked = [p.name for p in shm.glob(f"ax{proc.pid:x}-*")]
        assert not leaked, f"shared memory left behind by the killed run: {leaked}"


def _step_of(path: Path) -> int:
    return int(path.stem.split("-")[1])


# ----- the CLI -----------------------------------------------------------------------------------------
_STRAIGHT: dict[str, Path] = {}


@pytest.fixture
def straight(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted ``axonml train`` run of RUN on the real MNIST (made once, shared by the CLI tests)."""
    key = str(shared_data)
    if key not in _STRAIGHT:
        tmp = tmp_path_factory.mktemp("straight")
        done = subprocess.run([*CLI, "train", *RUN, "--data-root", str(shared_data / "mnist"), "--workers", "0",
                               "--output", str(tmp / "run"), "--json"], capture_output=True, text=True,
                              env=_env(tmp), timeout=300)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["epochs_completed"] == EPOCHS
        _STRAIGHT[key] = tmp / "run"
    return _STRAIGHT[key]


def _assert_same_run(straight: Path, run: Path) -> None:
    """Same final checkpoint (weights, AdamW moments, schedule, loop counters, RNG states) and archive."""
    a, b = _final_state(straight), _final_state(run)
    assert a["extra"]["loop"]["epoch"] == EPOCHS
    _assert_same(a, b, ignore=RUN_SPECIFIC)
    wa = ModelArchive.load(straight / "model.axonml").model.state_dict()
    wb = ModelArchive.load(run / "model.axonml").model.state_dict()
    _assert_same(dict(wa), dict(wb))


# The child side of a hard kill at an exact point, for the real command line: with $PAUSE_AFTER_STEPS=N the
# N-th AdamW step of the process says "paused" on stdout and waits on stdin (there the test SIGKILLs it); with
# $KILL_AT_SAVE=N the process SIGKILLs itself in the middle of writing its N-th checkpoint (the header and the
# first tensor are written, the rest is not). Then it runs `axonml` with its own arguments.
HOOKED_CLI = textwrap.dedent("""
    import os, signal, sys, zipfile
    from axonml import optim
    from axonml.io import CheckpointManager
    PAUSE, KILL_AT = int(os.environ.get("PAUSE_AFTER_STEPS", 0)), int(os.environ.get("KILL_AT_SAVE", 0))
    real_step, real_save, real_write = optim.AdamW.step, CheckpointManager.save, zipfile._ZipWriteFile.write
    state = {"steps": 0, "saves": 0, "writes": 0}
    def step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        state["steps"] += 1
        if state["steps"] == PAUSE:
            print("paused", flush=True)
            sys.stdin.readline()
        return out
    def save(self, *args, **kwargs):
        state["saves"], state["writes"] = state["saves"] + 1, 0
        return real_save(self, *args, **kwargs)
    def write(self, data):
        state["writes"] += 1
        if state["saves"] == KILL_AT and state["writes"] == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write(self, data)
    optim.AdamW.step, CheckpointManager.save, zipfile._ZipWriteFile.write = step, save, write
    from axonml.cli.main import main
    main()
""")
MID_EPOCH_STEP = 10  # the second kill comes after this many steps of the last epoch


def test_cli_lenet5_mnist_sigkilled_twice_resumes_bit_for_bit(shared_data: Path, straight: Path,
                                                               tmp_path: Path) -> None:
    run, env = tmp_path / "run", _env(tmp_path)
    ckpts = run / "checkpoints"
    # 1. train, SIGKILLed as soon as the epoch-1 checkpoint is there (nothing in the child knows of it)
    with _session([*CLI, "train", *RUN, "--data-root", str(shared_data / "mnist"), "--workers", "1",
                   "--output", str(run)], env) as proc:
        _wait_for(lambda: bool(_ckpt_files(ckpts)), proc, "the epoch-1 checkpoint")
        _hard_kill(proc)
    _check_folder_after_kill(ckpts)
    steps_per_epoch = ax.io.load(_ckpt_files(ckpts)[0])["extra"]["loop"]["step"]
    loop = ax.io.load(_ckpt_files(ckpts)[-1])["extra"]["loop"]
    # epoch 1, unless this process was starved for a whole epoch between two polls
    assert loop["epoch"] < EPOCHS and loop["batch"] == 0 and not (run / "model.axonml").exists(), loop
    # 2. resume, SIGKILLed in the middle of the last epoch while its DataLoader worker is busy
    pause = (EPOCHS - 1) * steps_per_epoch + MID_EPOCH_STEP - loop["step"]
    with _session([sys.executable, "-c", HOOKED_CLI, "resume", str(run), "--epochs", str(EPOCHS), "--workers", "1",
                   "-q"], {**env, "PAUSE_AFTER_STEPS": str(pause)}, stdin=subprocess.PIPE) as proc:
        _expect_lines(proc, ["paused"])
        _hard_kill(proc)
    _check_folder_after_kill(ckpts)
    assert max(_step_of(p) for p in _ckpt_files(ckpts)) == (EPOCHS - 1) * steps_per_epoch
    assert not (run / "model.axonml").exists()
    # 3. resume to the end
    done = subprocess.run([*CLI, "resume", str(run), "--epochs", str(EPOCHS), "--workers", "0", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "completed" and summary["steps"] == EPOCHS * steps_per_epoch
    assert "resuming lenet5 on mnist" in done.stderr and f"epoch {EPOCHS}/{EPOCHS}" in done.stderr
    _assert_same_run(straight, run)
    assert _epochs(run) == _epochs(straight)
    assert _epochs(run)[-1]["val_acc"] > 0.8  # it learned: chance is 0.1


def test_cli_killed_while_writing_a_checkpoint_resumes_bit_for_bit(shared_data: Path, straight: Path,
                                                                    tmp_path: Path) -> None:
    run, env = tmp_path / "run", {**_env(tmp_path), "KILL_AT_SAVE": "2"}
    ckpts = run / "checkpoints"
    killed = subprocess.run([sys.executable, "-c", HOOKED_CLI, "train", *RUN, "--data-root",
                             str(shared_data / "mnist"), "--workers", "0", "--output", str(run)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [partial] = [p for p in ckpts.iterdir() if p.name.startswith(".")]
    assert partial.suffix == ".tmp" and partial.stat().st_size > 0  # the half-written epoch-2 file...
    with pytest.raises(SerializationError):
        ax.io.load(partial)  # ...is refused
    [first] = _ckpt_files(ckpts)
    assert ax.io.load(first)["extra"]["loop"]["epoch"] == 1
    _check_folder_after_kill(ckpts)  # the manager removes the dead writer's file
    done = subprocess.run([*CLI, "resume", str(run), "--epochs", str(EPOCHS), "--json"], capture_output=True,
                          text=True, env=_env(tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"
    _assert_same_run(straight, run)
    # metrics.jsonl: the epoch-2 record was appended just before the killed save, and the resumed run
    # (back at the epoch-1 checkpoint) trains epoch 2 again and appends its record a second time
    records = _epochs(run)
    last_of_each = list({r["epoch"]: r for r in records}.values())
    assert last_of_each == _epochs(straight)
    assert len(records) == len(last_of_each), f"an epoch recorded twice: {[r['epoch'] for r in records]}"


# ----- the library alone -------------------------------------------------------------------------------
LIB_SAMPLES, LIB_BATCH, LIB_EPOCHS, LIB_KILL_EPOCH = 1024, 64, 3, 2


def _lenet5() -> nn.Module:
    """LeNet-5 with dropout (so the default generator's state matters); (B, 1, 28, 28) -> (B, 10)."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 6, 14, 14)
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 5, 5)
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def library_run(mnist_root: str, ckpt_dir: str, *, resume: bool = False, pause_in_epoch: int = 0,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Train LeNet-5 on the first LIB_SAMPLES MNIST images for LIB_EPOCHS epochs, a checkpoint after each one.

    Random crops (default generator), dropout (default generator) and shuffling (the loader's own generator)
    make every epoch depend on the random state. ``resume``: continue from ``ckpt_dir``'s latest checkpoint.
    ``pause_in_epoch=k``: after 3 steps of epoch k, say so on stdout and wait on stdin (to be killed there).
    Returns the final weights.
    """
    with contextlib.nullcontext() if threadpool_limits is None else threadpool_limits(1):
        return _library_loop(mnist_root, ckpt_dir, resume, pause_in_epoch, seed)


def _library_loop(mnist_root: str, ckpt_dir: str, resume: bool, pause_in_epoch: int,
                  seed: int) -> dict[str, np.ndarray]:
    # seed everything, as a user would; a resumed run's weights and random states come from the checkpoint
    ax.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    model = _lenet5()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = LIB_EPOCHS * -(-LIB_SAMPLES // LIB_BATCH)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)  # stepped every batch
    augment = T.Compose([T.RandomCrop(28, padding=2), T.ToTensor(), T.Normalize(T.MNIST_MEAN, T.MNIST_STD)])
    train = Subset(datasets.MNIST(mnist_root, train=True, transform=augment), range(LIB_SAMPLES))
    shuffle = ax.Generator().manual_seed(1)
    loader = DataLoader(train, batch_size=LIB_BATCH, shuffle=True, generator=shuffle)
    ckpt = Checkpoint(model, opt, sched, generators={"shuffle": shuffle})
    manager = CheckpointManager(ckpt_dir, keep_last=2)
    if resume:
        assert manager.load_latest(ckpt) is not None, f"no checkpoint in {ckpt_dir}"
    for epoch in range(ckpt.epoch + 1, LIB_EPOCHS + 1):
        model.train()
        for i, (x, y) in enumerate(loader):  # x (B, 1, 28, 28) float32, y (B,) int64
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if epoch == pause_in_epoch and i == 2:
                print("paused", flush=True)
                sys.stdin.readline()
        ckpt.epoch = epoch
        manager.save(ckpt, step=ckpt.step + len(loader), metrics={"loss": loss.item()})
        print(f"saved {epoch}", flush=True)
    return {k: v.numpy() for k, v in model.state_dict().items()}


LIB_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); import test_cli_kill_resume as t; "
             "t.library_run(sys.argv[2], sys.argv[3], pause_in_epoch=int(sys.argv[4]))")


def test_library_lenet5_loop_sigkilled_mid_epoch_resumes_bit_for_bit(shared_data: Path, tmp_path: Path) -> None:
    mnist = str(shared_data / "mnist")
    straight = library_run(mnist, str(tmp_path / "straight"))
    killed_dir = tmp_path / "killed"
    with _session([sys.executable, "-c", LIB_CHILD, str(HERE), mnist, str(killed_dir), str(LIB_KILL_EPOCH)],
                  _env(tmp_path), stdin=subprocess.PIPE) as child:
        _expect_lines(child, [*(f"saved {e}" for e in range(1, LIB_KILL_EPOCH)), "paused"])
        _hard_kill(child)  # 3 steps into epoch LIB_KILL_EPOCH: its weights in memory are lost
    _check_folder_after_kill(killed_dir)
    assert [c.epoch for c in CheckpointManager(killed_dir).checkpoints()] == list(range(1, LIB_KILL_EPOCH))
    # resume here, in "another process": every global generator seeded otherwise, other initial weights
    resumed = library_run(mnist, str(killed_dir), resume=True, seed=99)
    _assert_same(straight, resumed)
    a, b = (CheckpointManager(d, keep_last=None).latest for d in (tmp_path / "straight", killed_dir))
    assert a is not None and b is not None and a.name == b.name
    _assert_same(ax.io.load(a), ax.io.load(b))  # optimizer momenta, schedule, RNG states: the same bits
    assert ax.io.load(b)["epoch"] == LIB_EPOCHS
