"""Convolution layers, as ``torch.nn``: Conv1d/2d/3d and ConvTranspose1d/2d/3d.

Parameter names, shapes, default initialization, attributes and reprs are PyTorch's, so a
PyTorch ``state_dict`` loads as is. Padding modes other than ``'zeros'`` pad the input with
``F.pad`` first (the amounts PyTorch uses, ``'same'`` putting an odd extra element after)
and then convolve without padding. The work is done by ``nn.functional.conv``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ...core.creation import empty
from ...core.tensor import Tensor
from .. import init
from ..functional.activation import pad as f_pad
from ..functional.conv import conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d
from ..module import Module
from ..parameter import Parameter

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _ntuple(value: Any, n: int, cls: str, name: str) -> tuple[int, ...]:
    """``value`` as a tuple of ``n`` ints (an int repeated, or a sequence of ``n``), as PyTorch's ``_pair``."""
    if isinstance(value, Iterable) and not isinstance(value, str):
        out = tuple(value)
        if len(out) != n:
            raise ValueError(f"{cls}: {name} must be an int or {n} ints, got {value!r}")
        return out
    return (value,) * n


def _reverse_repeat(t: Sequence[int]) -> list[int]:
    """Per-dimension amounts (d0, d1, ...) as ``F.pad``'s (d_last, d_last, ..., d0, d0)."""
    return [v for v in reversed(t) for _ in range(2)]


class _ConvNd(Module):
    """The state and checks shared by the convolution layers (PyTorch's ``_ConvNd``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, ...], stride: tuple[int, ...],
                 padding: str | tuple[int, ...], dilation: tuple[int, ...], transposed: bool,
                 output_padding: tuple[int, ...], groups: int, bias: bool, padding_mode: str, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        cls = type(self).__name__
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups != 0:
            raise ValueError(f"{cls}: in_channels must be divisible by groups (got {in_channels} and {groups})")
        if out_channels % groups != 0:
            raise ValueError(f"{cls}: out_channels must be divisible by groups (got {out_channels} and {groups})")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Invalid padding string {padding!r}, should be one of {{'same', 'valid'}}")
            if padding == "same" and any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(
                f"padding_mode must be one of {set(_PADDING_MODES)}, but got padding_mode='{padding_mode}'"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.transposed = transposed
        self.output_padding = output_padding
        self.groups = groups
        self.padding_mode = padding_mode
        # the padding as F.pad takes it (last dimension first), for the non-zero padding modes
        if isinstance(padding, str):
            amounts = [0] * (2 * len(kernel_size))
            if padding == "same":
                for i, (d, k) in enumerate(zip(dilation, kernel_size)):
                    total = d * (k - 1)
                    j = len(kernel_size) - 1 - i
                    amounts[2 * j], amounts[2 * j + 1] = total // 2, total - total // 2
            self._reversed_padding_repeated_twice = amounts
        else:
            self._reversed_padding_repeated_twice = _reverse_repeat(padding)
        if transposed:  # (in, out / groups, *kernel)
            shape = (in_channels, out_channels // groups, *kernel_size)
        else:  # (out, in / groups, *kernel)
            shape = (out_channels, in_channels // groups, *kernel_size)
        self.weight = Parameter(empty(shape, device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(empty((out_channels,), device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: kaiming_uniform_(a=sqrt(5)) for the weight, U(-1/sqrt(fan_in), ...) for the bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * len(self.padding):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * len(self.dilation):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * len(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class _Conv(_ConvNd):
    """A convolution layer of ``_n`` spatial dimensions computed by ``_fn``."""

    _n: int
    _fn: Callable[..., Tensor]

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: str | Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None) -> None:
        n, cls = self._n, type(self).__name__
        super().__init__(in_channels, out_channels, _ntuple(kernel_size, n, cls, "kernel_size"),
                         _ntuple(stride, n, cls, "stride"),
                         padding if isinstance(padding, str) else _ntuple(padding, n, cls, "padding"),
                         _ntuple(dilation, n, cls, "dilation"), False, (0,) * n, groups, bias, padding_mode,
                         device=device, dtype=dtype)

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # noqa: A002
        """The convolution of ``input`` with the given weight and bias under this layer's settings."""
        fn = type(self)._fn
        if self.padding_mode != "zeros":
            padded = f_pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return fn(padded, weight, bias, self.stride, 0, self.dilation, self.groups)
        return fn(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return self._conv_forward(input, self.weight, self.bias)


class Conv1d(_Conv):
    """1-D convolution: (B, Cin, L) or (Cin, L) -> (B, Cout, L_out).

    ``weight`` (out_channels, in_channels / groups, k), ``bias`` (out_channels,). ``padding`` is an
    int, ``'valid'`` or ``'same'``; ``padding_mode`` 'zeros', 'reflect', 'replicate' or 'circular'.
    """

    _n = 1
    _fn = staticmethod(conv1d)


class Conv2d(_Conv):
    """2-D convolution: (B, Cin, H, W) or (Cin, H, W) -> (B, Cout, H_out, W_out).

    ``weight`` (out_channels, in_channels / groups, kh, kw), ``bias`` (out_channels,).
    ``groups=in_channels`` gives a depthwise convolution.
    """

    _n = 2
    _fn = staticmethod(conv2d)


class Conv3d(_Conv):
    """3-D convolution: (B, Cin, D, H, W) or (Cin, D, H, W) -> (B, Cout, D_out, H_out, W_out)."""

    _n = 3
    _fn = staticmethod(conv3d)


class _ConvTranspose(_ConvNd):
    """A transposed convolution layer of ``_n`` spatial dimensions computed by ``_fn``."""

    _n: int
    _fn: Callable[..., Tensor]

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 output_padding: Any = 0, groups: int = 1, bias: bool = True, dilation: Any = 1,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None) -> None:
        n, cls = self._n, type(self).__name__
        if padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {cls}')
        if isinstance(padding, str):
            raise ValueError(f"{cls}: padding must be an int or a tuple of {n} ints, got {padding!r}")
        super().__init__(in_channels, out_channels, _ntuple(kernel_size, n, cls, "kernel_size"),
                         _ntuple(stride, n, cls, "stride"), _ntuple(padding, n, cls, "padding"),
                         _ntuple(dilation, n, cls, "dilation"), True,
                         _ntuple(output_padding, n, cls, "output_padding"), groups, bias, padding_mode,
                         device=device, dtype=dtype)

    def _output_padding(self, input: Tensor, output_size: Sequence[int] | None, stride: Sequence[int],  # noqa: A002
                        padding: Sequence[int], kernel_size: Sequence[int], num_spatial_dims: int,
                        dilation: Sequence[int] | None = None) -> list[int]:
        """The output padding that yields ``output_size`` (spatial, or with the batch and channel dims)."""
        if output_size is None:
            return list(self.output_padding)
        n = num_spatial_dims
        lead = 2 if input.ndim == n + 2 else 1
        size = [int(v) for v in output_size]
        if len(size) == lead + n:
            size = size[lead:]
        if len(size) != n:
            raise ValueError(f"ConvTranspose{n}D: for {input.ndim}D input, output_size must have {n} or {lead + n} "
                             f"elements (got {len(size)})")
        dil = dilation if dilation is not None else (1,) * n
        min_sizes = [(input.shape[lead + d] - 1) * stride[d] - 2 * padding[d] + dil[d] * (kernel_size[d] - 1) + 1
                     for d in range(n)]
        max_sizes = [m + s - 1 for m, s in zip(min_sizes, stride)]
        if any(not lo <= v <= hi for v, lo, hi in zip(size, min_sizes, max_sizes)):
            raise ValueError(f"requested an output size of {list(output_size)}, but valid sizes range from "
                             f"{min_sizes} to {max_sizes} (for an input of {tuple(input.shape[lead:])})")
        return [v - m for v, m in zip(size, min_sizes)]

    def forward(self, input: Tensor, output_size: Sequence[int] | None = None) -> Tensor:  # noqa: A002
        """The transposed convolution; ``output_size`` picks among the sizes that strides make ambiguous."""
        assert isinstance(self.padding, tuple)
        output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size,
                                              self._n, self.dilation)
        return type(self)._fn(input, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups,
                              self.dilation)


class ConvTranspose1d(_ConvTranspose):
    """1-D transposed convolution: (B, Cin, L) -> (B, Cout, L_out), ``weight`` (in, out / groups, k).

    ``L_out = (L - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``.
    """

    _n = 1
    _fn = staticmethod(conv_transpose1d)


class ConvTranspose2d(_ConvTranspose):
    """2-D transposed convolution (the gradient of Conv2d with respect to its input).

    (B, Cin, H, W) -> (B, Cout, H_out, W_out), ``weight`` (in, out / groups, kh, kw); ``forward(x, output_size)``
    chooses the output padding that gives ``output_size``.
    """

    _n = 2
    _fn = staticmethod(conv_transpose2d)


class ConvTranspose3d(_ConvTranspose):
    """3-D transposed convolution: (B, Cin, D, H, W) -> (B, Cout, D_out, H_out, W_out)."""

    _n = 3
    _fn = staticmethod(conv_transpose3d)
