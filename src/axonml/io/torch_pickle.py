"""A pickle reader that never runs code: PyTorch checkpoints, NumPy batches and plain data, read safely.

:class:`RestrictedUnpickler` is a pickle virtual machine of its own (protocols
0-5), not a subclass of ``pickle.Unpickler``: a ``GLOBAL`` can only resolve to an
entry of the whitelist it is given, ``REDUCE``/``NEWOBJ``/``INST``/``OBJ`` can only
call what that whitelist maps a name to (our own constructors, which build
data), and ``BUILD`` only sets state on objects whose type says how. Anything
else (``os.system``, ``builtins.eval``, ``subprocess.Popen``, extension codes,
out-of-band buffers) raises :class:`UnsafePickleError` before anything runs.
Whitelists for common data live in :mod:`axonml.io.pickle_globals`; the
protocol-2 writer in :mod:`axonml.io.pickle_writer`.
"""

from __future__ import annotations

import codecs
import io
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import IO, Any

from ._common import SerializationError, UnsafePickleError


class Global:
    """A whitelisted global: ``call`` is what REDUCE/INST/OBJ may invoke, ``new`` what NEWOBJ may."""

    __slots__ = ("module", "name", "call", "new")

    def __init__(self, module: str, name: str, call: Callable[..., Any] | None = None,
                 new: Callable[..., Any] | None = None) -> None:
        self.module, self.name, self.call, self.new = module, name, call, new

    def __repr__(self) -> str:
        return f"<global {self.module}.{self.name}>"


_MODULE_ALIASES = {"__builtin__": "builtins", "copy_reg": "copyreg", "torch.tensor": "torch._tensor",
                   "numpy._core.multiarray": "numpy.core.multiarray", "numpy._core.numeric": "numpy.core.numeric"}
_MAX_ITEM = 1 << 34  # 16 GiB: no real pickle holds a larger single string or bytes object


class RestrictedUnpickler:
    """Reads one pickle from ``file`` (bytes or a binary file) with only the ``allowed`` globals.

    ``allowed`` maps ``(module, name)`` to a :class:`Global` (callable through
    the whitelist) or to a plain value pushed as is (a dtype, say).
    ``persistent_load(pid)`` answers PyTorch's persistent ids. ``encoding``
    decodes Python 2 ``str`` objects (``'bytes'`` keeps them as bytes).
    """

    def __init__(self, file: bytes | IO[bytes], allowed: Mapping[tuple[str, str], Any], *,
                 persistent_load: Callable[[Any], Any] | None = None, encoding: str = "utf-8") -> None:
        self._f = io.BytesIO(file) if isinstance(file, bytes | bytearray | memoryview) else file
        self._allowed = allowed
        self._persistent_load = persistent_load
        self._encoding = encoding
        self.memo: dict[int, Any] = {}
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []

    # ----- reading helpers -----------------------------------------------------------------
    def _read(self, n: int) -> bytes:
        if n > _MAX_ITEM:  # a forged length must not make us allocate it
            raise SerializationError(f"malformed pickle: an item of {n} bytes")
        data = self._f.read(n)
        if len(data) != n:
            raise SerializationError("pickle data is truncated")
        return data  # type: ignore[no-any-return]

    def _readline(self) -> bytes:
        line = self._f.readline()
        if not line.endswith(b"\n"):
            raise SerializationError("pickle data is truncated (unterminated line)")
        return line[:-1]  # type: ignore[no-any-return]

    def _pop_mark(self) -> list[Any]:
        items = self.stack
        if not self.marks:
            raise SerializationError("malformed pickle: no MARK on the stack")
        self.stack = self.marks.pop()
        return items

    def _pop(self) -> Any:
        if not self.stack:
            raise SerializationError("malformed pickle: stack underflow")
        return self.stack.pop()

    def _find(self, module: str, name: str) -> Any:
        module = _MODULE_ALIASES.get(module, module)
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                f"refusing to load: the pickle asks for the global {module}.{name}, which is not on the whitelist "
                "of data types (loading it could run arbitrary code)"
            ) from None

    def _decode_str(self, data: bytes) -> Any:
        if self._encoding == "bytes":
            return data
        return data.decode(self._encoding)

    def _call(self, fn: Any, args: Any, kwargs: Any = None, *, new: bool = False) -> Any:
        target = (fn.new if new else fn.call) if isinstance(fn, Global) else None
        if target is None:
            raise UnsafePickleError(f"refusing to load: the pickle calls {fn!r}, which may not be called")
        if not isinstance(args, tuple):
            raise SerializationError(f"malformed pickle: arguments of {fn!r} are not a tuple")
        try:
            return target(*args, **(kwargs or {}))
        except (SerializationError, UnsafePickleError):
            raise
        except (TypeError, ValueError, KeyError, IndexError, OverflowError) as e:
            raise SerializationError(f"bad arguments for {fn!r} in the pickle: {e}") from e

    def _build(self, inst: Any, state: Any) -> Any:
        builder = getattr(type(inst), "_pickle_build", None)
        if builder is not None:
            return builder(inst, state)
        if type(inst) in (OrderedDict, dict) or isinstance(inst, OrderedDict):
            if isinstance(state, tuple) and len(state) == 2:
                state = state[0] or {}
            if not isinstance(state, dict) or not all(
                isinstance(k, str) and not k.startswith("__") and not hasattr(type(inst), k) for k in state
            ):  # plain attributes only: never shadow a method or touch a dunder
                raise UnsafePickleError(f"refusing to load: bad state for a {type(inst).__name__}")
            if state and type(inst) is dict:
                raise UnsafePickleError("refusing to load: attributes set on a plain dict")
            for k, v in state.items():
                setattr(inst, k, v)
            return inst
        raise UnsafePickleError(f"refusing to load: the pickle sets the state of a {type(inst).__name__}")

    # ----- the machine ---------------------------------------------------------------------
    def load(self) -> Any:
        """Run the pickle to its STOP and return its value."""
        try:
            return self._run()
        except SerializationError:
            raise
        except (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError, RecursionError,
                struct.error) as e:
            # junk where a number, a string or a hashable key should be: one clear error, never a crash
            raise SerializationError(f"malformed pickle data ({type(e).__name__}: {e})") from e

    def _run(self) -> Any:
        dispatch = _DISPATCH
        read = self._f.read
        while True:
            op = read(1)
            if not op:
                raise SerializationError("pickle data is truncated (no STOP)")
            handler = dispatch.get(op[0])
            if handler is None:
                raise UnsafePickleError(f"refusing to load: unsupported pickle opcode {op!r}")
            if handler is _op_stop:
                return self._pop()
            handler(self)


# Each opcode is a small function of the machine; the table maps opcode bytes to them.
def _op_stop(m: RestrictedUnpickler) -> None:  # handled in load()
    raise AssertionError


def _push(value: Any) -> Callable[[RestrictedUnpickler], None]:
    def op(m: RestrictedUnpickler) -> None:
        m.stack.append(value() if callable(value) else value)
    return op


def _unpack(fmt: str, n: int, *, sized: str | None = None, kind: str = "int") -> Callable[[RestrictedUnpickler], None]:
    st = struct.Struct(fmt)

    def op(m: RestrictedUnpickler) -> None:
        v = st.unpack(m._read(n))[0]
        if sized is None:
            m.stack.append(v)
            return
        if v < 0:
            raise SerializationError("malformed pickle: negative length")
        data = m._read(v)
        if kind == "unicode":
            m.stack.append(data.decode("utf-8", "surrogatepass"))
        elif kind == "bytes":
            m.stack.append(bytes(data))
        elif kind == "bytearray":
            m.stack.append(bytearray(data))
        elif kind == "long":
            m.stack.append(int.from_bytes(data, "little", signed=True))
        else:  # "str": a Python 2 string
            m.stack.append(m._decode_str(data))
    return op


def _op_mark(m: RestrictedUnpickler) -> None:
    m.marks.append(m.stack)
    m.stack = []


def _op_pop(m: RestrictedUnpickler) -> None:
    if m.stack:
        m.stack.pop()
    else:
        m._pop_mark()


def _op_pop_mark(m: RestrictedUnpickler) -> None:
    m._pop_mark()


def _op_dup(m: RestrictedUnpickler) -> None:
    m.stack.append(m.stack[-1] if m.stack else m._pop())


def _op_int(m: RestrictedUnpickler) -> None:
    line = m._readline()
    if line == b"00":
        m.stack.append(False)
    elif line == b"01":
        m.stack.append(True)
    else:
        m.stack.append(int(line))


def _op_long(m: RestrictedUnpickler) -> None:
    m.stack.append(int(m._readline().rstrip(b"L")))


def _op_float(m: RestrictedUnpickler) -> None:
    m.stack.append(float(m._readline()))


def _op_string(m: RestrictedUnpickler) -> None:
    data = m._readline().rstrip()
    if len(data) < 2 or data[0] != data[-1] or data[:1] not in (b'"', b"'"):
        raise SerializationError("malformed pickle: STRING argument is not quoted")
    m.stack.append(m._decode_str(codecs.escape_decode(data[1:-1])[0]))


def _op_unicode(m: RestrictedUnpickler) -> None:
    m.stack.append(str(m._readline(), "raw-unicode-escape"))


def _op_binfloat(m: RestrictedUnpickler) -> None:
    m.stack.append(struct.unpack(">d", m._read(8))[0])


def _op_persid(m: RestrictedUnpickler) -> None:
    _persistent(m, m._readline().decode("ascii"))


def _op_binpersid(m: RestrictedUnpickler) -> None:
    _persistent(m, m._pop())


def _persistent(m: RestrictedUnpickler, pid: Any) -> None:
    if m._persistent_load is None:
        raise UnsafePickleError("refusing to load: the pickle has a persistent id and no reader for it")
    m.stack.append(m._persistent_load(pid))


def _op_empty_tuple(m: RestrictedUnpickler) -> None:
    m.stack.append(())


def _tuple_n(n: int) -> Callable[[RestrictedUnpickler], None]:
    def op(m: RestrictedUnpickler) -> None:
        if len(m.stack) < n:
            raise SerializationError("malformed pickle: stack underflow")
        items = tuple(m.stack[-n:])
        del m.stack[-n:]
        m.stack.append(items)
    return op


def _op_tuple(m: RestrictedUnpickler) -> None:
    items = m._pop_mark()  # pop first: m.stack is a different list afterwards
    m.stack.append(tuple(items))


def _op_list(m: RestrictedUnpickler) -> None:
    items = m._pop_mark()
    m.stack.append(items)


def _op_dict(m: RestrictedUnpickler) -> None:
    items = m._pop_mark()
    m.stack.append({items[i]: items[i + 1] for i in range(0, len(items) - 1, 2)})


def _op_frozenset(m: RestrictedUnpickler) -> None:
    items = m._pop_mark()
    m.stack.append(frozenset(items))


def _target(m: RestrictedUnpickler, kind: type) -> Any:
    if not m.stack:
        raise SerializationError("malformed pickle: stack underflow")
    obj = m.stack[-1]
    if not isinstance(obj, kind):
        raise UnsafePickleError(f"refusing to load: the pickle adds items to a {type(obj).__name__}")
    return obj


def _op_append(m: RestrictedUnpickler) -> None:
    value = m._pop()
    _target(m, list).append(value)


def _op_appends(m: RestrictedUnpickler) -> None:
    items = m._pop_mark()
    _target(m, list).extend(items)


def _op_setitem(m: RestrictedUnpickler) -> None:
    value, key = m._pop(), m._pop()
    _target(m, dict)[key] = value


def _op_setitems(m: RestrictedUnpickler) -> None:
    items = m._pop_mark()
    d = _target(m, dict)
    for i in range(0, len(items) - 1, 2):
        d[items[i]] = items[i + 1]


def _op_additems(m: RestrictedUnpickler) -> None:
    items = m._pop_mark()
    _target(m, set).update(items)


def _op_global(m: RestrictedUnpickler) -> None:
    module = m._readline().decode("utf-8")
    name = m._readline().decode("utf-8")
    m.stack.append(m._find(module, name))


def _op_stack_global(m: RestrictedUnpickler) -> None:
    name, module = m._pop(), m._pop()
    if not isinstance(name, str) or not isinstance(module, str):
        raise SerializationError("malformed pickle: STACK_GLOBAL needs two strings")
    m.stack.append(m._find(module, name))


def _op_reduce(m: RestrictedUnpickler) -> None:
    args, fn = m._pop(), m._pop()
    m.stack.append(m._call(fn, args))


def _op_newobj(m: RestrictedUnpickler) -> None:
    args, cls = m._pop(), m._pop()
    m.stack.append(m._call(cls, args, new=True))


def _op_newobj_ex(m: RestrictedUnpickler) -> None:
    kwargs, args, cls = m._pop(), m._pop(), m._pop()
    if not isinstance(kwargs, dict):
        raise SerializationError("malformed pickle: NEWOBJ_EX keyword arguments are not a dict")
    m.stack.append(m._call(cls, args, kwargs, new=True))


def _op_inst(m: RestrictedUnpickler) -> None:
    module = m._readline().decode("utf-8")
    name = m._readline().decode("utf-8")
    fn = m._find(module, name)
    items = m._pop_mark()
    m.stack.append(m._call(fn, tuple(items)))


def _op_obj(m: RestrictedUnpickler) -> None:
    items = m._pop_mark()
    if not items:
        raise SerializationError("malformed pickle: OBJ without a class")
    m.stack.append(m._call(items[0], tuple(items[1:])))


def _op_build(m: RestrictedUnpickler) -> None:
    state = m._pop()
    inst = m._pop()
    built = m._build(inst, state)
    if built is not inst:  # a placeholder became its final value: later memo gets must see the final one
        for k, v in m.memo.items():
            if v is inst:
                m.memo[k] = built
    m.stack.append(built)


def _memo_get(fmt: str | None) -> Callable[[RestrictedUnpickler], None]:
    st = struct.Struct(fmt) if fmt else None

    def op(m: RestrictedUnpickler) -> None:
        idx = int(m._readline()) if st is None else st.unpack(m._read(st.size))[0]
        try:
            m.stack.append(m.memo[idx])
        except KeyError:
            raise SerializationError(f"malformed pickle: memo key {idx} is not defined") from None
    return op


def _memo_put(fmt: str | None) -> Callable[[RestrictedUnpickler], None]:
    st = struct.Struct(fmt) if fmt else None

    def op(m: RestrictedUnpickler) -> None:
        idx = int(m._readline()) if st is None else st.unpack(m._read(st.size))[0]
        if not m.stack:
            raise SerializationError("malformed pickle: PUT on an empty stack")
        m.memo[idx] = m.stack[-1]
    return op


def _op_memoize(m: RestrictedUnpickler) -> None:
    if not m.stack:
        raise SerializationError("malformed pickle: MEMOIZE on an empty stack")
    m.memo[len(m.memo)] = m.stack[-1]


def _op_proto(m: RestrictedUnpickler) -> None:
    if m._read(1)[0] > 5:
        raise SerializationError("unsupported pickle protocol (newer than 5)")


def _op_frame(m: RestrictedUnpickler) -> None:
    m._read(8)  # frames only group opcodes for buffering; the data follows in the same stream


_DISPATCH: dict[int, Callable[[RestrictedUnpickler], None]] = {
    ord("."): _op_stop, ord("("): _op_mark, ord("0"): _op_pop, ord("1"): _op_pop_mark, ord("2"): _op_dup,
    ord("F"): _op_float, ord("I"): _op_int, ord("J"): _unpack("<i", 4), ord("K"): _unpack("<B", 1),
    ord("L"): _op_long, ord("M"): _unpack("<H", 2), ord("N"): _push(None), ord("P"): _op_persid,
    ord("Q"): _op_binpersid, ord("R"): _op_reduce, ord("S"): _op_string,
    ord("T"): _unpack("<i", 4, sized="y", kind="str"), ord("U"): _unpack("<B", 1, sized="y", kind="str"),
    ord("V"): _op_unicode, ord("X"): _unpack("<I", 4, sized="y", kind="unicode"), ord("a"): _op_append,
    ord("b"): _op_build, ord("c"): _op_global, ord("d"): _op_dict, ord("}"): _push(dict),
    ord("e"): _op_appends, ord("g"): _memo_get(None), ord("h"): _memo_get("<B"), ord("i"): _op_inst,
    ord("j"): _memo_get("<I"), ord("l"): _op_list, ord("]"): _push(list), ord("o"): _op_obj,
    ord("p"): _memo_put(None), ord("q"): _memo_put("<B"), ord("r"): _memo_put("<I"), ord("s"): _op_setitem,
    ord("t"): _op_tuple, ord(")"): _op_empty_tuple, ord("u"): _op_setitems, ord("G"): _op_binfloat,
    0x80: _op_proto, 0x81: _op_newobj, 0x85: _tuple_n(1), 0x86: _tuple_n(2), 0x87: _tuple_n(3),
    0x88: _push(True), 0x89: _push(False), 0x8A: _unpack("<B", 1, sized="y", kind="long"),
    0x8B: _unpack("<i", 4, sized="y", kind="long"), ord("B"): _unpack("<I", 4, sized="y", kind="bytes"),
    ord("C"): _unpack("<B", 1, sized="y", kind="bytes"), 0x8C: _unpack("<B", 1, sized="y", kind="unicode"),
    0x8D: _unpack("<Q", 8, sized="y", kind="unicode"), 0x8E: _unpack("<Q", 8, sized="y", kind="bytes"),
    0x8F: _push(set), 0x90: _op_additems, 0x91: _op_frozenset, 0x92: _op_newobj_ex,
    0x93: _op_stack_global, 0x94: _op_memoize, 0x95: _op_frame,
    0x96: _unpack("<Q", 8, sized="y", kind="bytearray"),
}  # not here, so refused: EXT1/2/4 (the copyreg registry), NEXT_BUFFER, READONLY_BUFFER


def restricted_loads(data: bytes | IO[bytes], allowed: Mapping[tuple[str, str], Any], **kwargs: Any) -> Any:
    """One pickle read with :class:`RestrictedUnpickler` (``allowed`` as there)."""
    return RestrictedUnpickler(data, allowed, **kwargs).load()
