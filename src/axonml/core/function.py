"""Graph nodes and the primitives' base class.

A node is created by every op call and doubles as the ``ctx`` its forward and
backward see. Forward works on raw arrays of the device's array module;
backward is written with Tensor ops, so with ``create_graph=True`` it records a
graph of its own and higher derivatives need no extra code. The user-facing
``autograd.Function`` is in ``custom_function.py``.
"""

from __future__ import annotations

import itertools
import os
import traceback
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import AutogradError, DeviceError
from . import forward_ad as _fwd
from .anomaly import ANOMALY
from .autocast import AUTOCAST, cast_args
from .dtypes import is_float_np, result_type
from .grad_mode import GRAD_ENABLED
from .tensor import Tensor

# Creation order of recorded nodes: a GradientTape differentiates only through the nodes made
# while it was recording (a range of these numbers), as TensorFlow's tape does.
_next_seq = itertools.count().__next__


def current_seq() -> int:
    """A number above every recorded node's so far (each call moves the counter)."""
    return _next_seq()


class Node:
    """A recorded op: the edges to its inputs' nodes and what backward needs.

    ``next_edges[i]`` is ``(node, output_nr)`` for a positional input that
    requires grad, else ``None``. ``input_meta[i]`` is ``(shape, dtype)`` of
    that input, used by the engine to undo broadcasting and dtype promotion in
    one place.
    """

    if TYPE_CHECKING:  # ops keep their own parameters on the node (ctx.dims, ctx.index, ...)

        def __getattr__(self, name: str) -> Any: ...

        def __setattr__(self, name: str, value: Any) -> None: ...

    name: ClassVar[str] = ""
    num_outputs: int = 1
    next_edges: tuple[Any, ...] = ()
    input_meta: tuple[Any, ...] = ()
    out_meta: tuple[Any, ...] = ()
    pre_hooks: dict[int, list[Any]] | None = None
    released: bool = False
    forward_trace: str | None = None
    needs_input_grad: tuple[bool, ...] = ()
    seq: int = -1  # creation order, see _next_seq

    def backward(self, *grads: Tensor) -> tuple[Any, ...] | Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def op_name(self) -> str:
        return self.name or type(self).__name__

    def release(self) -> None:
        """Drop what backward needed; a second backward then fails with a clear error."""
        self.released = True
        d = self.__dict__
        for key in ("_inputs", "_out", "_saved", "_out_tangent"):
            d.pop(key, None)

    def register_prehook(self, output_nr: int, hook: Any) -> None:
        if self.pre_hooks is None:
            self.pre_hooks = {}
        self.pre_hooks.setdefault(output_nr, []).append(hook)

    def __repr__(self) -> str:
        return f"<{self.op_name()}Backward>"


def _check_version(t: Tensor, version: int, node: Node) -> None:
    if t._version[0] != version:
        raise AutogradError(
            f"a tensor needed by the backward of {node.op_name()} was modified by an in-place "
            f"operation after it was saved (version {version} then, {t._version[0]} now); "
            "use an out-of-place op or clone() the tensor first"
        )


class Primitive(Node):
    """Base of the built-in differentiable ops.

    Subclasses set ``saves`` (what backward reads: ``"inputs"``, ``"output"``,
    ``"both"`` or ``""``), ``promote`` (binary ops: cast array arguments to the
    PyTorch result type first) and ``is_view`` (the output shares memory with
    the first input), and define ``forward(ctx, *arrays)`` and
    ``backward(ctx, grad)``; ``jvp(ctx, *tangents)`` adds a forward-mode rule.
    ``jvp`` gets one entry per positional argument: a Tensor's tangent (None
    if it has none), None for a Python number, and any other argument (a
    shape, an index, a dtype) as it was passed. Non-differentiable ops and
    integer results get no tangent and need no rule.
    """

    saves: ClassVar[str] = ""
    promote: ClassVar[bool] = False
    is_view: ClassVar[bool] = False
    differentiable: ClassVar[bool] = True
    changes_device: ClassVar[bool] = False  # forward sets ctx.out_device
    autocast_policy: ClassVar[str | None] = None  # "lower" | "fp32": how autocast casts the inputs (core/autocast.py)
    xp: Any

    @staticmethod
    def forward(ctx: Any, *args: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any) -> Tensor:
        if cls.autocast_policy is not None and AUTOCAST.get() is not None:
            args = cast_args(cls.autocast_policy, args)
        ctx = cls.__new__(cls)
        device = None
        needs_grad = False
        has_tangent = False
        arrays = list(args)
        for i, a in enumerate(args):
            if isinstance(a, Tensor):
                d = a._device
                if device is None:
                    device = d
                elif d is not device:
                    raise DeviceError(
                        f"{cls.op_name(ctx)}: expected all tensors on one device, got {device} and {d}"
                    )
                arrays[i] = a._data
                if a._requires_grad:
                    needs_grad = True
                if a._tangent is not None:
                    has_tangent = True
        if device is None:
            raise TypeError(f"{cls.op_name(ctx)} needs at least one Tensor argument")
        if cls.promote:
            _promote(args, arrays)
        ctx.device = device
        ctx.xp = device._xp or device.xp  # the attribute is set once the device was used
        out_data = cls.forward(ctx, *arrays)
        if isinstance(out_data, np.generic):  # NumPy returns scalars for 0-d results
            out_data = np.asarray(out_data)
        record = needs_grad and cls.differentiable and GRAD_ENABLED.get()
        out = Tensor._make(out_data, ctx.out_device if cls.changes_device else device)
        if cls.is_view and _is_view_of(out_data, arrays[0]):
            src: Tensor = args[0]
            out._version = src._version
            out._base = src if src._base is None else src._base
            if GRAD_ENABLED.get():
                out._view_fn = _ViewFn(cls, args[1:], src._view_fn if src._base is not None else None)
        if record and (out_data.dtype.kind == "f" or is_float_np(out_data.dtype)):
            # one plain loop: faster than generator expressions on this hot path
            edges: list[Any] = []
            meta: list[Any] = []
            versions: list[int] = []
            for a in args:
                if isinstance(a, Tensor):
                    if not a._requires_grad:
                        edges.append(None)
                    elif a._grad_fn is not None and a._vfn is None:
                        edges.append((a._grad_fn, a._output_nr))  # _edge() inlined for the common case
                    else:
                        edges.append(a._edge())
                    data = a._data
                    meta.append((data.shape, data.dtype))
                    versions.append(a._version[0])
                else:
                    edges.append(None)
                    meta.append(None)
                    versions.append(0)
            ctx.next_edges = tuple(edges)
            ctx.input_meta = tuple(meta)
            ctx.seq = _next_seq()
            saves = cls.saves
            if saves:
                if saves != "output":
                    ctx._inputs = args
                    ctx._versions = versions
                if saves != "inputs":
                    ctx._out = (out_data, out._version, out._version[0])
            if ANOMALY.enabled:
                ctx.forward_trace = _forward_trace()
            out._requires_grad = True
            out._grad_fn = ctx
        if has_tangent and _fwd.active():
            _fwd.propagate(cls, ctx, args, out)
        return out

    @property
    def inputs(self) -> tuple[Any, ...]:
        """The positional arguments of the forward call, checked against in-place changes."""
        if self.released:
            raise _freed_error(self)
        for a, v in zip(self._inputs, self._versions):
            if isinstance(a, Tensor):
                _check_version(a, v, self)
        return self._inputs  # type: ignore[no-any-return]

    def _zeros_like_output(self) -> Tensor:
        """Zeros of the forward result's shape and dtype (a tangent for absent inputs)."""
        data = self._out[0]
        return Tensor._make(self.xp.zeros(data.shape, data.dtype), self.device)

    def input(self, i: int) -> Any:
        """Positional argument ``i`` of the forward call, checked against in-place changes.

        Reading only the inputs a gradient needs keeps ``y = x * 3; x[0] = y[0]`` legal,
        as in PyTorch, where ``x`` itself is not needed by the backward.
        """
        if self.released:
            raise _freed_error(self)
        a = self._inputs[i]
        if isinstance(a, Tensor):
            _check_version(a, self._versions[i], self)
        return a

    def output_array(self) -> Any:
        """The forward result as a raw array, checked against in-place changes (array-only backwards)."""
        if self.released:
            raise _freed_error(self)
        data, box, version = self._out
        if box[0] != version:
            raise AutogradError(
                f"the output of {self.op_name()}, needed by its backward, was modified by an in-place "
                "operation; use an out-of-place op or clone() it first"
            )
        return data

    @property
    def output(self) -> Tensor:
        """The forward result, re-attached to this node so second derivatives flow through it."""
        t = Tensor._make(self.output_array(), self.device)
        t._version = self._out[1]
        if GRAD_ENABLED.get() and "next_edges" in self.__dict__:
            t._requires_grad = True
            t._grad_fn = self
        tangent = self.__dict__.get("_out_tangent")
        if tangent is not None and _fwd.active():  # forward-over-reverse: the output's tangent comes too
            _fwd.attach_saved_tangent(t, tangent)
        return t


def arrays_only() -> bool:
    """Whether a backward may run on raw arrays: no graph is being recorded and no tangents flow.

    A first-order backward then skips the Tensor wrapping of each intermediate step
    (~2 us per op, which dominates small tensors); under ``create_graph=True`` or
    forward mode the Tensor-op formula runs, so higher derivatives still work.
    """
    return not GRAD_ENABLED.get() and not _fwd.active()


def _is_view_of(out: Any, src: Any) -> bool:
    """Whether ``out`` shares ``src``'s memory (a reshape may have had to copy).

    NumPy and CuPy point every view's ``base`` at the owning array, so this is two
    identity checks instead of ``may_share_memory``'s bounds arithmetic.
    """
    if out.size == 0:
        return True
    base = out.base
    return base is not None and (base is src or base is src.base)


class _ViewFn:
    """Replays the chain of view ops from a base tensor to one of its views."""

    __slots__ = ("op", "args", "parent")

    def __init__(self, op: Any, args: tuple[Any, ...], parent: _ViewFn | None) -> None:
        self.op, self.args, self.parent = op, args, parent

    def __call__(self, base: Tensor) -> Tensor:
        src = base if self.parent is None else self.parent(base)
        return self.op.apply(src, *self.args)  # type: ignore[no-any-return]


# frames of the op machinery, left out of anomaly mode's forward traces
_MACHINERY = tuple(os.path.join("core", f) for f in ("function.py", "custom_function.py", "bind.py"))


def _forward_trace() -> str:
    """The caller's stack for anomaly mode, without the frames of the op machinery itself."""
    frames = traceback.extract_stack(limit=16)
    while frames and frames[-1].filename.endswith(_MACHINERY):
        frames.pop()
    return "".join(traceback.format_list(frames[-12:]))


def _freed_error(node: Node) -> AutogradError:
    return AutogradError(
        f"trying to backward through the graph a second time (at {node.op_name()}): its saved "
        "tensors were freed after the first backward; pass retain_graph=True the first time"
    )


# Python-scalar category up to which NumPy's weak scalars already give PyTorch's dtype.
# bfloat16 ("V") counts as integer here: NumPy would widen ``bf16 * 2.5`` to float32.
_KIND_CATEGORY = {"b": 0, "i": 1, "u": 1, "f": 2, "V": 1}


def _promote(args: tuple[Any, ...], arrays: list[Any]) -> None:
    """Cast array arguments (in ``arrays``) to PyTorch's result dtype of ``args``.

    Python scalars are cast too where NumPy would not wrap them as PyTorch does
    (``int8_tensor * 200`` wraps; ``bf16_tensor * 2.5`` stays bfloat16).
    """
    first = None
    uniform = True
    scalar_cat = -1
    big_int = False
    for a in args:
        if isinstance(a, Tensor):
            dt = a._data.dtype
            if first is None:
                first = dt
            elif dt != first:
                uniform = False
        elif a is None:
            continue
        elif isinstance(a, bool):
            scalar_cat = max(scalar_cat, 0)
        elif isinstance(a, int):
            scalar_cat = max(scalar_cat, 1)
            big_int = big_int or not -128 <= a <= 127
        else:
            scalar_cat = 2
    if (
        uniform
        and first is not None
        and scalar_cat <= _KIND_CATEGORY[first.kind]
        and not (big_int and first.kind in "iu" and first.itemsize < 8)
        and not (first.kind == "V" and scalar_cat >= 1)
    ):
        return  # NumPy's weak Python scalars already give PyTorch's answer
    target = result_type(*[a for a in args if a is not None]).np
    cast_scalars = target.kind in "iuV"
    xp = next(a._device.xp for a in args if isinstance(a, Tensor))
    for i, a in enumerate(args):
        if isinstance(a, Tensor):
            if a._data.dtype != target:
                arrays[i] = a._data.astype(target)
        elif cast_scalars and isinstance(a, int | float) and not isinstance(a, bool):
            # wraps out-of-range ints as PyTorch does, instead of NumPy's OverflowError
            arrays[i] = xp.asarray(np.asarray(a).astype(target))
