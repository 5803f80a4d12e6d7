"""``GradScaler``: dynamic loss scaling for mixed-precision training, as ``torch.amp.GradScaler``.

float16 gradients underflow: small values flush to zero. Multiplying the loss by a
large factor (the scale) before ``backward`` lifts the gradients into range; the
scaler divides them back before the optimizer uses them, skips the step when any
gradient came out inf or NaN (the scale was too large), and then adapts the scale:
times ``backoff_factor`` after an overflow, times ``growth_factor`` after
``growth_interval`` clean steps in a row. The usual loop::

    scaler = GradScaler("cuda")
    for x, y in loader:
        optimizer.zero_grad()
        with autocast("cuda"):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)       # optional: to clip the true gradients
        scaler.step(optimizer)           # skipped when a gradient is inf/NaN
        scaler.update()

The optimizer is anything with ``param_groups`` (a list of dicts with ``"params"``)
and ``step()``: the scaler does not import ``axonml.optim``. The scale is kept in
float32 on the host and updated with the same arithmetic as PyTorch's, so a run
follows the same scale trajectory; the inf/NaN check of each device's gradients
is one array per device, read back once per ``step``.
"""

from __future__ import annotations

import enum
import warnings
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..core import dtypes as D
from ..core.tensor import Tensor
from ..cuda import is_available as _cuda_available

__all__ = ["GradScaler"]


class OptState(enum.Enum):
    READY = 0
    UNSCALED = 1
    STEPPED = 2


class _PerOptimizer:
    """What one optimizer went through since the last ``update()``."""

    __slots__ = ("stage", "found_inf_per_device")

    def __init__(self) -> None:
        self.stage = OptState.READY
        self.found_inf_per_device: dict[Any, Any] = {}  # Device -> 0-d bool array (on that device)


class GradScaler:
    """Scale the loss, unscale the gradients, skip steps with inf/NaN gradients, adapt the scale.

    ``device``: ``'cuda'`` (default, as PyTorch) or ``'cpu'``; with ``'cuda'`` and no GPU the
    scaler disables itself with a warning. ``init_scale``: the first scale. ``growth_factor``
    (> 1) and ``backoff_factor`` (< 1): the scale's factors after ``growth_interval`` clean
    steps and after an overflow. ``enabled=False`` makes every method a pass-through
    (``step`` just calls ``optimizer.step()``), so one loop serves both precisions.
    """

    def __init__(self, device: str = "cuda", init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000, enabled: bool = True) -> None:
        if device not in ("cpu", "cuda"):
            raise ValueError(f"GradScaler: device must be 'cpu' or 'cuda', got {device!r}")
        self._device = device
        self._enabled = bool(enabled)
        if self._enabled and device == "cuda" and not _cuda_available():
            warnings.warn("GradScaler is enabled for 'cuda', but CUDA is not available; disabling it",
                          UserWarning, stacklevel=2)
            self._enabled = False
        if self._enabled:
            if not growth_factor > 1.0:
                raise ValueError(f"GradScaler: growth_factor must be > 1.0, got {growth_factor}")
            if not backoff_factor < 1.0:
                raise ValueError(f"GradScaler: backoff_factor must be < 1.0, got {backoff_factor}")
            if not isinstance(growth_interval, int) or isinstance(growth_interval, bool) or growth_interval < 1:
                raise ValueError(f"GradScaler: growth_interval must be a positive int, got {growth_interval!r}")
        self._init_scale = float(init_scale)
        self._scale: np.float32 | None = None  # made on the first scale(), as PyTorch's lazy init
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = growth_interval
        self._init_growth_tracker = 0
        self._growth_tracker: int | None = None
        self._per_optimizer_states: defaultdict[int, _PerOptimizer] = defaultdict(_PerOptimizer)

    # ----- the loop --------------------------------------------------------------------------------
    def scale(self, outputs: Any) -> Any:
        """``outputs`` (a Tensor, or a list/tuple/iterable of them) times the current scale."""
        if not self._enabled:
            return outputs
        if self._scale is None:
            self._scale = np.float32(self._init_scale)
            self._growth_tracker = self._init_growth_tracker
        factor = float(self._scale)

        def apply(value: Any) -> Any:
            if isinstance(value, Tensor):
                return value * factor
            if isinstance(value, Iterable) and not isinstance(value, str | bytes):
                scaled = map(apply, value)
                return type(value)(scaled) if isinstance(value, list | tuple) else scaled
            raise ValueError(f"GradScaler.scale: outputs must be a Tensor or an iterable of Tensors, "
                             f"got {type(value).__name__}")

        return apply(outputs)

    def unscale_(self, optimizer: Any) -> None:
        """Divide the optimizer's gradients by the scale, in place, and record whether any is inf/NaN.

        Call it at most once per optimizer between ``update()`` calls, before ``step()``
        (``step()`` calls it itself when it was not called); useful to clip or inspect the
        true gradients.
        """
        if not self._enabled:
            return
        self._check_started("unscale_")
        state = self._per_optimizer_states[id(optimizer)]
        if state.stage is OptState.UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
        if state.stage is OptState.STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        assert self._scale is not None
        inv_scale = float(np.float32(1.0 / np.float64(self._scale)))  # PyTorch: reciprocal in double, then float
        state.found_inf_per_device = _unscale_grads(optimizer, inv_scale)
        state.stage = OptState.UNSCALED

    def step(self, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
        """``optimizer.step(*args, **kwargs)`` unless a gradient was inf/NaN; returns what it returns (or None).

        Unscales the gradients first when ``unscale_`` was not called. Closures are not
        supported while the scaler is enabled (the closure's backward would be unscaled).
        """
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        self._check_started("step")
        state = self._per_optimizer_states[id(optimizer)]
        if state.stage is OptState.STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state.stage is OptState.READY:
            self.unscale_(optimizer)
        if not state.found_inf_per_device:
            raise RuntimeError("No inf checks were recorded for this optimizer: none of its parameters has a .grad.")
        retval = None
        if not any(bool(v) for v in state.found_inf_per_device.values()):  # the one device->host read per step
            retval = optimizer.step(*args, **kwargs)
        state.stage = OptState.STEPPED
        return retval

    def update(self, new_scale: float | Tensor | None = None) -> None:
        """Adapt the scale after this iteration's steps, or set it to ``new_scale``; starts a new iteration."""
        if not self._enabled:
            return
        self._check_started("update")
        if new_scale is not None:
            self._scale = np.float32(_scale_value(new_scale))
        else:
            found = [f for s in self._per_optimizer_states.values() for f in s.found_inf_per_device.values()]
            if not found:
                raise RuntimeError("No inf checks were recorded prior to update().")
            self._update_scale(any(bool(f) for f in found))
        self._per_optimizer_states = defaultdict(_PerOptimizer)

    def _update_scale(self, found_inf: bool) -> None:
        """PyTorch's rule: factors applied in double precision, the scale stored as float32."""
        assert self._scale is not None and self._growth_tracker is not None
        if found_inf:
            self._scale = np.float32(np.float64(self._scale) * self._backoff_factor)
            self._growth_tracker = 0
            return
        successful = self._growth_tracker + 1
        if successful == self._growth_interval:
            with np.errstate(over="ignore"):
                grown = np.float32(np.float64(self._scale) * self._growth_factor)
            if np.isfinite(grown):  # a scale that would overflow float32 stays where it is
                self._scale = grown
            self._growth_tracker = 0
        else:
            self._growth_tracker = successful

    def _check_started(self, name: str) -> None:
        if self._scale is None:
            raise RuntimeError(f"GradScaler.{name}() was called but the scale was never used: call "
                               "scaler.scale(loss) (and backward on it) earlier in the iteration.")

    # ----- queries and settings --------------------------------------------------------------------
    def get_scale(self) -> float:
        """The current scale (``init_scale`` before the first ``scale()``; 1.0 when disabled)."""
        if not self._enabled:
            return 1.0
        return self._init_scale if self._scale is None else float(self._scale)

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = int(new_interval)

    def _get_growth_tracker(self) -> int:
        if not self._enabled:
            return 0
        return self._init_growth_tracker if self._growth_tracker is None else self._growth_tracker

    def is_enabled(self) -> bool:
        """Whether the scaler scales (False when built with ``enabled=False`` or disabled for lack of CUDA)."""
        return self._enabled

    # ----- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}``, as
        PyTorch's (so checkpoints move between the two); empty when disabled."""
        if not self._enabled:
            return {}
        return {
            "scale": self.get_scale(),
            "growth_factor": self._growth_factor,
            "backoff_factor": self._backoff_factor,
            "growth_interval": self._growth_interval,
            "_growth_tracker": self._get_growth_tracker(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict()`` returned (a disabled scaler ignores it)."""
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError("The source state dict is empty, possibly because it was saved from a disabled "
                               "instance of GradScaler.")
        missing = {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"} - set(state_dict)
        if missing:
            raise KeyError(f"GradScaler.load_state_dict: missing keys {sorted(missing)}")
        self._init_scale = float(state_dict["scale"])
        if self._scale is not None:
            self._scale = np.float32(self._init_scale)
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._init_growth_tracker = int(state_dict["_growth_tracker"])
        if self._growth_tracker is not None:
            self._growth_tracker = self._init_growth_tracker

    def __getstate__(self) -> dict[str, Any]:
        if self._enabled and any(s.stage is not OptState.READY for s in self._per_optimizer_states.values()):
            raise RuntimeError("A GradScaler instance may only be pickled at the beginning of an iteration, "
                               "or at the end after scaler.update().")
        state = self.__dict__.copy()
        state["_per_optimizer_states"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._per_optimizer_states = defaultdict(_PerOptimizer)


def _scale_value(new_scale: Any) -> float:
    """A number, or a one-element float32 Tensor without grad, as PyTorch's ``update(new_scale)`` takes."""
    if isinstance(new_scale, Tensor):
        if new_scale.numel() != 1 or new_scale.dtype is not D.float32 or new_scale.requires_grad:
            raise ValueError("GradScaler.update: new_scale must be a float or a one-element float32 Tensor "
                             "that does not require grad")
        return float(new_scale.item())
    if isinstance(new_scale, int | float) and not isinstance(new_scale, bool):
        return float(new_scale)
    raise TypeError(f"GradScaler.update: new_scale must be a float or a Tensor, got {type(new_scale).__name__}")


def _unscale_grads(optimizer: Any, inv_scale: float) -> dict[Any, Any]:
    """Multiply every gradient of ``optimizer`` by ``inv_scale`` in place; per device, whether any was inf/NaN.

    Finiteness is judged on the values before the multiplication, as PyTorch's kernel does.
    Works on the raw arrays (the sanctioned fast path of optimizers): no graph is recorded.
    """
    found: dict[Any, Any] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            if g._data.dtype == np.float16:
                raise ValueError("Attempting to unscale FP16 gradients: keep the parameters in float32 "
                                 "(autocast casts them for the ops); the scaler needs float32 gradients.")
            arr, dev = g._data, g._device
            xp = dev.xp
            bad = ~xp.isfinite(arr).all()
            prev = found.get(dev)
            found[dev] = bad if prev is None else prev | bad
            if not getattr(arr.flags, "writeable", True):  # a user-set read-only NumPy view (CuPy has no flag)
                g._data = arr * inv_scale
            else:
                arr *= inv_scale
            g._version[0] += 1  # the gradient changed in place, as an in-place op would record
    return found
