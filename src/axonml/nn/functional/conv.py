"""Convolutions, as ``torch.nn.functional``: conv1d/2d/3d and conv_transpose1d/2d/3d.

Zero padding only (as PyTorch's functional forms); the other padding modes are applied
by the Conv modules with ``F.pad`` first. Inputs may be batched (B, C, *S) or
unbatched (C, *S). The work is done by the primitives of ``nn/prims/conv.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...core.autocast import autocast_op
from ...core.tensor import Tensor
from ...errors import DTypeError, ShapeError
from ..prims.conv import Conv, ConvGeom, ConvTranspose

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]

IntOrSeq = int | Sequence[int]


def ntuple(value: Any, n: int, op: str, name: str) -> tuple[int, ...]:
    """``value`` (an int or a sequence of n ints) as a tuple of n ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * n
    try:
        out = tuple(int(v) for v in value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a sequence of {n} ints, got {value!r}") from None
    if len(out) == 1:
        return out * n
    if len(out) != n:
        raise ShapeError(f"{op}: {name} must have {n} values, got {len(out)}: {value!r}")
    return out


def check_float_same(op: str, *tensors: Tensor | None) -> None:
    """All given tensors are floating point and of one dtype (as PyTorch requires for convolutions)."""
    ts = [t for t in tensors if t is not None]
    for t in ts:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected Tensor arguments, got {type(t).__name__}")
        if not t.is_floating_point():
            raise DTypeError(f"{op}: expected floating-point tensors, got {t.dtype}")
    if any(t.dtype is not ts[0].dtype for t in ts):
        raise DTypeError(f"{op}: input, weight and bias must have one dtype, got {[str(t.dtype) for t in ts]}")


def _batched(op: str, x: Tensor, n: int) -> tuple[Tensor, bool]:
    """(the input with a batch dimension, whether one was added)."""
    if x.ndim == n + 2:
        return x, False
    if x.ndim == n + 1:
        return x.unsqueeze(0), True
    raise ShapeError(
        f"{op}: expected a {n + 1}-D (unbatched) or {n + 2}-D (batched) input, got shape {tuple(x.shape)}"
    )


def _positive(op: str, name: str, values: tuple[int, ...], minimum: int = 1) -> None:
    if any(v < minimum for v in values):
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {values}")


def _padding(op: str, padding: Any, n: int, kernel: tuple[int, ...], stride: tuple[int, ...],
             dilation: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(before, after) zero padding per spatial dim; 'same' puts an odd extra element after, as PyTorch."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * n, (0,) * n
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}: padding='same' is not supported for strided convolutions")
            total = tuple(d * (k - 1) for d, k in zip(dilation, kernel))
            lo = tuple(t // 2 for t in total)
            return lo, tuple(t - a for t, a in zip(total, lo))
        raise ValueError(f"{op}: invalid padding string {padding!r}, expected 'same' or 'valid'")
    pad = ntuple(padding, n, op, "padding")
    _positive(op, "padding", pad, 0)
    return pad, pad


# (op, input/weight/bias shapes and dtypes, stride, padding, dilation, groups) -> (geometry, unbatched) of a
# call that passed the checks: a model calls each layer with the same arguments at every step
_CHECKED: dict[tuple[Any, ...], tuple[ConvGeom, bool]] = {}


def _conv(op: str, n: int, x: Tensor, weight: Tensor, bias: Tensor | None, stride: Any, padding: Any,
          dilation: Any, groups: int) -> Tensor:
    key = _call_key(op, x, weight, bias, stride, padding, dilation, groups)
    found = None
    if key is not None:
        try:
            found = _CHECKED.get(key)
        except TypeError:  # an unhashable argument (a list): checked at every call
            key = None
    if found is None:
        found = _checked_geometry(op, n, x, weight, bias, stride, padding, dilation, groups)
        if key is not None:
            if len(_CHECKED) > 1024:  # shapes that keep changing must not grow it forever
                _CHECKED.clear()
            _CHECKED[key] = found
    geom, unbatched = found
    out = Conv.apply(x.unsqueeze(0) if unbatched else x, weight, bias, geom, None)
    return out.squeeze(0) if unbatched else out


def _call_key(op: str, x: Any, weight: Any, bias: Any, stride: Any, padding: Any, dilation: Any,
              groups: Any) -> tuple[Any, ...] | None:
    """What the checks of a call depend on, or None when it cannot key the cache (a non-Tensor, or a bool
    argument, which equals 1 as a key but is refused)."""
    if not (isinstance(x, Tensor) and isinstance(weight, Tensor) and (bias is None or isinstance(bias, Tensor))):
        return None
    if type(stride) is bool or type(padding) is bool or type(dilation) is bool:
        return None
    b = None if bias is None else (bias._data.shape, bias._data.dtype)
    return (op, x._data.shape, x._data.dtype, weight._data.shape, weight._data.dtype, b, stride, padding, dilation,
            groups)


def _checked_geometry(op: str, n: int, x: Tensor, weight: Tensor, bias: Tensor | None, stride: Any, padding: Any,
                      dilation: Any, groups: int) -> tuple[ConvGeom, bool]:
    """(the geometry, whether a batch dimension is to be added) of a call, or a clear error for a bad one."""
    check_float_same(op, x, weight, bias)
    x, unbatched = _batched(op, x, n)
    if weight.ndim != n + 2:
        raise ShapeError(f"{op}: expected a {n + 2}-D weight (out, in / groups, *kernel), got {tuple(weight.shape)}")
    s, d = ntuple(stride, n, op, "stride"), ntuple(dilation, n, op, "dilation")
    _positive(op, "stride", s)
    _positive(op, "dilation", d)
    if groups < 1:
        raise ValueError(f"{op}: groups must be >= 1, got {groups}")
    kernel = tuple(weight.shape[2:])
    cout, cin = weight.shape[0], x.shape[1]
    if cout % groups:
        raise ShapeError(
            f"{op}: out_channels {cout} (weight {tuple(weight.shape)}) is not divisible by groups={groups}"
        )
    if weight.shape[1] * groups != cin:
        raise ShapeError(
            f"{op}: given groups={groups}, weight of size {tuple(weight.shape)} expects input with "
            f"{weight.shape[1] * groups} channels, but got input of shape {tuple(x.shape)} ({cin} channels)"
        )
    if bias is not None and tuple(bias.shape) != (cout,):
        raise ShapeError(f"{op}: bias of shape {tuple(bias.shape)}, expected ({cout},)")
    lo, hi = _padding(op, padding, n, kernel, s, d)
    geom = ConvGeom(s, d, lo, hi, groups)
    size = tuple(x.shape[2:])
    padded = tuple(a + b + c for a, b, c in zip(size, lo, hi))
    eff = tuple(dd * (k - 1) + 1 for dd, k in zip(d, kernel))
    if any(p < e for p, e in zip(padded, eff)):
        raise ShapeError(
            f"{op}: padded input size per channel {padded} is smaller than the (dilated) kernel size {eff}; "
            f"input {tuple(x.shape)}, weight {tuple(weight.shape)}"
        )
    return geom, unbatched


@autocast_op("lower")
def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrSeq = 1,  # noqa: A002
           padding: IntOrSeq | str = 0, dilation: IntOrSeq = 1, groups: int = 1) -> Tensor:
    """1-D cross-correlation: input (B, Ci, L), weight (Co, Ci / groups, k) -> (B, Co, L_out)."""
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


@autocast_op("lower")
def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrSeq = 1,  # noqa: A002
           padding: IntOrSeq | str = 0, dilation: IntOrSeq = 1, groups: int = 1) -> Tensor:
    """2-D cross-correlation: input (B, Ci, H, W), weight (Co, Ci / groups, kh, kw) -> (B, Co, H_out, W_out).

    ``padding`` is an int, a pair, ``'valid'`` or ``'same'`` (stride 1); ``groups=Ci`` is a depthwise convolution.
    """
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


@autocast_op("lower")
def conv3d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntOrSeq = 1,  # noqa: A002
           padding: IntOrSeq | str = 0, dilation: IntOrSeq = 1, groups: int = 1) -> Tensor:
    """3-D cross-correlation: input (B, Ci, D, H, W), weight (Co, Ci / groups, kd, kh, kw)."""
    return _conv("conv3d", 3, input, weight, bias, stride, padding, dilation, groups)


def _conv_transpose(op: str, n: int, x: Tensor, weight: Tensor, bias: Tensor | None, stride: Any, padding: Any,
                    output_padding: Any, groups: int, dilation: Any) -> Tensor:
    check_float_same(op, x, weight, bias)
    x, unbatched = _batched(op, x, n)
    if weight.ndim != n + 2:
        raise ShapeError(f"{op}: expected a {n + 2}-D weight (in, out / groups, *kernel), got {tuple(weight.shape)}")
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a tuple of ints, got {padding!r}")
    s, d = ntuple(stride, n, op, "stride"), ntuple(dilation, n, op, "dilation")
    p, op_ = ntuple(padding, n, op, "padding"), ntuple(output_padding, n, op, "output_padding")
    _positive(op, "stride", s)
    _positive(op, "dilation", d)
    _positive(op, "padding", p, 0)
    _positive(op, "output_padding", op_, 0)
    if groups < 1:
        raise ValueError(f"{op}: groups must be >= 1, got {groups}")
    if any(o >= max(ss, dd) for o, ss, dd in zip(op_, s, d)):
        raise ValueError(f"{op}: output padding {op_} must be smaller than either stride {s} or dilation {d}")
    cin = x.shape[1]
    if weight.shape[0] != cin:
        raise ShapeError(
            f"{op}: weight of size {tuple(weight.shape)} expects input with {weight.shape[0]} channels, "
            f"but got input of shape {tuple(x.shape)} ({cin} channels)"
        )
    if cin % groups:
        raise ShapeError(f"{op}: in_channels {cin} is not divisible by groups={groups}")
    cout = weight.shape[1] * groups
    if bias is not None and tuple(bias.shape) != (cout,):
        raise ShapeError(f"{op}: bias of shape {tuple(bias.shape)}, expected ({cout},)")
    kernel = tuple(weight.shape[2:])
    size = tuple(
        (i - 1) * ss - 2 * pp + dd * (k - 1) + o + 1
        for i, ss, pp, dd, k, o in zip(x.shape[2:], s, p, d, kernel, op_)
    )
    if any(v < 1 for v in size):
        raise ShapeError(
            f"{op}: output size {size} is too small (input {tuple(x.shape)}, weight {tuple(weight.shape)})"
        )
    out = ConvTranspose.apply(x, weight, bias, ConvGeom(s, d, p, p, groups), size)
    return out.squeeze(0) if unbatched else out


@autocast_op("lower")
def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None,  # noqa: A002
                     stride: IntOrSeq = 1, padding: IntOrSeq = 0, output_padding: IntOrSeq = 0,
                     groups: int = 1, dilation: IntOrSeq = 1) -> Tensor:
    """1-D transposed convolution: input (B, Ci, L), weight (Ci, Co / groups, k) -> (B, Co, L_out)."""
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding, output_padding, groups,
                           dilation)


@autocast_op("lower")
def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None,  # noqa: A002
                     stride: IntOrSeq = 1, padding: IntOrSeq = 0, output_padding: IntOrSeq = 0,
                     groups: int = 1, dilation: IntOrSeq = 1) -> Tensor:
    """2-D transposed convolution (the gradient of conv2d with respect to its input).

    input (B, Ci, H, W), weight (Ci, Co / groups, kh, kw) -> (B, Co, H_out, W_out) with
    ``H_out = (H - 1) * stride - 2 * padding + dilation * (kh - 1) + output_padding + 1``.
    """
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding, output_padding, groups,
                           dilation)


@autocast_op("lower")
def conv_transpose3d(input: Tensor, weight: Tensor, bias: Tensor | None = None,  # noqa: A002
                     stride: IntOrSeq = 1, padding: IntOrSeq = 0, output_padding: IntOrSeq = 0,
                     groups: int = 1, dilation: IntOrSeq = 1) -> Tensor:
    """3-D transposed convolution: input (B, Ci, D, H, W), weight (Ci, Co / groups, kd, kh, kw)."""
    return _conv_transpose("conv_transpose3d", 3, input, weight, bias, stride, padding, output_padding, groups,
                           dilation)
