"""axonml dtypes and PyTorch's type-promotion rules.

bfloat16 uses ``ml_dtypes`` on the CPU (an optional dependency); without it,
asking for bfloat16 raises a clear error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DTypeError

_BOOL, _INT, _FLOAT = 0, 1, 2

try:  # optional: NumPy has no bfloat16 of its own
    import ml_dtypes

    _BF16_NP: Any = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - depends on the environment
    _BF16_NP = None


class dtype:  # noqa: N801 - PyTorch's spelling
    """A tensor element type (``axonml.float32``, ``axonml.int64``, ...)."""

    __slots__ = ("name", "_np", "itemsize", "category", "is_signed")

    def __init__(self, name: str, np_dtype: Any, itemsize: int, category: int, is_signed: bool) -> None:
        self.name = name
        self._np = np_dtype
        self.itemsize = itemsize
        self.category = category
        self.is_signed = is_signed

    @property
    def np(self) -> np.dtype:
        """The NumPy dtype that stores this type."""
        if self._np is None:
            raise DTypeError("bfloat16 needs the ml_dtypes package: pip install ml_dtypes")
        return self._np

    @property
    def is_floating_point(self) -> bool:
        return self.category == _FLOAT

    @property
    def is_complex(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"axonml.{self.name}"

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (as_dtype, (self.name,))  # unpickles to the same interned object


bool_ = dtype("bool", np.dtype(np.bool_), 1, _BOOL, False)
uint8 = dtype("uint8", np.dtype(np.uint8), 1, _INT, False)
int8 = dtype("int8", np.dtype(np.int8), 1, _INT, True)
int16 = dtype("int16", np.dtype(np.int16), 2, _INT, True)
int32 = dtype("int32", np.dtype(np.int32), 4, _INT, True)
int64 = dtype("int64", np.dtype(np.int64), 8, _INT, True)
float16 = dtype("float16", np.dtype(np.float16), 2, _FLOAT, True)
bfloat16 = dtype("bfloat16", _BF16_NP, 2, _FLOAT, True)
float32 = dtype("float32", np.dtype(np.float32), 4, _FLOAT, True)
float64 = dtype("float64", np.dtype(np.float64), 8, _FLOAT, True)

ALL_DTYPES = (bool_, uint8, int8, int16, int32, int64, float16, bfloat16, float32, float64)
FLOAT_DTYPES = (float16, bfloat16, float32, float64)

_FROM_NP: dict[Any, dtype] = {d._np: d for d in ALL_DTYPES if d._np is not None}
_BY_NAME: dict[str, dtype] = {d.name: d for d in ALL_DTYPES}
_BY_NAME.update(
    {"half": float16, "float": float32, "double": float64, "long": int64, "int": int32,
     "short": int16, "bool_": bool_}
)

_default_float = float32


def is_float_np(np_dtype: Any) -> bool:
    """Whether a NumPy dtype is one of axonml's floating types (bfloat16 included)."""
    return np_dtype.kind == "f" or (_BF16_NP is not None and np_dtype == _BF16_NP)


def from_numpy_dtype(np_dtype: Any) -> dtype:
    """The axonml dtype stored as NumPy dtype ``np_dtype``."""
    d = _FROM_NP.get(np_dtype)
    if d is None:
        d = _FROM_NP.get(np.dtype(np_dtype))
        if d is None:
            raise DTypeError(f"NumPy dtype {np_dtype} has no axonml equivalent")
    return d


def as_dtype(spec: Any) -> dtype:
    """Normalize a dtype, its name, a NumPy dtype or a Python type to an axonml dtype."""
    if isinstance(spec, dtype):
        return spec
    if spec is float:
        return _default_float
    if spec is int:
        return int64
    if spec is bool:
        return bool_
    if isinstance(spec, str):
        d = _BY_NAME.get(spec.removeprefix("axonml.").removeprefix("torch."))
        if d is not None:
            return d
    try:
        return from_numpy_dtype(np.dtype(spec))
    except (TypeError, DTypeError):
        raise DTypeError(f"unknown dtype {spec!r}") from None


def get_default_dtype() -> dtype:
    """The dtype of tensors made from Python floats (float32 unless changed)."""
    return _default_float


def set_default_dtype(d: Any) -> None:
    """Set the dtype of tensors made from Python floats; a floating dtype."""
    global _default_float
    d = as_dtype(d)
    if not d.is_floating_point:
        raise DTypeError(f"the default dtype must be floating point, got {d}")
    _default_float = d


def promote_types(a: dtype, b: dtype) -> dtype:
    """The dtype PyTorch gives an op on tensors of dtypes ``a`` and ``b``."""
    if a is b:
        return a
    if a.category != b.category:
        return a if a.category > b.category else b
    if a.category == _FLOAT and (a is bfloat16 or b is bfloat16):
        # float16 with bfloat16 has no common 16-bit type
        other = b if a is bfloat16 else a
        return float32 if other is float16 else other
    return _FROM_NP[np.promote_types(a._np, b._np)]


def _scalar_dtype(x: Any) -> dtype:
    if isinstance(x, bool | np.bool_):
        return bool_
    if isinstance(x, int | np.integer):
        return int64
    if isinstance(x, float | np.floating):
        return _default_float
    raise DTypeError(f"unsupported scalar of type {type(x).__name__}")


def result_type(*operands: Any) -> dtype:
    """PyTorch's result type for tensors (with ``.dtype`` and ``.ndim``) and Python scalars.

    Dimensioned tensors decide within a category; zero-dim tensors and Python
    scalars only lift the result to a higher category (``int_tensor * 2.5`` is
    float, ``float16_tensor * 2.5`` stays float16).
    """
    dim: dtype | None = None
    zero: dtype | None = None
    wrapped: dtype | None = None
    for x in operands:
        if x is None:  # an absent optional argument (clamp's min or max)
            continue
        d = getattr(x, "dtype", None)
        if isinstance(d, dtype):
            if x.ndim > 0:
                dim = d if dim is None else promote_types(dim, d)
            else:
                zero = d if zero is None else promote_types(zero, d)
        else:
            s = _scalar_dtype(x)
            wrapped = s if wrapped is None else promote_types(wrapped, s)
    return _combine(dim, _combine(zero, wrapped))  # type: ignore[return-value]


def _combine(higher: dtype | None, lower: dtype | None) -> dtype | None:
    if higher is None:
        return lower
    if lower is None or higher.category == _FLOAT:
        return higher
    if higher is bool_ or lower.category == _FLOAT:
        return promote_types(higher, lower)
    return higher


def finfo(d: Any) -> Any:
    """Machine limits of a floating dtype (NumPy's ``finfo``)."""
    d = as_dtype(d)
    if not d.is_floating_point:
        raise DTypeError(f"finfo needs a floating dtype, got {d}")
    if d is bfloat16:
        return ml_dtypes.finfo(d.np)
    return np.finfo(d.np)


def iinfo(d: Any) -> Any:
    """Machine limits of an integer dtype (NumPy's ``iinfo``)."""
    d = as_dtype(d)
    if d.category != _INT:
        raise DTypeError(f"iinfo needs an integer dtype, got {d}")
    return np.iinfo(d.np)
