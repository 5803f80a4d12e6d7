"""Higher-level autograd transforms, as ``torch.autograd.functional``.

``vjp``, ``jvp``, ``jacobian``, ``hessian``, ``hvp`` and ``vhp`` take a function
of Tensors and a Tensor or a tuple of Tensors, and give their results in the
same structure as PyTorch: a Tensor where the inputs (or outputs) were one
Tensor, a tuple where they were a tuple; Jacobians of tuple outputs with
respect to tuple inputs are tuples of tuples, ``jac[i][j] = d out_i / d in_j``.

``create_graph=True`` keeps the results differentiable (with respect to the
caller's inputs); otherwise they are detached. ``strict=True`` raises where
an output does not depend on an input instead of returning zeros.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.creation import zeros, zeros_like
from ..core.engine import NotBatchableError, run_backward
from ..core.forward_ad import dual_level, make_dual, unpack_dual
from ..core.grad_mode import enable_grad
from ..core.tensor import Tensor
from ..errors import AutogradError
from ..ops.shape import stack
from ._fnargs import (
    _OUTPUTS,
    _as_tuple,
    _autograd_grad,
    _call_func,
    _check_requires_grad,
    _grad_postprocess,
    _last_grad,
    _prepare_inputs,
    _prepare_v,
    _product_result,
    _scalar_output,
    _tuple_postprocess,
)
from .batched import batch_rule

__all__ = ["hessian", "hvp", "jacobian", "jvp", "vhp", "vjp"]

_INPUT_IS = "the input to the user-provided function is"  # where v may be None: one single-element input


# ----- products -------------------------------------------------------------------------
def vjp(func: Callable[..., Any], inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple[Any, Any]:
    """``(func(*inputs), v^T J)``: the vector-Jacobian product at ``inputs``.

    ``v`` has the shape of the outputs (may be omitted when ``func`` returns
    a single-element Tensor).
    """
    with enable_grad():
        is_inputs_tuple, inputs = _prepare_inputs(inputs, create_graph, "vjp")
        is_outputs_tuple, outputs = _call_func(func, inputs, strict, "vjp")
        vs = _prepare_v(v, outputs, is_outputs_tuple, create_graph, "vjp", "the user-provided function returns")
        result = _last_grad(outputs, inputs, vs, inputs, strict, create_graph, "back")
    return _product_result(outputs, is_outputs_tuple, result, is_inputs_tuple, create_graph)


def jvp(func: Callable[..., Any], inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple[Any, Any]:
    """``(func(*inputs), J v)``: the Jacobian-vector product at ``inputs``.

    Computed as PyTorch does, by differentiating a vector-Jacobian product
    with respect to its (linear) vector, so it works for every op with a
    differentiable backward; ``forward_ad`` gives the same in one forward pass.
    """
    with enable_grad():
        is_inputs_tuple, inputs = _prepare_inputs(inputs, create_graph, "jvp")
        vs = _prepare_v(v, inputs, is_inputs_tuple, create_graph, "jvp", _INPUT_IS)
        is_outputs_tuple, outputs = _call_func(func, inputs, strict, "jvp")
        result = _transposed_product(outputs, inputs, outputs, vs, strict, create_graph, "grad_inputs", "back_trick")
    return _product_result(outputs, is_outputs_tuple, result, is_outputs_tuple, create_graph)


# ----- Jacobians --------------------------------------------------------------------------
def jacobian(func: Callable[..., Any], inputs: Any, create_graph: bool = False, strict: bool = False,
             vectorize: bool = False, strategy: str = "reverse-mode") -> Any:
    """The Jacobian of ``func`` at ``inputs``: ``jac[i][j]`` has shape ``out_i.shape + in_j.shape``.

    ``strategy="reverse-mode"`` runs one backward per output element, or with
    ``vectorize=True`` a single batched backward for all of them when every op
    in the graph has a batched rule (else it falls back to the loop).
    ``strategy="forward-mode"`` runs one forward pass with ``forward_ad`` per
    input element (better when there are more outputs than inputs).
    """
    if strategy not in ("forward-mode", "reverse-mode"):
        raise ValueError(
            f'jacobian: strategy must be "forward-mode" or "reverse-mode", got {strategy!r} (forward mode is '
            "faster when the function has more outputs than inputs)"
        )
    if strategy == "forward-mode":
        return _jacfwd(func, inputs, create_graph, strict)
    with enable_grad():
        is_inputs_tuple, inputs = _prepare_inputs(inputs, create_graph, "jacobian")
        is_outputs_tuple, outputs = _call_func(func, inputs, strict, "jacobian")
        rows = _rows_batched(outputs, inputs, create_graph) if vectorize else None
        if rows is None:
            rows = _rows_looped(outputs, inputs, create_graph)

        def block(i: int, out: Tensor, j: int, inp: Tensor) -> Tensor:
            r = rows[i][j]
            if r is None:
                if strict:
                    raise _independent(i, j)
                return zeros(out.shape + inp.shape, dtype=inp.dtype, device=inp.device)
            if strict and create_graph and not r._requires_grad:
                raise AutogradError(
                    f"the jacobian of output {i} is not differentiable with respect to input {j}: "
                    "not allowed in strict mode with create_graph=True"
                )
            return r

        return _assemble(outputs, is_outputs_tuple, inputs, is_inputs_tuple, create_graph, block)


def _independent(i: int, j: int) -> AutogradError:
    return AutogradError(
        f"output {i} of the user-provided function is independent of input {j}: not allowed in strict mode"
    )


def _assemble(outputs: tuple[Tensor, ...], is_outputs_tuple: bool, inputs: tuple[Tensor, ...],
              is_inputs_tuple: bool, create_graph: bool, block: Callable[[int, Tensor, int, Tensor], Tensor]) -> Any:
    """The Jacobian ``jac[i][j] = block(i, out_i, j, in_j)`` in the caller's structure, detached unless create_graph."""
    jac = tuple(tuple(block(i, out, j, inp) for j, inp in enumerate(inputs)) for i, out in enumerate(outputs))
    return _tuple_postprocess(_grad_postprocess(jac, create_graph), (is_outputs_tuple, is_inputs_tuple))


def _one_hot_rows(out: Tensor, start: int, total: int) -> Tensor:
    """(total, *out.shape): rows start .. start + numel of the identity, zeros elsewhere."""
    xp = out._device.xp
    n = out._data.size
    g = xp.zeros((total, n), dtype=out._data.dtype)
    g[start:start + n] = xp.eye(n, dtype=out._data.dtype)
    return Tensor._make(g.reshape((total, *out.shape)), out._device)


def _rows_batched(outputs: tuple[Tensor, ...], inputs: tuple[Tensor, ...],
                  create_graph: bool) -> list[list[Tensor | None]] | None:
    """All Jacobian blocks from one batched backward, or None where some op has no batched rule."""
    live = [o for o in outputs if o._requires_grad]
    total = sum(o._data.size for o in live)
    if total == 0:
        return [[None] * len(inputs) for _ in outputs]
    gos, start = [], 0
    for o in live:
        gos.append(_one_hot_rows(o, start, total))
        start += o._data.size
    try:
        captured = run_backward(live, gos, True, create_graph, capture=inputs, allow_unused=True,
                                batch_rule=batch_rule)
    except NotBatchableError:
        return None
    rows: list[list[Tensor | None]] = []
    start = 0
    for o in outputs:
        if not o._requires_grad:
            rows.append([None] * len(inputs))
            continue
        n = o._data.size
        rows.append([
            None if g is None else g[start:start + n].reshape(o.shape + inp.shape)
            for g, inp in zip(captured or (), inputs)
        ])
        start += n
    return rows


def _rows_looped(outputs: tuple[Tensor, ...], inputs: tuple[Tensor, ...],
                 create_graph: bool) -> list[list[Tensor | None]]:
    """The Jacobian blocks from one backward per output element."""
    rows: list[list[Tensor | None]] = []
    for out in outputs:
        n = out._data.size
        per_input: list[list[Tensor | None]] = [[] for _ in inputs]
        if out._requires_grad:
            basis = _one_hot_rows(out, 0, n)
            for k in range(n):
                got = _autograd_grad((out,), inputs, (basis[k],), create_graph=create_graph, retain_graph=True)
                for j, g in enumerate(got):
                    per_input[j].append(g)
        block: list[Tensor | None] = []
        for j, inp in enumerate(inputs):
            grads = per_input[j]
            if n == 0 or not out._requires_grad or all(g is None for g in grads):
                block.append(None if n else zeros(out.shape + inp.shape, dtype=inp.dtype, device=inp.device))
                continue
            filled = [g if g is not None else zeros_like(inp) for g in grads]
            block.append(stack(filled).reshape(out.shape + inp.shape))
        rows.append(block)
    return rows


def _jacfwd(func: Callable[..., Any], inputs: Any, create_graph: bool, strict: bool) -> Any:
    """The Jacobian by forward-mode AD: one forward pass per input element (a column each)."""
    with enable_grad():
        is_inputs_tuple, inputs = _prepare_inputs(inputs, create_graph, "jacobian", need_graph=create_graph)
        outputs: tuple[Tensor, ...] | None = None
        is_outputs_tuple = False
        columns: list[list[list[Tensor | None]]] = []  # [input j][element k][output i]
        for j, inp in enumerate(inputs):
            cols: list[list[Tensor | None]] = []
            xp = inp._device.xp
            for k in range(inp._data.size):
                basis = xp.zeros(inp._data.size, dtype=inp._data.dtype)
                basis[k] = 1
                tangent = Tensor._make(basis.reshape(inp.shape), inp._device)
                with dual_level():
                    args = list(inputs)
                    args[j] = make_dual(inp, tangent)
                    is_outputs_tuple, outs_t = _as_tuple(func(*args), _OUTPUTS, "jacobian")
                    cols.append([unpack_dual(o).tangent for o in outs_t])
                    if outputs is None:
                        outputs = tuple(unpack_dual(o).primal for o in outs_t)
            columns.append(cols)
        if outputs is None:  # every input is empty: evaluate once for the output shapes
            is_outputs_tuple, outputs = _as_tuple(func(*inputs), _OUTPUTS, "jacobian")

        def block(i: int, out: Tensor, j: int, inp: Tensor) -> Tensor:
            cols_ij = [c[i] for c in columns[j]]
            if not cols_ij or all(c is None for c in cols_ij):
                if strict and inp.numel():
                    raise _independent(i, j)
                return zeros(out.shape + inp.shape, dtype=out.dtype, device=out.device)
            filled = [c if c is not None else zeros_like(out) for c in cols_ij]
            # (numel_in, *out.shape) -> (*out.shape, *in.shape)
            stacked = stack(filled, dim=-1) if out.ndim else stack(filled)
            return stacked.reshape(out.shape + inp.shape)

        return _assemble(outputs, is_outputs_tuple, inputs, is_inputs_tuple, create_graph, block)


def hessian(func: Callable[..., Any], inputs: Any, create_graph: bool = False, strict: bool = False,
            vectorize: bool = False, outer_jacobian_strategy: str = "reverse-mode") -> Any:
    """The Hessian of a scalar ``func`` at ``inputs``: ``h[i][j]`` has shape ``in_i.shape + in_j.shape``.

    The Jacobian of the gradient: reverse over reverse, or forward over
    reverse with ``outer_jacobian_strategy="forward-mode"``.
    """
    is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "hessian")
    if outer_jacobian_strategy not in ("forward-mode", "reverse-mode"):
        raise ValueError(f'outer_jacobian_strategy must be "forward-mode" or "reverse-mode", got '
                         f"{outer_jacobian_strategy!r}")

    def ensure_single_output_function(*inp: Tensor) -> Tensor:
        return _scalar_output(func, inp, strict, "hessian")[0].reshape(())

    def jac_func(*inp: Tensor) -> Any:
        if outer_jacobian_strategy == "forward-mode":
            # the outer forward mode passes dual tensors: they must require grad to keep their tangents inside
            inp = tuple(t.requires_grad_(True) for t in inp)
        jac = jacobian(ensure_single_output_function, inp, create_graph=True)
        _check_requires_grad(jac if isinstance(jac, tuple) else (jac,), "jacobian", strict=strict)
        return jac

    res = jacobian(jac_func, inputs, create_graph=create_graph, strict=strict, vectorize=vectorize,
                   strategy=outer_jacobian_strategy)
    return _tuple_postprocess(res, (is_inputs_tuple, is_inputs_tuple))


def vhp(func: Callable[..., Any], inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple[Any, Any]:
    """``(func(*inputs), v^T H)`` for a scalar ``func``: two backward passes, no Hessian built."""
    with enable_grad():
        is_inputs_tuple, inputs, vs, outputs, jac = _first_grad(func, inputs, v, create_graph, strict, "vhp")
        result = _last_grad(jac, inputs, vs, inputs, strict, create_graph, "double_back")
    return _product_result(outputs, False, result, is_inputs_tuple, create_graph)


def hvp(func: Callable[..., Any], inputs: Any, v: Any = None, create_graph: bool = False,
        strict: bool = False) -> tuple[Any, Any]:
    """``(func(*inputs), H v)`` for a scalar ``func``.

    As PyTorch, by differentiating ``v^T H`` with respect to ``v`` (exact even
    where the Hessian is not symmetric); ``vhp`` is cheaper when it is.
    """
    with enable_grad():
        is_inputs_tuple, inputs, vs, outputs, jac = _first_grad(func, inputs, v, create_graph, strict, "hvp")
        result = _transposed_product(jac, inputs, inputs, vs, strict, create_graph, "hessian", "double_back_trick")
    return _product_result(outputs, False, result, is_inputs_tuple, create_graph)


def _transposed_product(outputs: tuple[Tensor | None, ...], inputs: tuple[Tensor, ...], like: tuple[Tensor, ...],
                        vs: tuple[Tensor | None, ...], strict: bool, create_graph: bool, kind: str,
                        stage: str) -> tuple[Tensor, ...]:
    """``J vs`` (J of ``outputs``, shaped as ``like``, w.r.t. ``inputs``) as the derivative of ``u^T J`` in ``u``."""
    # the vjp is linear in its vector, so the vector's value does not matter (zeros, no NaN)
    u = tuple(zeros_like(t, requires_grad=True) for t in like)
    vjp_u = _autograd_grad(outputs, inputs, u, create_graph=True)
    _check_requires_grad(vjp_u, kind, strict=strict)
    return _last_grad(vjp_u, u, vs, like, strict, create_graph, stage)


def _first_grad(func: Callable[..., Any], inputs: Any, v: Any, create_graph: bool, strict: bool, fn_name: str
                ) -> tuple[bool, tuple[Tensor, ...], tuple[Tensor | None, ...], tuple[Tensor, ...],
                           tuple[Tensor | None, ...]]:
    """The common start of vhp and hvp: (is_inputs_tuple, inputs, vs, outputs, gradient kept differentiable)."""
    is_inputs_tuple, inputs = _prepare_inputs(inputs, create_graph, fn_name)
    vs = _prepare_v(v, inputs, is_inputs_tuple, create_graph, fn_name, _INPUT_IS)
    outputs = _scalar_output(func, inputs, strict, fn_name)
    jac = _autograd_grad(outputs, inputs, create_graph=True)
    _check_requires_grad(jac, "jacobian", strict=strict)
    return is_inputs_tuple, inputs, vs, outputs, jac
