"""Attach primitive-backed functions to Tensor as methods and operators."""

from __future__ import annotations

from typing import Any

from ..errors import ShapeError
from . import inplace as ip
from . import methods as m
from .prims import binary as B
from .prims import elementwise as E
from .prims import movement as V
from .tensor import Tensor


def _unary(prim: Any) -> Any:
    def fn(x: Tensor) -> Tensor:
        return prim.apply(x)  # type: ignore[no-any-return]

    fn.__name__ = prim.__name__.lower()
    return fn


def _binary(prim: Any) -> Any:
    def fn(a: Any, b: Any) -> Tensor:
        return prim.apply(a, b)  # type: ignore[no-any-return]

    fn.__name__ = prim.__name__.lower()
    return fn


def _reflected(prim: Any) -> Any:
    def fn(a: Tensor, b: Any) -> Tensor:
        return prim.apply(b, a)  # type: ignore[no-any-return]

    return fn


UNARY: dict[str, Any] = {
    "exp": E.Exp, "exp2": E.Exp2, "expm1": E.Expm1, "log": E.Log, "log2": E.Log2, "log10": E.Log10,
    "log1p": E.Log1p, "sqrt": E.Sqrt, "rsqrt": E.Rsqrt, "sin": E.Sin, "cos": E.Cos, "tan": E.Tan,
    "asin": E.Asin, "acos": E.Acos, "atan": E.Atan, "sinh": E.Sinh, "cosh": E.Cosh, "tanh": E.Tanh,
    "sigmoid": E.Sigmoid, "relu": E.Relu, "erf": E.Erf, "erfinv": E.Erfinv, "abs": E.Abs,
    "sign": E.Sign, "floor": E.Floor, "ceil": E.Ceil, "trunc": E.Trunc, "reciprocal": E.Reciprocal,
    "neg": E.Neg, "isnan": B.IsNan, "isinf": B.IsInf, "isfinite": B.IsFinite,
    "logical_not": B.LogicalNot, "bitwise_not": B.BitNot, "clone": V.Clone,
}
BINARY: dict[str, Any] = {
    "add": B.Add, "sub": B.Sub, "mul": B.Mul, "div": B.Div, "pow": B.Pow, "atan2": B.Atan2,
    "maximum": B.Maximum, "minimum": B.Minimum, "remainder": B.Remainder, "floor_divide": B.FloorDivide,
    "eq": B.Eq, "ne": B.Ne, "lt": B.Lt, "le": B.Le, "gt": B.Gt, "ge": B.Ge,
    "logical_and": B.LogicalAnd, "logical_or": B.LogicalOr, "logical_xor": B.LogicalXor,
    "bitwise_and": B.BitAnd, "bitwise_or": B.BitOr, "bitwise_xor": B.BitXor,
    "bitwise_left_shift": B.LeftShift, "bitwise_right_shift": B.RightShift,
}
OPERATORS: dict[str, Any] = {
    "__add__": B.Add, "__sub__": B.Sub, "__mul__": B.Mul, "__truediv__": B.Div, "__pow__": B.Pow,
    "__floordiv__": B.FloorDivide, "__mod__": B.Remainder, "__matmul__": None,
    "__and__": B.BitAnd, "__or__": B.BitOr, "__xor__": B.BitXor, "__lshift__": B.LeftShift,
    "__rshift__": B.RightShift, "__lt__": B.Lt, "__le__": B.Le, "__gt__": B.Gt, "__ge__": B.Ge,
}
FUNCTIONS: dict[str, Any] = {}


_REVERSED = [tuple(range(n - 1, -1, -1)) for n in range(33)]


def _reversed_dims(x: Tensor) -> Tensor:
    """``x.T``: all dimensions reversed (a hot path: skips argument checks)."""
    n = x._data.ndim
    return x if n < 2 else V.Permute.apply(x, _REVERSED[n] if n < 33 else tuple(range(n - 1, -1, -1)))


def _swap_last_two(x: Tensor) -> Tensor:
    """``x.mT``: the last two dimensions swapped."""
    n = x._data.ndim
    if n < 2:
        raise ShapeError(f"mT needs at least 2 dimensions, got a tensor of shape {x.shape}")
    return V.Permute.apply(x, (*range(n - 2), n - 1, n - 2))


def _install() -> None:
    for name, prim in UNARY.items():
        FUNCTIONS[name] = _unary(prim)
    for name, prim in BINARY.items():
        FUNCTIONS[name] = _binary(prim)
    FUNCTIONS.update(
        reshape=m.reshape, permute=m.permute, transpose=m.transpose, squeeze=m.squeeze,
        unsqueeze=m.unsqueeze, narrow=m.narrow, sum=m.sum_, amax=m.amax, amin=m.amin, where=m.where,
        clamp=m.clamp, clip=m.clamp, matmul=m.matmul, round=m.round_, cat=m.cat, flip=m.flip,
        subtract=FUNCTIONS["sub"], multiply=FUNCTIONS["mul"], divide=FUNCTIONS["div"],
        true_divide=FUNCTIONS["div"], negative=FUNCTIONS["neg"], absolute=FUNCTIONS["abs"],
        arcsin=FUNCTIONS["asin"], arccos=FUNCTIONS["acos"], arctan=FUNCTIONS["atan"],
        arctan2=FUNCTIONS["atan2"], greater=FUNCTIONS["gt"], less=FUNCTIONS["lt"],
        greater_equal=FUNCTIONS["ge"], less_equal=FUNCTIONS["le"], not_equal=FUNCTIONS["ne"],
        fmod=None,
    )
    del FUNCTIONS["fmod"]
    skip_methods = {"where", "cat"}
    for name, fn in FUNCTIONS.items():
        if name not in skip_methods:
            setattr(Tensor, name, fn)
    T = Tensor
    T.where = m.tensor_where  # type: ignore[attr-defined]
    T.view = m.view  # type: ignore[attr-defined]
    T.expand = m.expand  # type: ignore[attr-defined]
    T.expand_as = lambda self, other: m.expand(self, other.shape)  # type: ignore[attr-defined]
    T.view_as = lambda self, other: V.Alias.apply(self) if other is self else m.view(self, other.shape)  # type: ignore[attr-defined]
    T.reshape_as = lambda self, other: m.reshape(self, other.shape)  # type: ignore[attr-defined]
    T.__getitem__ = m.getitem  # type: ignore[attr-defined]
    T.__setitem__ = ip.setitem  # type: ignore[attr-defined]
    for op, prim in OPERATORS.items():
        if prim is not None:
            setattr(T, op, _binary(prim))
    T.__matmul__ = m.matmul  # type: ignore[attr-defined]
    T.__rmatmul__ = lambda self, other: m.matmul(other, self)  # type: ignore[attr-defined]
    T.__eq__ = _binary(B.Eq)  # type: ignore[assignment]
    T.__ne__ = _binary(B.Ne)  # type: ignore[assignment]
    T.__hash__ = object.__hash__  # type: ignore[assignment]  # identity (``==`` is elementwise), in C
    for op in ("add", "sub", "mul", "truediv", "pow", "floordiv", "mod", "and", "or", "xor", "lshift", "rshift"):
        setattr(T, f"__r{op}__", _reflected(OPERATORS[f"__{op}__"]))
    T.__neg__ = FUNCTIONS["neg"]  # type: ignore[attr-defined]
    T.__pos__ = lambda self: self  # type: ignore[attr-defined]
    T.__abs__ = FUNCTIONS["abs"]  # type: ignore[attr-defined]
    T.__invert__ = lambda self: B.LogicalNot.apply(self) if self._data.dtype.kind == "b" else B.BitNot.apply(self)  # type: ignore[attr-defined]
    for name, prim in (("add", B.Add), ("sub", B.Sub), ("mul", B.Mul), ("div", B.Div)):
        setattr(T, f"{name}_", ip.inplace_binary(prim, f"{name}_"))
    for name, prim in (("pow", B.Pow), ("remainder", B.Remainder), ("floor_divide", B.FloorDivide),
                       ("maximum", B.Maximum), ("minimum", B.Minimum), ("atan2", B.Atan2)):
        setattr(T, f"{name}_", ip.inplace_binary(prim, f"{name}_"))
    for op, name in (("__iadd__", "add_"), ("__isub__", "sub_"), ("__imul__", "mul_"), ("__itruediv__", "div_"),
                     ("__ipow__", "pow_"), ("__imod__", "remainder_"), ("__ifloordiv__", "floor_divide_")):
        setattr(T, op, getattr(T, name))
    for name in ("exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "relu", "abs", "neg", "floor",
                 "ceil", "trunc", "round", "sign", "reciprocal", "clamp", "erf", "log1p", "expm1", "tan",
                 "exp2", "log2", "sinh", "cosh", "asin", "acos", "atan", "erfinv", "log10"):
        setattr(T, f"{name}_", ip.inplace_unary(getattr(T, name), f"{name}_"))
    T.clip_ = T.clamp_  # type: ignore[attr-defined]
    T.zero_ = ip.zero_  # type: ignore[attr-defined]
    T.fill_ = ip.fill_  # type: ignore[attr-defined]
    T.copy_ = ip.copy_  # type: ignore[attr-defined]
    T.T = property(_reversed_dims)  # type: ignore[attr-defined]
    T.mT = property(_swap_last_two)  # type: ignore[attr-defined]
    T.t = lambda self: m.transpose(self, 0, 1) if self.ndim == 2 else self  # type: ignore[attr-defined]
    T.swapaxes = T.swapdims = m.transpose  # type: ignore[attr-defined]
    T.contiguous = lambda self: self if self._data.flags.c_contiguous else V.Clone.apply(self)  # type: ignore[attr-defined]


_install()
