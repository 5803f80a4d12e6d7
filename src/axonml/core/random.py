"""Random number generators: per-device default generators and ``Generator`` objects.

A generator is ``(seed, offset)``; each random op takes the stream of the
current offset and advances it by one, so ``manual_seed(s)`` followed by the
same calls gives the same values, and a saved state replays them exactly.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from ..backend import CPU, Device, as_device
from ..backend.random import open_stream
from ..errors import DeviceError
from .tensor import Tensor

DEFAULT_SEED = 67280421310721  # PyTorch's default CPU seed: fresh processes start reproducible
_SEED_RANGE = (-(1 << 63), (1 << 64) - 1)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"a seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if not _SEED_RANGE[0] <= seed <= _SEED_RANGE[1]:
        raise ValueError(f"seed {seed} is outside [{_SEED_RANGE[0]}, {_SEED_RANGE[1]}]")
    return seed & ((1 << 64) - 1)  # negative seeds wrap, as in PyTorch


class Generator:
    """A source of random numbers for one device, as ``torch.Generator``.

    ``Generator(device='cpu')``; ``manual_seed(s)`` (returns the generator),
    ``seed()`` (a fresh non-deterministic seed, returned), ``initial_seed()``,
    ``get_state()`` / ``set_state(t)`` (a uint8 tensor). Pass it as
    ``generator=`` to random functions to draw from it instead of the default.
    """

    def __init__(self, device: Any = "cpu") -> None:
        self.device: Device = as_device(device)
        self._seed = DEFAULT_SEED
        self._offset = 0
        self._lock = threading.Lock()

    def manual_seed(self, seed: int) -> Generator:
        """Restart the generator from ``seed``."""
        with self._lock:
            self._seed = _check_seed(seed)
            self._offset = 0
        return self

    def seed(self) -> int:
        """Seed from the operating system's entropy; returns the seed used."""
        s = int.from_bytes(os.urandom(8), "little") >> 1
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        """The seed the generator was last started from."""
        return self._seed

    def get_state(self) -> Tensor:
        """The state as a CPU uint8 tensor of 16 bytes (seed, then offset)."""
        with self._lock:
            raw = np.array([self._seed, self._offset], dtype="<u8").view(np.uint8)
        return Tensor._make(raw.copy(), CPU)

    def set_state(self, new_state: Tensor) -> Generator:
        """Restore a state returned by :meth:`get_state`."""
        if not isinstance(new_state, Tensor):
            raise TypeError(f"set_state expects a uint8 Tensor, got {type(new_state).__name__}")
        raw = np.asarray(new_state._host())
        if raw.dtype != np.uint8 or raw.shape != (16,):
            raise ValueError(
                f"set_state: expected a uint8 tensor of 16 bytes from get_state(), got {raw.dtype} {raw.shape}"
            )
        seed, offset = (int(v) for v in raw.view("<u8"))
        with self._lock:
            self._seed, self._offset = seed, offset
        return self

    def _stream(self, device: Device) -> Any:
        """The stream for the next op (advances the generator)."""
        if device is not self.device:
            raise DeviceError(f"a generator for {self.device} cannot make numbers on {device}")
        with self._lock:
            offset = self._offset
            self._offset += 1
        return open_stream(device, self._seed, offset)

    def __repr__(self) -> str:
        return f"<axonml.Generator device={self.device} seed={self._seed}>"


default_generator = Generator(CPU)
_DEFAULTS: dict[Device, Generator] = {CPU: default_generator}
_last_seed = [DEFAULT_SEED]  # what CUDA default generators made later start from


def default_for(device: Any) -> Generator:
    """The default generator of ``device`` (made on first use)."""
    dev = as_device(device)
    gen = _DEFAULTS.get(dev)
    if gen is None:
        gen = _DEFAULTS.setdefault(dev, Generator(dev).manual_seed(_last_seed[0]))
    return gen


def resolve(generator: Generator | None, device: Any) -> tuple[Generator, Device]:
    """The generator and device an op draws from: ``device`` defaults to the generator's."""
    if generator is not None:
        if not isinstance(generator, Generator):
            raise TypeError(f"generator must be an axonml.Generator, got {type(generator).__name__}")
        dev = generator.device if device is None else as_device(device)
        if dev is not generator.device:
            raise DeviceError(f"a generator for {generator.device} cannot make numbers on {dev}")
        return generator, dev
    dev = as_device(device)
    return default_for(dev), dev


def manual_seed(seed: int) -> Generator:
    """Seed the default generators of every device; returns the CPU one (as PyTorch)."""
    s = _check_seed(seed)
    _last_seed[0] = s
    for gen in list(_DEFAULTS.values()):
        gen.manual_seed(s)
    return default_generator


def seed() -> int:
    """Seed every default generator from the operating system's entropy; returns the seed."""
    s = default_generator.seed()
    manual_seed(s)
    return s


def initial_seed() -> int:
    """The initial seed of the default CPU generator."""
    return default_generator.initial_seed()


def get_rng_state() -> Tensor:
    """The default CPU generator's state (a uint8 tensor)."""
    return default_generator.get_state()


def set_rng_state(new_state: Tensor) -> None:
    """Restore the default CPU generator's state from :func:`get_rng_state`."""
    default_generator.set_state(new_state)
