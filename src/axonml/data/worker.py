"""What runs inside a DataLoader worker process: seeding, fetching, collating into shared memory.

Protocol over the worker's duplex pipe (main -> worker): ``("task", task_id,
slot, index)`` (``index`` is a list of indices, one index, or None for an
iterable dataset), ``("reset", epoch)`` (persistent workers: restart the
dataset's iterator), ``None`` (exit). Worker -> main: ``("batch", task_id,
segment_name, meta)``, ``("error", task_id, exc_type, text)``, ``("exhausted",
task_id)`` (an iterable dataset's share is used up), ``("ack", epoch)``.
"""

from __future__ import annotations

import os
import pickle
import random
import signal
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.random import manual_seed
from .collate import _out_allocator, default_collate
from .shm import Arena

__all__ = ["WorkerInfo", "get_worker_info"]

_PARENT_CHECK_S = 1.0  # how often an idle worker checks that the main process still lives


@dataclass(frozen=True)
class WorkerInfo:
    """In a worker process: this worker's ``id`` of ``num_workers``, its ``seed`` and its copy of ``dataset``."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """The :class:`WorkerInfo` of the current DataLoader worker process, or None in the main process.

    An :class:`IterableDataset` uses it in ``__iter__`` to give each worker its own share.
    """
    return _worker_info


def seed_worker_rngs(seed: int) -> None:
    """Seed axonml's default generators, Python's ``random`` and NumPy's global RNG from ``seed`` (as PyTorch)."""
    manual_seed(seed)
    random.seed(seed)
    # NumPy's legacy seed takes 32-bit words: spread all 64 bits of the seed through a SeedSequence
    np.random.seed(np.random.SeedSequence(seed).generate_state(4))


class MapFetcher:
    """Fetch samples of a map-style dataset by index (``__getitems__`` for a whole batch when defined)."""

    def __init__(self, dataset: Any, auto_collation: bool, collate_fn: Any, drop_last: bool) -> None:
        self.dataset, self.auto_collation, self.collate_fn = dataset, auto_collation, collate_fn
        getitems = getattr(dataset, "__getitems__", None)
        self._getitems = getitems if callable(getitems) else None
        # TensorDataset (and Subsets of one) can make the default-collated batch in one gather
        fast = getattr(dataset, "_collated_batch", None)
        self._fast = fast if auto_collation and collate_fn is default_collate and callable(fast) else None

    def fetch(self, index: Any) -> Any:
        if not self.auto_collation:
            return self.collate_fn(self.dataset[index])
        if self._fast is not None:
            batch = self._fast(index)
            if batch is not None:
                return batch
        if self._getitems is not None:
            data = self._getitems(index)
        else:
            ds = self.dataset
            data = [ds[i] for i in index]
        return self.collate_fn(data)


class IterableFetcher:
    """Take the next sample (or ``batch_size`` samples) of an iterable dataset's iterator."""

    def __init__(self, dataset: Any, auto_collation: bool, collate_fn: Any, drop_last: bool,
                 batch_size: int | None = None) -> None:
        self.iterator = iter(dataset)
        self.auto_collation, self.collate_fn, self.drop_last = auto_collation, collate_fn, drop_last
        self.batch_size = batch_size
        self.ended = False

    def fetch(self, index: Any) -> Any:
        if self.ended:
            raise StopIteration
        if not self.auto_collation:
            return self.collate_fn(next(self.iterator))
        size = self.batch_size if self.batch_size is not None else len(index)
        data = []
        for _ in range(size):
            try:
                data.append(next(self.iterator))
            except StopIteration:
                self.ended = True
                break
        if not data or (self.drop_last and len(data) < size):
            raise StopIteration
        return self.collate_fn(data)


def _error_message(exc: BaseException, worker_id: int) -> tuple[Any, str]:
    """The exception's type (pickled when possible, else None) and the text the main process shows."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    msg = f"Caught {type(exc).__name__} in DataLoader worker process {worker_id}.\nOriginal {text}"
    try:
        exc_type = pickle.loads(pickle.dumps(type(exc)))
    except Exception:
        exc_type = None
    return exc_type, msg


def worker_loop(conn: Any, close_conns: list[Any], dataset: Any, iterable: bool, auto_collation: bool,
                collate_fn: Any, drop_last: bool, batch_size: int | None, worker_id: int, num_workers: int,
                seed: int, worker_init_fn: Any, shm_prefix: str, parent_pid: int) -> None:
    """The body of one worker process (the target of ``multiprocessing.Process``)."""
    global _worker_info
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle; it shuts us down
    for c in close_conns:  # forked copies of the other workers' main-side pipe ends: EOF must reach them
        c.close()
    seed_worker_rngs(seed)
    _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed, dataset=dataset)
    init_error: tuple[Any, str] | None = None
    if worker_init_fn is not None:
        try:
            worker_init_fn(worker_id)
        except Exception as e:
            init_error = _error_message(e, worker_id)
    arenas: dict[int, Arena] = {}
    fetcher: Any = None
    exhausted = False
    try:
        while True:
            if not conn.poll(_PARENT_CHECK_S):
                if os.getppid() != parent_pid:
                    return  # the main process died without telling us
                continue
            msg = conn.recv()
            if msg is None:
                return
            if msg[0] == "reset":
                fetcher, exhausted = None, False
                conn.send(("ack", msg[1]))
                continue
            _, task_id, slot, index = msg
            if init_error is not None:
                conn.send(("error", task_id, *init_error))
                continue
            if exhausted:
                conn.send(("exhausted", task_id))
                continue
            arena = arenas.get(slot)
            if arena is None:
                arena = arenas[slot] = Arena(shm_prefix, worker_id, slot)
            arena.reset()
            try:
                if fetcher is None:
                    if iterable:
                        fetcher = IterableFetcher(dataset, auto_collation, collate_fn, drop_last, batch_size)
                    else:
                        fetcher = MapFetcher(dataset, auto_collation, collate_fn, drop_last)
                _out_allocator[0] = arena.alloc
                try:
                    batch = fetcher.fetch(index)
                finally:
                    _out_allocator[0] = None
                meta, name = arena.pack(batch)
                del batch
                conn.send(("batch", task_id, name, meta))
            except StopIteration:
                exhausted = True
                conn.send(("exhausted", task_id))
            except Exception as e:
                conn.send(("error", task_id, *_error_message(e, worker_id)))
    except (EOFError, OSError, KeyboardInterrupt):
        return  # the main process is gone or closed our pipe
    finally:
        for a in arenas.values():
            a.destroy()
        conn.close()
