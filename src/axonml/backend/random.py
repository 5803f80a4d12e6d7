"""Per-device random streams: the one place that knows NumPy's generators from CuPy's.

A generator's state is just ``(seed, offset)``: every random op opens the
stream for its ``offset`` (a counter-based Philox keyed by the seed, so
streams are independent and the state is 16 bytes) and draws from it.
All distributions are built in ``core``/``ops`` from the four draws here.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import numpy as np

from ..errors import GraphCaptureError
from .device import Device
from .fused import elementwise
from .graphs import current_capture

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """A 64-bit mixing function (SplitMix64's finalizer): nearby inputs give unrelated outputs."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class _NumpyStream:
    """Philox keyed by the seed; the offset selects a disjoint block of the counter space.

    One NumPy Generator per thread is re-pointed for each op (setting its state
    is about 4x cheaper than building a new one); a stream is used up before
    the next one opens, which every op here does.
    """

    _local = threading.local()

    def __init__(self, seed: int, offset: int) -> None:
        local = _NumpyStream._local
        gen = getattr(local, "gen", None)
        if gen is None:
            gen = local.gen = np.random.Generator(np.random.Philox(0))
        key = np.array([seed & _MASK64, 0], dtype=np.uint64)
        counter = np.array([0, 0, offset & _MASK64, 0], dtype=np.uint64)
        gen.bit_generator.state = {
            "bit_generator": "Philox", "state": {"counter": counter, "key": key},
            "buffer": np.zeros(4, dtype=np.uint64), "buffer_pos": 4, "has_uint32": 0, "uinteger": 0,
        }
        local.owner = self
        self._gen = gen

    def _check(self) -> None:
        if _NumpyStream._local.owner is not self:
            raise RuntimeError("a random stream was used after a newer one opened in the same thread")

    def random(self, shape: tuple[int, ...], dtype: Any) -> Any:
        self._check()
        return self._gen.random(shape, dtype=dtype)

    def normal(self, shape: tuple[int, ...], dtype: Any) -> Any:
        self._check()
        return self._gen.standard_normal(shape, dtype=dtype)

    def integers(self, low: int, high: int, shape: tuple[int, ...]) -> Any:
        self._check()
        return self._gen.integers(low, high, shape, dtype=np.int64)

    def permutation(self, n: int) -> Any:
        self._check()
        return self._gen.permutation(n).astype(np.int64, copy=False)


class _CupyStream:
    """cuRAND Philox through ``cupy.random.RandomState``, reseeded per op (one cuRAND generator per device)."""

    _states: ClassVar[dict[int, Any]] = {}
    _lock = threading.Lock()

    def __init__(self, device: Device, seed: int, offset: int) -> None:
        self._device = device
        self._seed = _splitmix64(seed ^ _splitmix64(offset)) & ((1 << 63) - 1)

    def _state(self) -> Any:
        cp = self._device.xp
        idx = self._device.index or 0
        rs = _CupyStream._states.get(idx)
        if rs is None:
            from cupy.cuda import curand

            with cp.cuda.Device(idx):
                rs = cp.random.RandomState(self._seed, method=curand.CURAND_RNG_PSEUDO_PHILOX4_32_10)
            _CupyStream._states[idx] = rs
        rs.seed(self._next_seed())
        return rs

    def _next_seed(self) -> int:
        """This draw's seed; the next draw of the same op gets fresh numbers."""
        seed = self._seed
        self._seed = _splitmix64(seed) & ((1 << 63) - 1)
        return seed

    def _draw(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        with _CupyStream._lock, self._device.xp.cuda.Device(self._device.index or 0):
            return getattr(self._state(), fn)(*args, **kwargs)

    def _captured(self, kind: int, shape: tuple[int, ...], dtype: Any) -> Any:
        """Inside a CUDA graph capture: Philox keyed by this op's seed and the graph's replay counter,
        so that every replay draws fresh numbers (cuRAND's seed would be frozen into the graph)."""
        g = current_capture()
        assert g is not None
        out = self._device.xp.empty(shape, dtype)
        _philox_kernel()(np.uint64(self._next_seed()), np.int32(kind), g.rng_counter, out)
        return out

    def random(self, shape: tuple[int, ...], dtype: Any) -> Any:
        if current_capture() is not None:
            return self._captured(0, shape, dtype)
        return self._draw("random_sample", shape, dtype=dtype)

    def normal(self, shape: tuple[int, ...], dtype: Any) -> Any:
        if current_capture() is not None:
            return self._captured(1, shape, dtype)
        return self._draw("standard_normal", shape, dtype=dtype)

    def integers(self, low: int, high: int, shape: tuple[int, ...]) -> Any:
        _refuse_in_capture("random integers")
        return self._draw("randint", low, high, shape, dtype=np.int64)

    def permutation(self, n: int) -> Any:
        _refuse_in_capture("a random permutation")
        return self._draw("permutation", n).astype(np.int64, copy=False)


def _refuse_in_capture(what: str) -> None:
    if current_capture() is not None:
        raise GraphCaptureError(f"{what} cannot be drawn inside a CUDA graph capture (only uniform and normal draws "
                                "can); draw them outside the captured code")


# Philox4x32-10 (Salmon et al. 2011): counter = (element index, replay count), key = the op's seed.
# kind 0: uniform [0, 1) with the dtype's mantissa bits; kind 1: standard normal by Box-Muller.
_PHILOX = r"""
    unsigned long long idx = (unsigned long long)i, rep = counter[0];
    unsigned int x0 = (unsigned int)idx, x1 = (unsigned int)(idx >> 32);
    unsigned int x2 = (unsigned int)rep, x3 = (unsigned int)(rep >> 32);
    unsigned int k0 = (unsigned int)seed, k1 = (unsigned int)(seed >> 32);
    for (int r = 0; r < 10; ++r) {
        const unsigned int hi0 = __umulhi(0xD2511F53u, x0), lo0 = 0xD2511F53u * x0;
        const unsigned int hi1 = __umulhi(0xCD9E8D57u, x2), lo1 = 0xCD9E8D57u * x2;
        x0 = hi1 ^ x1 ^ k0; x1 = lo1; x2 = hi0 ^ x3 ^ k1; x3 = lo0;
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    const double scale = 1.0 / 9007199254740992.0;  // 2^-53
    const double u = (double)(((unsigned long long)x0 << 21) ^ (x1 >> 11)) * scale;
    if (kind == 0) {
        out = sizeof(T) == 8 ? (T)u : (T)((float)(x0 >> 8) * (1.0f / 16777216.0f));
    } else {
        const double v = (double)(((unsigned long long)x2 << 21) ^ (x3 >> 11)) * scale;
        out = (T)(sqrt(-2.0 * log(1.0 - u)) * cospi(2.0 * v));
    }
"""


def _philox_kernel() -> Any:
    return elementwise("axonml_philox", "uint64 seed, int32 kind, raw uint64 counter", "T out", _PHILOX)


def open_stream(device: Device, seed: int, offset: int) -> Any:
    """The random stream of ``(seed, offset)`` on ``device``; same arguments, same numbers.

    The stream draws ``random`` (uniform [0, 1)), ``normal``, ``integers`` in
    [low, high) as int64, and ``permutation``; float draws take float32 or float64.
    """
    if device.type == "cpu":
        return _NumpyStream(seed, offset)
    return _CupyStream(device, seed, offset)
