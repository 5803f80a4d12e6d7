"""DataLoader with worker processes: order, seeds, errors, killed workers, persistence, cleanup."""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import axonml as ax
from axonml.data import DataLoader, Dataset, IterableDataset, TensorDataset, WorkerInfo, get_worker_info

sys.path.insert(0, str(Path(__file__).parent))
from datahelp import needs_torch, structure, tdata, torch

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork workers and /dev/shm: Linux")

SHM = Path("/dev/shm")
ROOT = Path(__file__).resolve().parents[2]


def our_segments(pid: int | None = None) -> list[str]:
    """Shared-memory segments made by DataLoaders of process ``pid`` (default: this one)."""
    prefix = f"ax{(pid or os.getpid()):x}-"
    return sorted(p.name for p in SHM.iterdir() if p.name.startswith(prefix)) if SHM.is_dir() else []


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """Every test ends with no worker process and no shared-memory segment left."""
    yield
    if mp.active_children() or our_segments():
        gc.collect()  # only a reference cycle (e.g. through a traceback) may still hold an iterator
    assert mp.active_children() == []
    assert our_segments() == []


class Items(Dataset):
    """Sample i: (float tensor, int, str); optional failure modes at chosen indices."""

    def __init__(self, n: int = 24, fail_at: int | None = None, kill_at: int | None = None,
                 exit_at: int | None = None, sleep: float = 0.0, exc: type = ValueError) -> None:
        self.n, self.fail_at, self.kill_at, self.exit_at = n, fail_at, kill_at, exit_at
        self.sleep, self.exc = sleep, exc

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if get_worker_info() is not None:
            if i == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            if i == self.exit_at:
                os._exit(3)
        if i == self.fail_at:
            raise self.exc(f"bad sample {i}")
        if self.sleep:
            time.sleep(self.sleep)
        return ax.full((2, 3), float(i)), i, f"s{i}"


class Probe(Dataset):
    """What a worker sees: its info, its pid, and draws from each seeded RNG."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        info = get_worker_info()
        return {"id": info.id, "n": info.num_workers, "seed": info.seed, "pid": os.getpid(),
                "ax": float(ax.rand(()).item()), "np": float(np.random.rand()), "py": random.random(),
                "init": INIT_MARK[0]}


INIT_MARK = [0]


def mark_init(worker_id: int) -> None:
    INIT_MARK[0] = 100 + worker_id


class Shards(IterableDataset):
    """range(n), split between workers by get_worker_info (or whole in each when shard=False)."""

    def __init__(self, n: int, shard: bool = True, uneven: bool = False, info=get_worker_info) -> None:
        self.n, self.shard, self.uneven, self.info = n, shard, uneven, info

    def __iter__(self):
        info = self.info()
        if info is None or not self.shard:
            return iter(range(self.n))
        if self.uneven:  # worker 0 takes all but the last item
            return iter(range(self.n - 1) if info.id == 0 else range(self.n - 1, self.n))
        return iter(range(info.id, self.n, info.num_workers))


def batches(loader) -> list:
    return [structure(b) for b in loader]


def test_order_equals_single_process():
    x, y = ax.randn(23, 4), ax.arange(23)
    for kw in ({"batch_size": 3}, {"batch_size": 5, "drop_last": True}, {"batch_size": 2, "prefetch_factor": 1}):
        def make(w, kw=kw):
            extra = {} if w else {k: v for k, v in kw.items() if k != "prefetch_factor"}
            return DataLoader(TensorDataset(x, y), shuffle=True, generator=ax.Generator().manual_seed(9),
                              num_workers=w, **(kw if w else extra))
        assert batches(make(2)) == batches(make(0))


def test_mixed_samples_through_shared_memory():
    ds = Items(10)
    assert batches(DataLoader(ds, batch_size=4, num_workers=2)) == batches(DataLoader(ds, batch_size=4))
    assert batches(DataLoader(ds, batch_size=None, num_workers=2)) == batches(DataLoader(ds, batch_size=None))


class Words(Dataset):
    def __len__(self) -> int:
        return 9000

    def __getitem__(self, i: int):
        return f"w{i}", i


def test_huge_batches_of_strings():
    loader = DataLoader(Words(), batch_size=3000, num_workers=2)
    out = list(loader)
    assert [b[0][:2] for b in out] == [("w0", "w1"), ("w3000", "w3001"), ("w6000", "w6001")]
    assert [b[1].shape for b in out] == [(3000,)] * 3


def collate_numpy(samples):
    return {"arr": np.stack([s[0].numpy() for s in samples]), "ids": [s[1] for s in samples], "n": len(samples)}


def test_custom_collate_keeps_numpy_arrays():
    out = list(DataLoader(Items(5), batch_size=2, num_workers=2, collate_fn=collate_numpy))
    assert isinstance(out[0]["arr"], np.ndarray) and out[0]["arr"].shape == (2, 2, 3)
    assert [b["ids"] for b in out] == [[0, 1], [2, 3], [4]] and out[2]["n"] == 1


class Growing(Dataset):
    """Sample i has 1000 * (i + 1) floats: every batch needs a bigger slot than the last."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int):
        return np.full(1000 * (i + 1), i, np.float64)


def test_slots_grow_for_bigger_batches():
    out = list(DataLoader(Growing(), batch_size=1, num_workers=2, prefetch_factor=1))
    assert [b.shape for b in out] == [(1, 1000 * (i + 1)) for i in range(6)]
    assert all(float(b.numpy().mean()) == i for i, b in enumerate(out))


def test_batches_travel_in_shared_memory():
    it = iter(DataLoader(Items(12), batch_size=4, num_workers=2))
    first = next(it)
    names = [seg.name.lstrip("/") for seg in it._pool.segments.values()]
    assert names and set(names) <= set(our_segments())
    first[0][0, 0, 0] = -1.0  # the batch owns its memory: the slot is free for the next one
    rest = list(it)
    assert [b[1].tolist() for b in rest] == [[4, 5, 6, 7], [8, 9, 10, 11]]


def probe(seed: int, workers: int = 2, **kw) -> list[dict]:
    loader = DataLoader(Probe(), batch_size=None, num_workers=workers, generator=ax.Generator().manual_seed(seed),
                        **kw)
    return [{k: (v.item() if isinstance(v, ax.Tensor) else v) for k, v in s.items()} for s in loader]


def test_worker_info_and_seeds():
    a, b, c = probe(1), probe(1), probe(2)
    assert [s["id"] for s in a] == [0, 1] * 4 and {s["n"] for s in a} == {2}
    seeds = {s["id"]: s["seed"] for s in a}
    assert seeds[1] == seeds[0] + 1  # base_seed + worker id
    draws = [(s["ax"], s["np"], s["py"]) for s in a]
    assert draws == [(s["ax"], s["np"], s["py"]) for s in b]  # same generator seed: same draws
    assert draws != [(s["ax"], s["np"], s["py"]) for s in c]
    assert a[0]["ax"] != a[1]["ax"] and a[0]["np"] != a[1]["np"] and a[0]["py"] != a[1]["py"]
    assert get_worker_info() is None
    with pytest.raises(AttributeError):
        WorkerInfo(0, 1, 2, None).id = 3  # frozen


def test_worker_init_fn_runs_in_each_worker():
    out = probe(0, worker_init_fn=mark_init)
    assert {(s["id"], s["init"]) for s in out} == {(0, 100), (1, 101)}
    assert INIT_MARK[0] == 0  # not in the main process


def test_worker_exception_is_reraised_with_traceback():
    it = iter(DataLoader(Items(12, fail_at=5), batch_size=2, num_workers=2))
    assert next(it)[1].tolist() == [0, 1]
    assert next(it)[1].tolist() == [2, 3]
    with pytest.raises(ValueError) as err:
        next(it)
    text = str(err.value)
    assert "Caught ValueError in DataLoader worker process 0" in text
    assert "bad sample 5" in text and "__getitem__" in text and "Traceback" in text
    assert [b[1].tolist() for b in it] == [[6, 7], [8, 9], [10, 11]]  # the loader goes on


class TwoArgError(Exception):
    def __init__(self, a, b):
        super().__init__(a, b)


def test_exception_without_message_constructor_becomes_runtime_error():
    with pytest.raises(RuntimeError, match="Caught TwoArgError"):
        list(DataLoader(Items(4, fail_at=1, exc=lambda m: TwoArgError(m, 2)), batch_size=2, num_workers=1))


def failing_init(worker_id: int) -> None:
    raise KeyError(f"init of {worker_id}")


def test_worker_init_fn_error_is_reraised():
    with pytest.raises(KeyError, match="init of 0") as err:
        list(DataLoader(Items(4), batch_size=2, num_workers=1, worker_init_fn=failing_init))
    assert "\nOriginal Traceback" in str(err.value)  # readable, not the repr of a string


def test_killed_worker_gives_clear_error_quickly():
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"DataLoader worker 1 \(pid \d+\) was killed by signal SIGKILL"):
        list(DataLoader(Items(24, kill_at=6), batch_size=2, num_workers=2))
    assert time.monotonic() - start < 10


def test_worker_exit_gives_clear_error():
    with pytest.raises(RuntimeError, match="exited unexpectedly with exit code 3"):
        list(DataLoader(Items(8, exit_at=2), batch_size=2, num_workers=2))


def test_timeout():
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"timed out after 0\.3 seconds"):
        list(DataLoader(Items(4, sleep=5.0), batch_size=2, num_workers=1, timeout=0.3))
    assert time.monotonic() - start < 4


def test_persistent_workers_are_reused():
    loader = DataLoader(Probe(), batch_size=None, num_workers=2, persistent_workers=True)
    pids1 = {s["pid"] for s in loader}
    pids2 = {s["pid"] for s in loader}
    assert pids1 == pids2 and len(pids1) == 2 and len(mp.active_children()) == 2
    it = iter(loader)
    next(it)  # abandon an epoch half-way: the next one starts cleanly
    assert [s["id"] for s in loader] == [0, 1] * 4
    plain = DataLoader(Probe(), batch_size=None, num_workers=2)
    assert {s["pid"] for s in plain}.isdisjoint({s["pid"] for s in plain})  # new workers each epoch
    assert len(mp.active_children()) == 2  # only the persistent ones
    del loader, it
    gc.collect()
    assert mp.active_children() == []


def test_persistent_iterable_dataset_restarts_each_epoch():
    loader = DataLoader(Shards(7), batch_size=2, num_workers=2, persistent_workers=True)
    first = [b.tolist() for b in loader]
    assert [b.tolist() for b in loader] == first
    assert sorted(v for b in first for v in b) == list(range(7))


def test_iterable_dataset_sharding():
    out = [b.tolist() for b in DataLoader(Shards(10), batch_size=2, num_workers=2)]
    assert out == [[0, 2], [1, 3], [4, 6], [5, 7], [8], [9]]  # worker 0, worker 1, ... in turn
    every = [v for b in DataLoader(Shards(5, shard=False), batch_size=2, num_workers=2) for v in b.tolist()]
    assert sorted(every) == sorted(list(range(5)) * 2)  # without sharding each worker yields everything
    uneven = [b.tolist() for b in DataLoader(Shards(9, uneven=True), batch_size=3, num_workers=2)]
    assert sorted(v for b in uneven for v in b) == list(range(9))
    dropped = [b.tolist() for b in DataLoader(Shards(10), batch_size=2, num_workers=2, drop_last=True)]
    assert dropped == [[0, 2], [1, 3], [4, 6], [5, 7]]


@pytest.mark.parametrize("n, bs, uneven", [(10, 2, False), (9, 3, True), (7, None, False), (13, 4, True)])
@needs_torch
def test_iterable_order_like_torch(n, bs, uneven):
    ours = [np.asarray(b.tolist() if isinstance(b, ax.Tensor) else b).tolist()
            for b in DataLoader(Shards(n, uneven=uneven), batch_size=bs, num_workers=2)]
    class TorchShards(Shards, tdata.IterableDataset):
        pass

    theirs = [np.asarray(b.tolist() if isinstance(b, torch.Tensor) else b).tolist()
              for b in tdata.DataLoader(TorchShards(n, uneven=uneven, info=tdata.get_worker_info), batch_size=bs,
                                        num_workers=2)]
    assert ours == theirs


def test_out_of_order_delivery_has_every_batch():
    got = [b[1].tolist() for b in DataLoader(Items(10), batch_size=2, num_workers=2, in_order=False)]
    assert sorted(got) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def test_abandoned_iterator_shuts_down():
    it = iter(DataLoader(Items(40), batch_size=2, num_workers=2))
    next(it)
    assert len(mp.active_children()) == 2 and our_segments()
    del it  # the fixture checks that the workers and segments are gone


def test_spawn_context():
    x = ax.arange(12.0).reshape(6, 2)
    loader = DataLoader(TensorDataset(x), batch_size=4, num_workers=1, multiprocessing_context="spawn")
    assert [b[0].tolist() for b in loader] == [x[:4].tolist(), x[4:].tolist()]


def test_workers_exit_when_the_main_process_dies():
    script = textwrap.dedent("""
        import os, signal, sys
        sys.path.insert(0, sys.argv[1])
        import axonml as ax
        from axonml.data import DataLoader, TensorDataset
        it = iter(DataLoader(TensorDataset(ax.zeros(64, 3)), batch_size=2, num_workers=2))
        next(it)
        print(os.getpid(), " ".join(str(p.pid) for p in it._pool.procs), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(ROOT / "src")], capture_output=True, text=True,
                          timeout=60)
    main, *pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2, proc.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.1)
    alive = [p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in Path(f"/proc/{p}/stat").read_text()]
    assert not alive
    assert our_segments(main) == []  # the workers unlinked their slots on the way out
