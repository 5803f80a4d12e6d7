"""Random sampling: rand, randn, randint, randperm, normal, bernoulli, multinomial, the
``*_like`` forms, seeding, and the in-place initializers (``uniform_``, ``normal_``, ...).

Every function takes ``generator=`` (default: the device's default generator),
and the factories take ``dtype=``, ``device=`` and ``requires_grad=``. Samples
carry no gradient history (as in PyTorch); write ``mean + std * randn(...)``
for a reparameterized sample.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core import dtypes as _dt
from ..core.grad_mode import GRAD_ENABLED
from ..core.inplace import _check_writable, apply_inplace
from ..core.methods import where
from ..core.random import (
    Generator,
    default_generator,
    get_rng_state,
    initial_seed,
    manual_seed,
    resolve,
    seed,
    set_rng_state,
)
from ..core.tensor import Tensor
from ..errors import DTypeError, ShapeError

__all__ = [
    "Generator", "default_generator", "manual_seed", "seed", "initial_seed", "get_rng_state", "set_rng_state",
    "rand", "randn", "randint", "randperm", "normal", "bernoulli", "multinomial",
    "rand_like", "randn_like", "randint_like",
]

_SIGNIFICANT_BITS = {"float16": 11, "bfloat16": 8, "float32": 24, "float64": 53}


# ----- helpers ----------------------------------------------------------------------------
def _size(size: Any, op: str) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], list | tuple):
        size = size[0]
    for s in size:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0:
            raise ValueError(f"{op}: sizes must be non-negative integers, got {tuple(size)}")
    return tuple(int(s) for s in size)


def _float_dtype(op: str, dtype: Any) -> _dt.dtype:
    d = _dt.get_default_dtype() if dtype is None else _dt.as_dtype(dtype)
    if not d.is_floating_point:
        raise DTypeError(f"{op}: expected a floating point dtype, got {d}")
    return d


def _uniform(stream: Any, xp: Any, shape: tuple[int, ...], d: _dt.dtype) -> Any:
    """Uniform [0, 1) in dtype ``d`` (never 1, also in half precision)."""
    if d.np in (np.float32, np.float64):
        return stream.random(shape, d.np)
    scale = float(2 ** _SIGNIFICANT_BITS[d.name])
    # rounding float32 to 16 bits could reach 1.0: quantize down to representable values instead
    return (xp.floor(stream.random(shape, np.float32) * scale) / scale).astype(d.np)


def _normal(stream: Any, shape: tuple[int, ...], d: _dt.dtype) -> Any:
    if d.np in (np.float32, np.float64):
        return stream.normal(shape, d.np)
    return stream.normal(shape, np.float32).astype(d.np)


def _wrap(arr: Any, device: Any, requires_grad: bool) -> Tensor:
    t = Tensor._make(arr, device)
    return t.requires_grad_(True) if requires_grad else t


def _tensor(op: str, x: Any) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")
    return x


# ----- factories ----------------------------------------------------------------------------
def rand(*size: Any, generator: Generator | None = None, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) of shape ``size``."""
    shape = _size(size, "rand")
    d = _float_dtype("rand", dtype)
    gen, dev = resolve(generator, device)
    return _wrap(_uniform(gen._stream(dev), dev.xp, shape, d), dev, requires_grad)


def randn(*size: Any, generator: Generator | None = None, dtype: Any = None, device: Any = None,
          requires_grad: bool = False) -> Tensor:
    """Standard normal samples of shape ``size``."""
    shape = _size(size, "randn")
    d = _float_dtype("randn", dtype)
    gen, dev = resolve(generator, device)
    return _wrap(_normal(gen._stream(dev), shape, d), dev, requires_grad)


def _randint_array(op: str, gen: Generator, dev: Any, low: Any, high: Any, shape: tuple[int, ...], d: _dt.dtype) -> Any:
    low, high = int(low), int(high)
    if low >= high:
        raise ValueError(f"{op}: low ({low}) must be less than high ({high})")
    arr = gen._stream(dev).integers(low, high, shape)
    return arr if d.np == np.int64 else arr.astype(d.np)


def randint(*args: Any, size: Any = None, generator: Generator | None = None, dtype: Any = None,
            device: Any = None, requires_grad: bool = False) -> Tensor:
    """Integers uniform in [low, high): ``randint(high, size)`` or ``randint(low, high, size)``; int64 by default."""
    nums = list(args)
    if size is None:
        if not nums or not isinstance(nums[-1], list | tuple):
            raise TypeError("randint: missing the size argument, e.g. randint(0, 10, (3,))")
        size = nums.pop()
    if len(nums) == 1:
        low, high = 0, nums[0]
    elif len(nums) == 2:
        low, high = nums
    else:
        raise TypeError(f"randint: expected (high, size) or (low, high, size), got {len(args)} positional arguments")
    shape = _size((size,), "randint")
    d = _dt.int64 if dtype is None else _dt.as_dtype(dtype)
    gen, dev = resolve(generator, device)
    return _wrap(_randint_array("randint", gen, dev, low, high, shape, d), dev, requires_grad)


def randperm(n: int, *, generator: Generator | None = None, dtype: Any = None, device: Any = None,
             requires_grad: bool = False) -> Tensor:
    """A random permutation of ``0 .. n-1`` (int64 by default)."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"randperm: n must be a non-negative integer, got {n!r}")
    d = _dt.int64 if dtype is None else _dt.as_dtype(dtype)
    gen, dev = resolve(generator, device)
    arr = gen._stream(dev).permutation(int(n))
    return _wrap(arr if d.np == np.int64 else arr.astype(d.np), dev, requires_grad)


def normal(mean: Any = 0.0, std: Any = 1.0, size: Any = None, *, generator: Generator | None = None,
           dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Normal samples: elementwise for tensor ``mean``/``std`` (broadcast), else of shape ``size``."""
    tensors = [t for t in (mean, std) if isinstance(t, Tensor)]
    if not tensors:
        if size is None:
            raise TypeError("normal: with a number mean and std, size is required")
        if std < 0:
            raise ValueError(f"normal: std must be non-negative, got {std}")
        out = randn(size, generator=generator, dtype=dtype, device=device)
        return _wrap((out._data * std + mean).astype(out._data.dtype, copy=False), out._device, requires_grad)
    d = _float_dtype("normal", _dt.result_type(mean, std) if dtype is None else dtype)
    dev = tensors[0]._device
    if any(t._device is not dev for t in tensors):
        from ..errors import DeviceError

        raise DeviceError("normal: mean and std are on different devices")
    xp = dev.xp
    m = mean._data if isinstance(mean, Tensor) else mean
    s = std._data if isinstance(std, Tensor) else std
    if bool(xp.any(xp.asarray(s) < 0)):
        raise ValueError("normal: std must be non-negative")
    try:
        shape = np.broadcast_shapes(np.shape(m), np.shape(s))
    except ValueError:
        msg = f"normal: mean of shape {np.shape(m)} and std of shape {np.shape(s)} do not broadcast"
        raise ShapeError(msg) from None
    if size is not None and tuple(size) != shape:
        raise ShapeError(f"normal: size {tuple(size)} does not match the broadcast shape {shape} of mean and std")
    gen, dev = resolve(generator, dev)
    z = _normal(gen._stream(dev), shape, d)
    return _wrap((z * s + m).astype(d.np, copy=False), dev, requires_grad)


def _probabilities(op: str, xp: Any, p: Any) -> None:
    bad = xp.logical_not((p >= 0) & (p <= 1))
    if bool(xp.any(bad)):
        raise ValueError(f"{op}: probabilities must be in [0, 1]")


def bernoulli(input: Tensor, p: float | None = None, *, generator: Generator | None = None) -> Tensor:  # noqa: A002
    """0/1 samples with ``P(1) = input`` elementwise (or ``= p`` for every element); ``input``'s dtype."""
    x = _tensor("bernoulli", input)
    if p is None and not x.is_floating_point():
        raise DTypeError(f"bernoulli: the probabilities must be floating point, got {x.dtype}")
    xp = x._device.xp
    probs = x._data if p is None else xp.asarray(p, dtype=np.float64)
    _probabilities("bernoulli", xp, probs)
    gen, dev = resolve(generator, x._device)
    d = x.dtype if x.dtype in (_dt.float32, _dt.float64) else _dt.float32
    u = _uniform(gen._stream(dev), xp, x.shape, d)
    return Tensor._make((u < probs).astype(x._data.dtype), dev)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *,  # noqa: A002
                generator: Generator | None = None) -> Tensor:
    """Category indices drawn with weights ``input`` (``(n,)`` or ``(rows, n)``, need not sum to 1); int64.

    Without replacement each row needs at least ``num_samples`` non-zero weights;
    the samples come in the order drawn.
    """
    x = _tensor("multinomial", input)
    if not x.is_floating_point():
        raise DTypeError(f"multinomial: the weights must be floating point, got {x.dtype}")
    if x.ndim not in (1, 2):
        raise ShapeError(f"multinomial: weights must be 1-D or 2-D, got shape {x.shape}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int | np.integer) or num_samples <= 0:
        raise ValueError(f"multinomial: num_samples must be a positive integer, got {num_samples!r}")
    k = int(num_samples)
    xp = x._device.xp
    w = x._data.astype(np.float64).reshape(-1, x.shape[-1])  # (rows, n)
    rows, n = w.shape
    if n == 0:
        raise ShapeError("multinomial: there are no categories to sample from")
    if not bool(xp.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError("multinomial: weights must be finite and non-negative")
    if not bool((w.sum(axis=1) > 0).all()):
        raise ValueError("multinomial: every row of weights needs a positive sum")
    gen, dev = resolve(generator, x._device)
    stream = gen._stream(dev)
    if replacement:
        cdf = xp.cumsum(w, axis=1)
        cdf = cdf / cdf[:, -1:]
        # rows shifted by their index make one increasing array: one searchsorted for every row
        offsets = xp.arange(rows, dtype=np.float64)[:, None]
        u = stream.random((rows, k), np.float64) + offsets
        idx = xp.searchsorted((cdf + offsets).ravel(), u.ravel(), side="right").reshape(rows, k)
        out = xp.clip(idx - xp.arange(rows, dtype=np.int64)[:, None] * n, 0, n - 1)
    else:
        if k > n:
            raise ValueError(f"multinomial: cannot draw {k} samples from {n} categories without replacement")
        if bool(((w > 0).sum(axis=1) < k).any()):
            raise ValueError(f"multinomial: a row has fewer than {k} non-zero weights to draw without replacement")
        # exponential race: the k smallest Exp(1)/w arrive in the order of sequential draws
        with np.errstate(divide="ignore", invalid="ignore"):
            keys = -xp.log1p(-stream.random((rows, n), np.float64)) / w
        out = xp.argsort(keys, axis=1, kind="stable")[:, :k]
    out = out.astype(np.int64, copy=False)
    return Tensor._make(out.reshape(k) if x.ndim == 1 else out, dev)


def _like(x: Any, dtype: Any, device: Any) -> tuple[Any, Any]:
    x = _tensor("*_like", x)
    return (x.dtype if dtype is None else dtype), (x.device if device is None else device)


def rand_like(input: Tensor, *, dtype: Any = None, device: Any = None, requires_grad: bool = False,  # noqa: A002
              generator: Generator | None = None) -> Tensor:
    """``rand`` with ``input``'s shape, dtype and device."""
    d, dev = _like(input, dtype, device)
    return rand(input.shape, generator=generator, dtype=d, device=dev, requires_grad=requires_grad)


def randn_like(input: Tensor, *, dtype: Any = None, device: Any = None, requires_grad: bool = False,  # noqa: A002
               generator: Generator | None = None) -> Tensor:
    """``randn`` with ``input``'s shape, dtype and device."""
    d, dev = _like(input, dtype, device)
    return randn(input.shape, generator=generator, dtype=d, device=dev, requires_grad=requires_grad)


def randint_like(input: Tensor, low: int = 0, high: int | None = None, *, dtype: Any = None,  # noqa: A002
                 device: Any = None, requires_grad: bool = False, generator: Generator | None = None) -> Tensor:
    """``randint`` with ``input``'s shape, dtype and device: ``randint_like(x, high)`` or ``(x, low, high)``."""
    if high is None:
        low, high = 0, low
    d, dev = _like(input, dtype, device)
    return randint(low, high, input.shape, generator=generator, dtype=d, device=dev, requires_grad=requires_grad)


# ----- in-place initializers --------------------------------------------------------------------
def _fill(x: Tensor, values: Any, op: str) -> Tensor:
    """Write ``values`` into ``x``; under autograd the old history gets a zero gradient, as in PyTorch."""
    if GRAD_ENABLED.get() and x._requires_grad:
        _check_writable(x, op)
        keep_none = Tensor._make(x._device.xp.zeros((), dtype=bool), x._device)
        # where() saves its inputs: give it a copy, since x itself is about to be overwritten
        return apply_inplace(x, where(keep_none, x.clone(), Tensor._make(values, x._device)), op)
    x._device.xp.copyto(x._data, values, casting="unsafe")
    x._version[0] += 1
    return x


def _float_self(x: Tensor, op: str) -> _dt.dtype:
    if not x.is_floating_point():
        raise DTypeError(f"{op}: needs a floating point tensor, got {x.dtype}")
    return x.dtype


def _stream_for(x: Tensor, generator: Generator | None) -> Any:
    gen, dev = resolve(generator, x._device)
    return gen._stream(dev)


def uniform_(self: Tensor, from_: float = 0.0, to: float = 1.0, *, generator: Generator | None = None) -> Tensor:
    """Fill with samples uniform in [from_, to)."""
    d = _float_self(self, "uniform_")
    if from_ > to:
        raise ValueError(f"uniform_: expects from <= to, got [{from_}, {to})")
    u = _uniform(_stream_for(self, generator), self._device.xp, self.shape, d)
    return _fill(self, u * (to - from_) + from_, "uniform_")


def normal_(self: Tensor, mean: float = 0.0, std: float = 1.0, *, generator: Generator | None = None) -> Tensor:
    """Fill with normal samples of ``mean`` and ``std``."""
    d = _float_self(self, "normal_")
    if std < 0:
        raise ValueError(f"normal_: std must be non-negative, got {std}")
    return _fill(self, _normal(_stream_for(self, generator), self.shape, d) * std + mean, "normal_")


def bernoulli_(self: Tensor, p: Any = 0.5, *, generator: Generator | None = None) -> Tensor:
    """Fill with 0/1 samples, 1 with probability ``p`` (a number or a broadcastable tensor)."""
    xp = self._device.xp
    probs = p._data if isinstance(p, Tensor) else xp.asarray(p, dtype=np.float64)
    _probabilities("bernoulli_", xp, probs)
    u = _uniform(_stream_for(self, generator), xp, self.shape, _dt.float64)
    return _fill(self, u < probs, "bernoulli_")


def random_(self: Tensor, *args: int, generator: Generator | None = None) -> Tensor:
    """Fill with integers uniform in [from, to): ``random_()``, ``random_(to)`` or ``random_(from, to)``.

    Without bounds: [0, 2^mantissa] for floats (every integer exactly representable), [0, max] for integers.
    """
    d = self.dtype
    if len(args) > 2:
        raise TypeError(f"random_: expected at most 2 bounds, got {len(args)}")
    if len(args) == 2:
        low, high = args
    elif len(args) == 1:
        low, high = 0, args[0]
    elif d.is_floating_point:
        low, high = 0, 2 ** _SIGNIFICANT_BITS[d.name] + 1
    elif d is _dt.bool_:
        low, high = 0, 2
    else:
        low, high = 0, min(int(_dt.iinfo(d).max) + 1, (1 << 63) - 1)
    gen, dev = resolve(generator, self._device)
    return _fill(self, _randint_array("random_", gen, dev, low, high, self.shape, _dt.int64), "random_")


def exponential_(self: Tensor, lambd: float = 1.0, *, generator: Generator | None = None) -> Tensor:
    """Fill with exponential samples of rate ``lambd``."""
    d = _float_self(self, "exponential_")
    if lambd <= 0:
        raise ValueError(f"exponential_: lambd must be positive, got {lambd}")
    xp = self._device.xp
    u = _uniform(_stream_for(self, generator), xp, self.shape, _dt.float64)
    return _fill(self, (-xp.log1p(-u) / lambd).astype(d.np), "exponential_")


def log_normal_(self: Tensor, mean: float = 1.0, std: float = 2.0, *, generator: Generator | None = None) -> Tensor:
    """Fill with ``exp(N(mean, std))`` samples."""
    d = _float_self(self, "log_normal_")
    if std <= 0:
        raise ValueError(f"log_normal_: std must be positive, got {std}")
    z = _normal(_stream_for(self, generator), self.shape, _dt.float64)
    return _fill(self, self._device.xp.exp(z * std + mean).astype(d.np), "log_normal_")


def cauchy_(self: Tensor, median: float = 0.0, sigma: float = 1.0, *, generator: Generator | None = None) -> Tensor:
    """Fill with Cauchy samples of ``median`` and scale ``sigma``."""
    d = _float_self(self, "cauchy_")
    xp = self._device.xp
    u = _uniform(_stream_for(self, generator), xp, self.shape, _dt.float64)
    return _fill(self, (median + sigma * xp.tan(math.pi * (u - 0.5))).astype(d.np), "cauchy_")


def geometric_(self: Tensor, p: float, *, generator: Generator | None = None) -> Tensor:
    """Fill with the number of Bernoulli(``p``) trials up to the first success (1, 2, ...)."""
    if not 0 < p < 1:
        raise ValueError(f"geometric_: p must be in (0, 1), got {p}")
    xp = self._device.xp
    u = _uniform(_stream_for(self, generator), xp, self.shape, _dt.float64)
    k = xp.maximum(xp.ceil(xp.log1p(-u) / math.log1p(-p)), 1.0)
    return _fill(self, k, "geometric_")


def _bernoulli_method(self: Tensor, p: float | None = None, *, generator: Generator | None = None) -> Tensor:
    return bernoulli(self, p, generator=generator)


def _multinomial_method(self: Tensor, num_samples: int, replacement: bool = False, *,
                        generator: Generator | None = None) -> Tensor:
    return multinomial(self, num_samples, replacement, generator=generator)


METHODS: dict[str, Any] = {
    "uniform_": uniform_, "normal_": normal_, "bernoulli_": bernoulli_, "random_": random_,
    "exponential_": exponential_, "log_normal_": log_normal_, "cauchy_": cauchy_, "geometric_": geometric_,
    "bernoulli": _bernoulli_method, "multinomial": _multinomial_method,
}
