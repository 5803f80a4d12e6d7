"""Loss functions and distances, as in ``torch.nn.functional``, composed from Tensor ops.

Every loss takes ``reduction`` ('none' | 'mean' | 'sum', plus 'batchmean' for
``kl_div``) and, where PyTorch still has them, the deprecated ``size_average`` /
``reduce`` flags, which override ``reduction`` as in PyTorch. Logs of
probabilities come from ``log_softmax`` / ``logsigmoid`` (stable for any
logits), never from ``log(softmax(x))``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ...backend import CPU, value_range
from ...backend.graphs import current_capture
from ...core import dtypes as D
from ...core.autocast import autocast_op
from ...core.methods import cat, where
from ...core.prims import binary as B
from ...core.tensor import Tensor
from ...errors import DeviceError, DTypeError, IndexingError, ShapeError
from ...ops import math as _math
from ...ops.linalg_ops import vector_norm
from ...ops.shape import broadcast_shapes, broadcast_tensors
from ..prims.loss import CrossEntropy, CrossEntropyCuda, SquaredError, fused_targets
from .activation import logsigmoid

__all__: list[str] = [
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "cosine_embedding_loss", "cosine_similarity",
    "cross_entropy", "ctc_loss", "gaussian_nll_loss", "hinge_embedding_loss", "huber_loss", "kl_div", "l1_loss",
    "margin_ranking_loss", "mse_loss", "multilabel_soft_margin_loss", "nll_loss", "pairwise_distance",
    "poisson_nll_loss", "smooth_l1_loss", "triplet_margin_loss",
]

_REDUCTIONS = ("none", "mean", "sum")
_FUSED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ----- reduction ----------------------------------------------------------------------------------
def _reduction(op: str, reduction: str, size_average: bool | None = None, reduce: bool | None = None,
               allowed: tuple[str, ...] = _REDUCTIONS) -> str:
    """The reduction to apply: the legacy flags override ``reduction``, as in PyTorch."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else ("mean" if size_average else "sum")
        warnings.warn(f"{op}: size_average and reduce are deprecated, use reduction='{reduction}' instead",
                      UserWarning, stacklevel=3)
    if reduction not in allowed:
        raise ValueError(f"{op}: {reduction!r} is not a valid value for reduction; expected one of {allowed}")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _tensor(op: str, name: str, x: Any) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(x).__name__}")
    return x


def _float(op: str, name: str, x: Any) -> Tensor:
    t = _tensor(op, name, x)
    if not t.is_floating_point():
        raise DTypeError(f"{op}: {name} must be floating point, got {t.dtype}")
    return t


def _pointwise_args(op: str, input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:  # noqa: A002
    """``input`` and ``target`` broadcast together (with PyTorch's warning when their shapes differ)."""
    _float(op, "input", input)
    _tensor(op, "target", target)
    if input.shape != target.shape:
        try:
            broadcast_shapes(input.shape, target.shape)
        except (ValueError, ShapeError):
            raise ShapeError(f"{op}: target shape {target.shape} does not broadcast with input shape "
                             f"{input.shape}") from None
        warnings.warn(f"{op}: using a target size ({target.shape}) that is different to the input size "
                      f"({input.shape}); this will likely lead to incorrect results due to broadcasting",
                      UserWarning, stacklevel=3)
    return input, target


def _weighted(op: str, loss: Tensor, input: Tensor, weight: Tensor | None, reduction: str,  # noqa: A002
              mean_by_weight: bool) -> Tensor:
    """``loss * weight`` reduced; 'mean' divides by ``sum(weight)`` or by the element count."""
    if weight is None:
        return _reduce(loss, reduction)
    if weight.shape != input.shape:
        raise ShapeError(f"{op}: weight shape {weight.shape} must equal the input shape {input.shape}")
    loss = loss * weight
    if reduction == "mean" and mean_by_weight:
        return loss.sum() / weight.sum()
    return _reduce(loss, reduction)


# ----- regression losses --------------------------------------------------------------------------
@autocast_op("fp32")
def l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,  # noqa: A002
            reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """``|input - target|``; a ``weight`` of the input's shape makes 'mean' a weighted mean."""
    red = _reduction("l1_loss", reduction, size_average, reduce)
    x, y = _pointwise_args("l1_loss", input, target)
    return _weighted("l1_loss", (x - y).abs(), x, weight, red, True)


@autocast_op("fp32")
def mse_loss(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,  # noqa: A002
             reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    """``(input - target)**2``; a ``weight`` of the input's shape makes 'mean' a weighted mean."""
    red = _reduction("mse_loss", reduction, size_average, reduce)
    x, y = _pointwise_args("mse_loss", input, target)
    xd, yd = x._data, y._data
    if (weight is None and red != "none" and xd.shape == yd.shape and xd.dtype == yd.dtype and xd.size
            and xd.dtype in _FUSED_DTYPES and x._device is y._device):
        return SquaredError.apply(x, y, red)  # 2 passes forward, 1 backward (nn/prims/loss.py)
    d = x - y
    return _weighted("mse_loss", d * d, x, weight, red, True)


@autocast_op("fp32")
def smooth_l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None,  # noqa: A002
                   reduce: bool | None = None, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """``0.5 d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (``d = input - target``)."""
    red = _reduction("smooth_l1_loss", reduction, size_average, reduce)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    x, y = _pointwise_args("smooth_l1_loss", input, target)
    d = x - y
    a = d.abs()
    if beta == 0:
        return _reduce(a, red)
    return _reduce(where(a < beta, d * d * (0.5 / beta), a - 0.5 * beta), red)


@autocast_op("fp32")
def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,  # noqa: A002
               weight: Tensor | None = None) -> Tensor:
    """``0.5 d**2`` where ``|d| < delta``, else ``delta * (|d| - 0.5 delta)``.

    With ``weight``, 'mean' is the plain mean of the weighted losses, as in PyTorch.
    """
    red = _reduction("huber_loss", reduction)
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    x, y = _pointwise_args("huber_loss", input, target)
    d = x - y
    a = d.abs()
    loss = where(a < delta, d * d * 0.5, (a - 0.5 * delta) * delta)
    return _weighted("huber_loss", loss, x, weight, red, False)


# ----- classification losses ----------------------------------------------------------------------
def _class_target(op: str, input: Tensor, target: Tensor) -> None:  # noqa: A002
    """Checks an integer class-index target against an ``(N, C, d1, ...)`` or ``(C,)`` input."""
    if input.ndim == 0:
        raise ShapeError(f"{op}: input must have at least 1 dimension (classes), got a 0-d tensor")
    expected = () if input.ndim == 1 else (input.shape[0], *input.shape[2:])
    if target.shape != expected:
        raise ShapeError(f"{op}: target of shape {target.shape} does not match input of shape {input.shape}; "
                         f"class indices must have shape {expected}")
    if target._data.dtype.kind not in "iu":
        raise DTypeError(f"{op}: class-index targets must be integers, got {target.dtype}")
    if target.device != input.device:
        raise DeviceError(f"{op}: target is on {target.device} but input is on {input.device}")


def _class_weight(op: str, weight: Tensor | None, n_classes: int) -> None:
    if weight is not None and (weight.ndim != 1 or weight.shape[0] != n_classes):
        raise ShapeError(f"{op}: weight must be a 1-D tensor of {n_classes} elements (one per class), "
                         f"got shape {weight.shape}")


def _valid_targets(op: str, target: Tensor, n_classes: int, ignore_index: int) -> tuple[Any, Any]:
    """(mask of non-ignored targets, the targets with ignored ones replaced by 0) as arrays."""
    xp = target.device.xp
    t = target._data
    valid = t != ignore_index
    safe = xp.where(valid, t, 0)
    if safe.size and current_capture() is None:  # a CUDA graph capture cannot read values back to check them
        lo, hi = value_range(xp, safe)
        if lo < 0 or hi >= n_classes:
            raise IndexingError(f"{op}: target {lo if lo < 0 else hi} is out of bounds for {n_classes} classes")
    return valid, safe.astype("int64")


@autocast_op("fp32")
def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
             size_average: bool | None = None, ignore_index: int = -100, reduce: bool | None = None,
             reduction: str = "mean") -> Tensor:
    """``-weight[t] * input[t]`` for log-probabilities ``input`` (classes in dimension 1) and indices ``t``.

    Targets equal to ``ignore_index`` contribute 0; 'mean' divides by the summed weight of the others.
    """
    red = _reduction("nll_loss", reduction, size_average, reduce)
    x = _float("nll_loss", "input", input)
    _class_target("nll_loss", x, _tensor("nll_loss", "target", target))
    c = 0 if x.ndim == 1 else 1
    _class_weight("nll_loss", weight, x.shape[c])
    valid, safe = _valid_targets("nll_loss", target, x.shape[c], ignore_index)
    dev = x.device
    picked = x.gather(c, Tensor._make(safe.reshape((*safe.shape[:c], 1, *safe.shape[c:])), dev)).squeeze(c)
    if weight is None:
        w = Tensor._make(valid.astype(x._data.dtype), dev)
    else:
        w = weight._cast(x.dtype)[Tensor._make(safe, dev)] * Tensor._make(valid.astype(x._data.dtype), dev)
    loss = -(picked * w)
    if red == "mean":
        return loss.sum() / w.sum()
    return _reduce(loss, red)


def _weight_view(weight: Tensor, ndim: int, class_dim: int) -> Tensor:
    """The per-class weight shaped to broadcast along ``class_dim`` of an ``ndim``-d input."""
    return weight.reshape(tuple(weight.shape[0] if i == class_dim else 1 for i in range(ndim)))


@autocast_op("fp32")
def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                  size_average: bool | None = None, ignore_index: int = -100, reduce: bool | None = None,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """``nll_loss(log_softmax(input, 1), target)`` for logits ``(N, C, d1, ...)`` or ``(C,)``.

    ``target`` holds class indices (integers, shape without the class dimension) or class
    probabilities (floats, the input's shape). ``label_smoothing`` mixes the target with the
    uniform distribution; ``weight`` rescales each class.
    """
    if (weight is None and not label_smoothing and size_average is None and reduce is None
            and reduction in _REDUCTIONS and isinstance(input, Tensor) and isinstance(target, Tensor)):
        # the common case, checked in a few reads, as one primitive (nn/prims/loss.py)
        xd, td = input._data, target._data
        if (xd.dtype in _FUSED_DTYPES and 0 < xd.ndim <= 2 and xd.size and td.dtype.kind in "iu"
                and td.shape == xd.shape[:-1] and target._device is input._device):
            if input._device is CPU:
                return CrossEntropy.apply(input, *fused_targets(td, xd.shape[-1], ignore_index, xd.dtype),
                                          reduction)
            if input._device.type == "cuda":
                return CrossEntropyCuda.apply(input, target, ignore_index, reduction)
    red = _reduction("cross_entropy", reduction, size_average, reduce)
    x = _float("cross_entropy", "input", input)
    _tensor("cross_entropy", "target", target)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if x.ndim == 0:
        raise ShapeError("cross_entropy: input must have at least 1 dimension (classes), got a 0-d tensor")
    c = 0 if x.ndim == 1 else 1
    n_classes = x.shape[c]
    _class_weight("cross_entropy", weight, n_classes)
    logp = _math.log_softmax(x, c)
    if target.is_floating_point():
        return _cross_entropy_probs(logp, target, weight, red, label_smoothing, c)
    nll = nll_loss(logp, target, weight, ignore_index=ignore_index, reduction=red)
    if label_smoothing == 0:
        return nll
    # smoothing: the loss against the uniform distribution, with the same weights and ignored targets
    wl = logp if weight is None else logp * _weight_view(weight._cast(x.dtype), x.ndim, c)
    valid, safe = _valid_targets("cross_entropy", target, n_classes, ignore_index)
    smooth = -wl.sum(c) * Tensor._make(valid.astype(x._data.dtype), x.device)
    if red == "mean":
        if weight is None:
            smooth = smooth.sum() / float(valid.sum())
        else:
            w = weight._cast(x.dtype)[Tensor._make(safe, x.device)]
            smooth = smooth.sum() / (w * Tensor._make(valid.astype(x._data.dtype), x.device)).sum()
    else:
        smooth = _reduce(smooth, red)
    return nll * (1.0 - label_smoothing) + smooth * (label_smoothing / n_classes)


def _cross_entropy_probs(logp: Tensor, target: Tensor, weight: Tensor | None, red: str, smoothing: float,
                         c: int) -> Tensor:
    if target.shape != logp.shape:
        raise ShapeError(f"cross_entropy: probability targets must have the input's shape {logp.shape}, "
                         f"got {target.shape}")
    n_classes = logp.shape[c]
    if smoothing > 0:
        target = target * (1.0 - smoothing) + smoothing / n_classes
    prod = logp * target
    if weight is not None:
        prod = prod * _weight_view(weight._cast(logp.dtype), logp.ndim, c)
    loss = -prod.sum(c)
    if red == "mean":
        return loss.sum() / (logp.numel() // n_classes if n_classes else 0)
    return _reduce(loss, red)


def _clamped_log(x: Tensor) -> Tensor:
    """``max(log(x), -100)`` as PyTorch's BCE, with a finite gradient also at ``x == 0``."""
    pos = x > 0
    return where(pos, where(pos, x, 1.0).log(), -100.0).clamp(min=-100.0)


@autocast_op("fp32")
def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> Tensor:
    """``-weight * (t log(p) + (1 - t) log(1 - p))`` for probabilities ``p``; logs are clamped at -100."""
    red = _reduction("binary_cross_entropy", reduction, size_average, reduce)
    x = _float("binary_cross_entropy", "input", input)
    if target.shape != x.shape:
        raise ShapeError(f"binary_cross_entropy: target shape {target.shape} must equal the input shape {x.shape}")
    xp = x.device.xp
    if x.numel() and bool(xp.any((x._data < 0) | (x._data > 1) | xp.isnan(x._data))):
        raise ValueError("binary_cross_entropy: all elements of input should be between 0 and 1")
    loss = -(target * _clamped_log(x) + (1.0 - target) * _clamped_log(1.0 - x))
    if weight is not None:
        loss = loss * weight.expand(*broadcast_shapes(target.shape, weight.shape))
    return _reduce(loss, red)


@autocast_op("fp32")
def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                                     size_average: bool | None = None, reduce: bool | None = None,
                                     reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:
    """BCE of ``sigmoid(input)`` computed from the logits without overflow.

    ``pos_weight`` (broadcast over the last dimension, one per class) weighs the positive term.
    """
    red = _reduction("binary_cross_entropy_with_logits", reduction, size_average, reduce)
    x = _float("binary_cross_entropy_with_logits", "input", input)
    if target.shape != x.shape:
        raise ShapeError(f"binary_cross_entropy_with_logits: target size {target.shape} must be the same as "
                         f"input size {x.shape}")
    ls = logsigmoid(x)
    if pos_weight is None:
        loss = (1.0 - target) * x - ls
    else:
        loss = (1.0 - target) * x - (1.0 + (pos_weight - 1.0) * target) * ls
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, red)


@autocast_op("fp32")
def multilabel_soft_margin_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                                size_average: bool | None = None, reduce: bool | None = None,
                                reduction: str = "mean") -> Tensor:
    """Per-sample mean over classes of the binary logistic losses of ``input`` against 0/1 ``target``."""
    red = _reduction("multilabel_soft_margin_loss", reduction, size_average, reduce)
    x = _float("multilabel_soft_margin_loss", "input", input)
    if x.ndim == 0:
        raise ShapeError("multilabel_soft_margin_loss: input must have a class dimension, got a 0-d tensor")
    loss = -(target * logsigmoid(x) + (1.0 - target) * logsigmoid(-x))
    if weight is not None:
        loss = loss * weight
    c = x.ndim - 1
    return _reduce(loss.sum(c) / x.shape[c], red)


@autocast_op("fp32")
def kl_div(input: Tensor, target: Tensor, size_average: bool | None = None, reduce: bool | None = None,  # noqa: A002
           reduction: str = "mean", log_target: bool = False) -> Tensor:
    """``target * (log(target) - input)`` pointwise for log-probabilities ``input``.

    'batchmean' divides the sum by the batch size (the KL divergence); 'mean' divides by the element count.
    """
    red = _reduction("kl_div", reduction, size_average, reduce, (*_REDUCTIONS, "batchmean"))
    x = _float("kl_div", "input", input)
    if red == "mean" and size_average is None and reduce is None:
        warnings.warn("kl_div: reduction='mean' divides the total loss by both the batch size and the support "
                      "size; 'batchmean' divides only by the batch size and is the KL divergence",
                      UserWarning, stacklevel=2)
    loss = target.exp() * (target - x) if log_target else _math.xlogy(target, target) - target * x
    if red == "batchmean":
        total = loss.sum()
        return total / x.shape[0] if x.ndim else total
    return _reduce(loss, red)


@autocast_op("fp32")
def poisson_nll_loss(input: Tensor, target: Tensor, log_input: bool = True, full: bool = False,  # noqa: A002
                     size_average: bool | None = None, eps: float = 1e-8, reduce: bool | None = None,
                     reduction: str = "mean") -> Tensor:
    """Negative log likelihood of ``target ~ Poisson(rate)``: ``exp(input) - target * input`` (log rates),
    or ``input - target * log(input + eps)``; ``full`` adds Stirling's term where ``target > 1``."""
    red = _reduction("poisson_nll_loss", reduction, size_average, reduce)
    x = _float("poisson_nll_loss", "input", input)
    loss = x.exp() - target * x if log_input else x - target * (x + eps).log()
    if full:
        big = target > 1
        t = where(big, target, 2.0)  # the discarded entries stay finite (log of 0 would be -inf)
        stirling = t * t.log() - t + (t * (2 * math.pi)).log() * 0.5
        loss = loss + where(big, stirling, 0.0)
    return _reduce(loss, red)


@autocast_op("fp32")
def gaussian_nll_loss(input: Tensor, target: Tensor, var: Tensor | float, full: bool = False,  # noqa: A002
                      eps: float = 1e-6, reduction: str = "mean") -> Tensor:
    """``0.5 * (log(var) + (input - target)**2 / var)`` (+ ``0.5 log(2 pi)`` if ``full``).

    ``var`` has the input's shape, or one dimension of size 1 / one fewer trailing dimension
    (shared variance); it is clamped to ``eps`` without changing its gradient, as PyTorch does.
    """
    x = _float("gaussian_nll_loss", "input", input)
    if isinstance(var, int | float):
        if var < 0:
            raise ValueError("gaussian_nll_loss: var has negative entry/entries")
        v = Tensor._make(x.device.xp.full(x.shape, float(var), dtype=x._data.dtype), x.device)
    else:
        v = _float("gaussian_nll_loss", "var", var)
        if v.numel() and bool(v.device.xp.any(v._data < 0)):
            raise ValueError("gaussian_nll_loss: var has negative entry/entries")
    if v.shape != x.shape:
        if x.shape[:-1] == v.shape:
            v = v.unsqueeze(-1)
        elif not (x.ndim == v.ndim and sum(b for a, b in zip(x.shape, v.shape) if a != b) == 1):
            raise ShapeError(f"gaussian_nll_loss: var of shape {v.shape} does not fit input of shape {x.shape}")
    red = _reduction("gaussian_nll_loss", reduction)
    v = v + (v.detach().clamp(min=eps) - v.detach())  # the clamp is a constant shift: the gradient passes
    d = x - target
    loss = (v.log() + d * d / v) * 0.5
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, red)


# ----- distances and embedding losses -------------------------------------------------------------
@autocast_op("fp32")
def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
    """``||x1 - x2 + eps||_p`` over the last dimension (the inputs broadcast)."""
    _float("pairwise_distance", "x1", x1)
    dim = max(x1.ndim, x2.ndim) - 1
    return vector_norm(x1 - x2 + eps, p, dim if dim >= 0 else None, keepdim)


@autocast_op("fp32")
def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """``x1 . x2 / (max(||x1||, eps) * max(||x2||, eps))`` along ``dim`` (the inputs broadcast).

    Each input is divided by its own clamped norm first (the result stays in [-1, 1]); as in
    PyTorch the clamp does not change the gradient.
    """
    a, b = broadcast_tensors(_float("cosine_similarity", "x1", x1), _float("cosine_similarity", "x2", x2))
    na = vector_norm(a, 2, dim, keepdim=True)
    nb = vector_norm(b, 2, dim, keepdim=True)
    na = na + (na.detach().clamp(min=eps) - na.detach())
    nb = nb + (nb.detach().clamp(min=eps) - nb.detach())
    return ((a / na) * (b / nb)).sum(dim)


@autocast_op("fp32")
def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0,
                          size_average: bool | None = None, reduce: bool | None = None,
                          reduction: str = "mean") -> Tensor:
    """``1 - cos(x1, x2)`` where ``target == 1``, ``max(0, cos(x1, x2) - margin)`` where ``target == -1``."""
    red = _reduction("cosine_embedding_loss", reduction, size_average, reduce)
    x1 = _float("cosine_embedding_loss", "input1", input1)
    if target.ndim not in (0, 1) or x1.ndim != target.ndim + 1 or input2.ndim != x1.ndim:
        raise ShapeError(f"cosine_embedding_loss: expected inputs (N, D) with target (N,), or (D,) with a 0-d "
                         f"target; got {x1.shape}, {input2.shape} and target {target.shape}")
    d = target.ndim
    eps = 1e-12
    dot = (x1 * input2).sum(d)
    mag = ((x1 * x1).sum(d) + eps) * ((input2 * input2).sum(d) + eps)
    cos = dot / mag.sqrt()
    loss = where(target == 1, 1.0 - cos, 0.0) + where(target == -1, (cos - margin).clamp(min=0.0), 0.0)
    return _reduce(loss, red)


@autocast_op("fp32")
def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0,
                        size_average: bool | None = None, reduce: bool | None = None,
                        reduction: str = "mean") -> Tensor:
    """``max(0, -target * (input1 - input2) + margin)``."""
    red = _reduction("margin_ranking_loss", reduction, size_average, reduce)
    _float("margin_ranking_loss", "input1", input1)
    if not input1.ndim == input2.ndim == target.ndim:
        raise ShapeError(f"margin_ranking_loss: all inputs must have the same number of dimensions, got "
                         f"input1 {input1.shape}, input2 {input2.shape}, target {target.shape}")
    return _reduce((-target * (input1 - input2) + margin).clamp(min=0.0), red)


@autocast_op("fp32")
def triplet_margin_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0, p: float = 2,
                        eps: float = 1e-6, swap: bool = False, size_average: bool | None = None,
                        reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    """``max(d(a, p) - d(a, n) + margin, 0)`` with ``d`` the pairwise ``p``-distance.

    ``swap`` uses ``min(d(a, n), d(p, n))`` as the negative distance.
    """
    red = _reduction("triplet_margin_loss", reduction, size_average, reduce)
    if margin <= 0:
        raise ValueError(f"triplet_margin_loss: margin must be greater than 0, got {margin}")
    if not anchor.ndim == positive.ndim == negative.ndim:
        raise ShapeError(f"triplet_margin_loss: anchor {anchor.shape}, positive {positive.shape} and negative "
                         f"{negative.shape} must have the same number of dimensions")
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = B.Minimum.apply(d_neg, pairwise_distance(positive, negative, p, eps))
    return _reduce((d_pos - d_neg + margin).clamp(min=0.0), red)


@autocast_op("fp32")
def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0,  # noqa: A002
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> Tensor:
    """``input`` where ``target == 1``, ``max(0, margin - input)`` where ``target == -1``."""
    red = _reduction("hinge_embedding_loss", reduction, size_average, reduce)
    x = _float("hinge_embedding_loss", "input", input)
    loss = where(target != 1, (margin - x).clamp(min=0.0), 0.0) + where(target != -1, x, 0.0)
    return _reduce(loss, red)



# ----- CTC --------------------------------------------------------------------------------------
# log(0) in the alpha recursion: a large finite number instead of -inf, so that a cell no path
# reaches gives exp(-1e30 - m) = 0 weights and never inf - inf = NaN (in values or gradients)
_LOG_ZERO = -1e30


def _lengths(op: str, name: str, v: Any, n: int) -> np.ndarray:
    arr = np.asarray(v.detach().cpu().numpy() if isinstance(v, Tensor) else v).reshape(-1)
    if arr.dtype.kind not in "iu" or arr.shape != (n,):
        raise ShapeError(f"{op}: {name} must be {n} integers (one per batch element), got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64)


def _ctc_targets(targets: Tensor, tgt_len: np.ndarray, n: int) -> np.ndarray:
    """The targets as an ``(N, S)`` int64 host array (``S`` = the longest target)."""
    t = np.asarray(targets.detach().cpu().numpy())
    if t.dtype.kind not in "iu":
        raise DTypeError(f"ctc_loss: targets must be integers, got {targets.dtype}")
    s_max = int(tgt_len.max()) if n else 0
    if t.ndim == 2:  # padded (N, S)
        if t.shape[0] != n or s_max > t.shape[1]:
            raise ShapeError(f"ctc_loss: padded targets of shape {t.shape} do not hold {n} targets of lengths "
                             f"{tgt_len.tolist()}")
        return t[:, :s_max].astype(np.int64)
    if t.ndim != 1 or t.shape[0] != int(tgt_len.sum()):
        raise ShapeError(f"ctc_loss: concatenated targets of shape {t.shape} must hold sum(target_lengths) = "
                         f"{int(tgt_len.sum())} labels")
    out = np.zeros((n, s_max), np.int64)
    starts = np.concatenate([[0], np.cumsum(tgt_len)[:-1]]).astype(np.int64)
    for i in range(n):
        out[i, :tgt_len[i]] = t[starts[i]:starts[i] + tgt_len[i]]
    return out


def _lse(parts: list[Tensor]) -> Tensor:
    """``log(sum(exp(parts)))`` elementwise, shifted by their (constant) elementwise maximum."""
    xp = parts[0].device.xp
    m = parts[0]._data
    for q in parts[1:]:
        m = xp.maximum(m, q._data)
    mt = Tensor._make(m, parts[0].device)
    total = (parts[0] - mt).exp()
    for q in parts[1:]:
        total = total + (q - mt).exp()
    return total.log() + mt


def _ctc_log_likelihood(lp: Tensor, tg: np.ndarray, in_len: np.ndarray, tgt_len: np.ndarray, blank: int) -> Tensor:
    """``log p(target_n | lp[:, n])`` for each n (``_LOG_ZERO`` or less where no alignment exists)."""
    n_time, n, _ = lp.shape
    dev, xp, dt = lp.device, lp.device.xp, lp._data.dtype

    def const(a: np.ndarray) -> Tensor:
        return Tensor._make(xp.asarray(a), dev)

    # the extended label sequence: blank, l1, blank, l2, ..., blank (N, L); padding is blank
    n_ext = 2 * tg.shape[1] + 1
    ext = np.full((n, n_ext), blank, np.int64)
    ext[:, 1::2] = tg
    # s may also come from s - 2 when l'_s is a label that differs from l'_{s-2}
    skip = np.zeros((n, n_ext), bool)
    skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
    skip_add = const(np.where(skip, 0.0, _LOG_ZERO).astype(dt))
    # emissions of the extended labels at every step (T, N, L); log(0) classes become _LOG_ZERO
    emit = lp.gather(2, const(np.ascontiguousarray(np.broadcast_to(ext, (n_time, n, n_ext))))).clamp(min=_LOG_ZERO)
    pad2 = const(np.full((n, 2), _LOG_ZERO, dt))
    start = np.full((n, n_ext), _LOG_ZERO, dt)
    start[:, :2] = 0.0  # a path starts in the first blank or the first label
    alpha = emit[0] + const(start)  # (N, L)
    for t in range(1, n_time):
        shifted = cat([pad2, alpha], 1)  # (N, L + 2): alpha at s - 1 and s - 2 are slices of it
        new = _lse([alpha, shifted[:, 1:-1], shifted[:, :-2] + skip_add]) + emit[t]
        active = in_len > t
        if not active.all():  # finished sequences keep their last alpha
            new = where(const(active[:, None]), new, alpha)
        alpha = new
    # a path ends in the last label or the final blank: positions 2 S_n - 1 and 2 S_n
    ends = alpha.gather(1, const(np.stack([2 * tgt_len, np.maximum(2 * tgt_len - 1, 0)], 1)))
    ll = _lse([ends[:, 0], ends[:, 1] + const(np.where(tgt_len > 0, 0.0, _LOG_ZERO).astype(dt))])
    if not (in_len > 0).all():  # no steps: only the empty target has a path (of probability 1)
        ll = where(const(in_len > 0), ll, const(np.where(tgt_len == 0, 0.0, _LOG_ZERO).astype(dt)))
    return ll


@autocast_op("fp32")
def ctc_loss(log_probs: Tensor, targets: Tensor, input_lengths: Any, target_lengths: Any, blank: int = 0,
             reduction: str = "mean", zero_infinity: bool = False) -> Tensor:
    """Connectionist temporal classification loss: ``-log p(target | log_probs)`` over all alignments.

    ``log_probs``: ``(T, N, C)`` (or ``(T, C)`` unbatched) log-probabilities; ``targets``: padded
    ``(N, S)`` or concatenated ``(sum(target_lengths),)`` labels (never ``blank``). The forward
    (alpha) recursion runs in log space with Tensor ops over time, so autograd gives the gradient.
    'mean' divides each loss by its target length, then averages over the batch. ``zero_infinity``
    replaces impossible alignments' infinite losses (and their gradients) by 0.
    """
    red = _reduction("ctc_loss", reduction)
    lp = _float("ctc_loss", "log_probs", log_probs)
    unbatched = lp.ndim == 2
    if unbatched:
        lp = lp.unsqueeze(1)
        targets = targets.reshape(1, -1) if targets.ndim == 1 else targets
    if lp.ndim != 3:
        raise ShapeError(f"ctc_loss: log_probs must be (T, N, C) or (T, C), got shape {log_probs.shape}")
    n_time, n, n_cls = lp.shape
    if not 0 <= blank < n_cls:
        raise IndexingError(f"ctc_loss: blank {blank} is not a class index (C = {n_cls})")
    in_len = _lengths("ctc_loss", "input_lengths", input_lengths, n)
    tgt_len = _lengths("ctc_loss", "target_lengths", target_lengths, n)
    if n and (in_len.min() < 0 or in_len.max() > n_time or tgt_len.min() < 0):
        raise ShapeError(f"ctc_loss: input_lengths {in_len.tolist()} must lie in [0, T = {n_time}] and "
                         f"target_lengths {tgt_len.tolist()} must be non-negative")
    tg = _ctc_targets(targets, tgt_len, n)
    if tg.size and (tg.min() < 0 or tg.max() >= n_cls):
        raise IndexingError(f"ctc_loss: target labels must lie in [0, {n_cls}), got [{tg.min()}, {tg.max()}]")
    if lp.dtype in (D.float16, D.bfloat16):
        lp = lp._cast(D.float32)  # _LOG_ZERO does not fit in half precision
    dt, dev, xp = lp._data.dtype, lp.device, lp.device.xp
    if n_time == 0:
        ll = Tensor._make(xp.asarray(np.where(tgt_len == 0, 0.0, _LOG_ZERO).astype(dt)), dev)
    else:
        ll = _ctc_log_likelihood(lp, tg, in_len, tgt_len, blank)
    impossible = ll.detach() < _LOG_ZERO / 2
    loss = where(impossible, 0.0 if zero_infinity else math.inf, -ll)._cast(log_probs.dtype)
    if red == "mean":
        return (loss / Tensor._make(xp.asarray(np.maximum(tgt_len, 1).astype(dt)), dev)._cast(loss.dtype)).mean()
    if red == "sum":
        return loss.sum()
    return loss[0] if unbatched else loss
