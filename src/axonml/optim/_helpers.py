"""Helpers for optimizer steps: scratch buffers, state creation, the shared pieces of the updates, validation.

Updates work on raw arrays (``p._data``, ``p._grad._data``) with the device's array
module, in place and into reused scratch buffers: one implementation for NumPy and
CuPy that allocates nothing after the first step.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import CPU, Device
from ..core import dtypes as _dt
from ..core.tensor import Tensor

__all__ = [
    "Scratch", "bump_version", "check_betas", "check_lr", "check_range", "effective_grad", "lerp_",
    "scalar_dtype", "scalar_state", "step_up", "to_scalar", "zeros_state",
]


class Scratch:
    """Reusable temporary arrays, one per (slot, dtype, device), as large as the largest parameter.

    ``take(dev, like, slot)`` returns an uninitialized array shaped like ``like``: a
    view of the slot's buffer, so an optimizer step allocates nothing after the first.
    """

    __slots__ = ("_bufs",)

    def __init__(self) -> None:
        self._bufs: dict[tuple[int, Any, Device], Any] = {}

    def take(self, dev: Device, like: Any, slot: int = 0) -> Any:
        key = (slot, like.dtype, dev)
        buf = self._bufs.get(key)
        n = like.size
        if buf is None or buf.size < n:
            buf = self._bufs[key] = dev.xp.empty(max(n, 1), dtype=like.dtype)
        return buf[:n].reshape(like.shape)


def scalar_dtype() -> np.dtype:
    """The dtype of scalar state (``step``, ``mu_product``): float64 if that is the default dtype, else float32."""
    return np.dtype(np.float64) if _dt.get_default_dtype() is _dt.float64 else np.dtype(np.float32)


def scalar_state(value: float) -> Tensor:
    """A 0-d CPU tensor of :func:`scalar_dtype` (how PyTorch keeps ``step``)."""
    return Tensor._make(np.array(value, dtype=scalar_dtype()), CPU)


def zeros_state(p: Tensor, fill: float = 0.0) -> Tensor:
    """A state tensor like ``p`` (same shape, dtype, device) filled with ``fill``."""
    xp = p._device.xp
    arr = xp.zeros(p._data.shape, dtype=p._data.dtype) if fill == 0 else xp.full(p._data.shape, fill, p._data.dtype)
    return Tensor._make(arr, p._device)


def step_up(state: dict[str, Any]) -> float:
    """Add one to ``state["step"]`` (a 0-d tensor) in place and return the new count."""
    st = state["step"]
    if not isinstance(st, Tensor):  # an int from an old-style state dict
        st = state["step"] = scalar_state(float(st))
    arr = st._data
    arr += 1
    return float(arr)


def to_scalar(x: Any) -> Any:
    """A hyperparameter as a Python number (a 1-element tensor gives its value)."""
    if isinstance(x, Tensor):
        if x.numel() != 1:
            raise ValueError(f"a tensor hyperparameter must have 1 element, got shape {tuple(x.shape)}")
        return x.item()
    return x


def effective_grad(scratch: Scratch, p: Tensor, g: Any, weight_decay: float, maximize: bool) -> Any:
    """The gradient the update uses: ``-g`` if maximizing, plus ``weight_decay * p`` (L2).

    Returns ``g`` itself when nothing changes (read-only), else a scratch buffer (slot 0).
    """
    if weight_decay != 0:
        xp = p._device.xp
        out = scratch.take(p._device, g, 0)
        xp.multiply(p._data, weight_decay, out=out)
        if maximize:
            xp.subtract(out, g, out=out)
        else:
            xp.add(out, g, out=out)
        return out
    if maximize:
        out = scratch.take(p._device, g, 0)
        p._device.xp.negative(g, out=out)
        return out
    return g


def lerp_(xp: Any, a: Any, b: Any, weight: float, tmp: Any) -> None:
    """``a += weight * (b - a)`` in place (``torch.lerp_`` with a scalar weight), using ``tmp``."""
    if abs(weight) < 0.5:
        xp.subtract(b, a, out=tmp)
        tmp *= weight
        a += tmp
    else:  # PyTorch's form for large weights: b - (b - a) * (1 - weight)
        xp.subtract(b, a, out=tmp)
        tmp *= 1.0 - weight
        xp.subtract(b, tmp, out=a)


def adam_moments(state: dict[str, Any], p: Tensor) -> float:
    """Create ``step``, ``exp_avg`` and ``exp_avg_sq`` on first use, count the step and return it."""
    if "step" not in state:
        state["step"] = scalar_state(0.0)
        state["exp_avg"] = zeros_state(p)
        state["exp_avg_sq"] = zeros_state(p)
    return step_up(state)


def update_moments(xp: Any, m: Any, v: Any, g: Any, beta1: float, beta2: float, tmp: Any) -> None:
    """Adam's running averages in place: ``m = lerp(m, g, 1 - beta1)``, ``v = beta2 v + (1 - beta2) g^2``."""
    lerp_(xp, m, g, 1 - beta1, tmp)
    v *= beta2
    xp.multiply(g, 1 - beta2, out=tmp)
    tmp *= g
    v += tmp


def decayed_grad(scratch: Scratch, p: Tensor, lr: float, weight_decay: float, decoupled: bool, maximize: bool) -> Any:
    """The update's gradient with weight decay: decoupled (``p *= 1 - lr wd``, AdamW) or L2 (``g + wd p``)."""
    if weight_decay != 0 and decoupled:
        p._data *= 1 - lr * weight_decay
        return effective_grad(scratch, p, p._grad._data, 0, maximize)  # type: ignore[union-attr]
    return effective_grad(scratch, p, p._grad._data, weight_decay, maximize)  # type: ignore[union-attr]


def bump_version(p: Tensor) -> None:
    """Mark ``p`` as modified in place (autograd checks saved tensors against this counter)."""
    p._version[0] += 1


def check_range(name: str, value: Any, low: float = 0.0, high: float = math.inf, high_open: bool = False) -> None:
    """Raise ``ValueError("Invalid <name>: <value>")`` unless ``low <= value <= high`` (``< high`` if open)."""
    v = to_scalar(value)
    ok = low <= v < high if high_open else low <= v <= high
    if not ok:
        raise ValueError(f"Invalid {name}: {value}")


def check_betas(betas: Any) -> tuple[float, float]:
    """Validate ``betas`` (two numbers in [0, 1)) and return them as floats."""
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair, got {betas!r}")
    b = tuple(to_scalar(x) for x in betas)
    for i, x in enumerate(b):
        if not 0.0 <= x < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {x}")
    return (b[0], b[1])


def check_lr(lr: Any) -> None:
    """Validate a learning rate: a non-negative number or 1-element tensor."""
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    check_range("learning rate", lr)
