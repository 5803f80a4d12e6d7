"""Samplers: the order in which a DataLoader visits a map-style dataset.

A sampler is an iterable of indices (or, for :class:`BatchSampler`, of lists of
indices). Random samplers draw from an ``axonml.Generator``: pass a seeded one
for a reproducible order; without one they take a fresh seed from the default
generator at every epoch (so ``axonml.manual_seed`` makes a whole run reproducible).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Any, Generic, TypeVar

import numpy as np

from ..core.creation import from_numpy
from ..core.random import Generator
from ..core.tensor import Tensor
from ..errors import ShapeError
from ..ops.random import multinomial, randint, randperm

T_co = TypeVar("T_co", covariant=True)

__all__ = [
    "Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler", "BatchSampler",
]

_CHUNK = 4096  # indices drawn per call with replacement: lazy for huge num_samples, cheap per index


class Sampler(Generic[T_co]):
    """Base class: subclasses define ``__iter__`` (and ``__len__`` when the count is known).

    ``data_source`` is accepted for compatibility with older PyTorch code and ignored.
    """

    def __init__(self, data_source: Sized | None = None) -> None:
        del data_source

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")


def _positive_int(value: Any, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{owner}: {name} should be a positive integer value, but got {name}={value!r}")
    return int(value)


class SequentialSampler(Sampler[int]):
    """``0, 1, ..., len(data_source) - 1``."""

    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


def _epoch_generator(generator: Generator | None) -> Generator:
    """``generator``, or a new one seeded from the default generator (a fresh order every epoch)."""
    if generator is not None:
        return generator
    seed = int(randint(0, 2**63 - 1, (1,)).item())
    return Generator().manual_seed(seed)


class RandomSampler(Sampler[int]):
    """A random order of ``range(len(data_source))``.

    Without replacement: a permutation (``num_samples > len`` repeats whole
    permutations, then a prefix of one more). With ``replacement=True``:
    ``num_samples`` independent uniform draws.
    """

    def __init__(self, data_source: Sized, replacement: bool = False, num_samples: int | None = None,
                 generator: Generator | None = None) -> None:
        if not isinstance(replacement, bool):
            raise TypeError(f"RandomSampler: replacement should be a boolean value, got replacement={replacement!r}")
        if num_samples is not None:
            _positive_int(num_samples, "num_samples", "RandomSampler")
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator

    @property
    def num_samples(self) -> int:
        """How many indices one pass yields (``len(data_source)`` unless given)."""
        return len(self.data_source) if self._num_samples is None else int(self._num_samples)

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        total = self.num_samples
        if n == 0:
            if total:
                raise ValueError("RandomSampler: cannot draw samples from an empty data source")
            return
        gen = _epoch_generator(self.generator)
        if self.replacement:
            for start in range(0, total, _CHUNK):
                yield from randint(0, n, (min(_CHUNK, total - start),), generator=gen).tolist()
            return
        for _ in range(total // n):
            yield from randperm(n, generator=gen).tolist()
        if total % n:
            yield from randperm(n, generator=gen).tolist()[: total % n]

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler[int]):
    """The given ``indices`` in a random order, without replacement."""

    def __init__(self, indices: Sequence[int], generator: Generator | None = None) -> None:
        self.indices = indices
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        for i in randperm(len(self.indices), generator=self.generator).tolist():
            yield self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler[int]):
    """``num_samples`` indices of ``range(len(weights))`` drawn with probabilities proportional to ``weights``.

    ``replacement=False`` draws distinct indices (needs at least ``num_samples``
    non-zero weights).
    """

    def __init__(self, weights: Sequence[float] | Tensor, num_samples: int, replacement: bool = True,
                 generator: Generator | None = None) -> None:
        num_samples = _positive_int(num_samples, "num_samples", "WeightedRandomSampler")
        if not isinstance(replacement, bool):
            raise ValueError(f"WeightedRandomSampler: replacement should be a boolean value, got {replacement!r}")
        w = np.asarray(weights._host() if isinstance(weights, Tensor) else weights, dtype=np.float64)
        if w.ndim != 1:
            raise ShapeError(f"WeightedRandomSampler: weights should be a 1-D sequence, got shape {w.shape}")
        self.weights = from_numpy(np.ascontiguousarray(w))  # (n,) float64, as PyTorch keeps them
        self.num_samples = num_samples
        self.replacement = replacement
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        yield from multinomial(self.weights, self.num_samples, self.replacement, generator=self.generator).tolist()

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler[list[int]]):
    """Group the indices of ``sampler`` into lists of ``batch_size`` (the last one shorter unless ``drop_last``)."""

    def __init__(self, sampler: Sampler[int] | Iterable[int], batch_size: int, drop_last: bool) -> None:
        self.batch_size = _positive_int(batch_size, "batch_size", "BatchSampler")
        if not isinstance(drop_last, bool):
            raise ValueError(f"BatchSampler: drop_last should be a boolean value, but got drop_last={drop_last!r}")
        self.sampler = sampler
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[int]]:
        it = iter(self.sampler)
        size = self.batch_size
        if self.drop_last:
            # zip over one iterator repeated: a full tuple or the end (C speed)
            for full in zip(*([it] * size)):
                yield list(full)
            return
        batch = list(itertools.islice(it, size))
        while batch:
            yield batch
            batch = list(itertools.islice(it, size))

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size
