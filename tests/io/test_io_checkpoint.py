"""Checkpoints: bit-for-bit resume, last/best retention, and no valid-looking file from a killed writer."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from iohelp import same_bits

import axonml as ax
from axonml.io import Checkpoint, CheckpointManager, SerializationError, get_rng_state, set_rng_state
from axonml.io._common import member_data_offset

ROOT = Path(__file__).resolve().parents[2]


def _objects(seed: int) -> tuple[ax.nn.Module, ax.optim.Optimizer, object, object, ax.Generator]:
    ax.manual_seed(seed)
    model = ax.nn.Sequential(ax.nn.Linear(6, 16), ax.nn.ReLU(), ax.nn.Dropout(0.3), ax.nn.Linear(16, 3))
    opt = ax.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    sched = ax.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=20)
    scaler = ax.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=3)
    data_gen = ax.Generator().manual_seed(seed + 1)
    return model, opt, sched, scaler, data_gen


def _train(model: ax.nn.Module, opt: ax.optim.Optimizer, sched: object, scaler: object, data_gen: ax.Generator,
           steps: range, manager: CheckpointManager | None = None, ckpt: Checkpoint | None = None) -> None:
    for step in steps:
        # every source of randomness a loop may touch: a named generator, the default one (dropout),
        # NumPy's and Python's global generators
        x = ax.randn(8, 6, generator=data_gen) * float(1 + np.random.rand()) * (1 + random.random())
        y = ax.randint(0, 3, (8,), generator=data_gen)
        loss = ax.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        scaler.scale(loss).backward()  # type: ignore[attr-defined]
        scaler.step(opt)  # type: ignore[attr-defined]
        scaler.update()  # type: ignore[attr-defined]
        sched.step()  # type: ignore[attr-defined]
        if manager is not None and ckpt is not None:
            ckpt.step, ckpt.epoch = step + 1, (step + 1) // 4
            manager.save(ckpt, metrics={"loss": loss.item()})


def test_resume_is_bit_for_bit(tmp_path: Path) -> None:
    np.random.seed(7)
    random.seed(7)
    ref = _objects(0)
    _train(*ref, steps=range(10))

    np.random.seed(7)
    random.seed(7)
    model, opt, sched, scaler, gen = _objects(0)
    manager = CheckpointManager(tmp_path, keep_last=2)
    ckpt = Checkpoint(model, opt, sched, scaler, generators={"data": gen})
    _train(model, opt, sched, scaler, gen, range(5), manager, ckpt)
    assert [c.step for c in manager.checkpoints()] == [4, 5]

    # "a new process": fresh objects from another seed, every global generator scrambled
    model2, opt2, sched2, scaler2, gen2 = _objects(99)
    np.random.seed(123)
    random.seed(123)
    ax.manual_seed(123)
    ckpt2 = Checkpoint(model2, opt2, sched2, scaler2, generators={"data": gen2})
    assert manager.load_latest(ckpt2) == manager.path_for(5)
    assert ckpt2.step == 5 and ckpt2.epoch == 1 and set(ckpt2.metrics) == {"loss"}
    _train(model2, opt2, sched2, scaler2, gen2, range(5, 10))

    for (k, a), (_, b) in zip(ref[0].state_dict().items(), model2.state_dict().items()):
        assert same_bits(a, b), k
    for s_ref, s_new in zip(ref[1].state.values(), opt2.state.values()):
        assert all(same_bits(s_ref[k], s_new[k]) for k in s_ref)
    assert ref[2].state_dict() == sched2.state_dict()  # type: ignore[attr-defined]
    assert ref[3].state_dict() == scaler2.state_dict()  # type: ignore[attr-defined]


def test_rng_state_round_trip(tmp_path: Path) -> None:
    gen = ax.Generator().manual_seed(5)
    state = get_rng_state({"g": gen})
    first = (ax.rand(3).tolist(), ax.rand(2, generator=gen).tolist(), np.random.rand(), random.random())
    ax.save(state, tmp_path / "rng")
    ax.manual_seed(0)
    set_rng_state(ax.load(tmp_path / "rng"), {"g": gen})
    assert (ax.rand(3).tolist(), ax.rand(2, generator=gen).tolist(), np.random.rand(), random.random()) == first
    with pytest.raises(KeyError, match="other"):
        set_rng_state(state, {"other": gen})


def test_checkpoint_fields_and_partial_objects(tmp_path: Path) -> None:
    model = ax.nn.Linear(2, 2)
    ckpt = Checkpoint(model, epoch=3, step=30, metrics={"acc": ax.tensor(0.5), "n": np.int64(4)}, extra={"k": [1]})
    ckpt.save(tmp_path / "c.ckpt")
    other = Checkpoint(ax.nn.Linear(2, 2))
    other.load(tmp_path / "c.ckpt", restore_rng=False)
    assert other.epoch == 3 and other.step == 30 and other.extra == {"k": [1]}
    assert same_bits(other.model.weight, model.weight)  # type: ignore[union-attr]
    assert ax.io.read_metadata(tmp_path / "c.ckpt")["metrics"] == {"acc": 0.5, "n": 4}
    with pytest.raises(KeyError, match="no optimizer state"):
        Checkpoint(ax.nn.Linear(2, 2), ax.optim.SGD(model.parameters(), lr=0.1)).load(tmp_path / "c.ckpt")
    ax.save({"not": "a checkpoint"}, tmp_path / "other")
    with pytest.raises(SerializationError, match="not a checkpoint"):
        Checkpoint().load(tmp_path / "other")


def _save_steps(manager: CheckpointManager, metrics: list[float]) -> None:
    model = ax.nn.Linear(2, 1)
    for step, m in enumerate(metrics, start=1):
        manager.save(Checkpoint(model, step=step), metrics={"val": m})


def test_keep_last_and_best(tmp_path: Path) -> None:
    m = CheckpointManager(tmp_path / "min", keep_last=2, keep_best=2, metric="val", mode="min")
    assert m.latest is None and m.best is None
    _save_steps(m, [5.0, 3.0, 4.0, 1.0, 6.0, 2.0])
    assert [c.step for c in m.checkpoints()] == [4, 5, 6]
    assert m.latest == m.path_for(6) and m.best == m.path_for(4)
    m = CheckpointManager(tmp_path / "max", keep_last=1, keep_best=1, metric="val", mode="max")
    _save_steps(m, [5.0, 3.0, 7.0, 1.0])
    assert [c.step for c in m.checkpoints()] == [3, 4] and m.best == m.path_for(3)
    ckpt = Checkpoint(ax.nn.Linear(2, 1))
    assert m.load_best(ckpt) == m.path_for(3) and ckpt.metrics == {"val": 7.0}
    m = CheckpointManager(tmp_path / "all", keep_last=None)
    _save_steps(m, [1.0] * 4)
    assert len(m.checkpoints()) == 4
    for bad in ({"mode": "avg"}, {"keep_last": 0}, {"keep_best": 1}, {"keep_best": -1}):
        with pytest.raises(ValueError):
            CheckpointManager(tmp_path / "bad", **bad)  # type: ignore[arg-type]


def test_damaged_checkpoints_are_skipped(tmp_path: Path) -> None:
    m = CheckpointManager(tmp_path, keep_last=None)
    _save_steps(m, [1.0, 2.0])
    good = m.path_for(2).read_bytes()
    m.path_for(3).write_bytes(good[: len(good) // 2])  # a non-atomic copy cut short
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.warns(UserWarning, match="not a complete checkpoint"):
        assert m.latest == m.path_for(2)
    flipped = bytearray(good)
    with zipfile.ZipFile(m.path_for(2)) as zf:
        info = zf.getinfo("data/0")
    flipped[member_data_offset(m.path_for(2), info)] ^= 0xFF  # the header still reads, data/0 fails its CRC
    m.path_for(4).write_bytes(bytes(flipped))
    ckpt = Checkpoint(ax.nn.Linear(2, 1))
    with pytest.warns(UserWarning, match="damaged"):
        assert m.load_latest(ckpt) == m.path_for(2)
    assert ckpt.step == 2


CHILD = textwrap.dedent("""
    import sys, time, zipfile
    import axonml as ax
    from axonml.io import Checkpoint, CheckpointManager

    folder, mode = sys.argv[1], sys.argv[2]
    manager = CheckpointManager(folder, keep_last=None)
    ckpt = Checkpoint(ax.nn.Linear(1024, 2048), step=1)  # 8 MB of weights
    manager.save(ckpt)
    print("saved", flush=True)
    if mode == "stall":  # stop in the middle of the file: after the header and part of the weights
        real, calls = zipfile._ZipWriteFile.write, []
        def write(self, data):
            calls.append(1)
            if len(calls) == 2:
                print("writing", flush=True)
                time.sleep(120)
            return real(self, data)
        zipfile._ZipWriteFile.write = write
    while True:
        ckpt.step += 1
        ckpt.model.weight.data.add_(1.0)
        manager.save(ckpt)
""")


def _run_child(folder: Path, mode: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen([sys.executable, "-c", CHILD, str(folder), mode], stdout=subprocess.PIPE, text=True,
                            env=env)


def test_writer_killed_mid_write_leaves_no_valid_checkpoint(tmp_path: Path) -> None:
    child = _run_child(tmp_path, "stall")
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "saved"
        assert child.stdout.readline().strip() == "writing"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    temps = list(tmp_path.glob(".checkpoint-*.tmp"))
    assert len(temps) == 1 and temps[0].stat().st_size > 0  # the half-written file is there...
    with pytest.raises(SerializationError):
        ax.load(temps[0])  # ...and is not a valid file
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert names == ["checkpoint-0000000001.ckpt"]
    manager = CheckpointManager(tmp_path)
    assert manager.latest == manager.path_for(1)
    assert not list(tmp_path.glob(".*.tmp"))  # its writer is dead: the manager removed it
    ckpt = Checkpoint(ax.nn.Linear(1024, 2048))
    assert manager.load_latest(ckpt) == manager.path_for(1) and ckpt.step == 1


def test_writer_killed_at_an_arbitrary_moment(tmp_path: Path) -> None:
    child = _run_child(tmp_path, "loop")
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "saved"
        time.sleep(0.6)  # several more checkpoints are written meanwhile; one is likely in progress
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    manager = CheckpointManager(tmp_path, keep_last=None)
    infos = manager.checkpoints()
    assert infos and infos[0].step == 1
    for info in infos:  # every file under a final name is complete and consistent
        ax.io.verify(info.path)
    ckpt = Checkpoint(ax.nn.Linear(1024, 2048))
    assert manager.load_latest(ckpt) == infos[-1].path and ckpt.step == infos[-1].step
    weight = ax.io.load(infos[0].path)["model"]["weight"].numpy()
    for _ in range(ckpt.step - 1):  # the child added 1.0 before each later save
        weight = weight + np.float32(1.0)
    assert np.array_equal(ckpt.model.weight.detach().numpy(), weight)  # type: ignore[union-attr]
