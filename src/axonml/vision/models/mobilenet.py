"""MobileNetV2 (Sandler et al., 2018), as ``torchvision.models.mobilenetv2``.

``features.0`` is a stride-2 :class:`Conv2dNormActivation` (ReLU6); ``features.1``..``17``
are :class:`InvertedResidual` blocks whose ``conv`` Sequential holds an optional 1x1 expansion
(``conv.0``), the 3x3 depthwise conv (``conv.0`` or ``conv.1``, each ``.0`` conv / ``.1`` BN),
then the 1x1 projection conv and its BatchNorm; ``features.18`` is the 1x1 conv to 1280
channels; ``classifier`` = Dropout, Linear (``classifier.1``). Keys are torchvision's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...core.tensor import Tensor
from ...nn import Module, Sequential, functional, init
from ...nn.modules import BatchNorm2d, Conv2d, Dropout, GroupNorm, Linear, ReLU6
from ._registry import register_model
from .misc import Conv2dNormActivation

__all__ = ["InvertedResidual", "MobileNetV2", "mobilenet_v2"]


def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """``v`` rounded to the nearest multiple of ``divisor`` (at least ``min_value``), never more than 10% down."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class InvertedResidual(Module):
    """1x1 expand by ``expand_ratio`` (ReLU6), 3x3 depthwise (stride, ReLU6), 1x1 linear projection;
    plus the input when the stride is 1 and the channels are equal."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int,
                 norm_layer: Callable[[int], Module] | None = None) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride should be 1 or 2, got {stride}")
        norm_layer = norm_layer or BatchNorm2d
        self.stride = stride
        hidden_dim = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[Module] = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden_dim, kernel_size=1, norm_layer=norm_layer,
                                               activation_layer=ReLU6))
        layers += [
            Conv2dNormActivation(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim, norm_layer=norm_layer,
                                 activation_layer=ReLU6),
            Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            norm_layer(oup),
        ]
        self.conv = Sequential(*layers)
        self.out_channels = oup
        self._is_cn = stride > 1

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)  # type: ignore[no-any-return]
        return self.conv(x)  # type: ignore[no-any-return]


class MobileNetV2(Module):
    """MobileNetV2.

    Args:
        num_classes: outputs of ``classifier.1``.
        width_mult: multiplies every layer's channels (rounded by ``round_nearest``); the last
            conv keeps at least 1280 channels.
        inverted_residual_setting: rows ``[t, c, n, s]`` (expansion, channels, repeats, first stride).
        round_nearest: channel counts are rounded to a multiple of this (1 turns rounding off).
        block: the block class (default :class:`InvertedResidual`).
        norm_layer: the normalization factory (default ``BatchNorm2d``).
        dropout: probability of the Dropout before the classifier.
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0,
                 inverted_residual_setting: Sequence[Sequence[int]] | None = None, round_nearest: int = 8,
                 block: Callable[..., Module] | None = None, norm_layer: Callable[[int], Module] | None = None,
                 dropout: float = 0.2) -> None:
        super().__init__()
        block = block or InvertedResidual
        norm_layer = norm_layer or BatchNorm2d
        input_channel, last_channel = 32, 1280
        if inverted_residual_setting is None:
            inverted_residual_setting = [
                # t, c, n, s
                [1, 16, 1, 1],
                [6, 24, 2, 2],
                [6, 32, 3, 2],
                [6, 64, 4, 2],
                [6, 96, 3, 1],
                [6, 160, 3, 2],
                [6, 320, 1, 1],
            ]
        if len(inverted_residual_setting) == 0 or any(len(row) != 4 for row in inverted_residual_setting):
            raise ValueError(f"inverted_residual_setting should be a non-empty list of 4-element lists, "
                             f"got {inverted_residual_setting}")
        input_channel = _make_divisible(input_channel * width_mult, round_nearest)
        self.last_channel = _make_divisible(last_channel * max(1.0, width_mult), round_nearest)
        features: list[Module] = [Conv2dNormActivation(3, input_channel, stride=2, norm_layer=norm_layer,
                                                       activation_layer=ReLU6)]
        for t, c, n, s in inverted_residual_setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(block(input_channel, output_channel, s if i == 0 else 1, expand_ratio=t,
                                      norm_layer=norm_layer))
                input_channel = output_channel
        features.append(Conv2dNormActivation(input_channel, self.last_channel, kernel_size=1, norm_layer=norm_layer,
                                             activation_layer=ReLU6))
        self.features = Sequential(*features)
        self.classifier = Sequential(Dropout(p=dropout), Linear(self.last_channel, num_classes))

        for m in self.modules():
            if isinstance(m, Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    init.zeros_(m.bias)
            elif isinstance(m, BatchNorm2d | GroupNorm):
                init.ones_(m.weight)
                init.zeros_(m.bias)
            elif isinstance(m, Linear):
                init.normal_(m.weight, 0, 0.01)
                init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (N, last_channel, H/32, W/32)
        x = functional.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        return self.classifier(x)  # type: ignore[no-any-return]


@register_model
def mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    """MobileNetV2 (:class:`MobileNetV2`; keyword arguments go to it); 3,504,872 parameters at width 1."""
    return MobileNetV2(**kwargs)
