"""Binary and ternary elementwise primitives, with PyTorch's type promotion.

Arguments may be Tensors or Python scalars; ``Primitive.apply`` casts arrays
to the result dtype first. Gradients come back at the broadcast shape and in
the result dtype; the engine sums and casts them to each input's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...backend import select
from ...backend.fused import FUSED_DTYPES, elementwise
from ..dtypes import get_default_dtype, is_float_np
from ..function import Primitive
from ..tensor import Tensor


def _zero_like(t: Any) -> Any:
    return None if t is None else t * 0.0


_ADD = elementwise("axonml_add", "T a, T b", "T c", "c = a + b;")


class Add(Primitive):
    promote = True

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        xp = ctx.xp
        if (xp is not np and type(a) is type(b) and a.shape == b.shape and a.dtype == b.dtype
                and a.dtype in FUSED_DTYPES):  # a raw launch: half the host time of CuPy's add
            c = xp.ndarray(a.shape, a.dtype)
            _ADD.over(a, b, c)
            return c
        return a + b

    def backward(self, grad: Tensor) -> tuple[Tensor, Tensor]:
        return grad, grad

    def jvp(self, ta: Tensor | None, tb: Tensor | None) -> Tensor | None:
        if ta is None:
            return tb
        return ta if tb is None else ta + tb


class Sub(Primitive):
    promote = True

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        return a - b

    def backward(self, grad: Tensor) -> tuple[Tensor, Tensor | None]:
        return grad, (-grad if self.next_edges[1] is not None else None)

    def jvp(self, ta: Tensor | None, tb: Tensor | None) -> Tensor | None:
        if tb is None:
            return ta
        return -tb if ta is None else ta - tb


class Mul(Primitive):
    promote = True
    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        return a * b

    def backward(self, grad: Tensor) -> tuple[Any, Any]:
        ga = grad * self.input(1) if self.next_edges[0] is not None else None
        gb = grad * self.input(0) if self.next_edges[1] is not None else None
        return ga, gb

    def jvp(self, ta: Tensor | None, tb: Tensor | None) -> Tensor | None:
        a, b = self.inputs
        out = None if ta is None else ta * b
        if tb is not None:
            out = tb * a if out is None else out + tb * a
        return out


class Div(Primitive):
    """True division: integer inputs give the default float dtype."""

    promote = True
    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        if not is_float_np(getattr(a, "dtype", None) or getattr(b, "dtype", None)):
            out = ctx.xp.true_divide(a, b)
            return out.astype(get_default_dtype().np, copy=False)
        return a / b

    def backward(self, grad: Tensor) -> tuple[Any, Any]:
        b = self.input(1)
        ga = grad / b if self.next_edges[0] is not None else None
        gb = -grad * self.input(0) / (b * b) if self.next_edges[1] is not None else None
        return ga, gb

    def jvp(self, ta: Tensor | None, tb: Tensor | None) -> Tensor | None:
        a, b = self.inputs
        out = None if ta is None else ta / b
        if tb is not None:
            tb_part = -tb * a / (b * b)
            out = tb_part if out is None else out + tb_part
        return out


class Pow(Primitive):
    """``a ** b``; small integer exponents use multiplications (float ``**`` is slow in NumPy)."""

    promote = True
    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        xp = ctx.xp
        if isinstance(b, int | float) and not isinstance(b, bool):
            if b == 2:
                return a * a
            if b == 3:
                return a * a * a
            if b == 0.5 and is_float_np(a.dtype):
                return xp.sqrt(a)
            if b == 1:
                return a.copy()
            if b < 0 and isinstance(b, int) and getattr(a, "dtype", None) is not None and a.dtype.kind in "iu":
                from ...errors import DTypeError

                raise DTypeError("integers to negative integer powers are not allowed")
        return xp.power(a, b)

    def backward(self, grad: Tensor) -> tuple[Any, Any]:
        a, b = self.inputs
        ga = gb = None
        if self.next_edges[0] is not None:
            if isinstance(b, int | float):
                ga = grad * (b * a ** (b - 1)) if b != 0 else grad * 0.0
            else:
                ga = grad * (b * a ** (b - 1.0)).where(b != 0, 0.0)
        if self.next_edges[1] is not None:
            # d/db a**b = a**b log a, taken as 0 where a == 0 (PyTorch's convention)
            log_a = (a if isinstance(a, Tensor) else Tensor._make(self.xp.asarray(a), self.device)).log()
            gb = grad * (a**b * log_a).where(a != 0, 0.0)
        return ga, gb

    def jvp(self, ta: Tensor | None, tb: Tensor | None) -> Tensor | None:
        a, b = self.inputs
        out = None
        if ta is not None:
            if isinstance(b, int | float):
                out = ta * (b * a ** (b - 1))
            else:
                out = ta * (b * a ** (b - 1.0)).where(b != 0, 0.0)
        if tb is not None:
            log_a = (a if isinstance(a, Tensor) else Tensor._make(self.xp.asarray(a), self.device)).log()
            part = tb * (a**b * log_a).where(a != 0, 0.0)
            out = part if out is None else out + part
        return out


class Atan2(Primitive):
    promote = True
    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        if not is_float_np(a.dtype):
            a = a.astype(get_default_dtype().np)
        return ctx.xp.arctan2(a, b)

    def _partials(self) -> tuple[Tensor, Tensor]:
        a, b = self.inputs
        r = (a * a + b * b).reciprocal()
        return b * r, -a * r

    def backward(self, grad: Tensor) -> tuple[Tensor, Tensor]:
        da, db = self._partials()
        return grad * da, grad * db

    def jvp(self, ta: Tensor | None, tb: Tensor | None) -> Tensor | None:
        da, db = self._partials()
        out = None if ta is None else ta * da
        if tb is not None:
            out = tb * db if out is None else out + tb * db
        return out


class _MinMax(Primitive):
    """maximum/minimum: at ties the gradient is split in half, as in PyTorch."""

    promote = True
    saves = "inputs"

    def _weights(self, like: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self.inputs
        wa = self._wins(a, b).to(like.dtype) + (a == b).to(like.dtype) * 0.5
        return wa, 1.0 - wa

    @staticmethod
    def _wins(a: Tensor, b: Tensor) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def backward(self, grad: Tensor) -> tuple[Tensor, Tensor]:
        wa, wb = self._weights(grad)
        return grad * wa, grad * wb

    def jvp(self, ta: Tensor | None, tb: Tensor | None) -> Tensor | None:
        wa, wb = self._weights(ta if ta is not None else tb)  # type: ignore[arg-type]  # one is not None
        out = None if ta is None else ta * wa
        if tb is not None:
            out = tb * wb if out is None else out + tb * wb
        return out


class Maximum(_MinMax):
    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        return ctx.xp.maximum(a, b)

    @staticmethod
    def _wins(a: Tensor, b: Tensor) -> Tensor:
        return a > b


class Minimum(_MinMax):
    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        return ctx.xp.minimum(a, b)

    @staticmethod
    def _wins(a: Tensor, b: Tensor) -> Tensor:
        return a < b


class Where(Primitive):
    """``where(cond, a, b)``; ``a`` and ``b`` promote together, ``cond`` is bool."""

    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, cond: Any, a: Any, b: Any) -> Any:
        return select(ctx.xp, cond, a, b)

    def backward(self, grad: Tensor) -> tuple[None, Any, Any]:
        cond = self.inputs[0]
        ga = grad.where(cond, 0.0) if self.next_edges[1] is not None else None
        gb = grad.where(~cond, 0.0) if self.next_edges[2] is not None else None
        return None, ga, gb

    def jvp(self, tc: Any, ta: Tensor | None, tb: Tensor | None) -> Tensor | None:
        cond = self.inputs[0]
        if ta is None and tb is None:
            return None
        za = ta if ta is not None else 0.0
        zb = tb if tb is not None else 0.0
        from ..methods import where  # handles scalar branches

        return where(cond, za, zb)  # type: ignore[no-any-return]


class Clamp(Primitive):
    """``clamp(x, lo, hi)`` with scalar or tensor bounds; gradient 1 inside [lo, hi]."""

    promote = True
    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, x: Any, lo: Any, hi: Any) -> Any:
        xp = ctx.xp
        out = x
        if lo is not None:
            out = xp.maximum(out, lo)
        if hi is not None:
            out = xp.minimum(out, hi)
        return out.copy() if out is x else out

    def _masks(self) -> tuple[Tensor, Any, Any]:
        x, lo, hi = self.inputs
        inside = None
        if lo is not None:
            inside = x >= lo
        if hi is not None:
            inside = (x <= hi) if inside is None else inside & (x <= hi)
        if inside is None:
            inside = x == x
        below = None if lo is None else x < lo
        above = None if hi is None else x > hi
        return inside, below, above

    def backward(self, grad: Tensor) -> tuple[Any, Any, Any]:
        inside, below, above = self._masks()
        gx = grad.where(inside, 0.0) if self.next_edges[0] is not None else None
        glo = grad.where(below, 0.0) if self.next_edges[1] is not None and below is not None else None
        ghi = grad.where(above, 0.0) if self.next_edges[2] is not None and above is not None else None
        return gx, glo, ghi

    def jvp(self, tx: Any, tlo: Any, thi: Any) -> Tensor | None:
        inside, below, above = self._masks()
        out = None if tx is None else tx.where(inside, 0.0)
        for t, m in ((tlo, below), (thi, above)):
            if t is not None and m is not None:
                part = t.where(m, 0.0)
                out = part if out is None else out + part
        return out


class Remainder(Primitive):
    """Python-style ``a % b`` (sign of the divisor); d/da = 1, d/db = -floor(a / b)."""

    promote = True
    saves = "inputs"

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        return ctx.xp.remainder(a, b)

    def backward(self, grad: Tensor) -> tuple[Any, Any]:
        a, b = self.inputs
        gb = -grad * (a / b).floor() if self.next_edges[1] is not None else None
        return grad, gb

    def jvp(self, ta: Any, tb: Any) -> Tensor | None:
        a, b = self.inputs
        out = ta
        if tb is not None:
            part = -tb * (a / b).floor()
            out = part if out is None else out + part
        return out


class FloorDivide(Primitive):
    """``a // b`` rounded toward negative infinity; piecewise constant, so zero gradient."""

    promote = True

    @staticmethod
    def forward(ctx: Any, a: Any, b: Any) -> Any:
        return ctx.xp.floor_divide(a, b)

    def backward(self, grad: Tensor) -> tuple[Any, Any]:
        return grad * 0.0, grad * 0.0

    def jvp(self, ta: Any, tb: Any) -> Tensor | None:
        return _zero_like(ta if ta is not None else tb)


class _NonDiff(Primitive):
    """Comparisons, logical and bitwise ops: integer or bool results, no gradient."""

    promote = True
    differentiable = False
    ufunc: str = ""

    @classmethod
    def forward(cls, ctx: Any, a: Any, b: Any) -> Any:  # type: ignore[override]
        return getattr(ctx.xp, cls.ufunc)(a, b)


def _nondiff(name: str, ufunc: str) -> type[_NonDiff]:
    return type(name, (_NonDiff,), {"ufunc": ufunc, "name": name})


Eq = _nondiff("Eq", "equal")
Ne = _nondiff("Ne", "not_equal")
Lt = _nondiff("Lt", "less")
Le = _nondiff("Le", "less_equal")
Gt = _nondiff("Gt", "greater")
Ge = _nondiff("Ge", "greater_equal")
BitAnd = _nondiff("BitAnd", "bitwise_and")
BitOr = _nondiff("BitOr", "bitwise_or")
BitXor = _nondiff("BitXor", "bitwise_xor")
LogicalAnd = _nondiff("LogicalAnd", "logical_and")
LogicalOr = _nondiff("LogicalOr", "logical_or")
LogicalXor = _nondiff("LogicalXor", "logical_xor")
LeftShift = _nondiff("LeftShift", "left_shift")
RightShift = _nondiff("RightShift", "right_shift")


class _UnaryNonDiff(Primitive):
    differentiable = False
    ufunc: str = ""

    @classmethod
    def forward(cls, ctx: Any, a: Any) -> Any:  # type: ignore[override]
        return getattr(ctx.xp, cls.ufunc)(a)


BitNot: type[_UnaryNonDiff] = type("BitNot", (_UnaryNonDiff,), {"ufunc": "invert", "name": "BitNot"})
LogicalNot: type[_UnaryNonDiff] = type("LogicalNot", (_UnaryNonDiff,), {"ufunc": "logical_not", "name": "LogicalNot"})
IsNan: type[_UnaryNonDiff] = type("IsNan", (_UnaryNonDiff,), {"ufunc": "isnan", "name": "IsNan"})
IsInf: type[_UnaryNonDiff] = type("IsInf", (_UnaryNonDiff,), {"ufunc": "isinf", "name": "IsInf"})
IsFinite: type[_UnaryNonDiff] = type("IsFinite", (_UnaryNonDiff,), {"ufunc": "isfinite", "name": "IsFinite"})
