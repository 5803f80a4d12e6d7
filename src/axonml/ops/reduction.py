"""Composed reductions: built from primitives, no backward code of their own.

mean, var/std, prod, max/min (with indices), argmax/argmin, aminmax, logsumexp,
cumsum/cumprod, all/any/count_nonzero, with PyTorch's signatures and dtype
rules. ``dim`` is an int, a tuple of ints or None (all dimensions); float16 and
bfloat16 inputs accumulate in float32 and are cast back, as in PyTorch. The
norms live in ``linalg_ops`` (``norm``, ``linalg.vector_norm``).
"""

from __future__ import annotations

import builtins
import math
from collections import namedtuple
from typing import Any

import numpy as np

from ..core import dtypes as D
from ..core import methods as _m
from ..core.autocast import autocast_op
from ..core.inplace import inplace_unary
from ..core.methods import norm_dims
from ..core.prims import binary as B
from ..core.prims import indexing as _P
from ..core.prims import movement as V
from ..core.prims import reduction as R
from ..core.prims.scan import Cumsum
from ..core.tensor import Tensor, _wrap_dim
from ..errors import DTypeError, IndexingError

__all__: list[str] = [
    "all", "aminmax", "any", "argmax", "argmin", "count_nonzero", "cumprod", "cumsum", "logsumexp", "max",
    "mean", "min", "prod", "std", "std_mean", "var", "var_mean",
]

# torch.return_types.*: plain tuples with named fields
max_result = namedtuple("max", ["values", "indices"])  # type: ignore[name-match]
min_result = namedtuple("min", ["values", "indices"])  # type: ignore[name-match]
aminmax_result = namedtuple("aminmax", ["min", "max"])  # type: ignore[name-match]

_HALF = (D.float16, D.bfloat16)


# ----- helpers -------------------------------------------------------------------------
def _dims(x: Tensor, dim: Any) -> tuple[int, ...]:
    """``dim`` as sorted axes; None and an empty tuple mean every dimension, as in PyTorch."""
    if dim is not None and not isinstance(dim, int) and len(dim) == 0:
        dim = None
    dims = norm_dims(dim, x.ndim)
    return () if x.ndim == 0 else dims  # a scalar's dim 0 (or -1) reduces nothing


def _count(x: Tensor, dims: tuple[int, ...]) -> int:
    return math.prod(x.shape[d] for d in dims)


def _need_float(op: str, x: Tensor, hint: str = "") -> None:
    if not x.is_floating_point():
        raise DTypeError(f"{op}(): expected a floating point input, got {x.dtype}{hint}")


def _acc(x: Tensor) -> Tensor:
    """Half-precision inputs are reduced in float32 (PyTorch accumulates them in float)."""
    return x._cast(D.float32) if x.dtype in _HALF else x


def _reduce_args(x: Tensor, dtype: Any) -> Tensor:
    return x if dtype is None else x.to(dtype)


def _as_1d(x: Tensor, dim: Any) -> Tensor:
    """A 0-d tensor as shape (1,) for ops that take a ``dim`` (0 and -1 are valid on scalars)."""
    _wrap_dim(dim, 0)
    return x.reshape(1)


# ----- mean, var, std ----------------------------------------------------------------------
def mean(input: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:  # noqa: A002
    """Arithmetic mean over ``dim``; integer inputs need ``dtype=`` (PyTorch asks for a float dtype)."""
    x = _reduce_args(input, dtype)
    _need_float("mean", x, "; pass dtype=axonml.float32 (or call .float()) to average integers")
    dims = _dims(x, dim)
    n = _count(x, dims)
    s = _acc(x).sum(dim=dims, keepdim=keepdim)
    out = s / n if n else s + math.nan  # the mean of nothing is NaN, as in PyTorch (tangent 0, not NaN)
    return out._cast(x.dtype)


def _var_args(op: str, dim: Any, unbiased: Any, correction: Any) -> tuple[Any, float]:
    if isinstance(dim, bool):  # the legacy overload var(input, unbiased)
        if unbiased is not None:
            raise TypeError(f"{op}(): unbiased given twice")
        dim, unbiased = None, dim
    if unbiased is not None and correction is not None:
        raise TypeError(f"{op}(): pass either unbiased= or correction=, not both")
    if correction is None:
        correction = 0 if unbiased is False else 1
    return dim, correction


def _moments(op: str, x: Tensor, dim: Any, keepdim: bool, correction: float) -> tuple[Tensor, Tensor]:
    """(variance, mean) over ``dim``, the mean kept with reduced dims of size 1."""
    _need_float(op, x, " (std and var only support floating point dtypes)")
    dims = _dims(x, dim)
    n = _count(x, dims)
    a = _acc(x)
    mu = a.sum(dim=dims, keepdim=True) / n if n else a.sum(dim=dims, keepdim=True) + math.nan
    d = a - mu  # mu stays in the graph: the second derivative needs it
    ss = (d * d).sum(dim=dims, keepdim=keepdim)
    dof = builtins.max(n - correction, 0)
    if n == 0:
        var_ = ss + math.nan
    elif dof:
        var_ = ss / dof
    else:  # no degrees of freedom: NaN (or inf), as in PyTorch
        with np.errstate(divide="ignore", invalid="ignore"):
            var_ = ss / 0.0
    return var_._cast(x.dtype), mu._cast(x.dtype)


def var(input: Tensor, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False,  # noqa: A002
        *, correction: float | None = None) -> Tensor:
    """Variance over ``dim`` with Bessel's ``correction`` (default 1; ``unbiased=False`` means 0)."""
    dim, c = _var_args("var", dim, unbiased, correction)
    return _moments("var", input, dim, keepdim, c)[0]


def std(input: Tensor, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False,  # noqa: A002
        *, correction: float | None = None) -> Tensor:
    """Standard deviation: the square root of :func:`var` (same arguments)."""
    dim, c = _var_args("std", dim, unbiased, correction)
    return _moments("std", input, dim, keepdim, c)[0].sqrt()


def _squeezed_mean(x: Tensor, mu: Tensor, dim: Any, keepdim: bool) -> Tensor:
    return mu if keepdim else mu.reshape(tuple(s for i, s in enumerate(mu.shape) if i not in _dims(x, dim)))


def var_mean(input: Tensor, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False,  # noqa: A002
             *, correction: float | None = None) -> tuple[Tensor, Tensor]:
    """``(var, mean)`` over ``dim`` in one pass."""
    dim, c = _var_args("var_mean", dim, unbiased, correction)
    v, mu = _moments("var_mean", input, dim, keepdim, c)
    return v, _squeezed_mean(input, mu, dim, keepdim)


def std_mean(input: Tensor, dim: Any = None, unbiased: bool | None = None, keepdim: bool = False,  # noqa: A002
             *, correction: float | None = None) -> tuple[Tensor, Tensor]:
    """``(std, mean)`` over ``dim`` in one pass."""
    dim, c = _var_args("std_mean", dim, unbiased, correction)
    v, mu = _moments("std_mean", input, dim, keepdim, c)
    return v.sqrt(), _squeezed_mean(input, mu, dim, keepdim)


# ----- prod, cumsum, cumprod -----------------------------------------------------------------
def _int64_if_integral(x: Tensor, dtype: Any) -> Tensor:
    """PyTorch's rule for sums and products: bool and integer inputs give int64 unless dtype= says otherwise."""
    if dtype is not None:
        return x.to(dtype)
    return x if x.is_floating_point() else x._cast(D.int64)


@autocast_op("fp32")
def prod(input: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:  # noqa: A002
    """Product over ``dim``; the gradient is exact with zeros in the input.

    Computed as a balanced tree of elementwise multiplications (log2(n)
    levels, O(n) work), so every derivative is the product of the other
    factors, never a division by the input.
    """
    x = _int64_if_integral(input, dtype)
    dims = _dims(x, dim)
    keep = [i for i in range(x.ndim) if i not in dims]
    kept_shape = tuple(x.shape[i] for i in keep)
    n = _count(x, dims)
    y = x if keep + list(dims) == list(range(x.ndim)) else _m.permute(x, tuple(keep + list(dims)))
    y = y.reshape((*kept_shape, n))  # (..., n)
    if n == 0:
        r = y.sum(dim=-1, keepdim=True) + 1  # the empty product, still connected to the graph
    else:
        width = 1 << (n - 1).bit_length()
        if width != n:  # pad with ones to a power of two
            ones = Tensor._make(x._device.xp.ones((*kept_shape, width - n), dtype=y._data.dtype), x._device)
            y = V.Cat.apply(y.ndim - 1, y, ones)
        while width > 1:
            width //= 2
            y = y.narrow(-1, 0, width) * y.narrow(-1, width, width)
        r = y
    if keepdim:
        return r.reshape(tuple(1 if i in dims else s for i, s in enumerate(x.shape)))
    return r.reshape(kept_shape)


@autocast_op("fp32")
def cumsum(input: Tensor, dim: int, *, dtype: Any = None) -> Tensor:  # noqa: A002
    """Running sum along ``dim``; bool and integer inputs give int64."""
    x = input if dtype is None else input.to(dtype)
    if x.ndim == 0:
        return Cumsum.apply(_as_1d(x, dim), 0).reshape(())
    return Cumsum.apply(x, _wrap_dim(dim, x.ndim))


@autocast_op("fp32")
def cumprod(input: Tensor, dim: int, *, dtype: Any = None) -> Tensor:  # noqa: A002
    """Running product along ``dim``; the gradient is exact with zeros in the input.

    A Hillis-Steele scan of elementwise multiplications (log2(n) steps, O(n log n)
    work: a few times NumPy's cumprod), so no derivative divides by the input and
    every order of derivative is exact.
    """
    x = _int64_if_integral(input, dtype)
    if x.ndim == 0:
        return cumprod(_as_1d(x, dim), 0).reshape(())
    d = _wrap_dim(dim, x.ndim)
    n = x.shape[d]
    y, step = x, 1
    while step < n:
        y = V.Cat.apply(d, y.narrow(d, 0, step), y.narrow(d, step, n - step) * y.narrow(d, 0, n - step))
        step *= 2
    return V.Clone.apply(y) if y is input else y


# ----- max, min, argmax, argmin, aminmax ---------------------------------------------------
def _arg_extreme(op: str, x: Tensor, d: int) -> Any:
    """Index array (keepdim shape) of the first max/min along ``d``; NaN counts as the extreme."""
    if x.shape[d] == 0:
        raise IndexingError(f"{op}(): expected reduction dim {d} to have non-zero size, got shape {x.shape}")
    xp = x._device.xp
    fn = xp.argmax if op in ("max", "argmax") else xp.argmin
    return xp.expand_dims(fn(x._data, axis=d), d).astype(xp.int64)


def _extreme(op: str, input: Tensor, dim: Any, keepdim: bool, result: Any) -> Any:  # noqa: A002
    if isinstance(dim, Tensor):  # the binary form max(a, b)
        return (B.Maximum if op == "max" else B.Minimum).apply(input, dim)
    x = input
    if dim is None:
        if x.numel() == 0:
            raise IndexingError(f"{op}(): the input is empty; give a reduction dim (shape {x.shape})")
        prim = R.Amax if op == "max" else R.Amin
        return prim.apply(x, tuple(range(x.ndim)), False)  # ties share the gradient, as in PyTorch
    if x.ndim == 0:
        values, indices = _extreme(op, _as_1d(x, dim), 0, False, result)
        return result(values.reshape(()), indices.reshape(()))
    d = _wrap_dim(dim, x.ndim)
    idx = Tensor._make(_arg_extreme(op, x, d), x._device)
    values = _P.Gather.apply(x, d, idx)  # the gradient goes to the returned index only, as in PyTorch
    if not keepdim:
        values, idx = values.squeeze(d), idx.squeeze(d)
    return result(values, idx)


def max(input: Tensor, dim: Any = None, keepdim: bool = False) -> Any:  # noqa: A001, A002
    """``max(x)``: the largest value; ``max(x, dim)``: ``(values, indices)``; ``max(a, b)``: ``maximum``."""
    return _extreme("max", input, dim, keepdim, max_result)


def min(input: Tensor, dim: Any = None, keepdim: bool = False) -> Any:  # noqa: A001, A002
    """``min(x)``: the smallest value; ``min(x, dim)``: ``(values, indices)``; ``min(a, b)``: ``minimum``."""
    return _extreme("min", input, dim, keepdim, min_result)


def _argext(op: str, input: Tensor, dim: int | None, keepdim: bool) -> Tensor:  # noqa: A002
    x = input
    xp = x._device.xp
    if dim is None:
        if x.numel() == 0:
            raise IndexingError(f"{op}(): the input is empty; give a reduction dim (shape {x.shape})")
        flat = x._data.reshape(-1)
        idx = (xp.argmax if op == "argmax" else xp.argmin)(flat).astype(xp.int64)
        idx = idx.reshape((1,) * x.ndim if keepdim else ())
    elif x.ndim == 0:
        _wrap_dim(dim, 0)
        idx = xp.zeros((), dtype=xp.int64)
    else:
        d = _wrap_dim(dim, x.ndim)
        idx = _arg_extreme(op, x, d)
        if not keepdim:
            idx = idx.squeeze(d)
    return Tensor._make(xp.asarray(idx), x._device)


def argmax(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """Index of the (first) largest value along ``dim``, or in the flattened input when ``dim`` is None."""
    return _argext("argmax", input, dim, keepdim)


def argmin(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """Index of the (first) smallest value along ``dim``, or in the flattened input when ``dim`` is None."""
    return _argext("argmin", input, dim, keepdim)


def aminmax(input: Tensor, *, dim: int | None = None, keepdim: bool = False) -> Any:  # noqa: A002
    """``(min, max)`` over ``dim`` (all elements by default); ties share the gradient."""
    dims = norm_dims(dim, input.ndim) if dim is not None else tuple(range(input.ndim))
    if input.numel() == 0 and (dim is None or builtins.any(input.shape[d] == 0 for d in dims)):
        raise IndexingError(f"aminmax(): cannot reduce an empty dimension (shape {input.shape})")
    if input.ndim == 0:
        return aminmax_result(input.clone(), input.clone())
    return aminmax_result(R.Amin.apply(input, dims, keepdim), R.Amax.apply(input, dims, keepdim))


# ----- logsumexp ---------------------------------------------------------------------------------
def logsumexp(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """``log(sum(exp(x)))`` over ``dim``, computed stably; rows of only -inf give -inf."""
    x = input if input.is_floating_point() else input._cast(D.get_default_dtype())
    dims = _dims(x, dim)
    a = _acc(x)
    if _count(a, dims) == 0:  # log(0): -inf, with a zero (not NaN) tangent
        out = a.sum(dim=dims, keepdim=True) - math.inf
    else:
        shift = _stable_shift(a, dims)
        out = (a - shift).exp().sum(dim=dims, keepdim=True).log() + shift
    if not keepdim:
        out = out.reshape(tuple(s for i, s in enumerate(out.shape) if i not in dims))
    return out._cast(x.dtype)


def _stable_shift(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """The row max, detached (any constant shift gives the same value and derivatives), 0 where infinite."""
    c = x.detach()
    if c.numel() == 0:
        return c.sum(dim=dims, keepdim=True)  # zeros of the kept shape
    m = R.Amax.apply(c, dims, True)
    return _m.where(m.isinf(), 0.0, m)


# ----- all, any, count_nonzero -----------------------------------------------------------------
def count_nonzero(input: Tensor, dim: Any = None) -> Tensor:  # noqa: A002
    """Number of nonzero elements over ``dim`` (int64)."""
    nz = input if input.dtype is D.bool_ else B.Ne.apply(input, 0)
    return R.Sum.apply(nz, _dims(input, dim), False, None)


def _truth(op: str, input: Tensor, dim: Any, keepdim: bool) -> Tensor:  # noqa: A002
    dims = _dims(input, dim)
    if op == "all":  # no zero anywhere (NaN counts as true)
        zero = B.LogicalNot.apply(input) if input.dtype is D.bool_ else B.Eq.apply(input, 0)
        out = B.Eq.apply(R.Sum.apply(zero, dims, keepdim, None), 0)
    else:
        nz = input if input.dtype is D.bool_ else B.Ne.apply(input, 0)
        out = B.Gt.apply(R.Sum.apply(nz, dims, keepdim, None), 0)
    return out._cast(D.uint8) if input.dtype is D.uint8 else out  # uint8 stays uint8, as in PyTorch


def all(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001, A002
    """True where every element over ``dim`` is nonzero (True over an empty dim)."""
    return _truth("all", input, dim, keepdim)


def any(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001, A002
    """True where some element over ``dim`` is nonzero (False over an empty dim)."""
    return _truth("any", input, dim, keepdim)


# Tensor methods bound by axonml.ops: name -> function taking the tensor first.
METHODS: dict[str, Any] = {
    name: globals()[name] for name in __all__ if name not in ("var_mean", "std_mean")
}
METHODS["cumsum_"] = inplace_unary(cumsum, "cumsum_")
METHODS["cumprod_"] = inplace_unary(cumprod, "cumprod_")
