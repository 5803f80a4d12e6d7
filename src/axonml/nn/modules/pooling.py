"""Pooling layers, as ``torch.nn``: max, average, adaptive pooling and max unpooling in 1-3 D.

Attributes and reprs are PyTorch's (MaxPool and AvgPool2d/3d keep the arguments as given;
AvgPool1d and MaxUnpool store tuples). The work is done by ``nn.functional.pooling``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ...core.tensor import Tensor
from ..functional.pooling import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_avg_pool3d,
    adaptive_max_pool1d,
    adaptive_max_pool2d,
    adaptive_max_pool3d,
    avg_pool1d,
    avg_pool2d,
    avg_pool3d,
    max_pool1d,
    max_pool2d,
    max_pool3d,
    max_unpool1d,
    max_unpool2d,
    max_unpool3d,
)
from ..module import Module

__all__ = [
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "MaxPool1d", "MaxPool2d", "MaxPool3d",
    "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d",
]


def _tuple(value: Any, n: int) -> tuple[Any, ...]:
    """PyTorch's ``_single``/``_pair``/``_triple``: a sequence as a tuple, anything else repeated n times."""
    return tuple(value) if isinstance(value, Iterable) else (value,) * n


# ----- max pooling ------------------------------------------------------------------------
class _MaxPoolNd(Module):
    _fn: Callable[..., Any]

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input: Tensor) -> Any:  # noqa: A002
        """The pooled input, or ``(values, indices)`` with ``return_indices``."""
        return type(self)._fn(input, self.kernel_size, self.stride, self.padding, self.dilation,
                              ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool1d(_MaxPoolNd):
    """Max over sliding windows of (B, C, L) or (C, L); padding counts as -inf, stride defaults to the kernel."""

    _fn = staticmethod(max_pool1d)


class MaxPool2d(_MaxPoolNd):
    """Max over sliding windows of (B, C, H, W) or (C, H, W).

    With ``return_indices``, also the int64 flat positions (``h * W + w``) of the maxima, for MaxUnpool2d.
    """

    _fn = staticmethod(max_pool2d)


class MaxPool3d(_MaxPoolNd):
    """Max over sliding windows of (B, C, D, H, W) or (C, D, H, W)."""

    _fn = staticmethod(max_pool3d)


# ----- max unpooling ------------------------------------------------------------------------
class _MaxUnpoolNd(Module):
    _n: int
    _fn: Callable[..., Tensor]

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        self.kernel_size = _tuple(kernel_size, self._n)
        self.stride = _tuple(stride if stride is not None else kernel_size, self._n)
        self.padding = _tuple(padding, self._n)

    def forward(self, input: Tensor, indices: Tensor, output_size: Any = None) -> Tensor:  # noqa: A002
        """Each value of ``input`` placed at its index from the max pooling, zeros elsewhere."""
        return type(self)._fn(input, indices, self.kernel_size, self.stride, self.padding, output_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxUnpool1d(_MaxUnpoolNd):
    """The partial inverse of MaxPool1d: (B, C, L_in) and its indices -> (B, C, L_out)."""

    _n = 1
    _fn = staticmethod(max_unpool1d)


class MaxUnpool2d(_MaxUnpoolNd):
    """The partial inverse of MaxPool2d; ``output_size`` resolves the sizes that strides make ambiguous."""

    _n = 2
    _fn = staticmethod(max_unpool2d)


class MaxUnpool3d(_MaxUnpoolNd):
    """The partial inverse of MaxPool3d."""

    _n = 3
    _fn = staticmethod(max_unpool3d)


# ----- average pooling ------------------------------------------------------------------------
class AvgPool1d(Module):
    """Mean over sliding windows of (B, C, L) or (C, L); ``count_include_pad`` counts zero padding."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        super().__init__()
        self.kernel_size = _tuple(kernel_size, 1)
        self.stride = _tuple(stride if stride is not None else kernel_size, 1)
        self.padding = _tuple(padding, 1)
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _AvgPoolNd(Module):
    _fn: Callable[..., Tensor]

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return type(self)._fn(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                              self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(_AvgPoolNd):
    """Mean over sliding windows of (B, C, H, W) or (C, H, W); ``divisor_override`` replaces the window size."""

    _fn = staticmethod(avg_pool2d)


class AvgPool3d(_AvgPoolNd):
    """Mean over sliding windows of (B, C, D, H, W) or (C, D, H, W)."""

    _fn = staticmethod(avg_pool3d)


# ----- adaptive pooling ----------------------------------------------------------------------
class _AdaptiveAvgPoolNd(Module):
    _fn: Callable[..., Tensor]

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return type(self)._fn(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """Average pooling of (B, C, L) to length ``output_size`` whatever L."""

    _fn = staticmethod(adaptive_avg_pool1d)


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """Average pooling of (B, C, H, W) to ``output_size`` (an int, a pair; None keeps that input size)."""

    _fn = staticmethod(adaptive_avg_pool2d)


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    """Average pooling of (B, C, D, H, W) to ``output_size``."""

    _fn = staticmethod(adaptive_avg_pool3d)


class _AdaptiveMaxPoolNd(Module):
    _fn: Callable[..., Any]

    def __init__(self, output_size: Any, return_indices: bool = False) -> None:
        super().__init__()
        self.output_size = output_size
        self.return_indices = return_indices

    def forward(self, input: Tensor) -> Any:  # noqa: A002
        """The pooled input, or ``(values, indices)`` with ``return_indices``."""
        return type(self)._fn(input, self.output_size, self.return_indices)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """Max pooling of (B, C, L) to length ``output_size``."""

    _fn = staticmethod(adaptive_max_pool1d)


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """Max pooling of (B, C, H, W) to ``output_size``; with ``return_indices`` also the flat positions."""

    _fn = staticmethod(adaptive_max_pool2d)


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    """Max pooling of (B, C, D, H, W) to ``output_size``."""

    _fn = staticmethod(adaptive_max_pool3d)
