"""Forward-mode AD: dual tensors carry a tangent through every op that has a ``jvp`` rule.

``with dual_level(): x = make_dual(p, t); y = f(x); unpack_dual(y).tangent``
gives the Jacobian-vector product J_f(p) @ t in one forward pass.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import AutogradError, ShapeError

if TYPE_CHECKING:
    from .tensor import Tensor


class _State(threading.local):
    level: int = -1  # the innermost open dual level, -1 when none
    paused: int = 0  # >0 while a jvp rule runs: its own ops carry no tangents


_STATE = _State()


def active() -> bool:
    return _STATE.level >= 0 and _STATE.paused == 0


class dual_level:  # noqa: N801 - PyTorch's name
    """Context in which dual tensors exist; tangents are dropped on exit."""

    def __enter__(self) -> int:
        if _STATE.level >= 0:
            raise AutogradError("nested forward-mode levels are not supported: use one dual_level at a time")
        _STATE.level = 0
        self._duals: list[Tensor] = []
        _OPEN.append(self)
        return 0

    def __exit__(self, *exc: Any) -> None:
        _OPEN.pop()
        for t in self._duals:
            t._tangent = None
        _STATE.level = -1


_OPEN: list[dual_level] = []


def enter_dual_level() -> int:
    """Open a dual level without a ``with`` block (pair with :func:`exit_dual_level`)."""
    return dual_level().__enter__()


def exit_dual_level(*, level: int | None = None) -> None:
    if not _OPEN:
        raise AutogradError("exit_dual_level() without an open level")
    _OPEN[-1].__exit__(None, None, None)


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
    _OPEN[-1]._duals.append(dual)
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
    if _OPEN:
        _OPEN[-1]._duals.append(out)


def propagate(cls: Any, ctx: Any, args: tuple[Any, ...], out: Tensor) -> None:
    """Give ``out`` the tangent of primitive ``cls`` from its inputs' tangents."""
    rule = getattr(cls, "jvp", None)
    if rule is None:
        raise AutogradError(f"forward-mode AD has no rule for {cls.op_name(ctx)}; use reverse mode for it")
    if "_inputs" not in ctx.__dict__:
        ctx._inputs = args
        ctx._versions = tuple(a._version[0] if hasattr(a, "_version") else 0 for a in args)
    if "_out" not in ctx.__dict__:
        ctx._out = (out._data, out._version, out._version[0])
    tangents = [getattr(a, "_tangent", None) for a in args]
    _STATE.paused += 1
    try:
        t = rule(ctx, *tangents)
    finally:
        _STATE.paused -= 1
    if t is not None:
        out._tangent = t
        _record_duals(out)


def propagate_function(cls: Any, ctx: Any, args: tuple[Any, ...], outputs: list[Any]) -> None:
    """Forward mode through a user-defined Function with a ``jvp`` staticmethod."""
    rule = getattr(cls, "jvp", None)
    if rule is None or rule is getattr(super(cls, cls), "jvp", None):
        raise AutogradError(f"the Function {cls.__name__} defines no jvp(ctx, *tangents) for forward-mode AD")
    tangents = [getattr(a, "_tangent", None) for a in args]
    _STATE.paused += 1
    try:
        result = rule(ctx, *tangents)
    finally:
        _STATE.paused -= 1
    results = result if isinstance(result, tuple) else (result,)
    for o, t in zip(outputs, results):
        if t is not None and hasattr(o, "_tangent"):
            o._tangent = t
            _record_duals(o)
