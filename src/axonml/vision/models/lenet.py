"""LeNet-5 (LeCun et al., 1998): two convolutions with pooling, then three fully connected layers.

The classic layout for 28x28 digits: conv 6@5x5 (padding 2, so 28 -> 28), pool -> 14,
conv 16@5x5 -> 10, pool -> 5, then 16*5*5 -> 120 -> 84 -> ``num_classes``. With 32x32
inputs (the original paper) use ``padding=0``. 61,706 parameters for 1x28x28 and 10 classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...core.tensor import Tensor
from ...nn import Module, Sequential
from ...nn.modules import AvgPool2d, Conv2d, Linear, MaxPool2d, ReLU, Tanh
from ._registry import register_model

__all__ = ["LeNet5", "lenet5"]

_ACTIVATIONS: dict[str, Callable[[], Module]] = {"relu": ReLU, "tanh": Tanh}
_POOLS: dict[str, Callable[..., Module]] = {"max": MaxPool2d, "avg": AvgPool2d}


class LeNet5(Module):
    """LeNet-5: ``features`` (conv, act, pool, conv, act, pool) and ``classifier`` (3 Linear layers).

    Args:
        num_classes: outputs of the last layer.
        in_channels: channels of the input images (1 for MNIST).
        image_size: height and width of the (square) input, which fixes the first Linear's size.
        padding: padding of the first convolution (2 for 28x28, 0 for the paper's 32x32).
        activation: ``"relu"`` (default) or ``"tanh"`` (the paper's).
        pooling: ``"max"`` (default) or ``"avg"`` (the paper's subsampling).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, padding: int = 2,
                 activation: str = "relu", pooling: str = "max") -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"LeNet5: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if pooling not in _POOLS:
            raise ValueError(f"LeNet5: pooling must be one of {sorted(_POOLS)}, got {pooling!r}")
        side = ((image_size + 2 * padding - 4) // 2 - 4) // 2  # conv5, pool2, conv5, pool2
        if side < 1:
            raise ValueError(f"LeNet5: image_size={image_size} with padding={padding} is too small "
                             f"(the feature map would be {side}x{side})")
        act, pool = _ACTIVATIONS[activation], _POOLS[pooling]
        self.features = Sequential(
            Conv2d(in_channels, 6, kernel_size=5, padding=padding), act(), pool(kernel_size=2, stride=2),
            Conv2d(6, 16, kernel_size=5), act(), pool(kernel_size=2, stride=2),
        )
        self.classifier = Sequential(
            Linear(16 * side * side, 120), act(), Linear(120, 84), act(), Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (N, 16, 5, 5) for the default sizes
        return self.classifier(x.flatten(1))  # type: ignore[no-any-return]


@register_model
def lenet5(**kwargs: Any) -> LeNet5:
    """LeNet-5 (:class:`LeNet5`; keyword arguments go to it)."""
    return LeNet5(**kwargs)
