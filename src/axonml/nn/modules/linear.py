"""Identity, Linear and Bilinear, with PyTorch's parameter names, shapes and default initialization.

``linear`` and ``bilinear`` are the functional forms (``nn.functional`` re-exports them).
"""

from __future__ import annotations

import math
from typing import Any

from ...core.creation import empty
from ...core.tensor import Tensor
from ...errors import ShapeError
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["Bilinear", "Identity", "Linear"]

def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:  # noqa: A002 - PyTorch's name
    """``input @ weight.T + bias``: input (*, in), weight (out, in), bias (out,) -> (*, out)."""
    if weight.ndim != 2 or input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ShapeError(
            f"linear: input of shape {tuple(input.shape)} does not match a weight of shape {tuple(weight.shape)} "
            "(the input's last dimension must equal the weight's second)"
        )
    if input.ndim > 2:  # one 2-D GEMM instead of a batched matmul over the leading dimensions
        lead = input.shape[:-1]
        out = input.reshape(-1, input.shape[-1]).matmul(weight.mT).reshape(*lead, weight.shape[0])
    else:
        out = input.matmul(weight.mT)
    return out if bias is None else out + bias


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``y[..., o] = sum_ij x1[..., i] W[o, i, j] x2[..., j] + b[o]``: (*, in1), (*, in2) -> (*, out)."""
    if weight.ndim != 3 or input1.ndim == 0 or input2.ndim == 0:
        raise ShapeError(f"bilinear: expected a 3-D weight and inputs of at least 1 dimension, got weight "
                         f"{tuple(weight.shape)} and inputs {tuple(input1.shape)}, {tuple(input2.shape)}")
    out_f, in1, in2 = weight.shape
    if input1.shape[-1] != in1 or input2.shape[-1] != in2 or input1.shape[:-1] != input2.shape[:-1]:
        raise ShapeError(
            f"bilinear: inputs of shapes {tuple(input1.shape)} and {tuple(input2.shape)} do not match a weight of "
            f"shape {tuple(weight.shape)} (expected (*, {in1}) and (*, {in2}) with the same leading dimensions)"
        )
    lead = input1.shape[:-1]
    x1 = input1.reshape(-1, in1)  # (N, in1)
    x2 = input2.reshape(-1, in2)  # (N, in2)
    # contract in2 with one GEMM against the weight seen as (out*in1, in2) (a view, no copy), then in1
    t = x2.matmul(weight.reshape(out_f * in1, in2).mT).reshape(-1, out_f, in1)  # (N, out, in1)
    y = (t * x1.unsqueeze(1)).sum(-1)  # (N, out)
    if bias is not None:
        y = y + bias
    return y.reshape(*lead, out_f)


class Identity(Module):
    """Returns its input; takes (and ignores) any constructor arguments, as PyTorch's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Any) -> Any:  # noqa: A002
        return input


class Linear(Module):
    """``y = x @ W.T + b`` with ``weight`` (out_features, in_features) and ``bias`` (out_features,).

    Initialized as PyTorch's: W ~ U(-k, k), b ~ U(-k, k), k = 1/sqrt(in_features).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(empty((out_features, in_features), device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(empty((out_features,), device=device, dtype=dtype))
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

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Bilinear(Module):
    """``y = x1^T A x2 + b`` with ``weight`` (out_features, in1_features, in2_features) and ``bias`` (out_features,).

    Initialized as PyTorch's: U(-k, k) for both, k = 1/sqrt(in1_features).
    """

    def __init__(self, in1_features: int, in2_features: int, out_features: int, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.in1_features = in1_features
        self.in2_features = in2_features
        self.out_features = out_features
        self.weight = Parameter(empty((out_features, in1_features, in2_features), device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(empty((out_features,), device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.weight.shape[1]) if self.weight.shape[1] > 0 else 0
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1: Tensor, input2: Tensor) -> Tensor:
        return bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")
