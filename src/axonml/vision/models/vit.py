"""Vision Transformer (Dosovitskiy et al., 2020), as ``torchvision.models.vision_transformer``.

The image is cut into ``patch_size`` squares by a strided convolution (``conv_proj``), a
learned ``class_token`` is prepended, ``encoder.pos_embedding`` is added, and a stack of
pre-norm blocks (``encoder.layers.encoder_layer_{i}``: ``ln_1``, ``self_attention``, ``ln_2``,
``mlp.0``/``mlp.3``) ends in ``encoder.ln``; the class token's output goes to ``heads.head``.
Keys, shapes and initialization are torchvision's. Sizes: tiny (192 wide, 3 heads), small
(384, 6), base (768, 12), large (1024, 16, 24 layers); ``image_size``, ``patch_size`` and the
rest can be overridden by keyword, e.g. ``vit_tiny(image_size=32, patch_size=4, num_classes=10)``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

from ...core.creation import empty, zeros
from ...core.methods import cat
from ...core.tensor import Tensor
from ...errors import ShapeError
from ...nn import Module, Parameter, Sequential, init
from ...nn.modules import GELU, BatchNorm2d, Conv2d, Dropout, LayerNorm, Linear, MultiheadAttention, ReLU, Tanh
from ._registry import register_model
from .misc import Conv2dNormActivation

__all__ = [
    "ConvStemConfig", "EncoderBlock", "Encoder", "MLPBlock", "VisionTransformer",
    "vit_tiny", "vit_small", "vit_base", "vit_large", "vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14",
]


# torchvision's default norm layer for ViT: LayerNorm with eps 1e-6
LAYER_NORM: Callable[..., Module] = partial(LayerNorm, eps=1e-6)


class ConvStemConfig(NamedTuple):
    """One layer of a convolutional stem (Xiao et al., 2021) used in place of the patch convolution."""

    out_channels: int
    kernel_size: int
    stride: int
    norm_layer: Callable[..., Module] = BatchNorm2d
    activation_layer: Callable[..., Module] = ReLU


class MLPBlock(Sequential):
    """Linear(in, mlp) (index 0), GELU, Dropout, Linear(mlp, in) (index 3), Dropout.

    Xavier-uniform weights and N(0, 1e-6) biases, as torchvision's.
    """

    _version = 2  # torchvision's: version 1 named the layers linear_1 and linear_2

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(Linear(in_dim, mlp_dim), GELU(), Dropout(dropout), Linear(mlp_dim, in_dim), Dropout(dropout))
        for m in self.modules():
            if isinstance(m, Linear):
                init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    init.normal_(m.bias, std=1e-6)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any],
                              strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        """Also read torchvision's version-1 keys (``linear_1``/``linear_2``, as in its published ViT weights)."""
        version = local_metadata.get("version")
        if version is None or version < 2:
            for i in range(2):
                for kind in ("weight", "bias"):
                    old = f"{prefix}linear_{i + 1}.{kind}"
                    if old in state_dict:
                        state_dict[f"{prefix}{3 * i}.{kind}"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


class EncoderBlock(Module):
    """A pre-norm Transformer block: x + attn(ln_1(x)), then + mlp(ln_2(.)). Input and output (N, S, D)."""

    def __init__(self, num_heads: int, hidden_dim: int, mlp_dim: int, dropout: float, attention_dropout: float,
                 norm_layer: Callable[..., Module] = LAYER_NORM) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln_1 = norm_layer(hidden_dim)
        self.self_attention = MultiheadAttention(hidden_dim, num_heads, dropout=attention_dropout, batch_first=True)
        self.dropout = Dropout(dropout)
        self.ln_2 = norm_layer(hidden_dim)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 - torchvision's name
        if input.ndim != 3:
            raise ShapeError(f"EncoderBlock: expected (batch_size, seq_length, hidden_dim), got {tuple(input.shape)}")
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x) + input
        return x + self.mlp(self.ln_2(x))  # type: ignore[no-any-return]


class Encoder(Module):
    """Position embedding (1, S, D) ~ N(0, 0.02^2), dropout, ``layers`` (``encoder_layer_0`` ...), final ``ln``."""

    def __init__(self, seq_length: int, num_layers: int, num_heads: int, hidden_dim: int, mlp_dim: int,
                 dropout: float, attention_dropout: float,
                 norm_layer: Callable[..., Module] = LAYER_NORM) -> None:
        super().__init__()
        self.pos_embedding = Parameter(empty((1, seq_length, hidden_dim)))
        init.normal_(self.pos_embedding, std=0.02)  # from BERT
        self.dropout = Dropout(dropout)
        self.layers = Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(num_heads, hidden_dim, mlp_dim, dropout, attention_dropout,
                                                norm_layer))
            for i in range(num_layers)
        ))
        self.ln = norm_layer(hidden_dim)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        if input.ndim != 3:
            raise ShapeError(f"Encoder: expected (batch_size, seq_length, hidden_dim), got {tuple(input.shape)}")
        return self.ln(self.layers(self.dropout(input + self.pos_embedding)))  # type: ignore[no-any-return]


class VisionTransformer(Module):
    """ViT: patches of ``patch_size`` of an ``image_size`` square image, ``num_layers`` blocks of ``num_heads``
    heads, width ``hidden_dim``, MLP width ``mlp_dim``; ``heads`` = [pre_logits, act (Tanh)] + head.

    ``representation_size`` adds the pre-logits layer; ``conv_stem_configs`` replaces the patch
    convolution with a stack of :class:`Conv2dNormActivation` (``conv_bn_relu_{i}``) and a 1x1
    ``conv_last``, whose strides must multiply to ``patch_size``. Input (N, 3, image_size, image_size).
    """

    def __init__(self, image_size: int, patch_size: int, num_layers: int, num_heads: int, hidden_dim: int,
                 mlp_dim: int, dropout: float = 0.0, attention_dropout: float = 0.0, num_classes: int = 1000,
                 representation_size: int | None = None,
                 norm_layer: Callable[..., Module] = LAYER_NORM,
                 conv_stem_configs: Sequence[ConvStemConfig] | None = None) -> None:
        super().__init__()
        if image_size % patch_size != 0:
            raise ValueError(f"VisionTransformer: image_size {image_size} is not divisible by patch_size {patch_size}")
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.mlp_dim = mlp_dim
        self.attention_dropout = attention_dropout
        self.dropout = dropout
        self.num_classes = num_classes
        self.representation_size = representation_size
        self.norm_layer = norm_layer

        self.conv_proj: Module
        if conv_stem_configs is not None:
            stride = math.prod(c.stride for c in conv_stem_configs)
            if stride != patch_size:
                raise ValueError(f"VisionTransformer: the conv stem's strides multiply to {stride}, "
                                 f"not to patch_size {patch_size}")
            stem = Sequential()
            prev = 3
            for i, c in enumerate(conv_stem_configs):
                stem.add_module(f"conv_bn_relu_{i}", Conv2dNormActivation(
                    prev, c.out_channels, kernel_size=c.kernel_size, stride=c.stride, norm_layer=c.norm_layer,
                    activation_layer=c.activation_layer))
                prev = c.out_channels
            stem.add_module("conv_last", Conv2d(prev, hidden_dim, kernel_size=1))
            self.conv_proj = stem
        else:
            self.conv_proj = Conv2d(3, hidden_dim, kernel_size=patch_size, stride=patch_size)

        seq_length = (image_size // patch_size) ** 2 + 1  # the patches and the class token
        self.class_token = Parameter(zeros((1, 1, hidden_dim)))
        self.encoder = Encoder(seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout,
                               norm_layer)
        self.seq_length = seq_length

        heads: OrderedDict[str, Module] = OrderedDict()
        if representation_size is None:
            heads["head"] = Linear(hidden_dim, num_classes)
        else:
            heads["pre_logits"] = Linear(hidden_dim, representation_size)
            heads["act"] = Tanh()
            heads["head"] = Linear(representation_size, num_classes)
        self.heads = Sequential(heads)

        if isinstance(self.conv_proj, Conv2d):
            fan_in = self.conv_proj.in_channels * self.conv_proj.kernel_size[0] * self.conv_proj.kernel_size[1]
            init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
            if self.conv_proj.bias is not None:
                init.zeros_(self.conv_proj.bias)
        else:
            last = self.conv_proj.conv_last
            init.normal_(last.weight, mean=0.0, std=math.sqrt(2.0 / last.out_channels))
            if last.bias is not None:
                init.zeros_(last.bias)
        if representation_size is not None:
            pre = self.heads.pre_logits
            init.trunc_normal_(pre.weight, std=math.sqrt(1 / pre.in_features))
            init.zeros_(pre.bias)
        init.zeros_(self.heads.head.weight)
        init.zeros_(self.heads.head.bias)

    def _process_input(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) -> (N, H/p * W/p, hidden_dim): one token per patch."""
        if x.ndim != 4:
            raise ShapeError(f"VisionTransformer: expected an (N, C, H, W) input, got shape {tuple(x.shape)}")
        n, _, h, w = x.shape
        if h != self.image_size or w != self.image_size:
            raise ShapeError(f"VisionTransformer: expected {self.image_size}x{self.image_size} images "
                             f"(image_size), got {h}x{w}")
        p = self.patch_size
        x = self.conv_proj(x)  # (N, D, H/p, W/p)
        return x.reshape(n, self.hidden_dim, (h // p) * (w // p)).permute(0, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self._process_input(x)
        n = x.shape[0]
        x = cat([self.class_token.expand(n, -1, -1), x], dim=1)  # (N, S, D)
        x = self.encoder(x)
        return self.heads(x[:, 0])  # type: ignore[no-any-return]


def _vit(patch: int, layers: int, heads: int, dim: int, mlp: int, /, **kwargs: Any) -> VisionTransformer:
    """A ViT of the given size at 224x224; any keyword (``image_size``, ``patch_size``, ...) overrides."""
    config: dict[str, Any] = {"image_size": 224, "patch_size": patch, "num_layers": layers, "num_heads": heads,
                              "hidden_dim": dim, "mlp_dim": mlp}
    return VisionTransformer(**{**config, **kwargs})


@register_model
def vit_tiny(**kwargs: Any) -> VisionTransformer:
    """ViT-Ti/16: 12 layers, 3 heads, width 192, MLP 768; 5,717,416 parameters at 224 and 1000 classes."""
    return _vit(16, 12, 3, 192, 768, **kwargs)


@register_model
def vit_small(**kwargs: Any) -> VisionTransformer:
    """ViT-S/16: 12 layers, 6 heads, width 384, MLP 1536; 22,050,664 parameters."""
    return _vit(16, 12, 6, 384, 1536, **kwargs)


@register_model
def vit_base(**kwargs: Any) -> VisionTransformer:
    """ViT-B/16 (= :func:`vit_b_16`): 12 layers, 12 heads, width 768, MLP 3072; 86,567,656 parameters."""
    return _vit(16, 12, 12, 768, 3072, **kwargs)


@register_model
def vit_large(**kwargs: Any) -> VisionTransformer:
    """ViT-L/16 (= :func:`vit_l_16`): 24 layers, 16 heads, width 1024, MLP 4096; 304,326,632 parameters."""
    return _vit(16, 24, 16, 1024, 4096, **kwargs)


@register_model
def vit_b_16(**kwargs: Any) -> VisionTransformer:
    """torchvision's name for ViT-B/16 (:func:`vit_base`)."""
    return _vit(16, 12, 12, 768, 3072, **kwargs)


@register_model
def vit_b_32(**kwargs: Any) -> VisionTransformer:
    """ViT-B/32: ViT-B with 32x32 patches; 88,224,232 parameters."""
    return _vit(32, 12, 12, 768, 3072, **kwargs)


@register_model
def vit_l_16(**kwargs: Any) -> VisionTransformer:
    """torchvision's name for ViT-L/16 (:func:`vit_large`)."""
    return _vit(16, 24, 16, 1024, 4096, **kwargs)


@register_model
def vit_l_32(**kwargs: Any) -> VisionTransformer:
    """ViT-L/32; 306,535,400 parameters."""
    return _vit(32, 24, 16, 1024, 4096, **kwargs)


@register_model
def vit_h_14(**kwargs: Any) -> VisionTransformer:
    """ViT-H/14: 32 layers, 16 heads, width 1280, MLP 5120; 632,045,800 parameters at 224."""
    return _vit(14, 32, 16, 1280, 5120, **kwargs)
