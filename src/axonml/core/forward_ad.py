"""Forward-mode AD: dual tensors carry a tangent through every op that has a ``jvp`` rule.

``with dual_level(): x = make_dual(p, t); y = f(x); unpack_dual(y).tangent``
gives the Jacobian-vector product J_f(p) @ t in one forward pass.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import numpy as np

from ..errors import AutogradError, ShapeError
from .dtypes import is_float_np
from .tensor import Tensor


class _State(threading.local):
    """Per thread: levels and tangents of one thread never leak into another's ops."""

    def __init__(self) -> None:
        self.level = -1  # the innermost open dual level, -1 when none
        self.paused = 0  # >0 while a jvp rule runs: its own ops carry no tangents
        self.open: list[dual_level] = []  # the open levels, innermost last


_STATE = _State()


def active() -> bool:
    return _STATE.level >= 0 and _STATE.paused == 0


class paused:  # noqa: N801 - used like no_grad
    """Ops inside carry no tangents (a jvp rule's own ops, a Function's forward)."""

    def __enter__(self) -> None:
        _STATE.paused += 1

    def __exit__(self, *exc: Any) -> None:
        _STATE.paused -= 1


class dual_level:  # noqa: N801 - PyTorch's name
    """Context in which dual tensors exist; tangents are dropped on exit."""

    def __enter__(self) -> int:
        if _STATE.level >= 0:
            raise AutogradError("nested forward-mode levels are not supported: use one dual_level at a time")
        _STATE.level = 0
        self._duals: list[Tensor] = []
        _STATE.open.append(self)
        return 0

    def __exit__(self, *exc: Any) -> None:
        _STATE.open.pop()
        for t in self._duals:
            t._tangent = None
        _STATE.level = -1



def enter_dual_level() -> int:
    """Open a dual level without a ``with`` block (pair with :func:`exit_dual_level`)."""
    return dual_level().__enter__()


def exit_dual_level(*, level: int | None = None) -> None:
    if not _STATE.open:
        raise AutogradError("exit_dual_level() without an open level")
    _STATE.open[-1].__exit__(None, None, None)


def make_dual(tensor: Tensor, tangent: Tensor, *, level: int | None = None) -> Tensor:
    """A new tensor with ``tensor``'s values (and graph) that carries ``tangent``."""
    if _STATE.level < 0:
        raise AutogradError("make_dual() must be called inside a dual_level() block")
    if tangent.shape != tensor.shape:
        raise ShapeError(f"tangent of shape {tangent.shape} for a primal of shape {tensor.shape}")
    if tangent.device is not tensor.device:
        from ..errors import DeviceError

        raise DeviceError(f"tangent on {tangent.device} for a primal on {tensor.device}")
    dual = tensor.view_as(tensor)
    dual._tangent = tangent if tangent.dtype == tensor.dtype else tangent.to(tensor.dtype)
    _STATE.open[-1]._duals.append(dual)
    return dual


class UnpackedDualTensor(NamedTuple):
    primal: Tensor
    tangent: Tensor | None


def unpack_dual(tensor: Tensor, *, level: int | None = None) -> UnpackedDualTensor:
    """The primal (a view without tangent) and the tangent (or None) of ``tensor``."""
    tangent = tensor._tangent
    if tangent is None:
        return UnpackedDualTensor(tensor, None)
    primal = tensor.view_as(tensor)
    primal._tangent = None
    return UnpackedDualTensor(primal, tangent)


def _record_duals(out: Tensor) -> None:
    if _STATE.open:
        _STATE.open[-1]._duals.append(out)


def propagate(cls: Any, ctx: Any, args: tuple[Any, ...], out: Tensor) -> None:
    """Give ``out`` the tangent of primitive ``cls`` from its inputs' tangents."""
    if not cls.differentiable or not is_float_np(out._data.dtype):
        return  # comparisons, integer results: no tangent, as they get no gradient
    rule = getattr(cls, "jvp", None)
    if rule is None:
        raise AutogradError(f"forward-mode AD has no rule for {cls.op_name(ctx)}; use reverse mode for it")
    if "_inputs" not in ctx.__dict__:
        ctx._inputs = args
        ctx._versions = tuple(a._version[0] if hasattr(a, "_version") else 0 for a in args)
    if "_out" not in ctx.__dict__:
        ctx._out = (out._data, out._version, out._version[0])
    tangents = [_primitive_tangent(a) for a in args]
    _STATE.paused += 1
    try:
        t = rule(ctx, *tangents)
    finally:
        _STATE.paused -= 1
    if t is not None:
        out._tangent = t
        _record_duals(out)
        # a backward reading ``ctx.output`` inside this level sees the tangent too (forward-over-reverse)
        ctx._out_tangent = (t, _STATE.open[-1] if _STATE.open else None)


def _primitive_tangent(a: Any) -> Any:
    """One jvp argument: a tensor's tangent (or None), None for a constant operand (a number or an array),
    and any other argument (a shape, an index, a dtype, a device) as is, for the rules that read it."""
    if isinstance(a, Tensor):
        return a._tangent
    if isinstance(a, int | float | complex | np.generic | np.ndarray) or hasattr(a, "__cuda_array_interface__"):
        return None
    return a


def attach_saved_tangent(t: Tensor, saved: tuple[Any, Any]) -> None:
    """Give ``t`` (a node's re-attached output) the tangent saved at forward time, if its level is open."""
    tangent, level = saved
    if _STATE.open and _STATE.open[-1] is level:
        t._tangent = tangent
        _STATE.open[-1]._duals.append(t)


def propagate_function(cls: Any, ctx: Any, args: tuple[Any, ...], outputs: list[Any]) -> None:
    """Forward mode through a user-defined Function with a ``jvp`` staticmethod."""
    rule = getattr(cls, "jvp", None)
    if rule is None or rule is getattr(super(cls, cls), "jvp", None):
        raise AutogradError(f"the Function {cls.__name__} defines no jvp(ctx, *tangents) for forward-mode AD")
    tangents = [_function_tangent(a) for a in args]
    _STATE.paused += 1
    try:
        result = rule(ctx, *tangents)
    finally:
        _STATE.paused -= 1
    results = result if isinstance(result, tuple) else (result,)
    if len(results) != len(outputs):
        raise AutogradError(
            f"jvp of {cls.__name__} returned {len(results)} tangent(s) for {len(outputs)} output(s)"
        )
    saved = getattr(ctx, "_saved", ())
    for nr, (o, t) in enumerate(zip(outputs, results)):
        if t is None or not isinstance(o, Tensor):
            continue
        if not isinstance(t, Tensor) or t.shape != o.shape:
            got = t.shape if isinstance(t, Tensor) else type(t).__name__
            raise AutogradError(f"jvp of {cls.__name__}: tangent {got} for output {nr} of shape {o.shape}")
        o._tangent = t
        _record_duals(o)
        for alias, _, out_nr in saved:  # an output saved for backward carries its tangent too
            if out_nr == nr and alias is not None:
                alias._tangent = t
                _record_duals(alias)


def _function_tangent(a: Any) -> Any:
    """What a Function's jvp gets for argument ``a``: as in PyTorch, zeros for a float tensor without one."""
    if not isinstance(a, Tensor):
        return None
    if a._tangent is not None:
        return a._tangent
    if is_float_np(a._data.dtype):
        return Tensor._make(a._device.xp.zeros_like(a._data), a._device)
    return None
