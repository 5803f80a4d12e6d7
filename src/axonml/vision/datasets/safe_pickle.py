"""A restricted unpickler for the CIFAR batches: it builds dicts, lists, strings, numbers, NumPy arrays, nothing else.

Python's pickle runs whatever callable a file names, so loading an untrusted
pickle can run any code. The CIFAR batches need only plain containers plus the
three globals NumPy uses to rebuild an array (``_reconstruct``, ``ndarray``,
``dtype``), ``_frombuffer`` for arrays pickled with protocol 5, and
``_codecs.encode`` (how Python 3 writes ``bytes`` at protocol 2). Every other
global is refused with :class:`UnsafePickleError` before anything is called;
``_codecs.encode`` is allowed for the latin-1 codec only, and object arrays are
refused, so nothing in a file can reach code.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ...io import UnsafePickleError as _IOUnsafePickleError
from ._base import DatasetFileError

__all__ = ["UnsafePickleError", "RestrictedUnpickler", "load_pickle"]


class UnsafePickleError(DatasetFileError, _IOUnsafePickleError, pickle.UnpicklingError):
    """A pickle names a global outside the allow-list (it could run code): refused, nothing executed.

    Also an ``axonml.io.UnsafePickleError``, so one ``except`` catches every refused pickle in axonml.
    """


def _numpy_core(submodule: str, name: str) -> Any:
    """``numpy._core.<submodule>.<name>`` (NumPy 2), falling back to ``numpy.core`` (NumPy 1)."""
    import importlib

    for base in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{base}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"NumPy has no {submodule}.{name}")  # pragma: no cover - every NumPy has one of the two


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` restricted to what pickle uses it for: ``bytes`` as latin-1 text."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError(f"_codecs.encode with codec {encoding!r} is not allowed (only latin1)")
    return codecs.encode(text, "latin1")


def _safe_dtype(*args: Any) -> np.dtype:
    dt = np.dtype(*args)
    if dt.hasobject:
        raise UnsafePickleError(f"NumPy dtype {dt} holds Python objects: refused")
    return dt


def _allowed() -> dict[tuple[str, str], Any]:
    reconstruct = _numpy_core("multiarray", "_reconstruct")
    frombuffer = _numpy_core("numeric", "_frombuffer")
    out: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _safe_dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for base in ("numpy.core", "numpy._core"):
        out[(f"{base}.multiarray", "_reconstruct")] = reconstruct
        out[(f"{base}.numeric", "_frombuffer")] = frombuffer
    return out


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` knows only the globals of NumPy array pickles (see the module doc)."""

    def __init__(self, file: Any, *, name: str = "<pickle>", encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding)
        self.name = name
        self._globals = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._globals[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{self.name}: refusing to load: the pickle calls {module}.{name}, which is "
                                    "not one of the types a CIFAR batch holds (a pickle can run code)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.name}: refusing to load: the pickle uses persistent ids")


def _plain(obj: Any) -> Any:
    """Dict keys that are bytes (Python 3 writers) become str, as the latin-1 Python 2 ones are."""
    if isinstance(obj, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    return obj


def load_pickle(path: str | os.PathLike[str], *, encoding: str = "latin1") -> Any:
    """Load a pickle of plain containers and NumPy arrays through :class:`RestrictedUnpickler`.

    Python 2 strings decode as latin-1 (as the CIFAR batches need); bytes keys of a
    top-level dict become str. An unsafe pickle raises :class:`UnsafePickleError`; a
    truncated or corrupt one :class:`DatasetFileError` naming the file.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), name=str(path), encoding=encoding).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # any failure of a restricted load means a bad file, never code
        raise DatasetFileError(f"{path} is truncated or corrupt: {type(e).__name__}: {e}") from e
    return _plain(obj)
