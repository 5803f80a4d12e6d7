"""The user-facing ``autograd.Function``: a differentiable op written by the user.

Unlike a ``Primitive`` (``function.py``), its forward takes and returns
Tensors, and its backward is a static method taking ``ctx``, as in PyTorch.
"""

from __future__ import annotations

import functools
from typing import Any

from ..errors import AutogradError, DeviceError
from . import forward_ad as _fwd
from .anomaly import ANOMALY
from .dtypes import is_float_np
from .function import Node, _check_version, _forward_trace, _freed_error, _next_seq
from .grad_mode import GRAD_ENABLED, no_grad
from .tensor import Tensor


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
