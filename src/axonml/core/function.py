"""Graph nodes: the primitives' base class and the user-facing ``autograd.Function``.

A node is created by every op call and doubles as the ``ctx`` its forward and
backward see. Forward works on raw arrays of the device's array module;
backward is written with Tensor ops, so with ``create_graph=True`` it records a
graph of its own and higher derivatives need no extra code.
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
    xp: Any

    @staticmethod
    def forward(ctx: Any, *args: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any) -> Tensor:
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
            # one plain loop: faster than two generator expressions on this hot path
            edges: list[Any] = []
            meta: list[Any] = []
            for a in args:
                if isinstance(a, Tensor):
                    edges.append(a._edge() if a._requires_grad else None)
                    meta.append((a._data.shape, a._data.dtype))
                else:
                    edges.append(None)
                    meta.append(None)
            ctx.next_edges = tuple(edges)
            ctx.input_meta = tuple(meta)
            ctx.seq = _next_seq()
            saves = cls.saves
            if saves:
                if saves != "output":
                    ctx._inputs = args
                    ctx._versions = tuple([a._version[0] if isinstance(a, Tensor) else 0 for a in args])
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

    @property
    def output(self) -> Tensor:
        """The forward result, re-attached to this node so second derivatives flow through it."""
        if self.released:
            raise _freed_error(self)
        data, box, version = self._out
        if box[0] != version:
            raise AutogradError(
                f"the output of {self.op_name()}, needed by its backward, was modified by an in-place "
                "operation; use an out-of-place op or clone() it first"
            )
        t = Tensor._make(data, self.device)
        t._version = box
        if GRAD_ENABLED.get() and "next_edges" in self.__dict__:
            t._requires_grad = True
            t._grad_fn = self
        tangent = self.__dict__.get("_out_tangent")
        if tangent is not None and _fwd.active():  # forward-over-reverse: the output's tangent comes too
            _fwd.attach_saved_tangent(t, tangent)
        return t


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
_MACHINERY = (os.path.join("core", "function.py"), os.path.join("core", "bind.py"))


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


class FunctionCtx(Node):
    """The ``ctx`` of a user-defined :class:`Function`."""

    def save_for_backward(self, *tensors: Tensor | None) -> None:
        """Save tensors for backward; they are checked for in-place changes when read back."""
        self._saved = [(t, t._version[0] if t is not None else 0, None) for t in tensors]

    @property
    def saved_tensors(self) -> tuple[Tensor | None, ...]:
        if self.released:
            raise _freed_error(self)
        result: list[Tensor | None] = []
        for t, v, out_nr in getattr(self, "_saved", ()):
            if t is None:
                result.append(None)
                continue
            _check_version(t, v, self)
            if out_nr is not None and GRAD_ENABLED.get():
                # an output saved before it was attached: re-attach a fresh alias
                alias = Tensor._make(t._data, t._device)
                alias._version = t._version
                alias._requires_grad = True
                alias._grad_fn = self
                alias._output_nr = out_nr
                if t._tangent is not None and _fwd.active():  # forward-over-reverse
                    alias._tangent = t._tangent
                    _fwd._record_duals(alias)
                t = alias
            result.append(t)
        return tuple(result)

    def mark_non_differentiable(self, *tensors: Tensor) -> None:
        """Outputs that get no gradient (e.g. indices); they do not require grad."""
        self._non_diff = {id(t) for t in tensors}

    def mark_dirty(self, *tensors: Tensor) -> None:
        """Inputs that forward modified in place (their version is bumped)."""
        for t in tensors:
            t._version[0] += 1

    def set_materialize_grads(self, value: bool) -> None:
        """With False, backward receives ``None`` for outputs that got no gradient."""
        self._materialize = value


class Function(FunctionCtx):
    """A user-defined differentiable op, as ``torch.autograd.Function``.

    Subclass it and define two static methods, then call ``MyOp.apply(*args)``:

    - ``forward(ctx, *args)``: Tensors (and any other values) in, a Tensor or a
      tuple of Tensors out. It runs without recording a graph. Keep what
      backward needs with ``ctx.save_for_backward(*tensors)`` (tensors are
      checked for in-place changes when read back through
      ``ctx.saved_tensors``) or as plain attributes (``ctx.dim = dim``).
      ``ctx.needs_input_grad[i]`` says whether argument ``i`` needs a gradient;
      ``ctx.mark_non_differentiable(*outputs)`` marks outputs (indices, masks)
      that get no gradient.
    - ``backward(ctx, *grad_outputs)``: one gradient per output in, one
      gradient (or ``None``) per forward argument out. The engine sums a
      gradient down to its input's shape and casts it to its dtype.

    Optionally define ``jvp(ctx, *tangents)`` (one tangent per forward
    argument; a tensor argument without one gets zeros, other arguments get
    ``None``), returning one tangent per output: forward-mode AD
    (``forward_ad``) then works through the Function.

    Differentiating twice: if backward is written with axonml ops, it records
    a graph of its own under ``create_graph=True`` and second derivatives need
    no extra code. If backward leaves axonml (NumPy, a C extension), decorate
    it with :func:`once_differentiable` (below ``@staticmethod``)::

        @staticmethod
        @once_differentiable
        def backward(ctx, grad):
            ...

    Its gradients are then plain values; differentiating through them again
    raises an ``AutogradError`` naming the Function instead of silently giving
    zero.
    """

    @staticmethod
    def forward(ctx: Any, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError("a Function subclass must define forward(ctx, ...)")

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:  # type: ignore[override]  # pragma: no cover
        raise NotImplementedError("a Function subclass must define backward(ctx, ...)")

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        ctx = cls.__new__(cls)
        tensor_args = [a for a in args if isinstance(a, Tensor)]
        devices = {t._device for t in tensor_args}
        if len(devices) > 1:
            names = " and ".join(sorted(str(d) for d in devices))
            raise DeviceError(f"{cls.__name__}: expected all tensors on one device, got {names}")
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a._requires_grad for a in args)
        from .grad_mode import no_grad

        with no_grad(), _fwd.paused():  # forward's own ops neither record nor carry tangents
            outputs = cls.forward(ctx, *args, **kwargs)
        single = not isinstance(outputs, tuple)
        outs = (outputs,) if single else outputs
        record = any(ctx.needs_input_grad) and GRAD_ENABLED.get()
        if record:
            ctx.next_edges = tuple(
                a._edge() if isinstance(a, Tensor) and a._requires_grad else None for a in args
            )
            ctx.input_meta = tuple(
                (a._data.shape, a._data.dtype) if isinstance(a, Tensor) else None for a in args
            )
            ctx.num_outputs = len(outs)
            ctx.out_meta = tuple(
                (o._data.shape, o._data.dtype, o._device) if isinstance(o, Tensor) else None for o in outs
            )
            ctx.seq = _next_seq()
            if ANOMALY.enabled:
                ctx.forward_trace = _forward_trace()
        non_diff: set[int] = getattr(ctx, "_non_diff", set())
        wrapped = []
        saved_ids = {id(t): i for i, (t, _, _) in enumerate(getattr(ctx, "_saved", ())) if t is not None}
        for nr, o in enumerate(outs):
            if not isinstance(o, Tensor):
                wrapped.append(o)
                continue
            if any(o is a for a in tensor_args):
                o = o.view_as(o)  # an input returned as is becomes a new alias, as in PyTorch
            diff = record and id(o) not in non_diff and is_float_np(o._data.dtype)
            if diff:
                o._requires_grad = True
                o._grad_fn = ctx
                o._output_nr = nr
            if id(o) in saved_ids:
                # store outputs saved for backward by data only, to avoid a reference cycle
                i = saved_ids[id(o)]
                alias = Tensor._make(o._data, o._device)
                alias._version = o._version
                ctx._saved[i] = (alias, o._version[0], nr if diff else None)  # type: ignore[assignment]
            wrapped.append(o)
        if _fwd.active() and any(a._tangent is not None for a in tensor_args):
            _fwd.propagate_function(cls, ctx, args, wrapped)
        return wrapped[0] if single else tuple(wrapped)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = cls.__name__


def once_differentiable(backward: Any) -> Any:
    """Mark a :class:`Function`'s backward as not differentiable itself.

    The backward runs without recording. Under ``create_graph=True`` its
    gradients are attached to a node that raises a clear ``AutogradError``
    naming the Function if anything differentiates through it (a second
    derivative), instead of silently treating the gradient as a constant.
    Put it below ``@staticmethod``.
    """
    import functools

    from .grad_mode import no_grad

    @functools.wraps(backward)
    def wrapper(ctx: Any, *grads: Any) -> Any:
        create_graph = GRAD_ENABLED.get()
        with no_grad():
            result = backward(ctx, *grads)
        if not create_graph:
            return result
        edges = [*ctx.next_edges, *(g._edge() for g in grads if isinstance(g, Tensor) and g._requires_grad)]
        if isinstance(result, tuple):
            return tuple(_once_differentiable(r, ctx, edges) for r in result)
        return _once_differentiable(result, ctx, edges)

    return wrapper


def _once_differentiable(value: Any, origin: Node, edges: list[Any]) -> Any:
    """``value`` as the output of a node whose backward refuses, linked to what it depends on."""
    if not isinstance(value, Tensor) or not is_float_np(value._data.dtype):
        return value
    node = _OnceDifferentiable.__new__(_OnceDifferentiable)
    node.origin = origin
    node.next_edges = tuple(edges)
    node.input_meta = (None,) * len(edges)
    node.seq = _next_seq()
    out = Tensor._make(value._data, value._device)
    out._version = value._version
    out._requires_grad = True
    out._grad_fn = node
    return out


class _OnceDifferentiable(Node):
    """Stands for a gradient computed by a once_differentiable backward: its own backward refuses."""

    origin: Node

    def op_name(self) -> str:
        return f"OnceDifferentiable[{self.origin.op_name()}]"

    def backward(self, *grads: Tensor) -> Any:
        raise AutogradError(
            f"the backward of {self.origin.op_name()} is marked once_differentiable: "
            "it cannot be differentiated again (a second derivative went through it)"
        )
