"""Small baselines: :class:`SimpleCNN` (conv blocks + a two-layer head) and :class:`MLP` (fully connected)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...core.tensor import Tensor
from ...nn import Module, Sequential
from ...nn.modules import GELU, BatchNorm2d, Conv2d, Dropout, LeakyReLU, Linear, MaxPool2d, ReLU, Sigmoid, SiLU, Tanh
from ._registry import register_model

__all__ = ["MLP", "SimpleCNN", "mlp", "simple_cnn"]

_ACTIVATIONS: dict[str, Callable[[], Module]] = {
    "relu": ReLU, "gelu": GELU, "tanh": Tanh, "sigmoid": Sigmoid, "silu": SiLU, "leaky_relu": LeakyReLU,
}


def _activation(activation: str | Callable[[], Module], cls: str) -> Callable[[], Module]:
    """A factory of activation modules from a name (``"relu"``, ``"gelu"``, ...) or a callable."""
    if isinstance(activation, str):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"{cls}: activation must be one of {sorted(_ACTIVATIONS)} or a callable returning a "
                             f"Module, got {activation!r}")
        return _ACTIVATIONS[activation]
    if not callable(activation):
        raise TypeError(f"{cls}: activation must be a name or a callable, got {type(activation).__name__}")
    return activation


class SimpleCNN(Module):
    """A plain CNN: per entry of ``channels`` a block conv3x3 (padding 1), BatchNorm, ReLU, max-pool 2;
    then ``classifier`` = Linear(C * s * s, ``hidden_dim``), ReLU, Dropout, Linear(``hidden_dim``, ``num_classes``),
    where ``s = image_size // 2 ** len(channels)``.

    ``features`` holds the blocks (``features.0`` is the first block's conv, ``features.1`` its BatchNorm
    when ``batch_norm``); without ``batch_norm`` each block is conv (with bias), ReLU, pool.
    Input (N, ``in_channels``, ``image_size``, ``image_size``) -> (N, ``num_classes``).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 channels: Sequence[int] = (32, 64), hidden_dim: int = 128, dropout: float = 0.0,
                 batch_norm: bool = True) -> None:
        super().__init__()
        channels = list(channels)
        if not channels or any(int(c) <= 0 for c in channels):
            raise ValueError(f"SimpleCNN: channels must be a non-empty list of positive ints, got {channels}")
        side = image_size // 2 ** len(channels)
        if side < 1:
            raise ValueError(f"SimpleCNN: image_size={image_size} is too small for {len(channels)} pooling blocks")
        layers: list[Module] = []
        c_in = in_channels
        for c in channels:
            layers.append(Conv2d(c_in, c, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(BatchNorm2d(c))
            layers += [ReLU(inplace=True), MaxPool2d(kernel_size=2, stride=2)]
            c_in = c
        self.features = Sequential(*layers)
        self.classifier = Sequential(
            Linear(c_in * side * side, hidden_dim), ReLU(inplace=True), Dropout(dropout),
            Linear(hidden_dim, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (N, C, s, s)
        return self.classifier(x.flatten(1))  # type: ignore[no-any-return]


class MLP(Module):
    """A multilayer perceptron on flattened inputs: (N, *) -> (N, ``num_classes``).

    ``layers`` = [Linear, activation, Dropout] for each size in ``hidden_sizes``, then a last
    Linear to ``num_classes`` (so the Linear layers are ``layers.0``, ``layers.3``, ...; the
    Dropout is kept at p=0 so the keys never depend on ``dropout``). ``activation`` is a name
    (relu, gelu, tanh, sigmoid, silu, leaky_relu) or a callable returning a Module.
    """

    def __init__(self, in_features: int = 784, hidden_sizes: Sequence[int] = (256, 128), num_classes: int = 10,
                 activation: str | Callable[[], Module] = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        act = _activation(activation, "MLP")
        if any(int(h) <= 0 for h in hidden_sizes):
            raise ValueError(f"MLP: hidden sizes must be positive, got {list(hidden_sizes)}")
        layers: list[Module] = []
        n_in = in_features
        for h in hidden_sizes:
            layers += [Linear(n_in, int(h)), act(), Dropout(dropout)]
            n_in = int(h)
        layers.append(Linear(n_in, num_classes))
        self.in_features = in_features
        self.layers = Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x.flatten(1))  # type: ignore[no-any-return]


@register_model
def simple_cnn(**kwargs: Any) -> SimpleCNN:
    """A small CNN (:class:`SimpleCNN`; keyword arguments go to it)."""
    return SimpleCNN(**kwargs)


@register_model
def mlp(**kwargs: Any) -> MLP:
    """A multilayer perceptron (:class:`MLP`; keyword arguments go to it)."""
    return MLP(**kwargs)
