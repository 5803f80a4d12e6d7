"""Random draws for the random transforms, from axonml's generators so runs repeat.

Every draw comes from the default CPU generator (``axonml.manual_seed`` seeds it;
DataLoader workers seed it per worker) or from the CPU ``axonml.Generator`` passed
as ``generator=``. Parameters are drawn on the CPU even for CUDA images: they are
a handful of numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...core import dtypes
from ...core.random import Generator
from ...ops.random import rand, randint, randn, randperm


def uniform(low: float, high: float, generator: Generator | None = None) -> float:
    """One float uniform in ``[low, high)``."""
    u = float(rand(1, generator=generator, dtype=dtypes.float64, device="cpu").item())
    return float(low) + (float(high) - float(low)) * u


def rand_below(p: float, generator: Generator | None = None) -> bool:
    """True with probability ``p`` (the ``torch.rand(1) < p`` of torchvision)."""
    return uniform(0.0, 1.0, generator) < p


def integer(low: int, high: int, generator: Generator | None = None) -> int:
    """One integer uniform in ``[low, high)``."""
    return int(randint(int(low), int(high), (1,), generator=generator, device="cpu").item())


def normal(shape: tuple[int, ...], generator: Generator | None = None) -> np.ndarray:
    """Standard normal float32 samples of ``shape`` as a NumPy array."""
    return np.asarray(randn(*shape, generator=generator, dtype=dtypes.float32, device="cpu").numpy())


def integers(low: int, high: int, shape: tuple[int, ...], generator: Generator | None = None) -> np.ndarray:
    """int64 samples uniform in ``[low, high)`` as a NumPy array."""
    return np.asarray(randint(int(low), int(high), shape, generator=generator, device="cpu").numpy())


def permutation(n: int, generator: Generator | None = None) -> list[int]:
    """A random permutation of ``range(n)``."""
    return [int(i) for i in randperm(n, generator=generator, device="cpu").tolist()]


def check_generator(generator: Any, owner: str) -> Generator | None:
    """``generator`` when it is None or a CPU axonml.Generator, else a clear error."""
    if generator is None:
        return None
    if not isinstance(generator, Generator):
        raise TypeError(f"{owner}: generator must be an axonml.Generator, got {type(generator).__name__}")
    if generator.device.type != "cpu":
        raise ValueError(f"{owner}: transforms draw their parameters on the CPU; got a generator on {generator.device}")
    return generator
