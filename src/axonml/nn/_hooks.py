"""Module hooks: registration, the call with hooks, removable handles, and the full backward hook.

A module's full backward hook sees the gradients with respect to its tensor
inputs and outputs. As in PyTorch, the inputs and the outputs of the call are
passed through an identity :class:`Function`; the backward of the output
identity records ``grad_output`` (after the backward pre-hooks), and the
backward of the input identity, which receives every ``grad_input`` at once,
calls the user's hooks and returns what they give back.
"""

from __future__ import annotations

import itertools
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.custom_function import Function
from ..core.grad_mode import is_grad_enabled
from ..core.tensor import Tensor

if TYPE_CHECKING:
    from .module import Module

_next_id = itertools.count().__next__


class RemovableHandle:
    """Returned by every ``register_*_hook``: ``remove()`` unregisters the hook (also as a ``with`` block)."""

    def __init__(self, hooks: OrderedDict[int, Any], *, extra: tuple[OrderedDict[int, Any], ...] = ()) -> None:
        self.id = _next_id()
        self._refs = [weakref.ref(hooks), *(weakref.ref(d) for d in extra)]

    def remove(self) -> None:
        for ref in self._refs:
            d = ref()
            if d is not None and self.id in d:
                del d[self.id]

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def add_hook(hooks: OrderedDict[int, Any], fn: Any, prepend: bool, *flags: OrderedDict[int, Any]) -> RemovableHandle:
    """Store ``fn`` in ``hooks`` under a fresh handle; ``flags`` are side dicts keyed by the same id."""
    handle = RemovableHandle(hooks, extra=flags)
    hooks[handle.id] = fn
    if prepend:
        hooks.move_to_end(handle.id, last=False)
    return handle


class _Identity(Function):
    """Passes tensors through; its backward hands the gradients of all of them to ``state`` at once."""

    @staticmethod
    def forward(ctx: Any, state: _BackwardHook, is_output: bool, *tensors: Tensor) -> tuple[Tensor, ...]:
        ctx.state, ctx.is_output = state, is_output
        outs = tuple(t.detach() for t in tensors)
        ctx.mark_non_differentiable(*[o for o, t in zip(outs, tensors) if not t.requires_grad])
        if is_output:
            ctx.set_materialize_grads(False)  # an output that got no gradient shows as None, as in PyTorch
        return outs

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> tuple[Any, ...]:  # type: ignore[override]
        state: _BackwardHook = ctx.state
        new = state.on_grad_outputs(grads) if ctx.is_output else state.on_grad_inputs(grads)
        return (None, None, *new)


class _BackwardHook:
    """The full backward hooks of one module call: links the output and input gradients."""

    def __init__(self, module: Any, hooks: list[Any], pre_hooks: list[Any]) -> None:
        self.module, self.hooks, self.pre_hooks = module, hooks, pre_hooks
        self.grad_outputs: tuple[Any, ...] | None = None
        self.n_inputs = self.n_outputs = 0
        self.input_index: list[int] | None = None
        self.output_index: list[int] | None = None

    @staticmethod
    def _wrap(
        state: _BackwardHook, values: tuple[Any, ...], is_output: bool
    ) -> tuple[tuple[Any, ...], list[int] | None]:
        index = [i for i, v in enumerate(values) if isinstance(v, Tensor)]
        tensors = [values[i] for i in index]
        if not (is_grad_enabled() and any(t.requires_grad for t in tensors)):
            return values, None
        wrapped = _Identity.apply(state, is_output, *tensors)
        out = list(values)
        for i, t in zip(index, wrapped):
            out[i] = t
        return tuple(out), index

    def setup_inputs(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        self.n_inputs = len(args)
        args, self.input_index = self._wrap(self, args, False)
        return args

    def setup_outputs(self, result: Any) -> Any:
        single = not isinstance(result, tuple)
        values = (result,) if single else result
        self.n_outputs = len(values)
        values, self.output_index = self._wrap(self, values, True)
        return values[0] if single else values

    @staticmethod
    def _pack(index: list[int], values: tuple[Any, ...], size: int) -> tuple[Any, ...]:
        out: list[Any] = [None] * size
        for i, v in zip(index, values):
            out[i] = v
        return tuple(out)

    def on_grad_outputs(self, grads: tuple[Any, ...]) -> tuple[Any, ...]:
        assert self.output_index is not None
        self.grad_outputs = self._pack(self.output_index, grads, self.n_outputs)
        for hook in self.pre_hooks:
            new = hook(self.module, self.grad_outputs)
            if new is None:
                continue
            new = new if isinstance(new, tuple) else (new,)
            if len(new) != self.n_outputs:
                raise RuntimeError(
                    f"backward pre-hook returned {len(new)} grad_output(s), expected {self.n_outputs}"
                )
            self.grad_outputs = new
        local = self.grad_outputs
        if self.input_index is None:  # no input needs a gradient: the hooks run now, with grad_input all None
            grad_inputs = (None,) * self.n_inputs
            for hook in self.hooks:
                res = hook(self.module, grad_inputs, self.grad_outputs)
                if res is not None and not (isinstance(res, tuple) and all(r is None for r in res)):
                    raise RuntimeError(
                        "a backward hook of a module whose inputs need no gradient must return None"
                    )
            self.grad_outputs = None
        return tuple(local[i] for i in self.output_index)

    def on_grad_inputs(self, grads: tuple[Any, ...]) -> tuple[Any, ...]:
        assert self.input_index is not None
        if self.grad_outputs is None:
            return grads  # the gradient reached the inputs without passing the outputs (double backward)
        res = self._pack(self.input_index, grads, self.n_inputs)
        for hook in self.hooks:
            out = hook(self.module, res, self.grad_outputs)
            if out is None:
                continue
            out = out if isinstance(out, tuple) else (out,)
            if len(out) != len(res):
                raise RuntimeError(f"backward hook returned {len(out)} grad_input(s), expected {len(res)}")
            res = out
        self.grad_outputs = None
        return tuple(res[i] for i in self.input_index)


# ----- Module methods (assigned in Module's class body) ---------------------------------------
def register_forward_pre_hook(self: Module, hook: Callable[..., Any], *, prepend: bool = False,
                              with_kwargs: bool = False) -> RemovableHandle:
    """``hook(module, args)`` before forward; a returned value replaces the args (a non-tuple is wrapped).

    With ``with_kwargs``: ``hook(module, args, kwargs)`` returning None or ``(args, kwargs)``.
    """
    handle = add_hook(self._forward_pre_hooks, hook, prepend, self._forward_pre_hooks_with_kwargs)
    if with_kwargs:
        self._forward_pre_hooks_with_kwargs[handle.id] = True
    return handle


def register_forward_hook(self: Module, hook: Callable[..., Any], *, prepend: bool = False, with_kwargs: bool = False,
                          always_call: bool = False) -> RemovableHandle:
    """``hook(module, args, output)`` after forward; a returned value replaces the output.

    With ``with_kwargs``: ``hook(module, args, kwargs, output)``. With
    ``always_call`` it also runs (with output None) when forward raises.
    """
    handle = add_hook(self._forward_hooks, hook, prepend, self._forward_hooks_with_kwargs,
                      self._forward_hooks_always_called)
    if with_kwargs:
        self._forward_hooks_with_kwargs[handle.id] = True
    if always_call:
        self._forward_hooks_always_called[handle.id] = True
    return handle


def register_full_backward_hook(self: Module, hook: Callable[..., Any], prepend: bool = False) -> RemovableHandle:
    """``hook(module, grad_input, grad_output)`` once the gradients of the tensor inputs are known.

    ``grad_input`` has one entry per positional argument (None for
    non-tensors and, when no input needs a gradient, for all); a returned
    tuple replaces ``grad_input``. Do not modify the arguments in place.
    """
    return add_hook(self._backward_hooks, hook, prepend)


def register_full_backward_pre_hook(self: Module, hook: Callable[..., Any], prepend: bool = False) -> RemovableHandle:
    """``hook(module, grad_output)`` when the output gradients are known; a returned tuple replaces them."""
    return add_hook(self._backward_pre_hooks, hook, prepend)


def call_with_hooks(self: Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``Module.__call__`` when any hook is registered: pre-hooks, forward, forward hooks, backward-hook wiring."""
    for hid, hook in list(self._forward_pre_hooks.items()):
        if hid in self._forward_pre_hooks_with_kwargs:
            res = hook(self, args, kwargs)
            if res is not None:
                if not (isinstance(res, tuple) and len(res) == 2):
                    raise RuntimeError(
                        f"forward pre-hook must return None or a tuple of (new_args, new_kwargs), got {res!r}"
                    )
                args, kwargs = res
        else:
            res = hook(self, args)
            if res is not None:
                args = res if isinstance(res, tuple) else (res,)
    bw = None
    if self._backward_hooks or self._backward_pre_hooks:
        bw = _BackwardHook(self, list(self._backward_hooks.values()), list(self._backward_pre_hooks.values()))
        args = bw.setup_inputs(args)
    called: set[int] = set()
    result = None
    try:
        result = self.forward(*args, **kwargs)
        for hid, hook in list(self._forward_hooks.items()):
            called.add(hid)
            if hid in self._forward_hooks_with_kwargs:
                res = hook(self, args, kwargs, result)
            else:
                res = hook(self, args, result)
            if res is not None:
                result = res
        if bw is not None:
            result = bw.setup_outputs(result)
    except Exception:
        for hid, hook in list(self._forward_hooks.items()):
            if hid in self._forward_hooks_always_called and hid not in called:
                try:
                    if hid in self._forward_hooks_with_kwargs:
                        hook(self, args, kwargs, result)
                    else:
                        hook(self, args, result)
                except Exception as e:  # the forward's own error is the one to report
                    warnings.warn(f"forward hook with always_call=True raised: {e!r}", stacklevel=2)
        raise
    return result
