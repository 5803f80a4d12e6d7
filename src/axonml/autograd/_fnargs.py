"""Argument handling shared by ``autograd.functional``: PyTorch's tuple conventions and checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.creation import zeros_like
from ..core.engine import grad
from ..core.grad_mode import is_grad_enabled, set_grad_enabled
from ..core.tensor import Tensor
from ..errors import AutogradError, ShapeError


def _as_tuple(x: Any, arg_name: str, fn_name: str) -> tuple[bool, tuple[Tensor, ...]]:
    """(whether ``x`` was a tuple, ``x`` as a tuple of Tensors)."""
    if isinstance(x, tuple):
        is_tuple, items = True, x
    elif isinstance(x, list):
        is_tuple, items = True, tuple(x)
    else:
        is_tuple, items = False, (x,)
    for i, el in enumerate(items):
        if not isinstance(el, Tensor):
            where = f" the value at index {i} has" if is_tuple else " it has"
            raise TypeError(
                f"the {arg_name} given to {fn_name} must be a Tensor or a tuple of Tensors, but{where} "
                f"type {type(el).__name__}"
            )
    return is_tuple, items


def _tuple_postprocess(res: Any, to_unpack: Any) -> Any:
    """Undo ``_as_tuple``: a 1-tuple becomes its element where the caller passed no tuple."""
    if isinstance(to_unpack, tuple):  # (outer, inner) for tuples of tuples
        if not to_unpack[1]:
            res = tuple(el[0] for el in res)
        if not to_unpack[0]:
            res = res[0]
        return res
    return res if to_unpack else res[0]


def _grad_preprocess(inputs: tuple[Tensor, ...], create_graph: bool, need_graph: bool) -> tuple[Tensor, ...]:
    """Fresh tensors for the user function: still linked to the caller's graph only under create_graph."""
    out = []
    for inp in inputs:
        if create_graph and inp._requires_grad:
            out.append(inp.view_as(inp))  # keeps the link to the caller's graph
        else:
            out.append(inp.detach().requires_grad_(need_graph))
    return tuple(out)


def _grad_postprocess(inputs: Any, create_graph: bool) -> Any:
    if isinstance(inputs[0], Tensor) if inputs else True:
        return inputs if create_graph else tuple(t.detach() if t is not None else None for t in inputs)
    return tuple(_grad_postprocess(el, create_graph) for el in inputs)


def _validate_v(v: tuple[Tensor, ...], other: tuple[Tensor, ...], is_other_tuple: bool) -> None:
    if len(other) != len(v):
        if is_other_tuple:
            raise ShapeError(f"v is a tuple of invalid length: should be {len(other)} but got {len(v)}")
        raise ShapeError("the given v should contain a single Tensor")
    for i, (el_v, el_other) in enumerate(zip(v, other)):
        if el_v.shape != el_other.shape:
            raise ShapeError(f"entry {i} in v has invalid size: expected {el_other.shape} but got {el_v.shape}")


def _check_requires_grad(tensors: Any, kind: str, strict: bool) -> None:
    if not strict:
        return
    if kind not in ("outputs", "grad_inputs", "jacobian", "hessian"):
        raise ValueError(f"invalid kind {kind!r}")
    for i, t in enumerate(tensors):
        if t is None:
            raise AutogradError(f"the output of the user-provided function is independent of input {i}: "
                                "not allowed in strict mode")
        if not t._requires_grad:
            if kind == "hessian":
                raise AutogradError(
                    f"the hessian of the user-provided function with respect to input {i} is independent of "
                    "the input: not allowed in strict mode (a function linear in this input gives a zero "
                    "hessian that cannot be told apart from independence; use strict=False)"
                )
            if kind == "jacobian":
                raise AutogradError(
                    f"the jacobian of the user-provided function with respect to input {i} is independent of "
                    "the input: not allowed in strict mode"
                )
            if kind == "grad_inputs":
                raise AutogradError(
                    f"the gradient with respect to input {i} is independent of the inputs of the user-provided "
                    "function: not allowed in strict mode"
                )
            raise AutogradError(
                f"output {i} of the user-provided function does not require gradients: in strict mode the "
                "outputs must be computed in a differentiable manner from the inputs"
            )


def _autograd_grad(
    outputs: tuple[Tensor | None, ...],
    inputs: tuple[Tensor, ...],
    grad_outputs: tuple[Tensor | None, ...] | None = None,
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> tuple[Tensor | None, ...]:
    """``autograd.grad`` that skips outputs which do not require grad (all None if none does)."""
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    new_outputs, new_grads = [], []
    for out, go in zip(outputs, grad_outputs):
        if out is not None and out._requires_grad:
            new_outputs.append(out)
            new_grads.append(go)
    if not new_outputs:
        return (None,) * len(inputs)
    return grad(new_outputs, inputs, new_grads, allow_unused=True, create_graph=create_graph,
                retain_graph=retain_graph)


def _fill_in_zeros(
    grads: tuple[Tensor | None, ...], refs: tuple[Tensor, ...], strict: bool, create_graph: bool, stage: str
) -> tuple[Tensor, ...]:
    """None gradients become zeros shaped like ``refs`` (or an error under ``strict``)."""
    res = []
    for i, g in enumerate(grads):
        if g is None:
            if strict:
                if stage == "back":
                    msg = f"the output of the user-provided function is independent of input {i}"
                elif stage == "back_trick":
                    msg = f"the gradient with respect to the input is independent of entry {i} in the grad_outputs"
                elif stage == "double_back":
                    msg = f"the jacobian of the user-provided function is independent of input {i}"
                else:
                    msg = f"the hessian of the user-provided function is independent of entry {i} in the grad_jacobian"
                raise AutogradError(msg + ": not allowed in strict mode")
            g = zeros_like(refs[i])
        res.append(g)
    return tuple(res)


# ----- the steps every transform of ``functional`` shares ------------------------------------
_OUTPUTS = "outputs of the user-provided function"


def _prepare_inputs(inputs: Any, create_graph: bool, fn_name: str,
                    need_graph: bool = True) -> tuple[bool, tuple[Tensor, ...]]:
    """(whether ``inputs`` was a tuple, fresh input tensors for the user function)."""
    is_tuple, items = _as_tuple(inputs, "inputs", fn_name)
    return is_tuple, _grad_preprocess(items, create_graph=create_graph, need_graph=need_graph)


def _call_func(func: Callable[..., Any], inputs: tuple[Tensor, ...], strict: bool,
               fn_name: str) -> tuple[bool, tuple[Tensor, ...]]:
    """(whether ``func`` returned a tuple, its outputs as a tuple), checked under ``strict``."""
    is_tuple, outputs = _as_tuple(func(*inputs), _OUTPUTS, fn_name)
    _check_requires_grad(outputs, "outputs", strict=strict)
    return is_tuple, outputs


def _scalar_output(func: Callable[..., Any], inputs: tuple[Tensor, ...], strict: bool,
                   fn_name: str) -> tuple[Tensor, ...]:
    """The output of a function that must return one single-element Tensor, as a 1-tuple."""
    is_tuple, outputs = _call_func(func, inputs, strict, fn_name)
    if is_tuple or not isinstance(outputs[0], Tensor):
        raise AutogradError(f"the function given to {fn_name} should return a single Tensor")
    if outputs[0].numel() != 1:
        raise ShapeError(
            f"the Tensor returned by the function given to {fn_name} should have a single element, got shape "
            f"{outputs[0].shape}"
        )
    return outputs


def _prepare_v(v: Any, refs: tuple[Tensor, ...], is_refs_tuple: bool, create_graph: bool, fn_name: str,
               refs_are: str) -> tuple[Tensor | None, ...]:
    """The vector ``v`` of a product, shaped like ``refs``; None stands for 1 where ``refs`` is one element.

    ``refs_are`` names what ``v`` is shaped like in the error message.
    """
    if v is not None:
        _, vs = _as_tuple(v, "v", fn_name)
        vs = _grad_preprocess(vs, create_graph=create_graph, need_graph=False)
        _validate_v(vs, refs, is_refs_tuple)
        return vs
    if len(refs) != 1 or refs[0].numel() != 1:
        raise AutogradError(f"v can be None only if {refs_are} a single Tensor with a single element")
    return (None,)


def _last_grad(outputs: tuple[Tensor | None, ...], inputs: tuple[Tensor, ...], vs: tuple[Tensor | None, ...],
               refs: tuple[Tensor, ...], strict: bool, create_graph: bool, stage: str) -> tuple[Tensor, ...]:
    """The final backward of a product (linear in ``vs``), with missing gradients filled as ``refs``."""
    enable = True if create_graph else is_grad_enabled()
    with set_grad_enabled(enable):
        grad_res = _autograd_grad(outputs, inputs, vs, create_graph=create_graph)
        return _fill_in_zeros(grad_res, refs, strict, create_graph, stage)


def _product_result(outputs: tuple[Tensor, ...], is_outputs_tuple: bool, result: tuple[Tensor, ...],
                    is_result_tuple: bool, create_graph: bool) -> tuple[Any, Any]:
    """(outputs, product) in the caller's structure, detached unless ``create_graph``."""
    return (_tuple_postprocess(_grad_postprocess(outputs, create_graph), is_outputs_tuple),
            _tuple_postprocess(_grad_postprocess(result, create_graph), is_result_tuple))
