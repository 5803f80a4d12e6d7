"""Building blocks shared by the models, as ``torchvision.ops.misc``: :class:`Conv2dNormActivation`."""

from __future__ import annotations

from collections.abc import Callable

from ...nn import Module, Sequential
from ...nn.modules import BatchNorm2d, Conv2d, ReLU

__all__ = ["Conv2dNormActivation"]


class Conv2dNormActivation(Sequential):
    """A Sequential of ``Conv2d`` (index 0), a norm (1) and an activation (2), as torchvision's.

    ``padding`` defaults to ``(kernel_size - 1) // 2 * dilation`` (the size is kept at stride 1);
    the convolution has a bias only when there is no norm (``bias=None``). Pass
    ``norm_layer=None`` or ``activation_layer=None`` to leave either out; ``inplace`` goes to the
    activation (``None`` gives it no argument, for activations without one).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, groups: int = 1,
                 norm_layer: Callable[[int], Module] | None = BatchNorm2d,
                 activation_layer: Callable[..., Module] | None = ReLU, dilation: int = 1,
                 inplace: bool | None = True, bias: bool | None = None) -> None:
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers: list[Module] = [Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation,
                                       groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer() if inplace is None else activation_layer(inplace=inplace))
        super().__init__(*layers)
        self.out_channels = out_channels
