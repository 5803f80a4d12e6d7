"""Recurrent layers, as ``torch.nn``: RNN, LSTM (with ``proj_size``), GRU, and RNNCell, LSTMCell, GRUCell.

Parameters carry PyTorch's names and layout (``weight_ih_l{k}[_reverse]``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}``, ``weight_hr_l{k}``; gates LSTM i, f, g, o and GRU r, z, n)
and its initialization U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), so state dicts move
between the two unchanged. The sequence loop is ``nn.functional.rnn_forward``.
PackedSequence inputs are not supported (axonml has no packed sequences).
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

from ...core.creation import empty
from ...core.tensor import Tensor
from ...errors import DTypeError, ShapeError
from .. import init
from ..functional.rnn import gru_cell, lstm_cell, rnn_forward, rnn_relu_cell, rnn_tanh_cell
from ..module import Module
from ..parameter import Parameter

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNBase", "RNNCell", "RNNCellBase"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _check_config(input_size: Any, hidden_size: Any, num_layers: int, bias: Any, batch_first: Any, dropout: Any,
                  proj_size: int) -> None:
    """PyTorch's constructor checks, with its messages."""
    if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:  # type: ignore[operator]
        raise ValueError("dropout should be a number in range [0, 1] representing the probability of an element "
                         "being zeroed")
    if dropout > 0 and num_layers == 1:  # type: ignore[operator]
        warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
                      f"num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                      stacklevel=3)
    for name, value, kind in (("bias", bias, bool), ("batch_first", batch_first, bool),
                              ("input_size", input_size, int), ("hidden_size", hidden_size, int)):
        if not isinstance(value, kind):
            raise TypeError(f"{name} should be of type {kind.__name__}, got: {type(value).__name__}")
    if input_size <= 0:
        raise ValueError("input_size must be greater than zero")
    if hidden_size <= 0:
        raise ValueError("hidden_size must be greater than zero")
    if num_layers <= 0:
        raise ValueError("num_layers must be greater than zero")
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable projections")
    if proj_size >= hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")


class RNNBase(Module):
    """The multi-layer recurrent network shared by RNN, LSTM and GRU (``mode``: 'RNN_TANH', 'RNN_RELU',
    'LSTM' or 'GRU').

    Per layer and direction it registers ``weight_ih`` (G*H, in), ``weight_hh`` (G*H, H_out),
    ``bias_ih``/``bias_hh`` (G*H,) when ``bias``, and ``weight_hr`` (proj_size, H) when
    ``proj_size`` > 0 (LSTM only), G being the number of gates; the input of layer k > 0 is
    the previous layer's output, of D * H_out features (D = 2 when bidirectional).
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if mode not in _GATES:
            raise ValueError("Unrecognized RNN mode: " + str(mode))
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        _check_config(input_size, hidden_size, num_layers, bias, batch_first, dropout, proj_size)
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        gate_size = _GATES[mode] * hidden_size
        h_out = proj_size if proj_size > 0 else hidden_size
        dirs = 2 if bidirectional else 1
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else h_out * dirs
            for direction in range(dirs):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes: list[tuple[str, tuple[int, ...]]] = [("weight_ih", (gate_size, layer_input)),
                                                             ("weight_hh", (gate_size, h_out))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                if proj_size > 0:
                    shapes.append(("weight_hr", (proj_size, hidden_size)))
                names = []
                for base, shape in shapes:
                    setattr(self, base + suffix, Parameter(empty(shape, device=device, dtype=dtype)))
                    names.append(base + suffix)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    @property
    def _flat_weights(self) -> list[Tensor]:
        """Every weight in the order ``rnn_forward`` takes them: per layer and direction, w_ih, w_hh[, b][, w_hr]."""
        return [getattr(self, n) for n in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Parameter]]:
        """The parameters grouped per layer and direction."""
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """Kept for PyTorch scripts: there is no packed cuDNN weight buffer here, so the weights are already usable."""
        return None

    def reset_parameters(self) -> None:
        """Every parameter ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as PyTorch."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for w in self.parameters():
            init.uniform_(w, -stdv, stdv)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s

    def _expected_hidden(self, input: Tensor, cell: bool) -> tuple[int, ...]:  # noqa: A002
        """The shape of h_0 (or of c_0 with ``cell``) for this input: (L * D, N, H_out), unbatched (L * D, H_out)."""
        states = self.num_layers * (2 if self.bidirectional else 1)
        size = self.hidden_size if cell or self.proj_size == 0 else self.proj_size
        if input.ndim == 2:
            return (states, size)
        return (states, input.shape[0] if self.batch_first else input.shape[1], size)

    def _check_forward_args(self, input: Tensor, hx: Any) -> None:  # noqa: A002
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected a Tensor input, got {type(input).__name__}")
        if input.ndim not in (2, 3):
            raise ShapeError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D tensor instead")
        w = self._flat_weights[0]
        if input.dtype != w.dtype:
            raise DTypeError(f"{name} input dtype ({input.dtype}) does not match weight dtype ({w.dtype}); convert "
                             f"the input with input.to({w.dtype}) or the model with model.to({input.dtype})")
        if input.shape[-1] != self.input_size:
            raise ShapeError(f"{name}: input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                             f"got {input.shape[-1]}")
        if hx is None:
            return
        states: list[tuple[str, Tensor, bool]]
        if self.mode == "LSTM":
            if not isinstance(hx, tuple | list) or len(hx) != 2:
                raise TypeError(f"{name}: hx must be a tuple (h_0, c_0)")
            states = [("hidden[0]", hx[0], False), ("hidden[1]", hx[1], True)]
        else:
            if not isinstance(hx, Tensor):
                raise TypeError(f"{name}: hx must be a Tensor, got {type(hx).__name__}")
            states = [("hidden", hx, False)]
        for label, h, cell in states:
            if h.ndim != input.ndim:
                kind = "batched 3-D" if input.ndim == 3 else "unbatched 2-D"
                raise ShapeError(f"{name}: for {kind} input, {label} should also be {input.ndim}-D but got "
                                 f"{h.ndim}-D tensor")
            expected = self._expected_hidden(input, cell)
            if tuple(h.shape) != expected:
                raise ShapeError(f"{name}: Expected {label} size {expected}, got {list(h.shape)}")

    def _run(self, input: Tensor, hx: Any) -> tuple[Tensor, Any]:  # noqa: A002
        self._check_forward_args(input, hx)
        return rnn_forward(self.mode, input, hx, self._flat_weights, self.num_layers, self.bias, self.batch_first,
                           self.dropout, self.training, self.bidirectional, self.proj_size)

    def forward(self, input: Tensor, hx: Any = None) -> tuple[Tensor, Any]:  # noqa: A002
        """``(output, h_n)`` (LSTM: ``(output, (h_n, c_n))``) for input (T, N, in), (N, T, in) with
        ``batch_first``, or unbatched (T, in); ``hx`` the initial state, zeros when None."""
        return self._run(input, hx)


class RNN(RNNBase):
    """Elman RNN: ``h_t = nonlinearity(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, ``nonlinearity`` 'tanh' or 'relu'.

    ``forward(input, hx=None) -> (output, h_n)``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(mode, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0,
                         device, dtype)


class LSTM(RNNBase):
    """Long short-term memory, gates (i, f, g, o); ``proj_size`` > 0 projects each h_t by ``weight_hr``.

    ``forward(input, hx=None) -> (output, (h_n, c_n))`` with ``hx = (h_0, c_0)``: h of
    (L * D, N, proj_size or hidden_size), c of (L * D, N, hidden_size).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype)


class GRU(RNNBase):
    """Gated recurrent unit, gates (r, z, n): ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``,
    ``h' = (1 - z) * n + z * h``. ``forward(input, hx=None) -> (output, h_n)``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0,
                         device, dtype)


# ----- cells -----------------------------------------------------------------------------------------
class RNNCellBase(Module):
    """One recurrent step: ``weight_ih`` (G*H, in), ``weight_hh`` (G*H, H), ``bias_ih``/``bias_hh`` (G*H,)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(empty((num_chunks * hidden_size, input_size), device=device, dtype=dtype))
        self.weight_hh = Parameter(empty((num_chunks * hidden_size, hidden_size), device=device, dtype=dtype))
        if bias:
            self.bias_ih = Parameter(empty((num_chunks * hidden_size,), device=device, dtype=dtype))
            self.bias_hh = Parameter(empty((num_chunks * hidden_size,), device=device, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every parameter ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as PyTorch."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for w in self.parameters():
            init.uniform_(w, -stdv, stdv)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        nonlinearity = self.__dict__.get("nonlinearity", "tanh")
        if nonlinearity != "tanh":
            s += f", nonlinearity={nonlinearity}"
        return s

    def _check_input(self, input: Tensor, hx: Tensor | None, what: str = "hx") -> None:  # noqa: A002
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected a Tensor input, got {type(input).__name__}")
        if input.ndim not in (1, 2):
            raise ShapeError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        if hx is not None and hx.ndim != input.ndim:
            raise ShapeError(f"{name}: Expected {what} to be {input.ndim}D like the input, got {hx.ndim}D instead")

    def _zeros(self, input: Tensor) -> Tensor:  # noqa: A002
        """The default state: zeros of (N, H), or (H,) for an unbatched input."""
        xp = input.device.xp
        return Tensor._make(xp.zeros((*input.shape[:-1], self.hidden_size), input._data.dtype), input.device)


class RNNCell(RNNCellBase):
    """``h' = nonlinearity(x W_ih^T + b_ih + h W_hh^T + b_hh)``; input (N, in) or (in,), ``hx`` zeros when None."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device: Any = None, dtype: Any = None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}. Select from 'tanh' or 'relu'.")
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:  # noqa: A002
        self._check_input(input, hx)
        cell = rnn_tanh_cell if self.nonlinearity == "tanh" else rnn_relu_cell
        return cell(input, self._zeros(input) if hx is None else hx, self.weight_ih, self.weight_hh, self.bias_ih,
                    self.bias_hh)


class LSTMCell(RNNCellBase):
    """One LSTM step: ``(h', c')`` from ``hx = (h, c)`` (zeros when None); gates (i, f, g, o)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:  # noqa: A002
        if hx is not None and (not isinstance(hx, tuple | list) or len(hx) != 2):
            raise TypeError("LSTMCell: hx must be a tuple (h_0, c_0)")
        self._check_input(input, None if hx is None else hx[0], "hx[0]")
        if hx is None:
            zeros = self._zeros(input)
            hx = (zeros, zeros)
        return lstm_cell(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class GRUCell(RNNCellBase):
    """One GRU step, gates (r, z, n); input (N, in) or (in,), ``hx`` zeros when None."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:  # noqa: A002
        self._check_input(input, hx)
        return gru_cell(input, self._zeros(input) if hx is None else hx, self.weight_ih, self.weight_hh,
                        self.bias_ih, self.bias_hh)
