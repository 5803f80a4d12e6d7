"""Per-device random streams: the one place that knows NumPy's generators from CuPy's.

A generator's state is just ``(seed, offset)``: every random op opens the
stream for its ``offset`` (a counter-based Philox keyed by the seed, so
streams are independent and the state is 16 bytes) and draws from it.
All distributions are built in ``core``/``ops`` from the four draws here; ``keep_mask``
is dropout's mask in one pass (one launch on a GPU).
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

    def keep_mask(self, shape: tuple[int, ...], p: float, scale: float, dtype: Any) -> Any:
        """``scale`` where a float32 uniform draw is >= ``p``, else 0, in ``dtype`` (a dropout mask)."""
        return _keep_from(np, self.random(shape, np.float32), p, scale, dtype)


class _CupyStream:
    """Philox keyed by the op's seed, as one CUDA kernel per draw (uniform and normal draws).

    The counter is (element index, replay count): outside a CUDA graph the replay count is a
    constant 0 on the device, inside a capture the graph's replay counter, so every replay
    draws fresh numbers (a seed would be frozen into the graph). One launch per draw, where
    reseeding cuRAND (``cupy.random.RandomState``) cost four launches and a device
    synchronization. Integers and permutations still go through cuRAND, reseeded per op.
    """

    _states: ClassVar[dict[int, Any]] = {}
    _zero_counters: ClassVar[dict[int, Any]] = {}
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

    def _counter(self) -> Any:
        """The replay count the kernel reads: the capture's counter, else a constant 0 on this device."""
        g = current_capture()
        if g is not None:
            return g.rng_counter
        idx = self._device.index or 0
        zero = _CupyStream._zero_counters.get(idx)
        if zero is None:
            cp = self._device.xp
            with cp.cuda.Device(idx):
                zero = _CupyStream._zero_counters[idx] = cp.zeros(1, cp.uint64)
        return zero

    def _philox(self, kind: int, shape: tuple[int, ...], dtype: Any) -> Any:
        cp = self._device.xp
        with cp.cuda.Device(self._device.index or 0):
            out = cp.empty(shape, dtype)
            _philox_kernel()(np.uint64(self._next_seed()), np.int32(kind), self._counter(), out)
        return out

    def random(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self._philox(0, shape, dtype)

    def keep_mask(self, shape: tuple[int, ...], p: float, scale: float, dtype: Any) -> Any:
        """The NumPy stream's ``keep_mask``, in one launch for float32/float64 masks."""
        cp = self._device.xp
        if np.dtype(dtype) not in (np.float32, np.float64):
            return _keep_from(cp, self.random(shape, np.float32), p, scale, dtype)
        with cp.cuda.Device(self._device.index or 0):
            out = cp.empty(shape, dtype)
            _keep_kernel()(np.uint64(self._next_seed()), np.float32(p), out.dtype.type(scale), self._counter(), out)
        return out

    def dropout(self, x: Any, p: float, scale: float) -> tuple[Any, Any]:
        """``(x * mask, mask)`` for a float32/float64 ``x``, the mask ``keep_mask(x.shape, p, scale)`` would draw,
        in one launch (a mask and then a product are two)."""
        cp = self._device.xp
        with cp.cuda.Device(self._device.index or 0):
            y, mask = cp.empty(x.shape, x.dtype), cp.empty(x.shape, x.dtype)
            _dropout_kernel()(x, np.uint64(self._next_seed()), np.float32(p), x.dtype.type(scale), self._counter(),
                              y, mask)
        return y, mask

    def normal(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self._philox(1, shape, dtype)

    def integers(self, low: int, high: int, shape: tuple[int, ...]) -> Any:
        _refuse_in_capture("random integers")
        return self._draw("randint", low, high, shape, dtype=np.int64)

    def permutation(self, n: int) -> Any:
        _refuse_in_capture("a random permutation")
        return self._draw("permutation", n).astype(np.int64, copy=False)


def _keep_from(xp: Any, u: Any, p: float, scale: float, dtype: Any) -> Any:
    """``scale`` where the float32 draws ``u`` are >= ``p``, else 0, in ``dtype``."""
    if np.dtype(dtype) == u.dtype:  # the mask written over the draws: one pass, no bool temporary
        keep = xp.greater_equal(u, p, out=u)
    else:
        keep = (u >= p).astype(dtype)
    if scale != 1.0:
        keep *= scale
    return keep


def _refuse_in_capture(what: str) -> None:
    if current_capture() is not None:
        raise GraphCaptureError(f"{what} cannot be drawn inside a CUDA graph capture (only uniform and normal draws "
                                "can); draw them outside the captured code")


# Philox4x32-10 (Salmon et al. 2011): counter = (element index, replay count), key = the op's seed.
# kind 0: uniform [0, 1) with the dtype's mantissa bits; kind 1: standard normal by Box-Muller.
_PHILOX_ROUNDS = r"""
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
"""
_PHILOX = _PHILOX_ROUNDS + r"""
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


_KEEP = "(float)(x0 >> 8) * (1.0f / 16777216.0f) >= p ? scale : (T)0"  # kind 0's float32 draw against p


def _keep_kernel() -> Any:
    """A dropout mask from kind 0's float32 uniform draw: ``scale`` where it is >= p, else 0."""
    return elementwise("axonml_keep_mask", "uint64 seed, float32 p, T scale, raw uint64 counter", "T out",
                       _PHILOX_ROUNDS + f"out = {_KEEP};")


def _dropout_kernel() -> Any:
    """The same mask, and the input times it."""
    return elementwise("axonml_dropout", "T x, uint64 seed, float32 p, T scale, raw uint64 counter", "T y, T mask",
                       _PHILOX_ROUNDS + f"mask = {_KEEP}; y = x * mask;")


def open_stream(device: Device, seed: int, offset: int) -> Any:
    """The random stream of ``(seed, offset)`` on ``device``; same arguments, same numbers.

    The stream draws ``random`` (uniform [0, 1)), ``normal``, ``integers`` in
    [low, high) as int64, and ``permutation``; float draws take float32 or float64.
    """
    if device.type == "cpu":
        return _NumpyStream(seed, offset)
    return _CupyStream(device, seed, offset)
