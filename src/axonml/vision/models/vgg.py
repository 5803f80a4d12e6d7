"""VGG (Simonyan & Zisserman, 2014), with and without BatchNorm, as ``torchvision.models.vgg``.

State-dict keys are torchvision's: ``features.N`` (the convolutions, and BatchNorms in the
``_bn`` variants, at their Sequential index), ``classifier.0``, ``classifier.3``,
``classifier.6``. ``avgpool`` is an adaptive 7x7 average pool, so any input of at least
32x32 works (smaller maps are replicated up to 7x7).
"""

from __future__ import annotations

from typing import Any

from ...core.tensor import Tensor
from ...nn import Module, Sequential, init
from ...nn.modules import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Linear, MaxPool2d, ReLU
from ._registry import register_model

__all__ = [
    "VGG", "make_layers", "cfgs",
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
]

# Output channels of each 3x3 convolution, "M" for a 2x2 max-pool: configurations A, B, D, E of the paper.
cfgs: dict[str, list[str | int]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_layers(cfg: list[str | int], batch_norm: bool = False, in_channels: int = 3) -> Sequential:
    """The convolutional ``features`` of a VGG: conv3x3 (padding 1) [+ BatchNorm] + ReLU per int, pool per "M"."""
    layers: list[Module] = []
    for v in cfg:
        if v == "M":
            layers.append(MaxPool2d(kernel_size=2, stride=2))
        elif isinstance(v, int):
            layers.append(Conv2d(in_channels, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(BatchNorm2d(v))
            layers.append(ReLU(inplace=True))
            in_channels = v
        else:
            raise ValueError(f"make_layers: entries are channel counts or 'M', got {v!r}")
    return Sequential(*layers)


class VGG(Module):
    """``features`` (512 output channels), a 7x7 adaptive average pool, and a 3-layer ``classifier``
    (25088 -> 4096 -> 4096 -> ``num_classes``, ReLU and Dropout(``dropout``) between).

    ``init_weights`` applies torchvision's initialization: Kaiming-normal (fan_out) convolutions
    with zero bias, BatchNorm weight 1 and bias 0, Linear weights N(0, 0.01) with zero bias.
    """

    def __init__(self, features: Module, num_classes: int = 1000, init_weights: bool = True,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features
        self.avgpool = AdaptiveAvgPool2d((7, 7))
        self.classifier = Sequential(
            Linear(512 * 7 * 7, 4096), ReLU(True), Dropout(p=dropout),
            Linear(4096, 4096), ReLU(True), Dropout(p=dropout),
            Linear(4096, num_classes),
        )
        if init_weights:
            for m in self.modules():
                if isinstance(m, Conv2d):
                    init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        init.constant_(m.bias, 0)
                elif isinstance(m, BatchNorm2d):
                    init.constant_(m.weight, 1)
                    init.constant_(m.bias, 0)
                elif isinstance(m, Linear):
                    init.normal_(m.weight, 0, 0.01)
                    init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))  # (N, 512, 7, 7)
        return self.classifier(x.flatten(1))  # type: ignore[no-any-return]


def _vgg(cfg: str, batch_norm: bool, **kwargs: Any) -> VGG:
    return VGG(make_layers(cfgs[cfg], batch_norm=batch_norm), **kwargs)


@register_model
def vgg11(**kwargs: Any) -> VGG:
    """VGG-11 (configuration A); 132,863,336 parameters."""
    return _vgg("A", False, **kwargs)


@register_model
def vgg11_bn(**kwargs: Any) -> VGG:
    """VGG-11 with BatchNorm; 132,868,840 parameters."""
    return _vgg("A", True, **kwargs)


@register_model
def vgg13(**kwargs: Any) -> VGG:
    """VGG-13 (configuration B); 133,047,848 parameters."""
    return _vgg("B", False, **kwargs)


@register_model
def vgg13_bn(**kwargs: Any) -> VGG:
    """VGG-13 with BatchNorm; 133,053,736 parameters."""
    return _vgg("B", True, **kwargs)


@register_model
def vgg16(**kwargs: Any) -> VGG:
    """VGG-16 (configuration D); 138,357,544 parameters."""
    return _vgg("D", False, **kwargs)


@register_model
def vgg16_bn(**kwargs: Any) -> VGG:
    """VGG-16 with BatchNorm; 138,365,992 parameters."""
    return _vgg("D", True, **kwargs)


@register_model
def vgg19(**kwargs: Any) -> VGG:
    """VGG-19 (configuration E); 143,667,240 parameters."""
    return _vgg("E", False, **kwargs)


@register_model
def vgg19_bn(**kwargs: Any) -> VGG:
    """VGG-19 with BatchNorm; 143,678,248 parameters."""
    return _vgg("E", True, **kwargs)
