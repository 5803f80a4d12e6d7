"""State kinds as types: ``Parameter`` (trained) and ``Buffer`` (kept, not trained).

Both are ``Tensor`` subclasses that share memory with the tensor they wrap, so
optimizers, checkpoints and later quantization or verification can select a
module's tensors by kind (``isinstance(t, Parameter)``) instead of by name.
Results of ops on them are plain Tensors, as in PyTorch.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ..backend import CPU
from ..core.creation import as_tensor
from ..core.tensor import Tensor, _init


def _adopt(obj: Tensor, data: Any, requires_grad: bool) -> None:
    """Make ``obj`` a leaf sharing ``data``'s array and version counter (as ``data.detach()`` would)."""
    src = data if isinstance(data, Tensor) else as_tensor(data)
    _init(obj, src._data, src._device)
    obj._version = src._version  # in-place writes through either name are seen by autograd's checks
    if requires_grad:
        obj.requires_grad_(True)


class Parameter(Tensor):
    """A tensor that is a module's trainable state: assigning one to a module attribute registers it.

    ``Parameter(data=None, requires_grad=True)`` shares memory with ``data``
    (a Tensor, or anything ``axonml.as_tensor`` accepts); with no data it is an
    empty float tensor. A parameter is always a leaf.
    """

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            data = Tensor._make(np.empty((0,), dtype=np.float32), CPU)
        _adopt(self, data, requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo: dict[int, Any]) -> Parameter:
        if id(self) in memo:
            return memo[id(self)]  # type: ignore[no-any-return]
        result = super().__deepcopy__(memo)
        result.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return result  # type: ignore[return-value]

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (_rebuild, (type(self), self._host(), str(self._device), self._requires_grad, self.__dict__))


class Buffer(Tensor):
    """A tensor that is a module's non-trained state (running statistics, masks, counters).

    ``self.x = Buffer(t, persistent=True)`` inside a module registers ``x`` as a
    buffer, as ``register_buffer('x', t, persistent)`` does. Non-persistent
    buffers are left out of ``state_dict()``. A buffer shares memory with ``t``.
    """

    def __init__(self, data: Any, *, persistent: bool = True) -> None:
        requires_grad = data._requires_grad if isinstance(data, Tensor) else False
        _adopt(self, data, requires_grad)
        self.persistent = bool(persistent)

    def __deepcopy__(self, memo: dict[int, Any]) -> Buffer:
        if id(self) in memo:
            return memo[id(self)]  # type: ignore[no-any-return]
        result = super().__deepcopy__(memo)
        result.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return result  # type: ignore[return-value]

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (_rebuild, (type(self), self._host(), str(self._device), self._requires_grad, self.__dict__))


def _rebuild(cls: type, data: np.ndarray, device: str, requires_grad: bool, state: dict[str, Any]) -> Tensor:
    """Unpickle a Parameter or Buffer (Tensor's own pickling would give a plain Tensor back)."""
    t = Tensor._make(data, CPU)
    if device != "cpu":
        t = t.to(device)
    obj: Tensor = object.__new__(cls)
    _adopt(obj, t, requires_grad)
    obj.__dict__.update(state)
    return obj
