"""Composed elementwise math and softmax: built from primitives, no backward code of their own.

square, frac, lerp, nan_to_num, logaddexp, hypot, xlogy, softmax and
log_softmax, with PyTorch's signatures, dtype rules and edge cases (infinities,
NaN, ties). Each composition is written so that no masked-out branch can leak
a NaN into a gradient (the inputs of a discarded branch are made safe first).
"""

from __future__ import annotations

import math
from typing import Any

from ..core import dtypes as D
from ..core import methods as _m
from ..core.autocast import autocast_op
from ..core.inplace import inplace_unary
from ..core.methods import where
from ..core.prims import binary as B
from ..core.tensor import Tensor
from ..errors import DTypeError
from .reduction import _stable_shift

__all__: list[str] = [
    "frac", "hypot", "lerp", "log_softmax", "logaddexp", "nan_to_num", "softmax", "square", "xlogy",
]

_HALF = (D.float16, D.bfloat16)


def _need_float(op: str, *xs: Any) -> None:
    for x in xs:
        if isinstance(x, Tensor) and not x.is_floating_point():
            raise DTypeError(f"{op}: expected floating point tensors, got {x.dtype}")


def _pair(op: str, a: Any, b: Any, *, to_float: bool = False) -> tuple[Tensor, Tensor]:
    """``a`` and ``b`` as tensors of their PyTorch result dtype (a Python number becomes a 0-d tensor)."""
    ref = a if isinstance(a, Tensor) else b
    if not isinstance(ref, Tensor):
        raise TypeError(f"{op}: expected at least one Tensor argument")
    target = D.result_type(a, b)
    if to_float and not target.is_floating_point:
        target = D.get_default_dtype()
    out = []
    for v in (a, b):
        if isinstance(v, Tensor):
            out.append(v._cast(target))
        else:
            out.append(Tensor._make(ref._device.xp.asarray(v, dtype=target.np), ref._device))  # a constant
    return out[0], out[1]


def _scalar(value: Any, like: Tensor) -> Tensor:
    """``value`` as a 0-d tensor of ``like``'s dtype and device."""
    return Tensor._make(like._device.xp.asarray(value, dtype=like._data.dtype), like._device)


# ----- elementwise ----------------------------------------------------------------------------
def square(input: Tensor) -> Tensor:  # noqa: A002 - PyTorch's name
    """``input * input``; bool gives int64, other dtypes are kept."""
    x = input._cast(D.int64) if input.dtype is D.bool_ else input
    return x * x


def frac(input: Tensor) -> Tensor:  # noqa: A002
    """Fractional part with the sign of the input: ``input - trunc(input)``."""
    _need_float("frac", input)
    return input - input.trunc()


def lerp(input: Tensor, end: Tensor, weight: Any) -> Tensor:  # noqa: A002
    """``input + weight * (end - input)``; ``weight`` is a number or a tensor (all broadcast).

    For ``|weight| >= 0.5`` it is computed from ``end`` (``end - (end - input) * (1 - weight)``)
    so that ``weight = 1`` gives ``end`` exactly, as PyTorch does.
    """
    _need_float("lerp", input, end, weight)
    diff = end - input
    if not isinstance(weight, Tensor):
        return input + weight * diff if abs(weight) < 0.5 else end - diff * (1 - weight)
    return where(weight.abs() < 0.5, input + weight * diff, end - diff * (1 - weight))


def nan_to_num(input: Tensor, nan: float = 0.0, posinf: float | None = None,  # noqa: A002
               neginf: float | None = None) -> Tensor:
    """NaN -> ``nan``, +inf -> ``posinf``, -inf -> ``neginf`` (defaults: the dtype's largest and lowest)."""
    if not input.is_floating_point():
        return input.clone()
    info = D.finfo(input.dtype)
    hi = float(info.max) if posinf is None else posinf
    lo = float(info.min) if neginf is None else neginf
    c = [_scalar(v, input) for v in (nan, hi, lo)]
    replacement = where(input.isnan(), c[0], where(input > 0, c[1], c[2]))
    return where(input.isfinite(), input, replacement)  # the gradient passes where the input is finite


def logaddexp(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """``log(exp(input) + exp(other))`` without overflow: ``max + log1p(exp(-|input - other|))``."""
    a, b = _pair("logaddexp", input, other)
    _need_float("logaddexp", a)
    # equal arguments (also equal infinities, whose difference is NaN) contribute log1p(1)
    same = a == b
    diff = where(same, 0.0, a) - where(same, 0.0, b)
    return B.Maximum.apply(a, b) + (-diff.abs()).exp().log1p()


def hypot(input: Tensor, other: Any) -> Tensor:  # noqa: A002
    """``sqrt(input**2 + other**2)`` without overflow or underflow; inf if either is infinite."""
    a, b = _pair("hypot", input, other)
    _need_float("hypot", a)
    # scale by max(|a|, |b|), treated as a constant (the identity holds for any scale)
    scale = B.Maximum.apply(a.detach().abs(), b.detach().abs())
    scale = where((scale == 0) | ~scale.isfinite(), 1.0, scale)
    out = ((a / scale).square() + (b / scale).square()).sqrt() * scale
    return where(a.isinf() | b.isinf(), math.inf, out)


def xlogy(input: Any, other: Any) -> Tensor:  # noqa: A002
    """``input * log(other)``, 0 where ``input == 0`` unless ``other`` is NaN; integers give floats.

    As in PyTorch, the derivative in ``input`` is ``log(other)`` even at ``input == 0``, and 0
    where ``input == 0`` and ``log(other)`` is not finite.
    """
    x, y = _pair("xlogy", input, other, to_float=True)
    # log(1) = 0 where x == 0 and log(y) would be -inf, NaN or inf: the forward is exactly 0
    # there and no inf * 0 reaches the gradient
    y_safe = where((x == 0) & ((y <= 0) | (y == math.inf)), 1.0, y)
    return x * y_safe.log()


# ----- softmax ----------------------------------------------------------------------------------
def _softmax_input(op: str, input: Tensor, dim: Any, dtype: Any) -> tuple[Tensor, int]:  # noqa: A002
    if dim is None:
        raise TypeError(f"{op}: dim must be given (the dimension to normalize over)")
    x = input if dtype is None else input.to(dtype)
    if not x.is_floating_point():
        raise DTypeError(f"{op}: expected a floating point input, got {x.dtype}; pass dtype= to convert")
    return x, dim


def _shifted(op: str, input: Tensor, dim: Any, dtype: Any) -> tuple[Tensor, Tensor, tuple[int, ...]]:  # noqa: A002
    """(x, x minus its detached row max, reduced dims); half precision is computed in float32."""
    x, dim = _softmax_input(op, input, dim, dtype)
    a = x._cast(D.float32) if x.dtype in _HALF else x
    dims = _m.norm_dims(dim, a.ndim) if a.ndim else ()
    return x, a - _stable_shift(a, dims), dims


@autocast_op("fp32")
def softmax(input: Tensor, dim: int, dtype: Any = None) -> Tensor:  # noqa: A002
    """``exp(x) / sum(exp(x))`` along ``dim``, shifted by the row max for stability."""
    x, z, dims = _shifted("softmax", input, dim, dtype)
    e = z.exp()
    return (e / e.sum(dim=dims, keepdim=True))._cast(x.dtype)


@autocast_op("fp32")
def log_softmax(input: Tensor, dim: int, dtype: Any = None) -> Tensor:  # noqa: A002
    """``(x - max) - log(sum(exp(x - max)))`` along ``dim``: stable, exact where softmax underflows."""
    x, z, dims = _shifted("log_softmax", input, dim, dtype)
    return (z - z.exp().sum(dim=dims, keepdim=True).log())._cast(x.dtype)


# Tensor methods bound by axonml.ops: name -> function taking the tensor first.
METHODS: dict[str, Any] = {name: globals()[name] for name in __all__}
for _name in ("square", "frac", "lerp", "nan_to_num", "hypot", "xlogy"):
    METHODS[_name + "_"] = inplace_unary(globals()[_name], _name + "_")
