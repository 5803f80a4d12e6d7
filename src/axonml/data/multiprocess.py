"""The DataLoader iterator with worker processes: dispatch, in-order delivery, errors, persistence.

Each worker has ``prefetch_factor`` tasks in flight at most, and as many
shared-memory slots. Tasks go round-robin to the next worker that is active
and below that bound; the decision depends only on the order in which
results are consumed, never on timing, so the order of batches is
reproducible. A result is copied out of its slot the moment its message is
read (the slot is free again); it is yielded in task order (``in_order=True``)
or as it comes.
"""

from __future__ import annotations

import time
import weakref
from multiprocessing.connection import wait
from typing import Any

from .pool import _FAIL_GRACE_S, WorkerPool
from .shm import load

_POLL_S = 1.0  # the longest the main process sleeps without checking timeouts


class _Message(str):
    """A message that shows as itself: ``KeyError`` prints the repr of its argument."""

    def __repr__(self) -> str:
        return str(self)


def _rebuild_exception(exc_type: Any, msg: str) -> BaseException:
    """The worker's exception as its own type when that type takes a message, else a RuntimeError."""
    if isinstance(exc_type, type) and issubclass(exc_type, Exception):
        try:
            return exc_type(_Message(msg) if issubclass(exc_type, KeyError) else msg)
        except Exception:
            pass
    return RuntimeError(msg)


class MultiProcessIter:
    """Iterator over a DataLoader's batches made by ``num_workers`` worker processes."""

    def __init__(self, loader: Any, base_seed: int) -> None:
        self._num_workers = loader.num_workers
        self._prefetch = loader.prefetch_factor
        self._timeout = loader.timeout
        self._in_order = loader.in_order
        self._iterable = loader._is_iterable
        self._persistent = loader.persistent_workers
        self._pool = WorkerPool(loader, base_seed, self._prefetch)
        # the pool, not this iterator, is what the finalizer keeps: dropping the iterator shuts the workers down
        self._finalizer = weakref.finalize(self, self._pool.close)
        self._reset(loader, first=True)

    @property
    def closed(self) -> bool:
        return self._pool.closed

    def _reset(self, loader: Any, first: bool = False) -> None:
        """Start an epoch: a fresh sampler pass; persistent workers restart their iteration."""
        if not first:
            self._pool.reset(self._discard)  # needs the old epoch's task table
        try:
            self._length: int | None = len(loader)
        except TypeError:
            self._length = None
        n = self._num_workers
        self._sampler_iter = None if self._iterable else iter(loader._index_sampler)
        self._sampler_done = False
        self._send_idx = 0
        self._rcvd_idx = 0
        self._where: dict[int, tuple[int, int]] = {}  # task id -> (worker, slot)
        self._arrived: dict[int, tuple[str, Any]] = {}  # task id -> (kind, payload), copied out of shared memory
        self._outstanding = [0] * n
        self._free_slots = [list(range(self._prefetch - 1, -1, -1)) for _ in range(n)]
        self._active = [True] * n
        self._next_worker = 0
        while self._dispatch():
            pass

    def _discard(self, w: int, msg: Any) -> None:
        """A result of an abandoned epoch: only its segment's name matters (for the cleanup)."""
        if msg[0] == "batch" and msg[2] is not None:
            task = self._where.get(msg[1])
            if task is not None:
                self._pool.attach(task[0], task[1], msg[2])

    def _dispatch(self) -> bool:
        """Send one more task to the next worker with room; False when none has room or the sampler is done."""
        if self._sampler_done:
            return False
        n = self._num_workers
        for i in range(n):
            w = (self._next_worker + i) % n
            if self._active[w] and self._outstanding[w] < self._prefetch:
                break
        else:
            return False
        index = None
        if self._sampler_iter is not None:
            try:
                index = next(self._sampler_iter)
            except StopIteration:
                self._sampler_done = True
                return False
        slot = self._free_slots[w].pop()
        task = self._send_idx
        self._where[task] = (w, slot)
        self._outstanding[w] += 1
        self._send_idx += 1
        self._next_worker = (w + 1) % n
        self._pool.send(w, ("task", task, slot, index))
        return True

    def _handle(self, w: int, msg: Any) -> None:
        """Take one message of worker ``w``: copy a batch out of its slot and free the slot."""
        kind, task = msg[0], msg[1]
        wk, slot = self._where[task]
        if kind == "batch":
            name, meta = msg[2], msg[3]
            payload = load(meta, self._pool.attach(wk, slot, name).base) if name is not None else meta
            self._arrived[task] = ("batch", payload)
        elif kind == "error":
            self._arrived[task] = ("error", (msg[2], msg[3]))
        else:
            self._arrived[task] = ("exhausted", None)
        self._free_slots[wk].append(slot)

    def _drain(self, w: int) -> bool:
        """Read every message worker ``w`` has sent; True if there was one."""
        conn = self._pool.conns[w]
        got = False
        while conn.poll(0):
            self._handle(w, self._pool.recv(w))
            got = True
        return got

    def _receive(self) -> None:
        """Wait for at least one message; a dead worker or the timeout raises (after shutting down)."""
        pool = self._pool
        conns = {c: w for w, c in enumerate(pool.conns)}
        sentinels = {p.sentinel: w for w, p in enumerate(pool.procs)}
        deadline = time.monotonic() + self._timeout if self._timeout > 0 else None
        while True:
            wait_s = _POLL_S
            if deadline is not None:
                wait_s = min(wait_s, deadline - time.monotonic())
                if wait_s <= 0:
                    self._pool.close(grace=_FAIL_GRACE_S)
                    raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds")
            ready = wait([*conns, *sentinels], wait_s)
            got = False
            for obj in ready:
                if obj in conns:
                    got = self._drain(conns[obj]) or got
            for obj in ready:
                if obj in sentinels:
                    w = sentinels[obj]
                    got = self._drain(w) or got
                    pool.fail(w)  # a worker may only end when we tell it to
            if got:
                return

    def _next_ready(self) -> int | None:
        """The task id to deliver next, if it has arrived."""
        if self._in_order:
            return self._rcvd_idx if self._rcvd_idx in self._arrived else None
        return next(iter(self._arrived), None)

    def __iter__(self) -> MultiProcessIter:
        return self

    def __next__(self) -> Any:
        if self._pool.closed:
            raise StopIteration
        while True:
            task = self._next_ready()
            if task is not None:
                kind, payload = self._arrived.pop(task)
                w = self._where.pop(task)[0]
                self._outstanding[w] -= 1
                if self._in_order:
                    self._rcvd_idx += 1
                if kind == "exhausted":
                    self._active[w] = False
                self._dispatch()
                if kind == "batch":
                    return payload
                if kind == "error":
                    raise _rebuild_exception(*payload)
                continue
            if not self._where:  # nothing in flight, nothing more to send: the epoch is over
                if not self._persistent:
                    self.shutdown()
                raise StopIteration
            self._receive()

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("this DataLoader's dataset has no len()")
        return self._length

    def shutdown(self) -> None:
        """Stop the workers and free the shared memory now (also done when the iterator is collected)."""
        self._finalizer()
