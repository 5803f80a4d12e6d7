"""Whitelists for :class:`~axonml.io.torch_pickle.RestrictedUnpickler`: standard containers and NumPy data.

Each entry maps a pickle global ``(module, name)`` to a :class:`Global` whose
``call`` is one of the small constructors here: they build plain data
(containers, bytes, numeric arrays, dtypes, scalars) and check their
arguments, so a pickle can only ever produce data through them. NumPy object
arrays and structured dtypes are refused.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from ._common import SerializationError, UnsafePickleError
from .torch_pickle import Global


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    # protocol 2 spells bytes as _codecs.encode(latin-1 text, "latin1")
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise SerializationError(f"unexpected _codecs.encode arguments ({type(text).__name__}, {encoding!r})")
    return text.encode(encoding)


def builtin_globals() -> dict[tuple[str, str], Any]:
    """Containers and scalars of the standard library that pickles spell as globals."""
    from collections import Counter

    def data_only(cls: type) -> Callable[..., Any]:
        return lambda *args: cls(*args)

    return {
        ("collections", "OrderedDict"): Global("collections", "OrderedDict", data_only(OrderedDict)),
        ("collections", "Counter"): Global("collections", "Counter", data_only(Counter)),
        ("builtins", "set"): Global("builtins", "set", data_only(set)),
        ("builtins", "frozenset"): Global("builtins", "frozenset", data_only(frozenset)),
        ("builtins", "bytearray"): Global("builtins", "bytearray", _bytearray),
        ("builtins", "bytes"): Global("builtins", "bytes", lambda *args: bytes(_bytearray(*args))),
        ("builtins", "complex"): Global("builtins", "complex", _complex),
        ("_codecs", "encode"): Global("_codecs", "encode", _codecs_encode),
    }


def _bytearray(*args: Any) -> bytearray:
    if len(args) == 2 and isinstance(args[0], str):
        return bytearray(_codecs_encode(args[0], args[1]))
    if len(args) > 1 or (args and not isinstance(args[0], bytes | list)):
        raise SerializationError("unexpected bytearray arguments in the pickle")
    return bytearray(*args)


def _complex(real: Any = 0.0, imag: Any = 0.0) -> complex:
    if not isinstance(real, int | float) or not isinstance(imag, int | float):
        raise SerializationError("unexpected complex arguments in the pickle")
    return complex(real, imag)


# NumPy: arrays, dtypes and scalars of data types only (never object arrays).
class _PendingDType:
    """``numpy.dtype(...)`` before its BUILD sets the byte order."""

    __slots__ = ("dtype",)

    def __init__(self, spec: Any, align: Any = False, copy: Any = True) -> None:
        if isinstance(spec, bytes):
            spec = spec.decode("ascii")
        if not isinstance(spec, str):
            raise SerializationError(f"unexpected numpy.dtype spec {spec!r}")
        self.dtype = _checked_dtype(np.dtype(spec))

    def _pickle_build(self, state: Any) -> np.dtype:
        if isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">", "|", "=", b"<", b">", b"|"):
            order = state[1].decode() if isinstance(state[1], bytes) else str(state[1])
            if order == "<" and self.dtype.itemsize > 1:
                return self.dtype.newbyteorder("<")
            if order == ">" and self.dtype.itemsize > 1:
                return self.dtype.newbyteorder(">")
        return self.dtype


def _checked_dtype(d: Any) -> np.dtype:
    if isinstance(d, _PendingDType):
        d = d.dtype
    if not isinstance(d, np.dtype) or d.kind not in "biufcSU" or d.fields is not None or d.subdtype is not None:
        raise UnsafePickleError(f"refusing to load: NumPy dtype {d!r} (only plain numeric/string dtypes)")
    return d


class _PendingArray:
    """``numpy.core.multiarray._reconstruct(...)`` before its BUILD gives shape, dtype and bytes."""

    __slots__ = ()

    def _pickle_build(self, state: Any) -> np.ndarray:
        if not isinstance(state, tuple) or len(state) != 5:
            raise SerializationError("unexpected ndarray state in the pickle")
        _version, shape, dtype, fortran, raw = state
        dtype = _checked_dtype(dtype)
        if isinstance(raw, str):  # a Python 2 pickle read with a text encoding: latin-1 gives the bytes back
            raw = raw.encode("latin-1")
        if not isinstance(raw, bytes | bytearray) or not isinstance(shape, tuple):
            raise UnsafePickleError("refusing to load: an ndarray whose data is not raw bytes (an object array?)")
        count = 1
        for s in shape:
            if not isinstance(s, int) or s < 0:
                raise SerializationError(f"bad ndarray shape {shape!r} in the pickle")
            count *= s
        if len(raw) != count * dtype.itemsize:
            raise SerializationError(f"ndarray data of {len(raw)} bytes does not fit shape {shape} of {dtype}")
        arr = np.frombuffer(bytearray(raw), dtype=dtype)
        return arr.reshape(shape, order="F" if fortran else "C")


def _reconstruct(cls: Any, shape: Any, dtype_code: Any) -> _PendingArray:
    if not (isinstance(cls, Global) and cls.name == "ndarray"):
        raise UnsafePickleError(f"refusing to load: numpy _reconstruct of {cls!r}")
    return _PendingArray()


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    dtype = _checked_dtype(dtype)
    if isinstance(data, str):
        data = data.encode("latin-1")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise SerializationError("unexpected numpy scalar data in the pickle")
    return np.frombuffer(data, dtype=dtype)[0]


def numpy_globals() -> dict[tuple[str, str], Any]:
    """The whitelist for pickled NumPy arrays, dtypes and scalars (numeric and string types only)."""
    out: dict[tuple[str, str], Any] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = Global(mod, "_reconstruct", _reconstruct)
        out[(mod, "scalar")] = Global(mod, "scalar", _np_scalar)
    out[("numpy", "ndarray")] = Global("numpy", "ndarray")
    out[("numpy", "dtype")] = Global("numpy", "dtype", _PendingDType)
    return out
