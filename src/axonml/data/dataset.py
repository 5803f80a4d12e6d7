"""Datasets: the map-style and iterable protocols, and the standard ways to combine them.

A map-style dataset has ``__getitem__(i)`` and ``__len__``; an iterable dataset
has ``__iter__``. As in PyTorch, a map-style dataset may also define
``__getitems__(indices)`` to fetch a whole batch at once; the DataLoader uses it.
"""

from __future__ import annotations

import bisect
import itertools
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from ..core.random import Generator, default_generator
from ..core.tensor import Tensor
from ..errors import ShapeError
from ..ops.random import randperm
from .collate import gather_rows

T_co = TypeVar("T_co", covariant=True)

__all__ = [
    "Dataset", "IterableDataset", "TensorDataset", "ConcatDataset", "ChainDataset", "Subset", "random_split",
]


class Dataset(Generic[T_co]):
    """A map-style dataset: subclasses define ``__getitem__(index)`` (and usually ``__len__``).

    ``a + b`` concatenates two datasets into a :class:`ConcatDataset`.
    """

    def __getitem__(self, index: Any) -> T_co:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __add__(self, other: Dataset[T_co]) -> ConcatDataset[T_co]:
        return ConcatDataset([self, other])


class IterableDataset(Dataset[T_co]):
    """A dataset that is a stream: subclasses define ``__iter__``.

    With ``num_workers > 0`` every worker process iterates its own copy; use
    :func:`axonml.data.get_worker_info` inside ``__iter__`` to give each worker
    its own share, or every sample comes once per worker. ``a + b`` chains two
    streams into a :class:`ChainDataset`.
    """

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def __add__(self, other: Dataset[T_co]) -> ChainDataset:  # type: ignore[override]
        return ChainDataset([self, other])


def _fast_index(t: Tensor, index: Any) -> Tensor:
    """``t[index]`` for an integer index: a view, wrapped without the autograd machinery."""
    if type(index) is int and not t._requires_grad:
        # [index, ...] keeps a 0-d array (not a NumPy scalar) when t is 1-D
        return Tensor._make(t._data[index, ...], t._device)
    return t[index]


class TensorDataset(Dataset[tuple[Tensor, ...]]):
    """Samples are slices along the first dimension of tensors of one length: ``ds[i] == (a[i], b[i], ...)``."""

    def __init__(self, *tensors: Tensor) -> None:
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        for t in tensors:
            if not isinstance(t, Tensor):
                raise TypeError(f"TensorDataset takes axonml Tensors, got {type(t).__name__}")
            if t.ndim == 0:
                raise ShapeError("TensorDataset: a 0-d tensor has no first dimension to index")
        sizes = [t.shape[0] for t in tensors]
        if any(s != sizes[0] for s in sizes):
            raise ShapeError(f"TensorDataset: size mismatch between tensors: first dimensions are {sizes}")
        self.tensors: tuple[Tensor, ...] = tuple(tensors)

    def __getitem__(self, index: Any) -> tuple[Tensor, ...]:
        return tuple([_fast_index(t, index) for t in self.tensors])

    def _collated_batch(self, indices: Any) -> list[Tensor] | None:
        """``default_collate([self[i] for i in indices])`` with one gather per tensor (None: not applicable).

        The DataLoader's fetcher takes this fast path when the collate function is
        ``default_collate``: one fancy index instead of a view per sample and a stack.
        """
        if type(indices) is not list or not indices or any(t._requires_grad for t in self.tensors):
            return None
        cls = type(self)
        if cls.__getitem__ is not TensorDataset.__getitem__ or hasattr(cls, "__getitems__"):
            return None  # a subclass that changes what a sample is: the general path
        if not all(type(i) is int for i in indices):
            return None
        n = len(self)
        if min(indices) < -n or max(indices) >= n:
            bad = next(i for i in indices if not -n <= i < n)
            raise IndexError(f"TensorDataset: index {bad} is out of range for {n} samples")
        return [Tensor._make(gather_rows(t._data, indices, t._device), t._device) for t in self.tensors]

    def __len__(self) -> int:
        return self.tensors[0].shape[0]


class ConcatDataset(Dataset[T_co]):
    """Map-style datasets one after another: index ``i`` falls in the dataset that covers it."""

    def __init__(self, datasets: Iterable[Dataset[Any]]) -> None:
        self.datasets: list[Dataset[Any]] = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset does not support IterableDataset (use ChainDataset)")
        self.cumulative_sizes: list[int] = list(itertools.accumulate(len(d) for d in self.datasets))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx: int) -> T_co:
        n = len(self)
        if idx < 0:
            if -idx > n:
                raise IndexError(f"ConcatDataset: index {idx} is out of range for length {n}")
            idx += n
        if idx >= n:
            raise IndexError(f"ConcatDataset: index {idx} is out of range for length {n}")
        which = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][idx - start]


class ChainDataset(IterableDataset[Any]):
    """Iterable datasets one after another (the chaining happens lazily, while iterating)."""

    def __init__(self, datasets: Iterable[Dataset[Any]]) -> None:
        self.datasets: list[Dataset[Any]] = list(datasets)

    def __iter__(self) -> Iterator[Any]:
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise TypeError(f"ChainDataset only supports IterableDataset, got {type(d).__name__}")
            yield from d

    def __len__(self) -> int:
        total = 0
        for d in self.datasets:
            if not isinstance(d, IterableDataset):
                raise TypeError(f"ChainDataset only supports IterableDataset, got {type(d).__name__}")
            total += len(d)  # type: ignore[arg-type]
        return total


class Subset(Dataset[T_co]):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset: Dataset[T_co], indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, idx: Any) -> T_co:
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices: list[int]) -> list[T_co]:
        """A batch of samples; delegates to the dataset's own ``__getitems__`` when it has one."""
        inner = [self.indices[i] for i in indices]
        getitems = getattr(self.dataset, "__getitems__", None)
        if callable(getitems):
            return getitems(inner)
        return [self.dataset[i] for i in inner]

    def __len__(self) -> int:
        return len(self.indices)

    def _collated_batch(self, indices: Any) -> Any:
        """The dataset's fast ``default_collate`` path (see TensorDataset), through the subset's indices."""
        inner = getattr(self.dataset, "_collated_batch", None)
        cls = type(self)
        if inner is None or type(indices) is not list or cls.__getitem__ is not Subset.__getitem__ or (
            cls.__getitems__ is not Subset.__getitems__
        ):
            return None
        return inner([self.indices[i] for i in indices])


def _split_lengths(n: int, lengths: Sequence[int | float]) -> list[int]:
    """Fractions summing to 1 become lengths: floors, then the remainder one by one from the first split."""
    total = sum(lengths)
    if not (math.isclose(total, 1) and total <= 1):
        if any(isinstance(v, bool) or int(v) != v for v in lengths):
            raise ValueError(f"random_split: lengths must be integers or fractions summing to 1, got {list(lengths)}")
        return [int(v) for v in lengths]
    out = []
    for i, frac in enumerate(lengths):
        if not 0 <= frac <= 1:
            raise ValueError(f"random_split: fraction at index {i} is not between 0 and 1: {frac}")
        out.append(math.floor(n * frac))
    for i in range(n - sum(out)):
        out[i % len(out)] += 1
    for i, length in enumerate(out):
        if length == 0:
            warnings.warn(f"random_split: length of split at index {i} is 0; this gives an empty dataset", stacklevel=3)
    return out


def random_split(dataset: Dataset[T_co], lengths: Sequence[int | float],
                 generator: Generator | None = default_generator) -> list[Subset[T_co]]:
    """Split ``dataset`` at random into non-overlapping :class:`Subset` s of the given lengths.

    ``lengths`` are sizes summing to ``len(dataset)``, or fractions summing to 1:
    each split gets ``floor(frac * len)`` and the remainder is dealt one by one,
    round-robin from the first split (as PyTorch). Pass a seeded
    ``axonml.Generator`` for a reproducible split.
    """
    n = len(dataset)  # type: ignore[arg-type]
    sizes = _split_lengths(n, lengths)
    if any(s < 0 for s in sizes):
        raise ValueError(f"random_split: lengths must be non-negative, got {list(lengths)}")
    if sum(sizes) != n:
        raise ValueError(f"random_split: sum of input lengths ({sum(sizes)}) does not equal the dataset length ({n})")
    perm = randperm(n, generator=generator).tolist()
    out, start = [], 0
    for size in sizes:
        out.append(Subset(dataset, perm[start:start + size]))
        start += size
    return out
