"""A protocol-2 pickle writer for plain data plus explicit nodes: all a PyTorch checkpoint needs.

:class:`Pickler2` writes ``None``, bools, ints (any size), floats (bit-exact),
strings, bytes (as ``_codecs.encode``, like protocol 2 does), tuples, lists,
dicts and ``OrderedDict`` (with attributes such as ``_metadata``), and three
kinds of node: :class:`Reduce` (``module.name(*args)``), :class:`Persistent`
(a persistent id) and :class:`GlobalRef` (a bare global). Every global it
writes is one the caller chose, so its output loads under a whitelist.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple


class Reduce(NamedTuple):
    """Write ``module.name(*args)`` (then ``BUILD`` with ``state`` when given)."""

    module: str
    name: str
    args: tuple[Any, ...]
    state: Any = None


class Persistent(NamedTuple):
    """Write a persistent id (``BINPERSID``): PyTorch's storage references."""

    pid: tuple[Any, ...]


class GlobalRef(NamedTuple):
    """Write a bare global (``torch.FloatStorage``, ``torch.float32``)."""

    module: str
    name: str


def _encode_long(x: int) -> bytes:
    if x == 0:
        return b""
    n = (x.bit_length() >> 3) + 1
    out = x.to_bytes(n, "little", signed=True)
    if x < 0 and n > 1 and out[-1] == 0xFF and (out[-2] & 0x80):
        out = out[:-1]
    return out


class Pickler2:
    """A protocol-2 pickle writer for plain data; ``hook(obj)`` turns other objects into nodes it writes.

    ``hook`` returns a :class:`Reduce`, :class:`Persistent`, :class:`GlobalRef`
    or plain data, or raises ``TypeError`` for what it cannot store.
    """

    def __init__(self, hook: Callable[[Any], Any]) -> None:
        self.hook = hook
        self.out = bytearray()
        self._globals: dict[tuple[str, str], int] = {}

    def dumps(self, obj: Any) -> bytes:
        self.out += b"\x80\x02"
        self.write(obj)
        self.out += b"."
        return bytes(self.out)

    def _global(self, module: str, name: str) -> None:
        idx = self._globals.get((module, name))
        if idx is not None:
            self.out += b"h" + bytes([idx]) if idx < 256 else b"j" + struct.pack("<I", idx)
            return
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        idx = len(self._globals)
        self._globals[(module, name)] = idx
        self.out += b"q" + bytes([idx]) if idx < 256 else b"r" + struct.pack("<I", idx)

    def _str(self, s: str) -> None:
        data = s.encode("utf-8", "surrogatepass")
        self.out += b"X" + struct.pack("<I", len(data)) + data

    def write(self, obj: Any) -> None:
        out = self.out
        t = type(obj)
        if obj is None:
            out += b"N"
        elif obj is True:
            out += b"\x88"
        elif obj is False:
            out += b"\x89"
        elif t is int:
            if 0 <= obj < 256:
                out += b"K" + bytes([obj])
            elif 0 <= obj < 65536:
                out += b"M" + struct.pack("<H", obj)
            elif -(1 << 31) <= obj < (1 << 31):
                out += b"J" + struct.pack("<i", obj)
            else:
                data = _encode_long(obj)
                out += (b"\x8a" + bytes([len(data)]) if len(data) < 256 else b"\x8b" + struct.pack("<i", len(data)))
                out += data
        elif t is float:
            out += b"G" + struct.pack(">d", obj)
        elif t is str:
            self._str(obj)
        elif t is bytes:
            self.write(Reduce("_codecs", "encode", (obj.decode("latin-1"), "latin1")))
        elif t is Reduce:
            self._global(obj.module, obj.name)
            self.write(tuple(obj.args))
            out += b"R"
            if obj.state is not None:
                self.write(obj.state)
                out += b"b"
        elif t is Persistent:
            self.write(tuple(obj.pid))
            out += b"Q"
        elif t is GlobalRef:
            self._global(obj.module, obj.name)
        elif t is tuple:
            if not obj:
                out += b")"
            elif len(obj) <= 3:
                for v in obj:
                    self.write(v)
                out += (b"\x85", b"\x86", b"\x87")[len(obj) - 1]
            else:
                out += b"("
                for v in obj:
                    self.write(v)
                out += b"t"
        elif t is list:
            out += b"]"
            for i in range(0, len(obj), 1000):
                out += b"("
                for v in obj[i:i + 1000]:
                    self.write(v)
                out += b"e"
        elif t is dict or isinstance(obj, OrderedDict):
            is_od = isinstance(obj, OrderedDict)
            if is_od:
                self._global("collections", "OrderedDict")
                out += b")R"
            else:
                out += b"}"
            items = list(obj.items())
            for i in range(0, len(items), 1000):
                out += b"("
                for k, v in items[i:i + 1000]:
                    self.write(k)
                    self.write(v)
                out += b"u"
            attrs = getattr(obj, "__dict__", None) if is_od else None
            if attrs:
                self.write(dict(attrs))
                out += b"b"
        else:
            self.write(self.hook(obj))
