"""TensorFlow-style ``GradientTape`` on axonml's engine.

::

    with axonml.GradientTape() as tape:
        tape.watch(x)              # x need not require grad
        y = f(x, w)                # w (requires_grad=True) is watched automatically
    dx, dw = tape.gradient(y, [x, w])

How it maps onto the engine (the choices, and why):

- axonml records a graph for every op on tensors that require grad. The tape
  remembers which part of it was made while it was recording (every recorded
  node has a creation number; the tape keeps the ranges during which it
  recorded), and ``gradient()`` flows only through those nodes. So, as in
  TensorFlow, ops done before the ``with`` block or inside
  ``tape.stop_recording()`` are constants to this tape, and each nested tape
  has its own view of the same graph.
- ``watch(t)`` on a tensor that does not require grad switches it to
  ``requires_grad=True`` for the time the tape records (so the ops on it are
  recorded), and switches it back when the tape exits: the caller's tensor is
  left as it was. (A watched leaf therefore cannot be modified in place
  inside the block, as any leaf that requires grad.)
- With ``watch_accessed_variables=True`` (the default) every tensor that
  requires grad (a ``Parameter``, say) counts as watched; with False only
  tensors passed to ``watch()`` do, and gradients for others are None.
- A target that is not a scalar is differentiated as the sum of its
  elements (TensorFlow's rule), unless ``output_gradients`` says otherwise.
- While any tape is recording (an outer tape, or this one inside its own
  block), ``gradient()`` records the gradient computation too, so an outer
  tape gives second derivatives. Otherwise a non-persistent tape frees the
  saved tensors of the graph it used, and a second ``gradient()`` raises.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from ..core.creation import ones_like, zeros, zeros_like
from ..core.dtypes import is_float_np
from ..core.engine import NotBatchableError, run_backward
from ..core.function import current_seq
from ..core.grad_mode import enable_grad
from ..core.tensor import Tensor
from ..errors import AutogradError, DTypeError, ShapeError
from .batched import batch_rule

__all__ = ["GradientTape"]

# The tapes open in this thread or task, innermost last.
_ACTIVE: contextvars.ContextVar[tuple[GradientTape, ...]] = contextvars.ContextVar("axonml_tapes", default=())

_UNCONNECTED = ("none", "zero")


class GradientTape:
    """Records operations for automatic differentiation, as ``tf.GradientTape``.

    ``persistent=True`` allows several ``gradient()``/``jacobian()`` calls;
    ``watch_accessed_variables=False`` makes only ``watch()``-ed tensors sources.
    """

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True) -> None:
        self._persistent = bool(persistent)
        self._watch_accessed = bool(watch_accessed_variables)
        self._ranges: list[list[int]] = []  # [start, end] of node creation numbers; end -1 while open
        self._watched: dict[int, Tensor] = {}
        self._switched: list[Tensor] = []  # tensors this tape set to requires_grad, restored on exit
        self._in_block = False
        self._used = False
        self._token: contextvars.Token[tuple[GradientTape, ...]] | None = None

    # ----- recording -------------------------------------------------------------------
    def __enter__(self) -> GradientTape:
        if self._in_block:
            raise AutogradError("this GradientTape is already recording: a tape cannot be entered twice at once")
        self._in_block = True
        self._ranges.append([current_seq(), -1])
        self._token = _ACTIVE.set((*_ACTIVE.get(), self))
        self._grad_mode = enable_grad()  # a tape records even inside no_grad, as TensorFlow's does
        self._grad_mode.__enter__()
        for t in self._watched.values():  # entered again: what it watched is tracked again
            self._track(t)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._grad_mode.__exit__(*exc)
        self._close_range()
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None
        self._in_block = False
        for t in self._switched:
            heir = next((tape for tape in _ACTIVE.get() if id(t) in tape._watched), None)
            if heir is not None:
                heir._switched.append(t)  # an enclosing tape still watches it
            else:
                t._requires_grad = False
        self._switched = []

    @property
    def _recording(self) -> bool:
        return bool(self._ranges) and self._ranges[-1][1] == -1

    def _close_range(self) -> None:
        if self._recording:
            self._ranges[-1][1] = current_seq()

    @contextlib.contextmanager
    def stop_recording(self) -> Iterator[None]:
        """Ops inside this block are not recorded by this tape (other tapes are not affected)."""
        if not self._recording:
            raise AutogradError("GradientTape.stop_recording() needs the tape to be recording (inside its block)")
        self._close_range()
        try:
            yield
        finally:
            self._ranges.append([current_seq(), -1])

    def reset(self) -> None:
        """Forget everything recorded so far (inside the block, recording goes on from here)."""
        recording = self._recording
        self._ranges = [[current_seq(), -1]] if recording else []
        self._used = False

    def watch(self, tensor: Any) -> None:
        """Make ``tensor`` (or each tensor of a list/tuple/dict) a source for ``gradient()``."""
        if not self._in_block:
            raise AutogradError("GradientTape.watch() must be called inside the tape's `with` block")
        for t in _flatten(tensor)[0]:
            if not isinstance(t, Tensor):
                raise TypeError(f"GradientTape.watch() takes tensors, got {type(t).__name__}")
            if not is_float_np(t._data.dtype):
                raise DTypeError(f"GradientTape.watch(): only floating point tensors can be watched, got {t.dtype}")
            self._watched[id(t)] = t
            self._track(t)

    def _track(self, t: Tensor) -> None:
        if not t._requires_grad:
            t._requires_grad = True  # a tensor without requires_grad is a leaf: switching it is legal
            self._switched.append(t)

    def _is_watched(self, t: Tensor) -> bool:
        return id(t) in self._watched or (self._watch_accessed and t._requires_grad)

    def _records(self, node: Any) -> bool:
        seq = node.seq
        return any(start <= seq and (end == -1 or seq < end) for start, end in self._ranges)

    # ----- differentiation -------------------------------------------------------------
    def gradient(self, target: Any, sources: Any, output_gradients: Any = None,
                 unconnected_gradients: str = "none") -> Any:
        """d(sum of ``target``)/d``sources``, in the structure of ``sources`` (tensor, list, tuple or dict).

        ``output_gradients`` (same structure as ``target``) weights each target
        element; a source the target does not depend on gets None, or zeros
        with ``unconnected_gradients="zero"``.
        """
        if unconnected_gradients not in _UNCONNECTED:
            raise ValueError(f'unconnected_gradients must be "none" or "zero", got {unconnected_gradients!r}')
        targets, _ = _flatten(target)
        srcs, rebuild = _sources(sources)
        grads_out: list[Any]
        if output_gradients is None:
            grads_out = [None] * len(targets)
        else:
            grads_out, _ = _flatten(output_gradients)
            if len(grads_out) != len(targets):
                raise ShapeError(f"output_gradients has {len(grads_out)} tensors for {len(targets)} targets")
        roots, gos = [], []
        for t, g in zip(targets, grads_out):
            if not isinstance(t, Tensor):
                raise TypeError(f"GradientTape.gradient(): targets must be tensors, got {type(t).__name__}")
            if not t._requires_grad:
                continue  # not computed from anything watched: contributes nothing
            if g is None:
                g = ones_like(t)
            elif not isinstance(g, Tensor) or g.shape != t.shape:
                got = g.shape if isinstance(g, Tensor) else type(g).__name__
                raise ShapeError(f"output gradient {got} for a target of shape {t.shape}")
            roots.append(t)
            gos.append(g)
        self._begin_use()
        results = self._run(roots, gos, srcs)
        filled = [_fill(r, s, unconnected_gradients) for r, s in zip(results, srcs)]
        return rebuild(iter(filled))

    def jacobian(self, target: Tensor, sources: Any, unconnected_gradients: str = "none",
                 parallel_iterations: int | None = None, experimental_use_pfor: bool = True) -> Any:
        """For each source, the Jacobian of ``target``: shape ``target.shape + source.shape``.

        One batched backward when every op has a batched rule, else one per
        target element. ``parallel_iterations``/``experimental_use_pfor`` are
        TensorFlow's knobs, accepted for compatibility and unused.
        """
        self._begin_use()
        if unconnected_gradients not in _UNCONNECTED:
            raise ValueError(f'unconnected_gradients must be "none" or "zero", got {unconnected_gradients!r}')
        srcs, rebuild = _sources(sources)
        n = target._data.size
        blocks: list[Tensor | None] = [None] * len(srcs)
        if target._requires_grad and n:
            xp = target._device.xp
            eye = Tensor._make(xp.eye(n, dtype=target._data.dtype).reshape((n, *target.shape)), target._device)
            rows = self._rows(target, eye, srcs)
            blocks = [None if r is None else r.reshape(target.shape + s.shape) for r, s in zip(rows, srcs)]
        out = [
            b if b is not None or (unconnected_gradients == "none" and n)
            else zeros(target.shape + s.shape, dtype=s.dtype, device=s.device)
            for b, s in zip(blocks, srcs)
        ]
        return rebuild(iter(out))

    def batch_jacobian(self, target: Tensor, source: Tensor, unconnected_gradients: str = "none",
                       parallel_iterations: int | None = None, experimental_use_pfor: bool = True) -> Any:
        """Per-example Jacobians: ``target`` (B, ...) and ``source`` (B, ...) give (B, *target[1:], *source[1:]).

        Assumes, as TensorFlow does, that example ``b`` of the target depends
        only on example ``b`` of the source: one backward per target feature
        (or one batched backward) then gives every example's row at once.
        """
        self._begin_use()
        if unconnected_gradients not in _UNCONNECTED:
            raise ValueError(f'unconnected_gradients must be "none" or "zero", got {unconnected_gradients!r}')
        if target.ndim < 1 or source.ndim < 1 or target.shape[0] != source.shape[0]:
            raise ShapeError(
                f"batch_jacobian needs target and source with the same first (batch) dimension, got {target.shape} "
                f"and {source.shape}"
            )
        b = target.shape[0]
        feats = target._data.size // b if b else 0
        out_shape = (b, *target.shape[1:], *source.shape[1:])
        if not target._requires_grad or feats == 0 or b == 0:
            return None if unconnected_gradients == "none" and b and feats else zeros(
                out_shape, dtype=source.dtype, device=source.device)
        xp = target._device.xp
        # row f: ones at feature f of every example
        basis = xp.zeros((feats, b, feats), dtype=target._data.dtype)
        basis[xp.arange(feats), :, xp.arange(feats)] = 1
        gos = Tensor._make(basis.reshape((feats, *target.shape)), target._device)
        (rows,) = self._rows(target, gos, [source])
        if rows is None:
            if unconnected_gradients == "none":
                return None
            return zeros(out_shape, dtype=source.dtype, device=source.device)
        # (F, B, *S) -> (B, F, *S) -> (B, *T[1:], *S[1:])
        rows = rows.permute((1, 0, *range(2, rows.ndim)))
        return rows.reshape(out_shape)

    # ----- internals -------------------------------------------------------------------
    def _begin_use(self) -> None:
        if self._used and not self._persistent:
            raise AutogradError(
                "a non-persistent GradientTape can compute only one set of gradients (or Jacobians); "
                "create it with GradientTape(persistent=True) to call gradient() more than once"
            )
        self._used = True

    def _create_graph(self) -> bool:
        return any(tape._recording for tape in _ACTIVE.get())

    def _run(self, roots: list[Tensor], gos: list[Tensor], srcs: list[Any],
             batch: bool = False) -> list[Tensor | None]:
        """The gradients reaching each source (None for unwatched or unreached ones)."""
        capture_at = [
            i for i, s in enumerate(srcs)
            if isinstance(s, Tensor) and is_float_np(s._data.dtype) and self._is_watched(s)
        ]
        results: list[Tensor | None] = [None] * len(srcs)
        if not roots or not capture_at:
            return results
        create_graph = self._create_graph()
        retain = self._persistent or create_graph or batch
        flipped = []
        for i in capture_at:  # watched tensors that this tape switched back on exit take part again
            s = srcs[i]
            if not s._requires_grad:
                s._requires_grad = True
                flipped.append(s)
        try:
            got = run_backward(
                roots, gos, retain, create_graph, capture=[srcs[i] for i in capture_at], allow_unused=True,
                node_filter=self._records, batch_rule=batch_rule if batch else None,
            )
        finally:
            for s in flipped:
                s._requires_grad = False
        for i, g in zip(capture_at, got or ()):
            results[i] = g
        return results

    def _rows(self, target: Tensor, gos: Tensor, srcs: list[Any]) -> list[Tensor | None]:
        """Gradients for a stack of grad-output rows ``gos`` (R, *target.shape): each (R, *source.shape)."""
        try:
            return self._run([target], [gos], srcs, batch=True)
        except NotBatchableError:
            pass
        per_src: list[list[Tensor | None]] = [[] for _ in srcs]
        persistent, self._persistent = self._persistent, True  # the rows share one graph
        try:
            for r in range(gos.shape[0]):
                for acc, g in zip(per_src, self._run([target], [gos[r]], srcs)):
                    acc.append(g)
        finally:
            self._persistent = persistent
        from ..ops.shape import stack

        out: list[Tensor | None] = []
        for s, acc in zip(srcs, per_src):
            if all(g is None for g in acc):
                out.append(None)
            else:
                out.append(stack([g if g is not None else zeros_like(s) for g in acc]))
        return out


def _fill(g: Tensor | None, source: Any, unconnected: str) -> Any:
    if g is None and unconnected == "zero" and isinstance(source, Tensor):
        return zeros_like(source)
    return g


def _sources(struct: Any) -> tuple[list[Tensor], Any]:
    srcs, rebuild = _flatten(struct)
    for s in srcs:
        if not isinstance(s, Tensor):
            raise TypeError(f"GradientTape: sources must be tensors (or lists/tuples/dicts of them), got "
                            f"{type(s).__name__}")
    return srcs, rebuild


def _flatten(struct: Any) -> tuple[list[Any], Any]:
    """The tensors of a nested tensor/list/tuple/dict, and a function rebuilding it from an iterator."""
    if isinstance(struct, dict):
        keys = list(struct)
        parts = [_flatten(struct[k]) for k in keys]
        leaves = [leaf for p in parts for leaf in p[0]]
        return leaves, lambda it: {k: p[1](it) for k, p in zip(keys, parts)}
    if isinstance(struct, list | tuple):
        parts = [_flatten(s) for s in struct]
        leaves = [leaf for p in parts for leaf in p[0]]
        kind = type(struct)
        if kind not in (list, tuple):  # a named tuple
            return leaves, lambda it: kind(*(p[1](it) for p in parts))
        return leaves, lambda it: kind(p[1](it) for p in parts)
    return [struct], lambda it: next(it)
