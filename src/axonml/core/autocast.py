"""Automatic mixed precision: ``autocast`` regions and the per-op casting policy.

Inside ``autocast(device_type)`` the ops that gain from low precision (matrix
products, linear, convolutions) cast their floating inputs on that device type
to the region's low dtype (float16 on CUDA, bfloat16 on CPU by default), and
the ops that need range or accumulation (softmax, normalizations, losses, ...)
cast theirs to float32. Everything else runs in its inputs' dtypes. float64
and integer tensors are never cast, nor tensors on another device type.

The policy is consulted in two places:

* a primitive with a class attribute ``autocast_policy`` (``"lower"`` or
  ``"fp32"``) casts its Tensor arguments in ``Primitive.apply`` (see
  ``cast_args``);
* a composed op decorated with ``@autocast_op("lower" | "fp32" | "promote")``
  casts its Tensor arguments (and tensors inside list/tuple arguments), then
  runs its body with autocast off for those device types, so the op is one unit
  as in PyTorch, where autocast wraps whole operators.

The casts are recorded ``Cast`` ops, so gradients flow back to each input in
its own dtype. Casts of parameters (leaf tensors that require grad) to the low
dtype are cached until the outermost ``autocast`` region exits, as PyTorch's
``cache_enabled``: a weight used at every step of a loop is cast once.

The state is a context variable: correct per thread and per asyncio task; a new
thread starts with autocast off.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from . import dtypes as D
from .grad_mode import GRAD_ENABLED, _Mode
from .tensor import Tensor

F = TypeVar("F", bound=Callable[..., Any])

DEVICE_TYPES = ("cpu", "cuda")
_DEFAULT_DTYPES = {"cpu": D.bfloat16, "cuda": D.float16}  # as PyTorch's get_autocast_dtype
_SUPPORTED = (D.float16, D.bfloat16)
_POLICIES = ("lower", "fp32", "promote")


class _State:
    """One level of nested autocast regions (immutable once made; inner levels make new ones).

    ``enabled`` maps each device type with autocast on to its low NumPy dtype; ``dtypes`` the
    configured autocast dtype of every device type (on or off); ``cache`` is shared by all
    levels of one outermost region and cleared when it exits.
    """

    __slots__ = ("enabled", "dtypes", "cache_enabled", "cache", "_without")

    def __init__(self, enabled: dict[str, np.dtype], dtypes: dict[str, D.dtype], cache_enabled: bool,
                 cache: dict[Any, Any]) -> None:
        self.enabled = enabled
        self.dtypes = dtypes
        self.cache_enabled = cache_enabled
        self.cache = cache
        self._without: dict[frozenset[str], _State] = {}

    def without(self, types: frozenset[str]) -> _State:
        """This state with autocast off for ``types`` (memoized: composed ops ask for it on every call)."""
        inner = self._without.get(types)
        if inner is None:
            enabled = {k: v for k, v in self.enabled.items() if k not in types}
            inner = _State(enabled, self.dtypes, self.cache_enabled, self.cache)
            self._without[types] = inner
        return inner


# None until the first autocast region: the hot path of every op tests only this.
AUTOCAST: contextvars.ContextVar[_State | None] = contextvars.ContextVar("axonml_autocast", default=None)


def _check_device_type(device_type: Any) -> str:
    if not isinstance(device_type, str):
        raise ValueError(f"autocast: expected device_type of type str ('cpu' or 'cuda'), got {type(device_type)}")
    if device_type not in DEVICE_TYPES:
        raise RuntimeError(f"autocast: unsupported device_type {device_type!r}; expected one of {DEVICE_TYPES}")
    return device_type


def is_autocast_available(device_type: str) -> bool:
    """Whether autocast supports ``device_type`` (``'cpu'`` and ``'cuda'``)."""
    return device_type in DEVICE_TYPES


def is_autocast_enabled(device_type: str = "cuda") -> bool:
    """Whether ops on ``device_type`` tensors autocast in the current context."""
    _check_device_type(device_type)
    state = AUTOCAST.get()
    return state is not None and device_type in state.enabled


def get_autocast_dtype(device_type: str) -> D.dtype:
    """The low dtype autocast uses for ``device_type`` here (float16 on CUDA, bfloat16 on CPU by default)."""
    _check_device_type(device_type)
    state = AUTOCAST.get()
    return _DEFAULT_DTYPES[device_type] if state is None else state.dtypes[device_type]


def is_autocast_cache_enabled() -> bool:
    """Whether casts of parameters are cached inside the current autocast region (True by default)."""
    state = AUTOCAST.get()
    return True if state is None else state.cache_enabled


class autocast(_Mode):  # noqa: N801 - PyTorch's name
    """Run the ops of a region in mixed precision on ``device_type`` tensors.

    A context manager and a decorator (of functions, coroutines and generators);
    nestable, and ``autocast(device_type, enabled=False)`` turns it off inside. ``dtype``
    is the low dtype (default: the current one, float16 for ``'cuda'`` and bfloat16 for
    ``'cpu'``); only float16 and bfloat16 are supported, any other dtype disables the
    region with a warning, as PyTorch does. ``cache_enabled`` (default True) caches casts
    of parameters until the outermost region exits: update parameters outside the
    region, or pass ``cache_enabled=False``. Call ``backward()`` outside the region: the
    backward ops then run in the dtypes autocast chose for the forward.
    """

    def __init__(self, device_type: str, dtype: Any = None, enabled: bool = True,
                 cache_enabled: bool | None = None) -> None:
        super().__init__()
        self.device = _check_device_type(device_type)
        self.fast_dtype = get_autocast_dtype(device_type) if dtype is None else D.as_dtype(dtype)
        self._cache_enabled = is_autocast_cache_enabled() if cache_enabled is None else bool(cache_enabled)
        self._states: list[tuple[contextvars.Token[_State | None], _State]] = []
        enabled = bool(enabled)
        if enabled and self.fast_dtype not in _SUPPORTED:
            warnings.warn(f"autocast: the target dtype {self.fast_dtype} is not supported on {device_type} "
                          "(only float16 and bfloat16); disabling autocast", UserWarning, stacklevel=2)
            enabled = False
        if enabled and device_type == "cuda" and not _cuda_available():
            warnings.warn("autocast: device_type 'cuda' was given but CUDA is not available; disabling autocast",
                          UserWarning, stacklevel=2)
            enabled = False
        if enabled:
            self.fast_dtype.np  # noqa: B018 - bfloat16 without ml_dtypes: a clear error now, not at the first op
        self._enabled = enabled

    def __enter__(self) -> None:
        prev = AUTOCAST.get()
        enabled = {} if prev is None else dict(prev.enabled)
        dtypes = dict(_DEFAULT_DTYPES) if prev is None else dict(prev.dtypes)
        dtypes[self.device] = self.fast_dtype
        if self._enabled:
            enabled[self.device] = self.fast_dtype.np
        else:
            enabled.pop(self.device, None)
        state = _State(enabled, dtypes, self._cache_enabled, {} if prev is None else prev.cache)
        self._states.append((AUTOCAST.set(state), state))

    def __exit__(self, *exc: object) -> None:
        token, state = self._states.pop()
        AUTOCAST.reset(token)
        if AUTOCAST.get() is None:  # the outermost region ends: its cached casts go
            state.cache.clear()

    def clone(self) -> autocast:
        new: autocast = super().clone()  # type: ignore[assignment]
        new._states = []
        return new


def _cuda_available() -> bool:
    from ..backend.cuda import is_available

    return is_available()


# ----- casting ---------------------------------------------------------------------------------------
_Cast: Any = None  # prims.movement.Cast, imported on first use (it imports core.function, which imports this)


def _cast(t: Tensor, target: np.dtype, state: _State, lower: bool) -> Tensor:
    """``t`` as ``target`` through a recorded Cast; parameters cast down are cached per region."""
    global _Cast
    if _Cast is None:
        from .prims.movement import Cast as _Cast
    cacheable = lower and state.cache_enabled and t._requires_grad and t._grad_fn is None and t._base is None
    if not cacheable:
        return _Cast.apply(t, target)  # type: ignore[no-any-return]
    key = (id(t), GRAD_ENABLED.get())  # a cast made under no_grad has no graph: never reuse it with grad on
    hit = state.cache.get(key)
    if hit is not None and hit[0] is t and hit[1] == t._version[0] and hit[2] == target:
        node = hit[3]._grad_fn
        if node is None or not node.released:  # a backward without retain_graph freed it: cast again
            return hit[3]  # type: ignore[no-any-return]
    out = _Cast.apply(t, target)
    state.cache[key] = (t, t._version[0], target, out)  # holding t keeps its id from being reused
    return out  # type: ignore[no-any-return]


def _eligible(t: Tensor) -> bool:
    """Floating point, not float64 (PyTorch's rule: double precision is never autocast)."""
    dt = t._data.dtype
    return dt != np.float64 and (dt.kind == "f" or D.is_float_np(dt))


def _target(policy: str, low: np.dtype) -> np.dtype:
    return low if policy == "lower" else np.dtype(np.float32)


def cast_args(policy: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` with each eligible Tensor on an autocast device type cast per ``policy`` ("lower" | "fp32").

    Called by ``Primitive.apply`` for primitives that set ``autocast_policy``, only while
    some autocast region is active.
    """
    state = AUTOCAST.get()
    if state is None or not state.enabled:
        return args
    out = None
    for i, a in enumerate(args):
        if isinstance(a, Tensor):
            low = state.enabled.get(a._device.type)
            if low is None or not _eligible(a):
                continue
            target = _target(policy, low)
            if a._data.dtype != target:
                if out is None:
                    out = list(args)
                out[i] = _cast(a, target, state, policy == "lower")
    return args if out is None else tuple(out)


def _tensors(args: tuple[Any, ...], kwargs: dict[str, Any], out_pos: int) -> list[Tensor]:
    """The Tensor inputs, including those one level inside lists and tuples (hx=(h, c), weight lists);
    not an ``out=`` argument."""
    found = []
    inputs = [a for i, a in enumerate(args) if i != out_pos] + [v for k, v in kwargs.items() if k != "out"]
    for a in inputs:
        if isinstance(a, Tensor):
            found.append(a)
        elif isinstance(a, list | tuple):
            found.extend(x for x in a if isinstance(x, Tensor))
    return found


def _cast_value(a: Any, targets: dict[str, np.dtype], state: _State, lower: bool) -> Any:
    if isinstance(a, Tensor):
        target = targets.get(a._device.type)
        if target is not None and a._data.dtype != target and _eligible(a):
            return _cast(a, target, state, lower)
        return a
    if isinstance(a, list | tuple) and any(isinstance(x, Tensor) for x in a):
        return type(a)(_cast_value(x, targets, state, lower) for x in a)
    return a


def _promote_targets(tensors: list[Tensor], types: frozenset[str]) -> dict[str, np.dtype]:
    """Per device type, the widest floating dtype among the eligible tensors (PyTorch's "promote" ops)."""
    widest: dict[str, D.dtype] = {}
    for t in tensors:
        if t._device.type in types and _eligible(t):
            dt = D.from_numpy_dtype(t._data.dtype)
            cur = widest.get(t._device.type)
            widest[t._device.type] = dt if cur is None else D.promote_types(cur, dt)
    return {k: v.np for k, v in widest.items()}


def autocast_op(policy: str) -> Callable[[F], F]:
    """Decorate a composed op so that it follows ``policy`` inside autocast regions.

    ``"lower"``: floating inputs to the region's low dtype; ``"fp32"``: to float32;
    ``"promote"``: to the widest floating dtype among them (ops that need one dtype).
    The body then runs with autocast off for the inputs' device types. Outside any
    region the cost is one context-variable read.
    """
    if policy not in _POLICIES:
        raise ValueError(f"autocast_op: policy must be one of {_POLICIES}, got {policy!r}")

    get_state = AUTOCAST.get  # bound once: this check runs on every call of the op

    def decorate(fn: F) -> F:
        # an ``out=`` tensor receives the result; it is not an input to cast (PyTorch: out= is not autocast)
        names = list(inspect.signature(fn).parameters)
        out_pos = names.index("out") if "out" in names else -1

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            state = get_state()
            if state is None or not state.enabled:
                return fn(*args, **kwargs)
            tensors = _tensors(args, kwargs, out_pos)
            types = frozenset(t._device.type for t in tensors if t._device.type in state.enabled)
            if not types:
                return fn(*args, **kwargs)
            if policy == "promote":
                targets = _promote_targets(tensors, types)
            else:
                targets = {k: _target(policy, state.enabled[k]) for k in types}
            lower = policy == "lower"
            new_args = tuple(a if i == out_pos else _cast_value(a, targets, state, lower) for i, a in enumerate(args))
            new_kwargs = {k: v if k == "out" else _cast_value(v, targets, state, lower) for k, v in kwargs.items()}
            token = AUTOCAST.set(state.without(types))
            try:
                return fn(*new_args, **new_kwargs)
            finally:
                AUTOCAST.reset(token)

        wrapper.__autocast_policy__ = policy  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
