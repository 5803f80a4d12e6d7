"""Gradient clipping: ``clip_grad_norm_``, ``clip_grad_value_``, ``get_total_norm``, ``clip_grads_with_norm_``.

These run once per training step over every gradient, so they work on the raw
arrays of each device (``t._device.xp``), in place, and never move a value to
the host: the total norm stays a 0-d tensor on the device and ``error_if_nonfinite``
is the only check that reads it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ...backend.helpers import move_array
from ...core import dtypes as _dt
from ...core.tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_", "get_total_norm"]

_LOW_PRECISION = ("float16", "bfloat16")


def _tensors(x: Tensor | Iterable[Any]) -> list[Tensor]:
    return [x] if isinstance(x, Tensor) else list(x)


def _grads(parameters: Tensor | Iterable[Any]) -> list[Tensor]:
    return [p.grad for p in _tensors(parameters) if p.grad is not None]


def _vector_norm(xp: Any, a: Any, p: float) -> Any:
    """The ``p``-norm of array ``a`` as a 0-d array (float32 or wider: half precision would overflow)."""
    if a.dtype.name in _LOW_PRECISION:
        a = a.astype(np.float32)
    if a.size == 0:
        return xp.zeros((), dtype=a.dtype)
    flat = a.ravel(order="A")  # a view for C- and Fortran-ordered arrays alike (weight grads are often the latter)
    if p == 2.0:
        return xp.sqrt(xp.dot(flat, flat))  # one BLAS pass, no temporary
    if p == math.inf:
        return xp.abs(flat).max()
    if p == -math.inf:
        return xp.abs(flat).min()
    if p == 0.0:
        return xp.asarray((flat != 0).sum(), dtype=a.dtype)
    if p == 1.0:
        return xp.abs(flat).sum()
    return (xp.abs(flat) ** p).sum() ** (1.0 / p)


def get_total_norm(tensors: Tensor | Iterable[Tensor], norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach: bool | None = None) -> Tensor:
    """The ``norm_type``-norm of all ``tensors`` together (as if concatenated), a 0-d tensor.

    It lives on the first tensor's device and has the promoted dtype of the
    tensors. ``foreach`` is accepted for PyTorch compatibility (one pass per
    tensor either way).
    """
    ts = [t for t in _tensors(tensors) if t is not None]
    p = float(norm_type)
    if not ts:
        return Tensor._make(np.zeros((), dtype=_dt.get_default_dtype().np), _first_device(tensors))
    dev = ts[0]._device
    xp = dev.xp
    norms = [move_array(_vector_norm(t._device.xp, t._data, p), dev) for t in ts]
    out_dtype = _dt.result_type(*ts).np
    stacked = xp.stack([n.astype(np.result_type(*[n.dtype for n in norms])) for n in norms])
    total = _vector_norm(xp, stacked, p).astype(out_dtype)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(
            f"The total norm of order {p} for gradients from `parameters` is non-finite, so it cannot be clipped. "
            "To disable this error and scale the gradients by the non-finite norm anyway, "
            "set `error_if_nonfinite=False`"
        )
    return Tensor._make(xp.asarray(total), dev)


def _first_device(tensors: Any) -> Any:
    from ...backend import CPU

    ts = _tensors(tensors)
    return ts[0]._device if ts and isinstance(ts[0], Tensor) else CPU


def clip_grads_with_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float, total_norm: Tensor,
                          foreach: bool | None = None) -> None:
    """Scale the gradients in place by ``min(1, max_norm / (total_norm + 1e-6))``."""
    grads = _grads(parameters)
    if not grads:
        return
    coef = total_norm._data.astype(np.float64) if total_norm._data.dtype.name in _LOW_PRECISION else total_norm._data
    xp = total_norm._device.xp
    coef = xp.minimum(max_norm / (coef + 1e-6), 1.0)
    for g in grads:
        gx = g._device.xp
        c = move_array(coef, g._device).astype(g._data.dtype)
        gx.multiply(g._data, c, out=g._data)
        g._version[0] += 1


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> Tensor:
    """Scale all gradients together so their total ``norm_type``-norm is at most ``max_norm``.

    Returns the total norm before clipping (a 0-d tensor). With
    ``error_if_nonfinite`` a NaN or infinite total norm raises instead of
    scaling every gradient to NaN.
    """
    params = _tensors(parameters)
    grads = _grads(params)
    total = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(params, float(max_norm), total, foreach)
    return total


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float, foreach: bool | None = None) -> None:
    """Clamp every gradient in place to ``[-clip_value, clip_value]``."""
    c = float(clip_value)
    for g in _grads(parameters):
        g._device.xp.clip(g._data, -c, c, out=g._data)
        g._version[0] += 1
