"""Affine maps, as in ``torch.nn.functional``: ``linear`` and ``bilinear``."""

from __future__ import annotations

import math
from typing import Any

from ...core.autocast import autocast_op
from ...core.tensor import Tensor
from ...errors import DTypeError, ShapeError
from ..prims.linear import Linear

__all__ = ["bilinear", "linear"]


def _check_dtypes(op: str, *ts: Tensor | None) -> None:
    present = [t for t in ts if t is not None]
    for t in present:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected Tensors, got {type(t).__name__}")
    dtypes = {t.dtype for t in present}
    if len(dtypes) > 1:
        raise DTypeError(f"{op}: expected all tensors to have one dtype, got {sorted(map(str, dtypes))}")
    if not present[0].is_floating_point():
        raise DTypeError(f"{op}: expected floating point tensors, got {present[0].dtype}")


@autocast_op("lower")
def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:  # noqa: A002
    """``input @ weight^T + bias`` for input (..., in), weight (out, in), bias (out,)."""
    if isinstance(input, Tensor) and isinstance(weight, Tensor) and (bias is None or isinstance(bias, Tensor)):
        # the common, valid call in a few attribute reads (this runs for every layer of every step)
        xd, wd = input._data, weight._data
        dt = xd.dtype
        if (dt.kind == "f" and wd.dtype == dt and wd.ndim == 2 and xd.ndim and xd.shape[-1] == wd.shape[1]
                and (bias is None or (bias._data.dtype == dt and bias._data.shape == (wd.shape[0],)))):
            return Linear.apply(input, weight, bias)
    _check_dtypes("linear", input, weight, bias)
    if weight.ndim == 1:  # PyTorch allows a vector weight: a dot product per row
        out = input @ weight
        return out if bias is None else out + bias
    if weight.ndim != 2 or input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ShapeError(f"linear: input of shape {tuple(input.shape)} and weight of shape {tuple(weight.shape)} "
                         "do not match (expected input (..., in) and weight (out, in))")
    if bias is not None and tuple(bias.shape) not in ((weight.shape[0],), ()):
        raise ShapeError(f"linear: bias of shape {tuple(bias.shape)}, expected ({weight.shape[0]},)")
    if bias is not None and bias.ndim == 0:
        return Linear.apply(input, weight, None) + bias
    return Linear.apply(input, weight, bias)


@autocast_op("promote")
def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``y[..., k] = input1 @ weight[k] @ input2 + bias[k]`` for weight (out, in1, in2).

    Computed as one GEMM of ``input1`` with the weight laid out as (in1, out * in2), then a
    product with ``input2`` summed over in2.
    """
    _check_dtypes("bilinear", input1, input2, weight, bias)
    if weight.ndim != 3:
        raise ShapeError(f"bilinear: weight must be 3-d (out, in1, in2), got shape {tuple(weight.shape)}")
    n_out, n1, n2 = weight.shape
    if input1.ndim == 0 or input1.shape[-1] != n1 or input2.ndim == 0 or input2.shape[-1] != n2:
        raise ShapeError(f"bilinear: inputs of shapes {tuple(input1.shape)} and {tuple(input2.shape)} do not match "
                         f"weight of shape {tuple(weight.shape)} (expected (..., {n1}) and (..., {n2}))")
    if input1.shape[:-1] != input2.shape[:-1]:
        raise ShapeError(f"bilinear: inputs must have the same leading dimensions, got {tuple(input1.shape)} and "
                         f"{tuple(input2.shape)}")
    if bias is not None and tuple(bias.shape) != (n_out,):
        raise ShapeError(f"bilinear: bias of shape {tuple(bias.shape)}, expected ({n_out},)")
    lead: Any = input1.shape[:-1]
    n = math.prod(lead)
    x1 = input1.reshape(n, n1)  # (N, in1)
    x2 = input2.reshape(n, n2)  # (N, in2)
    w = weight.permute(1, 0, 2).reshape(n1, n_out * n2)  # (in1, out * in2)
    t = (x1 @ w).reshape(n, n_out, n2)  # (N, out, in2)
    y = (t @ x2.unsqueeze(-1)).squeeze(-1)  # (N, out)
    if bias is not None:
        y = y + bias
    return y.reshape(*lead, n_out)
