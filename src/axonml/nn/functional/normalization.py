"""Normalization functions, as in ``torch.nn.functional``: batch, instance, layer, group, RMS and
local response norm.

Layer norm and batch norm with batch statistics run through fused primitives
(``nn/prims/norm.py``: composed they were ~10x slower than PyTorch); the others
reuse those primitives or are compositions of Tensor ops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...core import dtypes as D
from ...core.autocast import autocast_op
from ...core.grad_mode import no_grad
from ...core.methods import cat
from ...core.tensor import Tensor
from ...errors import DTypeError, ShapeError
from ..prims._fastpath import compute_dtype
from ..prims._norm_cuda import Running
from ..prims.norm import BatchNorm, LayerNorm

__all__ = ["batch_norm", "group_norm", "instance_norm", "layer_norm", "local_response_norm", "rms_norm"]


# ----- argument checks ---------------------------------------------------------------------------
def _float_input(op: str, x: Any) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor input, got {type(x).__name__}")
    if not x.is_floating_point():
        raise DTypeError(f"{op}: expected a floating point input, got {x.dtype}")
    return x


def _check_param(op: str, name: str, t: Tensor | None, shape: tuple[int, ...]) -> None:
    if t is not None and t._data.shape != shape:
        raise ShapeError(f"{op}: {name} of shape {tuple(t.shape)}, expected {shape}")


def _shape_arg(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    return (int(normalized_shape),) if isinstance(normalized_shape, int) else tuple(int(s) for s in normalized_shape)


def _channel_view(t: Tensor, ndim: int) -> Tensor:
    """A (C,) tensor shaped to broadcast along dim 1 of an ``ndim``-d input: (C, 1, ..., 1)."""
    return t.reshape((t.shape[0],) + (1,) * (ndim - 2))


def _running_update(stat: Tensor, value: Any, momentum: float) -> None:
    """``stat = (1 - momentum) * stat + momentum * value`` in place (no history), ``value`` an array."""
    with no_grad():
        stat.mul_(1.0 - momentum).add_(Tensor._make(value * momentum, stat.device))


def _running_updates(running_mean: Tensor | None, running_var: Tensor | None, mean: Any, var: Any, n: int,
                     momentum: float) -> None:
    """Both running statistics after a training batch of ``n`` values per channel (unbiased variance)."""
    if running_mean is not None:
        _running_update(running_mean, mean, momentum)
    if running_var is not None:
        _running_update(running_var, var * (n / (n - 1)), momentum)


def _in_kernel_update(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None, counter: Tensor | None,
                      n: int, momentum: float) -> Running | None:
    """On CUDA, the running statistics' update (and ``counter += 1``) for batch norm's statistics launch to make
    (where the tensor ops make five launches, each ~10 us of host time; ResNet-18 has 20 batch norms); None where
    it cannot: on the CPU, or a buffer of another dtype or layout than the kernel writes."""
    if x.device.type != "cuda" or (running_mean is None and running_var is None):
        return None
    ct = compute_dtype(x._data.dtype)
    for t in (running_mean, running_var):
        if t is not None and (t._data.dtype != ct or not t._data.flags.c_contiguous):
            return None
    if counter is not None and (counter._data.dtype != np.int64 or counter._data.size != 1):
        return None
    return Running(None if running_mean is None else running_mean._data,
                   None if running_var is None else running_var._data, momentum, n / (n - 1),
                   None if counter is None else counter._data)


# ----- batch norm ---------------------------------------------------------------------------------
@autocast_op("fp32")
def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,  # noqa: A002
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each channel (dim 1) of ``(N, C, *)`` input.

    In training, the batch's statistics are used and the running statistics (when given) are
    updated in place: ``running = (1 - momentum) * running + momentum * batch_stat``, with the
    unbiased variance for ``running_var``, as PyTorch. In evaluation the running statistics are
    used. ``momentum=None`` (a cumulative average) is handled by the module, which passes the
    factor for this step.
    """
    return counted_batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, None)


@autocast_op("fp32")
def counted_batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,  # noqa: A002
                       weight: Tensor | None, bias: Tensor | None, training: bool, momentum: float, eps: float,
                       counter: Tensor | None) -> Tensor:
    """:func:`batch_norm` that also adds 1 to ``counter`` (a module's ``num_batches_tracked``) when training."""
    x = _float_input("batch_norm", input)
    if x.ndim < 2:
        raise ShapeError(f"batch_norm: expected an input of shape (N, C, *), got {tuple(x.shape)}")
    c = x._data.shape[1]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        _check_param("batch_norm", name, t, (c,))
    if momentum is None:
        raise TypeError("batch_norm: momentum must be a float (the module turns momentum=None into a factor)")
    if not training:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when training=False")
        return _affine_with_stats(x, running_mean, running_var, weight, bias, eps)
    n = x.numel() // c if c else 0
    if n <= 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input of "
                         f"shape {tuple(x.shape)}")
    stats: list[Any] = []
    running = _in_kernel_update(x, running_mean, running_var, counter, n, momentum)
    y = BatchNorm.apply(x, weight, bias, eps, stats, running)
    if running is None:
        mean, var = stats
        _running_updates(running_mean, running_var, mean, var, n, momentum)
        if counter is not None:
            with no_grad():
                counter.add_(1)
        return y
    for t in (running_mean, running_var, counter):
        if t is not None:
            t._version[0] += 1  # written in place by the kernel: autograd's check of saved tensors must see it
    return y


def _affine_with_stats(x: Tensor, mean: Tensor, var: Tensor, weight: Tensor | None, bias: Tensor | None,
                       eps: float) -> Tensor:
    """``(x - mean) / sqrt(var + eps) * weight + bias`` per channel, folded into one scale and shift."""
    scale = (var + eps).rsqrt()
    if weight is not None:
        scale = scale * weight
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias
    y = x * _channel_view(scale, x.ndim) + _channel_view(shift, x.ndim)
    return y if y.dtype == x.dtype else y.to(x.dtype)


# ----- instance norm ------------------------------------------------------------------------------
@autocast_op("fp32")
def instance_norm(input: Tensor, running_mean: Tensor | None = None, running_var: Tensor | None = None,  # noqa: A002
                  weight: Tensor | None = None, bias: Tensor | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each (sample, channel) plane of ``(N, C, *spatial)`` input over its spatial dimensions.

    With running statistics, each is updated with the average over the batch of the
    per-instance statistics (as PyTorch). ``use_input_stats=False`` normalizes with the running
    statistics instead.
    """
    x = _float_input("instance_norm", input)
    if x.ndim < 3:
        raise ShapeError(f"instance_norm: expected an input of shape (N, C, *spatial), got {tuple(x.shape)}")
    n, c = x.shape[0], x.shape[1]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        _check_param("instance_norm", name, t, (c,))
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ValueError("instance_norm: use_input_stats=False needs running_mean and running_var")
        return _affine_with_stats(x, running_mean, running_var, weight, bias, eps)
    spatial = math.prod(x.shape[2:])
    if spatial <= 1:
        raise ValueError(f"instance_norm: expected more than 1 spatial element when training, got input of "
                         f"shape {tuple(x.shape)}")
    # one "batch norm" over (1, N*C, spatial): every (sample, channel) plane is its own channel
    w = None if weight is None else weight.repeat(n)
    b = None if bias is None else bias.repeat(n)
    stats: list[Any] = []
    y = BatchNorm.apply(x.reshape(1, n * c, spatial), w, b, eps, stats, None).reshape(x.shape)
    mean, var = stats
    if running_mean is not None and n:
        _running_update(running_mean, mean.reshape(n, c).mean(0), momentum)
    if running_var is not None and n:
        _running_update(running_var, var.reshape(n, c).mean(0) * (spatial / (spatial - 1)), momentum)
    return y


# ----- layer norm, group norm, RMS norm -------------------------------------------------------------
def _check_trailing(op: str, x: Tensor, shape: tuple[int, ...]) -> None:
    if not shape or tuple(x.shape[x.ndim - len(shape):]) != shape or len(shape) > x.ndim:
        raise ShapeError(f"{op}: normalized_shape={list(shape)} expects an input of shape [*, "
                         f"{', '.join(map(str, shape))}], got {tuple(x.shape)}")


@autocast_op("fp32")
def layer_norm(input: Tensor, normalized_shape: int | Sequence[int], weight: Tensor | None = None,  # noqa: A002
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalize over the trailing ``normalized_shape`` dimensions (biased variance), then scale and shift."""
    x = _float_input("layer_norm", input)
    shape = _shape_arg(normalized_shape)
    _check_trailing("layer_norm", x, shape)
    _check_param("layer_norm", "weight", weight, shape)
    _check_param("layer_norm", "bias", bias, shape)
    return LayerNorm.apply(x, weight, bias, len(shape), eps)


@autocast_op("fp32")
def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,  # noqa: A002
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalize ``(N, C, *)`` input over groups of ``C // num_groups`` channels (and all spatial positions)."""
    x = _float_input("group_norm", input)
    if x.ndim < 2:
        raise ShapeError(f"group_norm: expected an input of shape (N, C, *), got {tuple(x.shape)}")
    n, c = x.shape[0], x.shape[1]
    if num_groups <= 0 or c % num_groups:
        raise ShapeError(f"group_norm: {c} channels cannot be split into {num_groups} groups")
    _check_param("group_norm", "weight", weight, (c,))
    _check_param("group_norm", "bias", bias, (c,))
    per_group = (c // num_groups) * math.prod(x.shape[2:])
    y = LayerNorm.apply(x.reshape(n, num_groups, per_group), None, None, 1, eps).reshape(x.shape)
    if weight is not None:
        y = y * _channel_view(weight, x.ndim)
    if bias is not None:
        y = y + _channel_view(bias, x.ndim)
    return y if y.dtype == x.dtype else y.to(x.dtype)


@autocast_op("fp32")
def rms_norm(input: Tensor, normalized_shape: int | Sequence[int], weight: Tensor | None = None,  # noqa: A002
             eps: float | None = None) -> Tensor:
    """``x / sqrt(mean(x^2) + eps) * weight`` over the trailing ``normalized_shape`` dimensions.

    ``eps=None`` uses the machine epsilon of the input's dtype, as PyTorch. Half-precision
    inputs are computed in float32.
    """
    x = _float_input("rms_norm", input)
    shape = _shape_arg(normalized_shape)
    _check_trailing("rms_norm", x, shape)
    _check_param("rms_norm", "weight", weight, shape)
    if eps is None:
        eps = float(D.finfo(x.dtype).eps)
    xc = x.to(D.float32) if x.dtype in (D.float16, D.bfloat16) else x
    dims = tuple(range(x.ndim - len(shape), x.ndim))
    y = xc * ((xc * xc).mean(dims, keepdim=True) + eps).rsqrt()
    y = y.to(x.dtype) if y.dtype != x.dtype else y
    return y if weight is None else y * weight


def local_response_norm(input: Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75,  # noqa: A002
                        k: float = 1.0) -> Tensor:
    """``x / (k + alpha * mean of x^2 over a window of size channels) ** beta`` (zero-padded window)."""
    x = _float_input("local_response_norm", input)
    if x.ndim < 3:
        raise ShapeError(f"local_response_norm: expected 3 or more dimensions (N, C, *), got {tuple(x.shape)}")
    if size < 1:
        raise ValueError(f"local_response_norm: size must be positive, got {size}")
    if x.numel() == 0:
        return x
    c = x.shape[1]
    sq = x * x
    lo, hi = size // 2, (size - 1) // 2

    def zeros(width: int) -> Tensor:  # zero channels: the window's padding
        return Tensor._make(x.device.xp.zeros((x.shape[0], width, *x.shape[2:]), x._data.dtype), x.device)

    parts = [zeros(lo)] if lo else []
    parts.append(sq)
    if hi:
        parts.append(zeros(hi))
    padded = cat(parts, 1) if len(parts) > 1 else sq
    window = padded.narrow(1, 0, c)
    for i in range(1, size):  # window sums as shifted slices: size is small (AlexNet uses 5)
        window = window + padded.narrow(1, i, c)
    div = (window * (alpha / size) + k).pow(beta)
    return x / div
