"""DataLoader: batches from a dataset, in this process or in worker processes.

Same arguments and semantics as ``torch.utils.data.DataLoader``. With
``num_workers > 0`` the batches are made by worker processes (``fork`` on
Linux, else the platform's default; ``multiprocessing_context`` picks another)
and come back through shared memory: a worker collates straight into one of
its shared slots and sends only (offset, shape, dtype) metadata; the main
process copies each array out of the slot into a fresh tensor. The copy is a
deliberate choice: the batch a user holds owns its memory, and a slot is free
for the next batch as soon as it is read (memory stays bounded by
``num_workers * prefetch_factor`` slots whatever the user keeps).

``pin_memory`` is accepted and does nothing: axonml has no page-locked host
allocator, batches stay in ordinary memory (``.to('cuda')`` still works).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import sys
from collections.abc import Callable, Iterable
from typing import Any

from ..core.random import Generator
from ..ops.random import randint
from .collate import default_collate, default_convert
from .dataset import IterableDataset
from .multiprocess import MultiProcessIter
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler
from .worker import IterableFetcher, MapFetcher

__all__ = ["DataLoader"]


class _InfiniteConstantSampler(Sampler[None]):
    """The sampler of an iterable dataset: ``None`` forever (the dataset decides when to stop)."""

    def __iter__(self) -> Any:
        while True:
            yield None


def _draw_base_seed(generator: Generator | None) -> int:
    """The seed that worker ``i`` adds ``i`` to: drawn from the loader's generator (or the default one)."""
    return int(randint(0, 2**63 - 1, (1,), generator=generator).item())


class _SingleProcessIter:
    """Batches made in this process, one per ``next``."""

    def __init__(self, loader: DataLoader) -> None:
        _draw_base_seed(loader.generator)  # consumed as with workers: the same generator gives the same order
        self._sampler_iter = None if loader._is_iterable else iter(loader._index_sampler)
        if loader._is_iterable:
            self._fetcher: Any = IterableFetcher(loader.dataset, loader._auto_collation, loader.collate_fn,
                                                 loader.drop_last, loader.batch_size)
        else:
            self._fetcher = MapFetcher(loader.dataset, loader._auto_collation, loader.collate_fn, loader.drop_last)
        try:
            self._length: int | None = len(loader)
        except TypeError:
            self._length = None

    def __iter__(self) -> _SingleProcessIter:
        return self

    def __next__(self) -> Any:
        index = None if self._sampler_iter is None else next(self._sampler_iter)
        return self._fetcher.fetch(index)

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("this DataLoader's dataset has no len()")
        return self._length


_FROZEN = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers")


class DataLoader:
    """Iterate over ``dataset`` in batches, as ``torch.utils.data.DataLoader``.

    Args:
        dataset: a map-style :class:`Dataset` (``__getitem__``/``__len__``) or an :class:`IterableDataset`.
        batch_size: samples per batch; ``None`` turns batching off (each sample goes through ``collate_fn``,
            by default :func:`default_convert`).
        shuffle: a new random order every epoch (a :class:`RandomSampler` over ``generator``).
        sampler / batch_sampler: the order of indices / of lists of indices (exclusive with shuffle and
            batch_size/drop_last as in PyTorch).
        num_workers: worker processes (0: load in this process).
        collate_fn: samples -> batch (default :func:`default_collate`).
        pin_memory: accepted for compatibility, no effect (see the module docstring).
        drop_last: drop the last incomplete batch.
        timeout: seconds to wait for a batch from the workers before a RuntimeError (0: forever).
        worker_init_fn: called as ``worker_init_fn(worker_id)`` in each worker after seeding.
        multiprocessing_context: a start-method name or a context (default: ``fork`` on Linux).
        generator: the ``axonml.Generator`` of the shuffle order and of the workers' seeds
            (worker ``i`` is seeded with ``base_seed + i``; ``base_seed`` is drawn from it each epoch).
        prefetch_factor: batches in flight per worker (default 2 with workers).
        persistent_workers: keep the workers (and their dataset copies) alive between epochs.
        in_order: deliver batches in sampler order (True) or as soon as they are ready.
    """

    def __init__(self, dataset: Any, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler: Sampler[Any] | Iterable[Any] | None = None,
                 batch_sampler: Sampler[Any] | Iterable[Any] | None = None, num_workers: int = 0,
                 collate_fn: Callable[[Any], Any] | None = None, pin_memory: bool = False, drop_last: bool = False,
                 timeout: float = 0, worker_init_fn: Callable[[int], None] | None = None,
                 multiprocessing_context: Any = None, generator: Generator | None = None, *,
                 prefetch_factor: int | None = None, persistent_workers: bool = False,
                 pin_memory_device: str = "", in_order: bool = True) -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable multiprocessing")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing "
                             "(num_workers > 0); otherwise leave it None")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        if prefetch_factor is not None and (isinstance(prefetch_factor, bool) or prefetch_factor < 1):
            raise ValueError(f"prefetch_factor option should be a positive integer, got {prefetch_factor!r}")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        is_iterable = isinstance(dataset, IterableDataset)
        if is_iterable:
            if shuffle not in (False, None):
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, "
                                 f"but got shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler option, "
                                 f"but got sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified batch_sampler option, "
                                 f"but got batch_sampler={batch_sampler}")
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                                 "and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")
        if sampler is None:
            if is_iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        if collate_fn is None:
            collate_fn = default_collate if batch_sampler is not None else default_convert
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.generator = generator
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers
        self.in_order = in_order
        self._is_iterable = is_iterable
        self._iterator: MultiProcessIter | None = None
        self._initialized = True

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FROZEN and self.__dict__.get("_initialized"):
            raise ValueError(f"{name} attribute should not be set after {type(self).__name__} is initialized")
        super().__setattr__(name, value)

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self) -> Any:
        """What yields one task's index: the batch sampler when batching, else the sampler."""
        return self.batch_sampler if self._auto_collation else self.sampler

    def _mp_context(self) -> Any:
        """The multiprocessing context of the workers."""
        ctx = self.multiprocessing_context
        if ctx is None:
            return mp.get_context("fork" if sys.platform.startswith("linux") else None)
        if isinstance(ctx, str):
            if ctx not in mp.get_all_start_methods():
                raise ValueError(f"multiprocessing_context: unknown start method {ctx!r}; "
                                 f"this platform has {mp.get_all_start_methods()}")
            return mp.get_context(ctx)
        if not hasattr(ctx, "Process"):
            raise TypeError(f"multiprocessing_context must be a start-method name or a context, got {ctx!r}")
        return ctx

    def __iter__(self) -> Any:
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        if self.persistent_workers:
            it = self._iterator
            if it is None or it.closed:
                it = self._iterator = MultiProcessIter(self, _draw_base_seed(self.generator))
            else:
                it._reset(self)
            return it
        return MultiProcessIter(self, _draw_base_seed(self.generator))

    def __len__(self) -> int:
        if self._is_iterable:
            n = len(self.dataset)
            if self.batch_size is not None:
                n = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
            return n
        return len(self._index_sampler)
