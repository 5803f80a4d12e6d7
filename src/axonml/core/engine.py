"""The reverse-mode engine: runs node backwards in topological order.

Broadcasting and dtype promotion are undone here, once, for every node: a
gradient is summed down to its input's shape and cast to its input's dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..backend import checks
from ..errors import AutogradError, ShapeError
from .accumulate import AccumulateGrad, _RetainGradHook
from .anomaly import ANOMALY
from .grad_mode import GRAD_ENABLED
from .tensor import Tensor


def _sum_to(grad: Tensor, shape: tuple[int, ...], batched: bool = False) -> Tensor:
    """Sum ``grad`` down to ``shape``, undoing broadcasting (behind a kept batch dimension if ``batched``)."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    if lead < 0 or (batched and (grad.ndim == 0 or grad.shape[0] != shape[0])):
        raise ShapeError(f"gradient of shape {grad.shape} cannot be reduced to shape {shape}")
    skip = 1 if batched else 0  # (B, ..., *shape) -> (B, *shape): the batch dimension stays
    dims = tuple(range(skip, lead + skip)) + tuple(
        i + lead for i, n in enumerate(shape) if i >= skip and n == 1 and grad.shape[i + lead] != 1
    )
    g = grad.sum(dim=dims, keepdim=True) if dims else grad
    return g.reshape(shape) if g.shape != shape else g


def _toposort(roots: Sequence[Any]) -> list[Any]:
    """Nodes reachable from ``roots``, each after every node that feeds it a gradient."""
    order: list[Any] = []
    seen: set[int] = set()
    for root in roots:
        if id(root) in seen:
            continue
        seen.add(id(root))
        stack = [(root, iter(root.next_edges))]
        while stack:
            node, it = stack[-1]
            for edge in it:
                if edge is not None and id(edge[0]) not in seen:
                    seen.add(id(edge[0]))
                    stack.append((edge[0], iter(edge[0].next_edges)))
                    break
            else:
                stack.pop()
                order.append(node)
    order.reverse()
    return order


def _needed(order: list[Any], targets: set[int]) -> set[int]:
    """Ids of the nodes from which some target node can be reached."""
    needed = set(targets)
    for node in reversed(order):
        if any(e is not None and id(e[0]) in needed for e in node.next_edges):
            needed.add(id(node))
    return needed


class NotBatchableError(AutogradError):
    """A batched backward met a node without a batched rule; the caller falls back to a loop."""


def run_backward(
    outputs: Sequence[Tensor],
    grad_outputs: Sequence[Tensor | None],
    retain_graph: bool | None,
    create_graph: bool,
    capture: Sequence[Tensor] | None = None,
    allow_unused: bool = False,
    node_filter: Callable[[Any], bool] | None = None,
    batch_rule: Callable[[Any], Callable[..., Any] | None] | None = None,
) -> list[Tensor | None] | None:
    """Propagate gradients from ``outputs``.

    Without ``capture`` the gradients are accumulated into the leaves'
    ``.grad``; with it, the gradients reaching those tensors are returned and
    nothing is accumulated. ``node_filter(node)`` false stops the gradient at
    that node (GradientTape: ops it did not record). With ``batch_rule``, each
    grad output carries a leading batch dimension (one backward for many
    vectors); ``batch_rule(node)`` gives the node's batched backward, and
    ``NotBatchableError`` is raised before any work if some node has none.
    """
    if retain_graph is None:
        retain_graph = create_graph
    batched = batch_rule is not None
    roots: list[tuple[Any, int, Tensor]] = []
    for i, (out, g) in enumerate(zip(outputs, grad_outputs, strict=True)):
        if not isinstance(out, Tensor):
            raise TypeError(f"backward needs Tensors, got {type(out).__name__} at position {i}")
        if not out._requires_grad:
            raise AutogradError(
                f"element {i} of tensors does not require grad and does not have a grad_fn: "
                "nothing to differentiate (did you forget requires_grad=True, or run under no_grad?)"
            )
        if g is None:
            if batched:
                raise AutogradError("a batched backward needs every grad output")
            if out._data.size != 1:
                raise AutogradError(
                    f"grad can be implicitly created only for scalar outputs; this output has shape {out.shape}: "
                    "pass gradient= (a tensor of the output's shape)"
                )
            g = Tensor._make(out._device.xp.ones_like(out._data), out._device)
        elif not isinstance(g, Tensor):
            raise TypeError(f"gradient must be a Tensor, got {type(g).__name__}")
        elif (g.shape[1:] if batched else g.shape) != out.shape:
            raise ShapeError(f"gradient has shape {g.shape} but the output has shape {out.shape}")
        node, nr = out._edge()
        roots.append((node, nr, g))

    order = _toposort([r[0] for r in roots])
    capture_keys: dict[tuple[int, int], list[int]] = {}
    needed: set[int] = set()
    if capture is not None:
        for i, t in enumerate(capture):
            if not isinstance(t, Tensor) or not t._requires_grad:
                raise AutogradError(f"input {i} of grad() does not require grad")
            node, nr = t._edge()
            capture_keys.setdefault((id(node), nr), []).append(i)
        needed = _needed(order, {k[0] for k in capture_keys})
        order = [n for n in order if id(n) in needed]
    elif batched:
        raise AutogradError("a batched backward returns gradients: pass the inputs to capture")
    captured: list[Tensor | None] = [None] * (len(capture) if capture is not None else 0)
    rules = _batch_rules(order, batch_rule, node_filter) if batch_rule is not None else None
    batch = roots[0][2].shape[0] if batched and roots else 0

    buffers: dict[int, list[Any]] = {}
    for node, nr, g in roots:
        _add_to(buffers, node, nr, g)

    prev = GRAD_ENABLED.set(create_graph)
    try:
        for node in order:
            grads = buffers.pop(id(node), None)
            if grads is None:
                continue
            if node.pre_hooks:
                _run_prehooks(node, grads)
            leaf = isinstance(node, AccumulateGrad)
            if leaf and grads[0] is not None:
                grads[0] = node.run_hooks(grads[0])
            if capture is not None:
                for nr, g in enumerate(grads[: node.num_outputs]):
                    if g is not None:
                        for i in capture_keys.get((id(node), nr), ()):
                            captured[i] = g
                # stop where no other captured tensor lies further down
                if leaf or not any(e is not None and id(e[0]) in needed for e in node.next_edges):
                    continue
            if leaf:
                g0, grads[0] = grads[0], None  # no reference left here: accumulate may keep the buffer
                node.accumulate(g0, create_graph, True)
                continue
            if node_filter is not None and not node_filter(node):
                continue
            if node.released:
                raise _freed(node)
            try:
                _call_node(node, grads, buffers, rules[id(node)] if rules is not None else None, batch)
            except Exception as e:
                _annotate(e, node)
                raise
            if not retain_graph:
                node.release()
    finally:
        GRAD_ENABLED.reset(prev)
    checks.run_ready()  # what ops deferred (cross entropy's targets) and the GPU has computed by now

    if capture is None:
        return None
    for i, g in enumerate(captured):
        if g is None and not allow_unused:
            raise AutogradError(
                f"one of the differentiated tensors (input {i}) appears not to have been used in the graph; "
                "pass allow_unused=True if this is intended"
            )
    return captured


def _freed(node: Any) -> AutogradError:
    return AutogradError(
        f"trying to backward through the graph a second time (at {node.op_name()}): "
        "its saved tensors were freed; pass retain_graph=True to the first backward"
    )


def _batch_rules(order: list[Any], batch_rule: Callable[[Any], Any], node_filter: Any) -> dict[int, Any]:
    """Every node's batched backward, or NotBatchableError naming the first node without one."""
    rules: dict[int, Any] = {}
    for node in order:
        if node_filter is not None and not isinstance(node, AccumulateGrad) and not node_filter(node):
            continue
        if node.pre_hooks and any(node.pre_hooks.values()):
            raise NotBatchableError(f"{node.op_name()} has hooks")
        if isinstance(node, AccumulateGrad):
            leaf = node.leaf_ref()
            if leaf is not None and leaf._leaf_hooks:
                raise NotBatchableError("a leaf has hooks")
            continue
        rule = batch_rule(node)
        if rule is None:
            raise NotBatchableError(f"{node.op_name()} has no batched backward")
        rules[id(node)] = rule
    return rules


def _annotate(e: Exception, node: Any) -> None:
    """Under anomaly detection, add the forward call of the failing node to the error."""
    trace = getattr(node, "forward_trace", None)
    if ANOMALY.enabled and trace and hasattr(e, "add_note") and not getattr(e, "_axonml_traced", False):
        e.add_note(f"Error detected in {node.op_name()}Backward. The forward call that created it:\n{trace}")
        e._axonml_traced = True  # type: ignore[attr-defined]


def _add_to(buffers: dict[int, list[Any]], node: Any, nr: int, g: Tensor) -> None:
    buf = buffers.get(id(node))
    if buf is None:
        buf = buffers[id(node)] = [None] * node.num_outputs
        buf.append(node)  # keeps the node alive while its gradient waits
    cur = buf[nr]
    buf[nr] = g if cur is None else cur + g


def _run_prehooks(node: Any, grads: list[Any]) -> None:
    hooks = node.pre_hooks
    if not hooks:
        return
    for nr, fns in hooks.items():
        retains = []
        for fn in list(fns):
            if grads[nr] is None:
                continue
            if isinstance(fn, _RetainGradHook):
                retains.append(fn)  # .grad of a non-leaf sees the gradient after every other hook
                continue
            new = fn(grads[nr])
            if new is not None:
                grads[nr] = new
        for fn in retains:
            fn(grads[nr])


def _call_node(node: Any, grads: list[Any], buffers: dict[int, list[Any]], rule: Any = None, batch: int = 0) -> None:
    n_out = node.num_outputs
    if n_out > 1 and getattr(node, "_materialize", True):
        for nr in range(n_out):
            if grads[nr] is None:
                shape, dtype, device = node.out_meta[nr]
                grads[nr] = Tensor._make(device.xp.zeros(shape, dtype), device)
    if rule is not None:
        result = rule(node, *grads[:n_out])
    elif n_out == 1:
        # through the class: a Function's backward is a staticmethod taking ctx, a Primitive's a method
        result = type(node).backward(node, grads[0])
    else:
        result = type(node).backward(node, *grads[:n_out])
    if type(result) is not tuple:
        result = (result,)
    edges = node.next_edges
    if len(result) != len(edges):
        if len(result) > len(edges) and all(g is None for g in result[len(edges):]):
            result = result[: len(edges)]  # trailing Nones for defaulted arguments are fine, as in PyTorch
        else:
            raise AutogradError(
                f"backward of {node.op_name()} returned {len(result)} gradient(s), expected {len(edges)} "
                "(one per forward argument, None for those without a gradient)"
            )
    check_nan = ANOMALY.enabled and ANOMALY.check_nan
    for edge, g, meta in zip(edges, result, node.input_meta):
        if edge is None or g is None:
            continue
        if not isinstance(g, Tensor):
            raise AutogradError(f"backward of {node.op_name()} returned a {type(g).__name__}, not a Tensor")
        shape, dtype = meta
        data = g._data
        if rule is not None:
            shape = (batch, *shape)
        if data.shape != shape:
            g = _sum_to(g, shape, rule is not None)
            data = g._data
        if data.dtype != dtype:
            from .dtypes import from_numpy_dtype

            g = g._cast(from_numpy_dtype(dtype))
        if check_nan:
            _check_finite(node, g)
        # _add_to, inlined: this runs for every edge of every backward
        target, nr = edge
        buf = buffers.get(id(target))
        if buf is None:
            buf = buffers[id(target)] = [None] * target.num_outputs
            buf.append(target)  # keeps the node alive while its gradient waits
        cur = buf[nr]
        buf[nr] = g if cur is None else cur + g


def _check_finite(node: Any, g: Tensor) -> None:
    xp = g._device.xp
    if not bool(xp.isfinite(g._data).all()):
        where = node.forward_trace or "(the forward call was made before anomaly detection was on)\n"
        raise AutogradError(
            f"function {node.op_name()}Backward returned NaN or Inf values in its gradient.\n"
            f"The forward call that created it:\n{where}"
        )


def backward(
    tensors: Sequence[Tensor],
    grad_tensors: Sequence[Tensor | None] | None = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    inputs: Any = None,
) -> None:
    """Accumulate gradients of ``tensors`` into the leaves' ``.grad``.

    With ``inputs``, only those tensors receive gradients.
    """
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    if grad_tensors is None or isinstance(grad_tensors, Tensor):
        grad_tensors = [grad_tensors] * len(tensors) if grad_tensors is None else [grad_tensors]
    if len(grad_tensors) != len(tensors):
        raise AutogradError(f"backward() got {len(grad_tensors)} gradient(s) for {len(tensors)} tensor(s)")
    if inputs is None:
        run_backward(tensors, grad_tensors, retain_graph, create_graph)
        return
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if not inputs:
        raise AutogradError("the inputs argument of backward() cannot be empty")
    grads = run_backward(tensors, grad_tensors, retain_graph, create_graph, capture=inputs, allow_unused=True)
    for t, g in zip(inputs, grads or ()):
        if g is None:
            continue
        if t._grad_fn is None:
            t._edge()[0].accumulate(g, create_graph)  # leaf hooks already ran in the engine
        elif not t._retains_grad:  # a retain_grad() hook already stored it
            g = g if create_graph else g.detach()
            t._grad = g if t._grad is None else t._grad + g


def grad(
    outputs: Any,
    inputs: Any,
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool | None = None,
    materialize_grads: bool = False,
) -> tuple[Tensor | None, ...]:
    """Gradients of ``outputs`` with respect to ``inputs``, returned (not accumulated).

    As ``torch.autograd.grad``: ``create_graph=True`` records the backward so
    the result can be differentiated again.
    """
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None:
        gos: list[Tensor | None] = [None] * len(outs)
    elif isinstance(grad_outputs, Tensor):
        gos = [grad_outputs]
    else:
        gos = list(grad_outputs)
    if not ins:
        raise AutogradError("grad() needs at least one input to differentiate with respect to")
    if len(gos) != len(outs):
        raise AutogradError(f"grad_outputs has {len(gos)} entries for {len(outs)} outputs")
    if allow_unused is None:
        allow_unused = materialize_grads
    result = run_backward(outs, gos, retain_graph, create_graph, capture=ins, allow_unused=allow_unused) or []
    if materialize_grads:
        result = [
            g if g is not None else Tensor._make(t._device.xp.zeros_like(t._data), t._device)
            for g, t in zip(result, ins)
        ]
    return tuple(result)
