"""The Tensor: one array of its device's array module plus autograd state.

Math methods and operators are bound onto the class by the modules that
define the ops (``core/prims`` for primitives, ``ops/`` for compositions), so
that this file stays about state: data, device, dtype, grad, graph links,
versions and views. Conversions (``to``, ``float``, ``numpy``, ``item``,
``__repr__``, ...) are written in ``conversion.py`` and gradient hooks
(``register_hook``, ``retain_grad``) in ``accumulate.py``; the class body
assigns them as methods.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

import numpy as np

from ..backend import CPU, Device
from ..errors import AutogradError, DTypeError
from . import accumulate as _acc
from . import conversion as _conv
from . import dtypes as _dt
from .accumulate import AccumulateGrad


class Tensor:
    """An n-dimensional array on a device, with reverse- and forward-mode autograd.

    Build tensors with :func:`axonml.tensor` and the other creation functions;
    ``Tensor(data, ...)`` takes the same arguments as ``axonml.tensor``.
    """

    __slots__ = (
        "_data", "_device", "_requires_grad", "_grad", "_grad_fn", "_output_nr", "_version",
        "_base", "_tangent", "_grad_acc", "_retains_grad", "_vfn", "_view_version", "_leaf_hooks", "__weakref__",
    )
    __array_priority__ = 1000  # NumPy defers to our reflected operators

    _data: Any
    _device: Device
    _requires_grad: bool
    _grad: Tensor | None
    _grad_fn: Any
    _output_nr: int
    _version: list[int]  # one box shared by a tensor and its views
    _base: Tensor | None
    _tangent: Tensor | None
    _grad_acc: Any
    _retains_grad: bool
    _vfn: Any
    _view_version: int
    _leaf_hooks: list[Any] | None

    if TYPE_CHECKING:
        # Math methods and operators are bound at import by core/bind.py and axonml.ops;
        # these declarations only tell the type checker they exist.
        def __getattr__(self, name: str) -> Any: ...
        def __getitem__(self, index: Any) -> Tensor: ...
        def __setitem__(self, index: Any, value: Any) -> None: ...
        def __add__(self, other: Any) -> Tensor: ...
        def __radd__(self, other: Any) -> Tensor: ...
        def __iadd__(self, other: Any) -> Tensor: ...
        def __sub__(self, other: Any) -> Tensor: ...
        def __rsub__(self, other: Any) -> Tensor: ...
        def __isub__(self, other: Any) -> Tensor: ...
        def __mul__(self, other: Any) -> Tensor: ...
        def __rmul__(self, other: Any) -> Tensor: ...
        def __imul__(self, other: Any) -> Tensor: ...
        def __truediv__(self, other: Any) -> Tensor: ...
        def __rtruediv__(self, other: Any) -> Tensor: ...
        def __itruediv__(self, other: Any) -> Tensor: ...
        def __floordiv__(self, other: Any) -> Tensor: ...
        def __rfloordiv__(self, other: Any) -> Tensor: ...
        def __mod__(self, other: Any) -> Tensor: ...
        def __rmod__(self, other: Any) -> Tensor: ...
        def __pow__(self, other: Any) -> Tensor: ...
        def __rpow__(self, other: Any) -> Tensor: ...
        def __matmul__(self, other: Any) -> Tensor: ...
        def __rmatmul__(self, other: Any) -> Tensor: ...
        def __and__(self, other: Any) -> Tensor: ...
        def __or__(self, other: Any) -> Tensor: ...
        def __xor__(self, other: Any) -> Tensor: ...
        def __lt__(self, other: Any) -> Tensor: ...
        def __le__(self, other: Any) -> Tensor: ...
        def __gt__(self, other: Any) -> Tensor: ...
        def __ge__(self, other: Any) -> Tensor: ...
        def __eq__(self, other: Any) -> Tensor: ...  # type: ignore[override]
        def __ne__(self, other: Any) -> Tensor: ...  # type: ignore[override]
        def __neg__(self) -> Tensor: ...
        def __pos__(self) -> Tensor: ...
        def __abs__(self) -> Tensor: ...
        def __invert__(self) -> Tensor: ...

    def __init__(self, data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> None:
        from .creation import _to_array

        arr, dev = _to_array(data, dtype, device)
        _init(self, arr, dev)
        if requires_grad:
            self.requires_grad_(True)

    @staticmethod
    def _make(data: Any, device: Device) -> Tensor:
        """Wrap an array already on ``device`` (no checks: internal fast path).

        :func:`_init`'s assignments, inlined: every op result passes here, and the call cost as much as
        the body (a test keeps the two in step)."""
        t = _new(Tensor)
        t._data = data
        t._device = device
        t._requires_grad = False
        t._grad = None
        t._grad_fn = None
        t._output_nr = 0
        t._version = [0]
        t._base = None
        t._tangent = None
        t._grad_acc = None
        t._retains_grad = False
        t._vfn = None
        t._leaf_hooks = None
        return t

    # ----- state ---------------------------------------------------------------
    @property
    def data(self) -> Tensor:
        """This tensor's values, detached from the graph (shares memory)."""
        return self.detach()

    @data.setter
    def data(self, value: Tensor) -> None:
        if not isinstance(value, Tensor):
            raise TypeError(f"Tensor.data must be set to a Tensor, got {type(value).__name__}")
        self._data = value._data
        self._device = value._device

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape  # type: ignore[no-any-return]

    def size(self, dim: int | None = None) -> Any:
        """The shape, or the size of dimension ``dim``."""
        if dim is None:
            return self._data.shape
        return self._data.shape[_wrap_dim(dim, self._data.ndim)]

    @property
    def ndim(self) -> int:
        return self._data.ndim  # type: ignore[no-any-return]

    def dim(self) -> int:
        return self._data.ndim  # type: ignore[no-any-return]

    def numel(self) -> int:
        return int(self._data.size)

    def nelement(self) -> int:
        return int(self._data.size)

    @property
    def dtype(self) -> _dt.dtype:
        return _dt.from_numpy_dtype(self._data.dtype)

    @property
    def device(self) -> Device:
        return self._device

    @property
    def is_cuda(self) -> bool:
        return self._device.type == "cuda"

    def is_floating_point(self) -> bool:
        return _dt.from_numpy_dtype(self._data.dtype).is_floating_point

    def element_size(self) -> int:
        return int(self._data.itemsize)

    @property
    def itemsize(self) -> int:
        return int(self._data.itemsize)

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)

    def stride(self, dim: int | None = None) -> Any:
        """Strides in elements, as PyTorch reports them."""
        s = tuple(st // self._data.itemsize for st in self._data.strides)
        return s if dim is None else s[_wrap_dim(dim, self._data.ndim)]

    def is_contiguous(self) -> bool:
        return bool(self._data.flags.c_contiguous)

    def data_ptr(self) -> int:
        if self._device is CPU:
            return int(self._data.__array_interface__["data"][0])
        return int(self._data.data.ptr)

    @property
    def _version_count(self) -> int:
        return self._version[0]

    # ----- autograd state -------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        self.requires_grad_(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set whether autograd records ops on this leaf tensor."""
        if self._grad_fn is not None:
            if not requires_grad:
                raise AutogradError(
                    "requires_grad can only be changed on leaf tensors; use detach() to get a non-leaf's values"
                )
            return self
        if requires_grad and not _dt.from_numpy_dtype(self._data.dtype).is_floating_point:
            raise DTypeError(f"only floating point tensors can require gradients, got {self.dtype}")
        self._requires_grad = bool(requires_grad)
        return self

    @property
    def grad(self) -> Tensor | None:
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"grad must be a Tensor or None, got {type(value).__name__}")
            if value.shape != self.shape:
                from ..errors import ShapeError

                raise ShapeError(f"grad of shape {value.shape} assigned to a tensor of shape {self.shape}")
        self._grad = value

    @property
    def grad_fn(self) -> Any:
        if self._vfn is not None and self._view_version != self._version[0] and self._grad_fn is not None:
            self._refresh_view()
        return self._grad_fn

    @property
    def is_leaf(self) -> bool:
        return self._grad_fn is None

    @property
    def output_nr(self) -> int:
        return self._output_nr

    @property
    def _view_fn(self) -> Any:
        """How to remake this view from its base (set on views recorded by autograd), or None."""
        return self._vfn

    @_view_fn.setter
    def _view_fn(self, fn: Any) -> None:
        self._vfn = fn
        self._view_version = self._version[0]

    def _refresh_view(self) -> None:
        """Remake a view's history from its base after the shared memory was written in place.

        An in-place op on the base (or on another view of it) changes the base's
        history; a view made before that must read its values from the new history.
        """
        from .grad_mode import GRAD_ENABLED

        self._view_version = self._version[0]
        base = self._base
        if base is None or not base._requires_grad:
            return
        token = GRAD_ENABLED.set(True)
        try:
            fresh = self._vfn(base)
        finally:
            GRAD_ENABLED.reset(token)
        if fresh._grad_fn is not None:
            self._grad_fn, self._output_nr = fresh._grad_fn, fresh._output_nr

    def _edge(self) -> tuple[Any, int]:
        """Where a gradient for this tensor goes: its node, or its accumulator if a leaf."""
        if self._grad_fn is not None:
            if self._vfn is not None and self._view_version != self._version[0]:
                self._refresh_view()  # the base was written in place after this view was made
            return (self._grad_fn, self._output_nr)
        acc = self._grad_acc
        if acc is None:
            acc = self._grad_acc = AccumulateGrad(self)
        return (acc, 0)

    def detach(self) -> Tensor:
        """A new tensor sharing this one's memory and version, cut from the graph.

        As in PyTorch it is not a view for autograd: writing into it in place
        records a history of its own and leaves this tensor's alone.
        """
        t = Tensor._make(self._data, self._device)
        t._version = self._version
        return t

    def detach_(self) -> Tensor:
        """Cut this tensor from the graph in place; it becomes a leaf."""
        if self._base is not None and self._base._requires_grad:
            raise AutogradError("detach_() on a view of a tensor that requires grad is not allowed; use detach()")
        self._grad_fn = None
        self._requires_grad = False
        return self

    retain_grad = _acc.retain_grad
    register_hook = _acc.register_hook

    @property
    def retains_grad(self) -> bool:
        return bool(self._retains_grad)

    def backward(
        self,
        gradient: Tensor | None = None,
        retain_graph: bool | None = None,
        create_graph: bool = False,
        inputs: Any = None,
    ) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``."""
        from .engine import backward

        backward([self], [gradient], retain_graph=retain_graph, create_graph=create_graph, inputs=inputs)

    # ----- conversion (conversion.py) -------------------------------------------
    to = _conv.to
    _cast = _conv.cast
    cpu = _conv.cpu
    cuda = _conv.cuda
    type = _conv.tensor_type
    type_as = _conv.type_as
    float = _conv.cast_method("float", _dt.float32)
    double = _conv.cast_method("double", _dt.float64)
    half = _conv.cast_method("half", _dt.float16)
    bfloat16 = _conv.cast_method("bfloat16", _dt.bfloat16)
    long = _conv.cast_method("long", _dt.int64)
    int = _conv.cast_method("int", _dt.int32)
    short = _conv.cast_method("short", _dt.int16)
    char = _conv.cast_method("char", _dt.int8)
    byte = _conv.cast_method("byte", _dt.uint8)
    bool = _conv.cast_method("bool", _dt.bool_)
    _host = _conv.host
    numpy = _conv.numpy
    item = _conv.item
    tolist = _conv.tolist
    __array__ = _conv.to_array
    __dlpack__ = _conv.dlpack
    __dlpack_device__ = _conv.dlpack_device
    __bool__ = _conv.truth
    __float__ = _conv.to_float
    __int__ = _conv.to_int
    __index__ = _conv.to_index
    __repr__ = _conv.tensor_repr

    # ----- Python protocol ------------------------------------------------------
    def __len__(self) -> builtins.int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return int(self._data.shape[0])

    def __iter__(self) -> Any:
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __hash__(self) -> builtins.int:
        return id(self)

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (_rebuild, (self._host(), str(self._device), self._requires_grad))

    def __deepcopy__(self, memo: dict[builtins.int, Any]) -> Tensor:
        if self._grad_fn is not None:
            raise AutogradError("only leaf tensors support deepcopy; detach() first")
        t = type(self).__new__(type(self))
        _init(t, self._data.copy(), self._device)
        t._requires_grad = self._requires_grad
        if self._grad is not None:
            t._grad = self._grad.__deepcopy__(memo)
        memo[id(self)] = t
        return t


def _rebuild(data: np.ndarray, device: str, requires_grad: bool) -> Tensor:
    t = Tensor._make(data, CPU)
    if device != "cpu":
        t = t.to(device)
    t._requires_grad = requires_grad
    return t


_new = object.__new__


# what a new tensor's other slots start as (besides its array, its device and a version box of its own)
_FRESH = (("_requires_grad", False), ("_grad", None), ("_grad_fn", None), ("_output_nr", 0), ("_base", None),
          ("_tangent", None), ("_grad_acc", None), ("_retains_grad", False), ("_vfn", None), ("_leaf_hooks", None))


def _init(t: Tensor, data: Any, device: Device) -> None:
    """Give ``t`` (made by ``Tensor.__init__`` or a subclass) the slots :meth:`Tensor._make` sets."""
    t._data = data
    t._device = device
    t._version = [0]
    for name, value in _FRESH:
        setattr(t, name, value)


def _wrap_dim(dim: int, ndim: int) -> int:
    n = max(ndim, 1)
    if not -n <= dim < n:
        from ..errors import IndexingError

        raise IndexingError(f"dimension {dim} out of range for a tensor with {ndim} dimension(s)")
    return dim % n


def is_tensor(obj: Any) -> bool:
    return isinstance(obj, Tensor)

