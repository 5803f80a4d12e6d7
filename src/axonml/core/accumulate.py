"""Where gradients land outside the graph: a leaf's ``.grad``, a retained ``.grad``, hooks.

``AccumulateGrad`` is the node a leaf tensor's gradient flows into; the engine
runs it last on each path. ``retain_grad`` and ``register_hook`` are Tensor
methods (assigned in ``tensor.py``'s class body) that attach to a node's
pre-hooks, or to a leaf's own hook list.
"""

from __future__ import annotations

import sys
import sysconfig
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AutogradError

if TYPE_CHECKING:
    from .tensor import Tensor


class AccumulateGrad:
    """The node of a leaf tensor: adds the incoming gradient to ``leaf.grad``."""

    num_outputs = 1
    next_edges: tuple[Any, ...] = ()
    input_meta: tuple[Any, ...] = ()
    pre_hooks = None
    released = False
    forward_trace = None

    def __init__(self, leaf: Tensor) -> None:
        self.leaf_ref = weakref.ref(leaf)

    def op_name(self) -> str:
        return "AccumulateGrad"

    def run_hooks(self, grad: Tensor) -> Tensor:
        """The leaf's ``register_hook`` hooks, in order; a returned tensor replaces the gradient."""
        leaf = self.leaf_ref()
        if leaf is None:
            return grad
        for hook in leaf._leaf_hooks or ():
            new = hook(grad)
            if new is not None:
                grad = new
        return grad

    def accumulate(self, grad: Tensor, create_graph: bool, handed_over: bool = False) -> None:
        """Add ``grad`` (hooks already applied) into ``leaf.grad``.

        ``handed_over``: the caller (the engine) holds no other reference to ``grad``, so
        its buffer may become ``leaf.grad`` without a copy when nothing else holds it.
        """
        leaf = self.leaf_ref()
        if leaf is None:
            return
        if leaf._grad is None:
            if create_graph:
                leaf._grad = grad
            elif handed_over and _sole_owner(grad):
                leaf._grad = _tensor.Tensor._make(grad._data, grad._device)
            else:  # own the buffer: later accumulation and optimizers work in place on it
                leaf._grad = _own(grad)
        elif create_graph or leaf._grad._requires_grad:
            leaf._grad = leaf._grad + grad
        else:
            leaf._grad._data += grad._data


# References to a gradient the engine hands over when nothing else holds it: the engine's local, the
# arguments of ``accumulate`` and ``_sole_owner``, getrefcount's own; to its array: the tensor's slot,
# ``arr`` and getrefcount's. A test checks both the steal and that a held gradient is copied.
_HANDED_OVER_REFS = 4
_ARRAY_REFS = 3
_BASE_REFS = 3  # a view's base: the view's own reference, ``base`` and getrefcount's
# Those counts hold for the GIL builds of CPython 3.10-3.13; 3.14 may keep borrowed references on the
# stack (lower counts) and free-threaded builds count differently: there every gradient is copied.
STEALS = sys.version_info < (3, 14) and not sysconfig.get_config_var("Py_GIL_DISABLED")


def _sole_owner(grad: Tensor) -> bool:
    """Whether ``grad``'s array can become a leaf's ``.grad`` as it is, as PyTorch steals a gradient
    with no other user: a C-contiguous array (NumPy or CuPy) owning its memory that no other tensor,
    view, saved node or hook holds (each of those adds a reference). Saves a copy of every weight
    gradient per step (the largest arrays of a backward; on a GPU, a launch per parameter)."""
    arr = grad._data
    if not STEALS or not arr.flags.c_contiguous:
        return False
    if type(arr) is np.ndarray:
        if not arr.flags.writeable:
            return False
    elif grad._device.type != "cuda":
        return False
    if sys.getrefcount(grad) > _HANDED_OVER_REFS or sys.getrefcount(arr) > _ARRAY_REFS:
        return False
    base = arr.base
    # a reshaped gradient (a convolution's weight gradient) is a view: stolen when only it holds its base
    return base is None or (base.base is None and base.size == arr.size and base.flags.c_contiguous
                            and sys.getrefcount(base) <= _BASE_REFS)


def _own(grad: Tensor) -> Tensor:
    """A gradient buffer nobody else holds: the same array may reach several leaves
    (through add, say), and optimizers update ``.grad`` in place."""
    return _tensor.Tensor._make(grad._device.xp.array(grad._data, copy=True, order="C"), grad._device)


def retain_grad(self: Tensor) -> None:
    """Keep ``.grad`` of this non-leaf tensor after backward."""
    if not self._requires_grad:
        raise AutogradError("retain_grad() on a tensor that does not require grad")
    if self._grad_fn is None or self._retains_grad:
        return
    self._retains_grad = True
    ref = weakref.ref(self)

    def keep(grad: Tensor) -> None:
        t = ref()
        if t is not None:
            g = grad.detach()
            t._grad = g if t._grad is None else t._grad + g

    self._grad_fn.register_prehook(self._output_nr, _RetainGradHook(keep))


def register_hook(self: Tensor, hook: Callable[[Tensor], Tensor | None]) -> RemovableHandle:
    """Call ``hook(grad)`` when this tensor's gradient is computed; a returned tensor replaces the grad."""
    if not self._requires_grad:
        raise AutogradError("cannot register a hook on a tensor that does not require grad")
    if self._grad_fn is not None:
        node, nr = self._grad_fn, self._output_nr
        node.register_prehook(nr, hook)
        return RemovableHandle(node.pre_hooks[nr], hook)
    if self._leaf_hooks is None:
        self._leaf_hooks = []
    self._leaf_hooks.append(hook)
    return RemovableHandle(self._leaf_hooks, hook)


class _RetainGradHook:
    """A pre-hook that stores the gradient and never changes it (the engine runs it after the others)."""

    def __init__(self, fn: Callable[[Tensor], None]) -> None:
        self.fn = fn

    def __call__(self, grad: Tensor) -> None:
        self.fn(grad)


class RemovableHandle:
    """Returned by ``register_hook``; ``remove()`` unregisters the hook."""

    def __init__(self, hooks: list[Any], hook: Any) -> None:
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


# last: tensor.py imports this module while it defines Tensor, so Tensor is read at call time
from . import tensor as _tensor  # noqa: E402
