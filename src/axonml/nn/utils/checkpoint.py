"""Activation checkpointing: trade compute for memory, as ``torch.utils.checkpoint``.

``checkpoint(fn, *args)`` runs ``fn`` without recording a graph, so none of its
intermediate activations stay alive: only its inputs are kept. When a
gradient reaches its outputs, ``fn`` runs again with the graph on, from the
random-number states the first run started from (dropout masks match), and
the gradient is propagated through that recomputed graph, privately, down to
the tensors ``fn`` read. Those come back to the main backward as the
gradients of the checkpoint node, so every ``.grad`` is accumulated once, in
the main pass, exactly as without checkpointing (``autograd.grad`` works too).

The private backward: after the recompute, each edge from a node recorded by
the recompute to a node outside it is pointed at a *sink* that keeps the
gradient it receives, for the duration of the private pass only. The edges
are restored afterwards, so a graph recorded by a differentiable backward
(``create_graph=True``) leads to the real tensors: second derivatives work.

The checkpoint node needs an edge to every tensor that requires grad and
that ``fn`` reads: its tensor arguments, and the tensors found by scanning
``fn`` (a Module's parameters; a bound method's module; a ``partial``'s
arguments; a function's closure, defaults and the globals it names,
recursively). A tensor the scan misses still gets its gradient, during the
checkpoint's own backward (a leaf's ``.grad`` is accumulated there, a
non-leaf's gradient is propagated on from there), as ``use_reentrant=True``
does for everything but the arguments.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ...backend import CPU
from ...core.accumulate import AccumulateGrad
from ...core.custom_function import Function
from ...core.engine import run_backward
from ...core.forward_ad import active as _fwd_active
from ...core.function import Node, current_seq
from ...core.grad_mode import enable_grad, is_grad_enabled
from ...core.random import _DEFAULTS, Generator
from ...core.tensor import Tensor
from ...errors import AutogradError
from ..module import Module

__all__ = ["checkpoint", "checkpoint_sequential"]


# ----- nested structures (tuples, lists, dicts) of arguments and results ------------------------------
def _flatten(obj: Any, leaves: list[Any]) -> Any:
    """Append the leaves of ``obj`` to ``leaves``; return the spec :func:`_unflatten` rebuilds it from."""
    if type(obj) in (tuple, list):
        return (type(obj), [_flatten(o, leaves) for o in obj])
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
        return (type(obj), [_flatten(o, leaves) for o in obj])
    if type(obj) is dict:
        return (dict, [(k, _flatten(v, leaves)) for k, v in obj.items()])
    leaves.append(obj)
    return None


def _unflatten(spec: Any, it: Iterator[Any]) -> Any:
    if spec is None:
        return next(it)
    kind, items = spec
    if kind is dict:
        return {k: _unflatten(s, it) for k, s in items}
    values = [_unflatten(s, it) for s in items]
    return kind(*values) if hasattr(kind, "_fields") else kind(values)


# ----- the tensors and generators a function reads ----------------------------------------------
def _scan(obj: Any, tensors: dict[int, Tensor], gens: dict[int, Generator], seen: set[int], depth: int = 0) -> None:
    """Collect the tensors that require grad and the generators reachable from ``obj`` (see the module doc)."""
    if depth > 6 or id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, Tensor):
        if obj._requires_grad:
            tensors.setdefault(id(obj), obj)
        return
    if isinstance(obj, Generator):
        gens.setdefault(id(obj), obj)
        return
    if isinstance(obj, Module):
        for p in obj.parameters():
            if p._requires_grad:
                tensors.setdefault(id(p), p)
        for m in obj.modules():  # a layer may hold its own generator
            gens.update((id(v), v) for v in vars(m).values() if isinstance(v, Generator))
        return
    if isinstance(obj, (str, bytes, int, float, complex, bool, type, types.ModuleType)) or obj is None:
        return
    items: list[Any] = []
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = list(obj)
    elif isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, functools.partial):
        items = [obj.func, *obj.args, *obj.keywords.values()]
    elif inspect.ismethod(obj):
        items = [obj.__self__, obj.__func__]
    elif isinstance(obj, types.FunctionType):
        items = _function_refs(obj)
    elif callable(obj) and hasattr(obj, "__dict__") and not isinstance(obj, types.BuiltinFunctionType):
        items = list(vars(obj).values())  # a callable object: what it holds
    for item in items:
        _scan(item, tensors, gens, seen, depth + 1)


def _function_refs(fn: types.FunctionType) -> list[Any]:
    """What a Python function can read: closure cells, defaults, and the globals its code names."""
    refs: list[Any] = []
    for cell in fn.__closure__ or ():
        try:
            refs.append(cell.cell_contents)
        except ValueError:  # a cell not yet filled
            continue
    refs.extend(fn.__defaults__ or ())
    refs.extend((fn.__kwdefaults__ or {}).values())
    if fn.__module__ is not None and fn.__module__.startswith("axonml."):
        return refs  # the library's own functions read no tensors from globals
    glob = fn.__globals__
    codes = [fn.__code__]
    while codes:
        code = codes.pop()
        refs.extend(glob[n] for n in code.co_names if n in glob)
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))  # lambdas, comprehensions
    return refs


# ----- random-number states ------------------------------------------------------------------------
def _rng_states(gens: list[Generator]) -> list[tuple[Generator, Tensor]]:
    return [(g, g.get_state()) for g in gens]


def _with_new_defaults(states: list[tuple[Generator, Tensor]]) -> list[tuple[Generator, Tensor]]:
    """Add the default generators made during the forward: they started from their initial seed, offset 0."""
    known = {id(g) for g, _ in states}
    for gen in list(_DEFAULTS.values()):
        if id(gen) not in known:
            raw = np.array([gen.initial_seed(), 0], dtype="<u8").view(np.uint8)
            states.append((gen, Tensor._make(raw, CPU)))
    return states


@contextmanager
def _rng_fork(states: list[tuple[Generator, Tensor]]) -> Iterator[None]:
    """Run with the generators at ``states``, then put them back where they were."""
    now = _rng_states([g for g, _ in states])
    for g, s in states:
        g.set_state(s)
    try:
        yield
    finally:
        for g, s in now:
            g.set_state(s)


# ----- the checkpoint node -------------------------------------------------------------------------
class _Call:
    """What the checkpoint node needs to run ``fn`` again: the function and its arguments' structure."""

    def __init__(self, fn: Callable[..., Any], spec: Any, leaves: list[Any], slots: list[int], rng: Any) -> None:
        self.fn, self.spec, self.leaves, self.slots, self.rng = fn, spec, leaves, slots, rng
        self.out_spec: Any = None
        self.out_leaves: list[Any] = []

    def run(self, tensors: tuple[Tensor, ...]) -> Any:
        """Call ``fn`` with the argument leaves at ``slots`` taken from ``tensors``."""
        leaves = list(self.leaves)
        for pos, i in enumerate(self.slots):
            if i >= 0:
                leaves[pos] = tensors[i]
        args, kwargs = _unflatten(self.spec, iter(leaves))
        return self.fn(*args, **kwargs)


class _Sink(Node):
    """Where the private backward delivers the gradient of one tensor outside the recomputed graph."""

    name = "CheckpointSink"

    def __init__(self, slot: int | None, edge: tuple[Any, int]) -> None:
        self.slot, self.edge = slot, edge
        self.grad: Tensor | None = None

    def backward(self, grad: Tensor) -> tuple[()]:  # type: ignore[override]
        self.grad = grad if self.grad is None else self.grad + grad
        return ()


def _internal(node: Any, start: int) -> bool:
    return getattr(node, "seq", -1) >= start


def _rewire(roots: list[Any], start: int, slots: dict[tuple[int, int], int],
            sinks: dict[tuple[int, int], _Sink]) -> list[tuple[Any, tuple[Any, ...]]]:
    """Point the recomputed graph's edges to outside nodes at sinks; return (node, original edges) to restore.

    An edge to a leaf that is not an input of the checkpoint node is kept: the
    private pass accumulates that leaf's ``.grad`` itself.
    """
    changed = []
    seen: set[int] = set()
    stack = [n for n in roots if _internal(n, start)]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        edges = node.next_edges
        new = list(edges)
        for i, e in enumerate(edges):
            if e is None:
                continue
            if _internal(e[0], start):
                stack.append(e[0])
                continue
            key = (id(e[0]), e[1])
            if key not in slots and isinstance(e[0], AccumulateGrad):
                continue
            sink = sinks.get(key)
            if sink is None:
                sink = sinks[key] = _Sink(slots.get(key), e)
            new[i] = (sink, 0)
        if new != list(edges):
            changed.append((node, edges))
            node.next_edges = tuple(new)
    return changed


class _Checkpoint(Function):
    """Runs ``call.fn`` without a graph; its backward recomputes and backpropagates privately."""

    @staticmethod
    def forward(ctx: Any, call: _Call, *tensors: Tensor) -> tuple[Any, ...]:
        ctx.call = call
        ctx.save_for_backward(*tensors)  # kept for the recompute, checked against in-place changes
        ctx.set_materialize_grads(False)
        out: list[Any] = []
        call.out_spec = _flatten(call.run(tensors), out)
        call.out_leaves = out
        if call.rng is not None:
            _with_new_defaults(call.rng)
        return tuple(o for o in out if isinstance(o, Tensor))

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        call: _Call = ctx.call
        tensors = ctx.saved_tensors
        create_graph = is_grad_enabled()  # the engine turns grad mode on only under create_graph=True
        with enable_grad():
            start = current_seq()
            if call.rng is not None:
                with _rng_fork(call.rng):
                    result = call.run(tensors)
            else:
                result = call.run(tensors)
        leaves: list[Any] = []
        _flatten(result, leaves)
        outs = [o for o in leaves if isinstance(o, Tensor)]
        if [(o._data.shape, o._data.dtype) for o in outs] != [m[:2] for m in ctx.out_meta]:
            raise AutogradError(
                "checkpoint: the recomputed forward gave outputs of other shapes or dtypes than the first run "
                "(the checkpointed function must be deterministic given its inputs and the random state)"
            )
        slots: dict[tuple[int, int], int] = {}
        for i, t in enumerate(tensors):
            if t._requires_grad:
                node, nr = t._edge()
                slots.setdefault((id(node), nr), i)
        sinks: dict[tuple[int, int], _Sink] = {}
        roots, root_grads = [], []
        for o, g in zip(outs, grads):
            if g is None or not o._requires_grad:
                continue
            node, nr = o._edge()
            if _internal(node, start):
                roots.append(o)
                root_grads.append(g)
                continue
            # an output that is an outside tensor as it was passed (fn returned an input): no private pass
            sink = sinks.setdefault((id(node), nr), _Sink(slots.get((id(node), nr)), (node, nr)))
            sink.backward(g)
        changed = _rewire([o._grad_fn for o in roots], start, slots, sinks)
        try:
            if roots:
                run_backward(roots, root_grads, retain_graph=create_graph, create_graph=create_graph)
        finally:
            for node, edges in changed:
                node.next_edges = edges
        grads_in: list[Tensor | None] = [None] * len(tensors)
        for sink in sinks.values():
            if sink.grad is None:
                continue
            if sink.slot is not None:
                grads_in[sink.slot] = sink.grad
            else:
                _propagate_outside(sink.edge, sink.grad, create_graph)
        return (None, *grads_in)


def _propagate_outside(edge: tuple[Any, int], grad: Tensor, create_graph: bool) -> None:
    """Backpropagate ``grad`` from a node outside the checkpoint that it did not know about (see the module doc)."""
    if edge[0].released:
        raise AutogradError(
            "checkpoint: the function read a non-leaf tensor that requires grad which checkpoint did not find "
            f"(produced by {edge[0].op_name()}), and the main backward already freed its graph; pass that tensor "
            "to checkpoint as an argument"
        )
    xp = grad._device.xp
    stand_in = Tensor._make(xp.broadcast_to(xp.zeros((), grad._data.dtype), grad.shape), grad._device)
    stand_in._requires_grad = True
    stand_in._grad_fn, stand_in._output_nr = edge
    # keep the outside graph: the main backward may still go through it on another path
    run_backward([stand_in], [grad], retain_graph=True, create_graph=create_graph)


# ----- public API -------------------------------------------------------------------------------------
def checkpoint(function: Callable[..., Any], *args: Any, use_reentrant: bool = False,
               preserve_rng_state: bool = True, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` without keeping its activations; they are recomputed in backward.

    As ``torch.utils.checkpoint.checkpoint``: the result (a Tensor, or
    tuples/lists/dicts holding Tensors and other values) is the same as
    ``function``'s, and so are the gradients reaching its arguments and the
    parameters it uses. ``function`` must be deterministic given its inputs
    and the random state, which is restored for the recompute when
    ``preserve_rng_state`` (the default generators of every device used, and
    any ``Generator`` passed in or held by ``function``).

    ``use_reentrant=False`` (default) gives the checkpoint node an edge to each
    tensor ``function`` reads (its tensor arguments, and the parameters and
    tensors found in it: see the module doc), so their gradients arrive in the
    main backward pass. ``use_reentrant=True`` takes positional arguments only
    and links the node to the tensor arguments only: the other tensors get
    their ``.grad`` accumulated during the checkpoint's own backward, so
    ``autograd.grad`` with respect to them, or ``backward(inputs=...)``, do
    not see them (as in PyTorch).

    With grad mode off, or when no tensor the function reads requires grad,
    or under forward-mode AD, the function simply runs (nothing to save).
    Nested checkpoints work.
    """
    if use_reentrant and kwargs:
        raise ValueError("checkpoint: unexpected keyword arguments with use_reentrant=True: " + ", ".join(kwargs))
    if not is_grad_enabled():
        return function(*args, **kwargs)
    leaves: list[Any] = []
    spec = _flatten((args, kwargs), leaves)
    tensors: dict[int, Tensor] = {}
    for leaf in leaves:
        if isinstance(leaf, Tensor):
            tensors.setdefault(id(leaf), leaf)
    if _fwd_active() and any(t._tangent is not None for t in tensors.values()):
        return function(*args, **kwargs)  # forward mode keeps no activations: nothing to save
    found: dict[int, Tensor] = {}
    gens: dict[int, Generator] = {}
    seen: set[int] = set()
    if not use_reentrant:
        _scan(function, found, gens, seen)
    for leaf in leaves:
        if isinstance(leaf, Generator):
            gens.setdefault(id(leaf), leaf)
    for t in found.values():
        tensors.setdefault(id(t), t)
    inputs = list(tensors.values())
    if not any(t._requires_grad for t in inputs):
        return function(*args, **kwargs)  # no gradient can reach a tensor we know of: run as is
    index = {id(t): i for i, t in enumerate(inputs)}
    slots = [index[id(leaf)] if isinstance(leaf, Tensor) else -1 for leaf in leaves]
    rng = None
    if preserve_rng_state:
        rng = _rng_states(list({id(g): g for g in [*_DEFAULTS.values(), *gens.values()]}.values()))
    # the tensors reach the node as its inputs (saved, version-checked, freed with it), not through the call
    call = _Call(function, spec, [None if isinstance(v, Tensor) else v for v in leaves], slots, rng)
    outs = iter(_Checkpoint.apply(call, *inputs))
    out_leaves, call.out_leaves = call.out_leaves, []  # the node must not keep its outputs alive
    return _unflatten(call.out_spec, (next(outs) if isinstance(o, Tensor) else o for o in out_leaves))


class _Segment:
    """Runs ``functions`` one after another: one segment of :func:`checkpoint_sequential`."""

    def __init__(self, functions: list[Callable[..., Any]]) -> None:
        self.functions = functions

    def __call__(self, x: Any) -> Any:
        for f in self.functions:
            x = f(x)
        return x


def checkpoint_sequential(functions: Any, segments: int, input: Any, use_reentrant: bool = False,  # noqa: A002
                          **kwargs: Any) -> Any:
    """Run a chain of modules/functions in ``segments`` parts, checkpointing all but the last.

    As ``torch.utils.checkpoint.checkpoint_sequential``: ``functions`` is a
    ``Sequential`` (its children are used) or a list of callables, each
    taking the previous one's output; only the inputs of the segments are kept,
    and each segment is recomputed in backward. ``preserve_rng_state`` may be
    passed as a keyword.
    """
    from ..containers import Sequential

    preserve = kwargs.pop("preserve_rng_state", True)
    if kwargs:
        raise ValueError("checkpoint_sequential: unexpected keyword arguments: " + ", ".join(kwargs))
    fns = list(functions.children()) if isinstance(functions, Sequential) else list(functions)
    if isinstance(segments, bool) or not isinstance(segments, int) or not 1 <= segments <= max(len(fns), 1):
        raise ValueError(f"checkpoint_sequential: segments must be an int in [1, {len(fns)}], got {segments!r}")
    size = len(fns) // segments
    end = -1
    x = input
    for start in range(0, size * (segments - 1), size):
        end = start + size - 1
        x = checkpoint(_Segment(fns[start:end + 1]), x, use_reentrant=use_reentrant, preserve_rng_state=preserve)
    return _Segment(fns[end + 1:])(x)  # the last segment's activations are needed at once: not checkpointed
