"""``Module.summary``: a layer table (output shapes, parameter counts, memory) from one real forward pass.

The model runs once on zeros of the given shape (or on the given tensors), in
eval mode and without recording a graph, with a forward hook on every
submodule; training flags are restored afterwards and no buffer changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..backend import CPU, as_device
from ..core import dtypes as _dt
from ..core.creation import zeros
from ..core.grad_mode import no_grad
from ..core.tensor import Tensor

if TYPE_CHECKING:
    from .module import Module


@dataclass
class LayerInfo:
    """One row: a submodule call."""

    name: str
    type: str
    depth: int
    output_shape: Any = None  # a list of ints, a list of such lists for several outputs, or None
    num_params: int = 0  # of the module and its submodules
    trainable: str = "--"  # "True", "False", "Partial", or "--" without parameters
    output_bytes: int = 0
    is_leaf: bool = True


@dataclass
class ModelSummary:
    """What :meth:`Module.summary` returns; ``str()`` (and ``repr()``) is the printed table."""

    model_name: str
    layers: list[LayerInfo] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    input_bytes: int = 0
    activation_bytes: int = 0  # outputs of the leaf layers: what a training step keeps for backward, roughly
    param_bytes: int = 0
    buffer_bytes: int = 0

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def total_bytes(self) -> int:
        """Input + activations + parameters + buffers (gradients and optimizer state not included)."""
        return self.input_bytes + self.activation_bytes + self.param_bytes + self.buffer_bytes

    def __str__(self) -> str:
        heads = ("Layer (type)", "Output Shape", "Param #", "Trainable")
        rows = [
            (
                "  " * max(r.depth - 1, 0) + f"{r.name} ({r.type})",
                _shape_text(r.output_shape),
                f"{r.num_params:,}",
                r.trainable,
            )
            for r in self.layers
        ]
        widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(heads)]
        width = sum(widths) + 3 * (len(widths) - 1)

        def line(cells: tuple[str, ...]) -> str:
            left = cells[0].ljust(widths[0])
            return "   ".join([left, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))])

        out = [self.model_name, "=" * width, line(heads), "=" * width, *(line(r) for r in rows), "=" * width]
        out += [
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.non_trainable_params:,}",
            "-" * width,
            f"Input size: {_bytes_text(self.input_bytes)}",
            f"Forward activations size: {_bytes_text(self.activation_bytes)}",
            f"Params size: {_bytes_text(self.param_bytes)}",
            f"Buffers size: {_bytes_text(self.buffer_bytes)}",
            f"Estimated total size: {_bytes_text(self.total_bytes)}",
            "=" * width,
        ]
        return "\n".join(out)

    __repr__ = __str__


def _bytes_text(n: int) -> str:
    """``n`` bytes in the largest binary unit that keeps the number at least 1 (``1.50 MiB``)."""
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB"):
        n_unit = n / 1024.0
        if n_unit < 1024 or unit == "GiB":
            return f"{n_unit:.2f} {unit}"
        n = int(n_unit)
    raise AssertionError("unreachable")


def _shape_text(shape: Any) -> str:
    return "--" if shape is None else str(shape)


def _shapes_and_bytes(out: Any) -> tuple[Any, int]:
    """The output shape(s) of a layer and the bytes its tensors take."""
    if isinstance(out, Tensor):
        return list(out.shape), out.nbytes
    if isinstance(out, list | tuple):
        parts = [_shapes_and_bytes(o) for o in out]
        shapes = [s for s, _ in parts if s is not None]
        return (shapes or None), sum(b for _, b in parts)
    if isinstance(out, dict):
        return _shapes_and_bytes(list(out.values()))
    return None, 0


def _make_inputs(model: Module, input_data: Any, device: Any, dtype: Any) -> tuple[Tensor, ...]:
    """The positional inputs: the given tensors, or zeros of the given shape(s)."""
    if isinstance(input_data, Tensor):
        inputs: tuple[Tensor, ...] = (input_data,)
    elif isinstance(input_data, list | tuple) and input_data and all(isinstance(t, Tensor) for t in input_data):
        inputs = tuple(input_data)
    else:
        if isinstance(input_data, list | tuple) and all(isinstance(s, int) for s in input_data):
            shapes = [tuple(input_data)]
        elif isinstance(input_data, list | tuple) and all(isinstance(s, list | tuple) for s in input_data):
            shapes = [tuple(s) for s in input_data]
        else:
            raise TypeError(
                "summary() takes an input shape (a tuple of ints), several shapes, or input tensors; "
                f"got {input_data!r}"
            )
        params = [p for p in model.parameters() if p.is_floating_point()]
        dev = as_device(device) if device is not None else (params[0].device if params else CPU)
        d = _dt.as_dtype(dtype) if dtype is not None else (params[0].dtype if params else _dt.get_default_dtype())
        return tuple(zeros(*s, dtype=d, device=dev) for s in shapes)
    if device is not None:
        inputs = tuple(t.to(device) for t in inputs)
    return inputs


def _trainable(params: list[Any]) -> str:
    if not params:
        return "--"
    flags = {p.requires_grad for p in params}
    return "Partial" if len(flags) == 2 else str(flags.pop())


def summary(self: Module, input_data: Any, device: Any = None, dtype: Any = None) -> ModelSummary:
    """Run the model once and tabulate every submodule call: name, type, output shape, #params, trainable.

    ``input_data`` is an input shape including the batch (``(1, 784)``), a list
    of shapes for several inputs, or the input tensor(s) themselves. Zeros are
    made with ``dtype`` (default: the model's parameter dtype) on ``device``
    (default: the model's). Totals count a shared parameter once.
    """
    inputs = _make_inputs(self, input_data, device, dtype)
    names = {id(m): n for n, m in self.named_modules()}
    result = ModelSummary(model_name=type(self).__name__)
    rows: list[LayerInfo] = []
    pending: dict[int, list[LayerInfo]] = {}

    def pre_hook(module: Module, args: Any) -> None:
        name = names.get(id(module), "?")
        params = list(module.parameters())
        row = LayerInfo(
            name=name or type(module).__name__, type=type(module).__name__,
            depth=name.count(".") + 1 if name else 0,
            num_params=sum(p.numel() for p in params), trainable=_trainable(params),
            is_leaf=not any(True for _ in module.children()),
        )
        rows.append(row)
        pending.setdefault(id(module), []).append(row)

    def hook(module: Module, args: Any, output: Any) -> None:
        row = pending[id(module)].pop()
        row.output_shape, row.output_bytes = _shapes_and_bytes(output)

    modes = [(m, m.training) for m in self.modules()]
    handles = []
    for m in self.modules():
        handles.append(m.register_forward_pre_hook(pre_hook))
        handles.append(m.register_forward_hook(hook))
    try:
        self.eval()
        with no_grad():
            self(*inputs)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.training = mode
    # the model itself is the table, not a row, unless it has no submodule to show
    result.layers = [r for r in rows if r.depth > 0] or rows
    params = list(self.parameters())
    result.total_params = sum(p.numel() for p in params)
    result.trainable_params = sum(p.numel() for p in params if p.requires_grad)
    result.param_bytes = sum(p.nbytes for p in params)
    result.buffer_bytes = sum(b.nbytes for b in self.buffers())
    result.input_bytes = sum(t.nbytes for t in inputs)
    result.activation_bytes = sum(r.output_bytes for r in result.layers if r.is_leaf)
    return result
