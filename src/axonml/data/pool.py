"""The worker processes of a DataLoader: start, talk to, watch, and shut down (leaving nothing behind)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from typing import Any

from .shm import Segment, segment_name, unlink
from .worker import worker_loop

_JOIN_S = 5.0  # how long a clean exit may take before workers are terminated
_FAIL_GRACE_S = 0.2  # after a failure or a timeout the other workers may be stuck: terminate them soon


def _describe_exit(worker: int, pid: int | None, code: int | None) -> str:
    """A readable account of how a worker process ended."""
    who = f"DataLoader worker {worker} (pid {pid})"
    if code is None:
        return f"{who} closed its connection unexpectedly"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = {
            "SIGKILL": " (often the out-of-memory killer: try fewer workers or a smaller batch/prefetch_factor)",
            "SIGBUS": " (often a full /dev/shm: give the container more shared memory)",
            "SIGSEGV": " (a crash in native code called by the dataset or collate_fn)",
        }.get(name, "")
        return f"{who} was killed by signal {name} ({-code}){hint}"
    return f"{who} exited unexpectedly with exit code {code}"


class WorkerDiedError(RuntimeError):
    """A DataLoader worker process ended while the main process still needed it."""


class WorkerPool:
    """``num_workers`` processes, each with a duplex pipe and ``slots`` shared-memory slots.

    Knows the name of every segment a worker told it about, so that :meth:`close`
    can unlink them even when the worker was killed before it could.
    """

    def __init__(self, loader: Any, base_seed: int, slots: int) -> None:
        ctx = loader._mp_context()
        self.num_workers = n = loader.num_workers
        self.slots = slots
        self.prefix = f"/ax{os.getpid():x}-{secrets.token_hex(3)}"
        self.conns: list[Any] = []
        self.procs: list[Any] = []
        self.segments: dict[tuple[int, int], Segment] = {}
        self.gens: dict[tuple[int, int], int] = {}
        self.closed = False
        self._epoch = 0
        fork = ctx.get_start_method() == "fork"
        iterable = loader._is_iterable
        try:
            for w in range(n):
                main_end, worker_end = ctx.Pipe(duplex=True)
                close = [*self.conns, main_end] if fork else []
                p = ctx.Process(
                    target=worker_loop,
                    args=(worker_end, close, loader.dataset, iterable, loader._auto_collation, loader.collate_fn,
                          loader.drop_last, loader.batch_size, w, n, base_seed + w, loader.worker_init_fn,
                          self.prefix, os.getpid()),
                    daemon=True,
                )
                p.start()
                worker_end.close()  # only the worker holds its end: its death reads as EOF here
                self.conns.append(main_end)
                self.procs.append(p)
        except BaseException:
            self.close()
            raise

    # -- talking ------------------------------------------------------------------------------

    def send(self, w: int, msg: Any) -> None:
        """Send ``msg`` to worker ``w``; a dead worker raises :class:`WorkerDiedError`."""
        try:
            self.conns[w].send(msg)
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            self.fail(w)

    def recv(self, w: int) -> Any:
        """The next message of worker ``w`` (there must be one, or the worker is dead)."""
        try:
            return self.conns[w].recv()
        except (EOFError, ConnectionResetError, OSError):
            self.fail(w)

    def fail(self, w: int) -> None:
        """Shut everything down and raise :class:`WorkerDiedError` describing worker ``w``'s end."""
        p = self.procs[w]
        p.join(timeout=1.0)  # an EOF may come a moment before the exit status
        msg = _describe_exit(w, p.pid, p.exitcode)
        self.close(grace=_FAIL_GRACE_S)
        raise WorkerDiedError(msg)

    def attach(self, w: int, slot: int, name: str) -> Segment:
        """The mapping of segment ``name`` (worker ``w``'s ``slot``), replacing a slot's older generation."""
        seg = self.segments.get((w, slot))
        if seg is not None and seg.name == name:
            return seg
        if seg is not None:
            seg.close()  # the worker unlinked it when it grew the slot
        self.gens[(w, slot)] = int(name.rsplit("_", 1)[1])
        seg = self.segments[(w, slot)] = Segment(name)
        return seg

    def reset(self, handle: Any) -> None:
        """Restart every worker's iteration; earlier results still in flight go to ``handle(w, msg)``."""
        self._epoch += 1
        for w in range(self.num_workers):
            self.send(w, ("reset", self._epoch))
        for w in range(self.num_workers):
            while True:
                msg = self.recv(w)
                if msg[0] == "ack" and msg[1] == self._epoch:
                    break
                handle(w, msg)

    # -- ending -------------------------------------------------------------------------------

    def close(self, grace: float = _JOIN_S) -> None:
        """Stop the workers (politely for ``grace`` seconds, then by force), unmap and unlink every segment.

        Idempotent. A short ``grace`` after a failure or a timeout: a stuck worker is not waited for.
        """
        if self.closed:
            return
        self.closed = True
        for c in self.conns:
            with contextlib.suppress(OSError, ValueError):
                c.send(None)
        deadline = time.monotonic() + grace
        for p in self.procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=1.0)
            if p.is_alive():
                p.kill()
                p.join()
        for c in self.conns:
            c.close()
        for seg in self.segments.values():
            seg.close()
        self.segments.clear()
        # a killed worker could not unlink its segments: the one we know and the next it may have made
        for w in range(self.num_workers):
            for slot in range(self.slots):
                gen = self.gens.get((w, slot), -1)
                for g in (gen, gen + 1):
                    if g >= 0:
                        unlink(segment_name(self.prefix, w, slot, g))
        for p in self.procs:
            with contextlib.suppress(ValueError):
                p.close()
