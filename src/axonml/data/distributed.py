"""DistributedSampler: each of ``num_replicas`` processes reads its own share of a dataset."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sized

from ..core.random import Generator
from ..ops.random import randperm
from .sampler import Sampler

__all__ = ["DistributedSampler"]


def _from_env(name: str, arg: str) -> int:
    """A launcher's setting (``WORLD_SIZE``/``RANK``, as torchrun and mpirun wrappers export them)."""
    value = os.environ.get(name)
    if value is None:
        raise RuntimeError(
            f"DistributedSampler: {arg} was not given and the environment variable {name} is not set; "
            f"pass {arg}= explicitly or start the processes with a launcher that sets it"
        )
    try:
        return int(value)
    except ValueError:
        raise RuntimeError(f"DistributedSampler: environment variable {name}={value!r} is not an integer") from None


class DistributedSampler(Sampler[int]):
    """The indices of replica ``rank`` out of ``num_replicas``, as ``torch.utils.data.DistributedSampler``.

    Every replica shuffles with the same seed (``seed + epoch``: call
    :meth:`set_epoch` at the start of each epoch for a new order), then takes
    every ``num_replicas``-th index starting at ``rank``. So that every replica
    gets the same count, the index list is padded by repeating its start
    (``drop_last=False``) or cut to a multiple of ``num_replicas`` (``drop_last=True``).
    ``num_replicas``/``rank`` default to the ``WORLD_SIZE``/``RANK`` environment variables.
    """

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if num_replicas is None:
            num_replicas = _from_env("WORLD_SIZE", "num_replicas")
        if rank is None:
            rank = _from_env("RANK", "rank")
        if num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be positive, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(
                f"DistributedSampler: invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]"
            )
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.drop_last = drop_last
        n = len(dataset)
        if drop_last and n % num_replicas:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)  # the largest count every replica can have
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.shuffle = shuffle
        self.seed = seed

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if self.shuffle:
            gen = Generator().manual_seed(self.seed + self.epoch)
            indices = randperm(n, generator=gen).tolist()
        else:
            indices = list(range(n))
        if self.drop_last:
            indices = indices[: self.total_size]
        else:
            pad = self.total_size - len(indices)
            if pad and not indices:
                raise ValueError("DistributedSampler: cannot pad an empty dataset")
            if pad:
                indices += (indices * math.ceil(pad / len(indices)))[:pad]
        return iter(indices[self.rank: self.total_size: self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch: with ``shuffle=True`` each epoch gets its own order (the same on every replica)."""
        self.epoch = epoch
