"""Activation functions, the softmax family, dropout and padding, as in ``torch.nn.functional``.

Everything is composed from existing Tensor ops (no backward code here), so
reverse mode, higher-order derivatives and forward mode all come for free.
Branches that a ``where`` discards are made finite first (``exp`` of a clamped
argument), so no ``inf * 0`` can turn a gradient into NaN. ``inplace=True``
computes out of place and writes the result back through ``apply_inplace``,
which keeps autograd's version checks and history right.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from ...core.autocast import autocast_op
from ...core.grad_mode import is_grad_enabled
from ...core.inplace import apply_inplace
from ...core.methods import cat, where
from ...core.prims import binary as B
from ...core.prims import elementwise as E
from ...core.prims import movement as V
from ...core.random import Generator, resolve
from ...core.tensor import Tensor
from ...errors import DTypeError, ShapeError
from ...ops import math as _math
from ...ops.indexing import one_hot  # re-exported: F.one_hot is axonml.one_hot
from ...ops.linalg_ops import vector_norm
from ..prims.dropout import DropoutMask

__all__: list[str] = [
    "alpha_dropout", "celu", "celu_", "dropout", "dropout1d", "dropout2d", "dropout3d", "elu", "elu_",
    "feature_alpha_dropout", "gelu", "glu", "hardshrink", "hardsigmoid", "hardswish", "hardtanh", "hardtanh_",
    "leaky_relu", "leaky_relu_", "log_softmax", "logsigmoid", "mish", "normalize", "one_hot", "pad", "prelu",
    "relu", "relu6", "relu_", "selu", "selu_", "sigmoid", "silu", "softmax", "softmin", "softplus",
    "softshrink", "softsign", "tanh", "tanhshrink", "threshold", "threshold_",
]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_HALF = 1.0 / math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


# ----- helpers ----------------------------------------------------------------------------------
def _float_input(op: str, x: Any) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise DTypeError(f"{op}: expected a floating point tensor, got {x.dtype}")
    return x


def _inplace(x: Tensor, fn: Callable[[Tensor], Tensor], op: str) -> Tensor:
    """``x[...] = fn(x)`` with autograd history; the computation reads a copy when autograd saves it."""
    src = x.clone() if x._requires_grad and is_grad_enabled() else x
    return apply_inplace(x, fn(src), op)


def _maybe_inplace(x: Tensor, inplace: bool, fn: Callable[[Tensor], Tensor], op: str) -> Tensor:
    return _inplace(x, fn, op + "_") if inplace else fn(x)


# ----- rectifiers -------------------------------------------------------------------------------
def relu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002 - PyTorch's names
    """``max(x, 0)``; keeps integer dtypes."""
    return _maybe_inplace(input, inplace, E.Relu.apply, "relu")


def relu_(input: Tensor) -> Tensor:  # noqa: A002
    """In-place :func:`relu`."""
    return relu(input, inplace=True)


def _clip(x: Tensor, lo: float, hi: float) -> Tensor:
    """``clamp(x, lo, hi)`` whose gradient is 1 strictly inside (lo, hi) and 0 on the bounds, as PyTorch's
    hardtanh (``clamp`` passes the gradient on the bounds too); NaN stays NaN."""
    return where(x <= lo, lo, where(x >= hi, hi, x))


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    """``clamp(x, min_val, max_val)``."""
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})")
    return _maybe_inplace(input, inplace, lambda x: _clip(x, min_val, max_val), "hardtanh")


def hardtanh_(input: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:  # noqa: A002
    """In-place :func:`hardtanh`."""
    return hardtanh(input, min_val, max_val, inplace=True)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """``min(max(x, 0), 6)``."""
    return hardtanh(input, 0.0, 6.0, inplace)


def _slopes(x: Tensor, slope: float) -> Tensor:
    """A constant: 1 where ``x > 0``, else ``slope`` (a table lookup: NumPy's ``where`` over a random
    mask is ~10x slower than a multiply)."""
    xp = x.device.xp
    table = xp.asarray([slope, 1.0], dtype=x._data.dtype)
    return Tensor._make(xp.asarray(table[xp.asarray(x._data > 0).view(xp.uint8)]), x.device)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x`` where ``x > 0``, else ``negative_slope * x``."""
    _float_input("leaky_relu", input)
    # x times a constant 0/1 pattern: exact values, PyTorch's gradient (slope at 0), cheap backward
    return _maybe_inplace(input, inplace, lambda x: x * _slopes(x, negative_slope), "leaky_relu")


def leaky_relu_(input: Tensor, negative_slope: float = 0.01) -> Tensor:  # noqa: A002
    """In-place :func:`leaky_relu`."""
    return leaky_relu(input, negative_slope, inplace=True)


@autocast_op("lower")
def prelu(input: Tensor, weight: Tensor) -> Tensor:  # noqa: A002
    """Leaky ReLU with a learned slope: one for all channels, or one per channel (dimension 1)."""
    x = _float_input("prelu", input)
    n = weight.numel()
    if n == 1:
        w = weight.reshape(())
    else:
        if weight.ndim != 1 or x.ndim < 2 or x.shape[1] != n:
            channels = x.shape[1] if x.ndim >= 2 else 1
            raise ShapeError(
                f"prelu: weight of shape {weight.shape} needs 1 element or one per channel ({channels} channels "
                f"in dimension 1 of an input of shape {x.shape})"
            )
        w = weight.reshape((n,) + (1,) * (x.ndim - 2))
    return where(x > 0, x, w * x)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)``."""
    _float_input("elu", input)
    return _maybe_inplace(input, inplace, lambda x: where(x > 0, x, x.clamp(max=0.0).expm1() * alpha), "elu")


def elu_(input: Tensor, alpha: float = 1.0) -> Tensor:  # noqa: A002
    """In-place :func:`elu`."""
    return elu(input, alpha, inplace=True)


def selu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """``scale * elu(x, alpha)`` with the self-normalizing constants of Klambauer et al."""
    _float_input("selu", input)
    return _maybe_inplace(
        input, inplace,
        lambda x: where(x > 0, x * _SELU_SCALE, x.clamp(max=0.0).expm1() * (_SELU_ALPHA * _SELU_SCALE)), "selu",
    )


def selu_(input: Tensor) -> Tensor:  # noqa: A002
    """In-place :func:`selu`."""
    return selu(input, inplace=True)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""
    _float_input("celu", input)
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0 (it divides the input)")
    inv = 1.0 / alpha
    return _maybe_inplace(
        input, inplace, lambda x: where(x > 0, x, (x.clamp(max=0.0) * inv).expm1() * alpha), "celu"
    )


def celu_(input: Tensor, alpha: float = 1.0) -> Tensor:  # noqa: A002
    """In-place :func:`celu`."""
    return celu(input, alpha, inplace=True)


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x`` where ``x > threshold``, else ``value``."""
    return _maybe_inplace(input, inplace, lambda x: where(x <= threshold, value, x), "threshold")  # NaN stays


_threshold = threshold  # the function, for threshold_ whose parameter has the same name


def threshold_(input: Tensor, threshold: float, value: float) -> Tensor:  # noqa: A002
    """In-place :func:`threshold`."""
    return _threshold(input, threshold, value, inplace=True)


# ----- smooth activations -----------------------------------------------------------------------
def gelu(input: Tensor, approximate: str = "none") -> Tensor:  # noqa: A002
    """``x * Phi(x)`` with the exact normal CDF (``erf``), or its ``'tanh'`` approximation."""
    x = _float_input("gelu", input)
    if approximate == "none":
        return x * ((x * _SQRT_HALF).erf() + 1.0) * 0.5
    if approximate == "tanh":
        inner = (x + x * x * x * 0.044715) * _SQRT_2_OVER_PI
        return x * (inner.tanh() + 1.0) * 0.5
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def sigmoid(input: Tensor) -> Tensor:  # noqa: A002
    """``1 / (1 + exp(-x))``."""
    return E.Sigmoid.apply(input)  # type: ignore[no-any-return]


def tanh(input: Tensor) -> Tensor:  # noqa: A002
    """Hyperbolic tangent."""
    return E.Tanh.apply(input)  # type: ignore[no-any-return]


def silu(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x * sigmoid(x)`` (swish)."""
    _float_input("silu", input)
    return _maybe_inplace(input, inplace, lambda x: x * E.Sigmoid.apply(x), "silu")


@autocast_op("fp32")
def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:  # noqa: A002
    """``log(1 + exp(beta * x)) / beta``, and ``x`` itself where ``beta * x > threshold``."""
    x = _float_input("softplus", input)
    bx = x * beta if beta != 1 else x
    soft = bx.clamp(max=threshold).exp().log1p()  # clamped: the discarded branch stays finite
    if beta != 1:
        soft = soft / beta
    return where(bx > threshold, x, soft)


def mish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x * tanh(softplus(x))``."""
    _float_input("mish", input)
    return _maybe_inplace(input, inplace, lambda x: x * softplus(x).tanh(), "mish")


def logsigmoid(input: Tensor) -> Tensor:  # noqa: A002
    """``log(sigmoid(x))`` without overflow: ``min(x, 0) - log1p(exp(-|x|))``."""
    x = _float_input("logsigmoid", input)
    # minimum splits the gradient at the tie x = 0 (|x|'s derivative is 0 there): exactly 1/2. The two
    # terms reach x separately, so tiny derivatives (large x) keep their precision; no where (slow on NumPy)
    return B.Minimum.apply(x, 0.0) - (-x.abs()).exp().log1p()


def softsign(input: Tensor) -> Tensor:  # noqa: A002
    """``x / (1 + |x|)``."""
    x = _float_input("softsign", input)
    return x / (x.abs() + 1.0)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """``relu6(x + 3) / 6``."""
    _float_input("hardsigmoid", input)
    return _maybe_inplace(input, inplace, lambda x: _clip(x + 3.0, 0.0, 6.0) / 6.0, "hardsigmoid")


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x * relu6(x + 3) / 6``."""
    _float_input("hardswish", input)
    return _maybe_inplace(input, inplace, lambda x: x * _clip(x + 3.0, 0.0, 6.0) / 6.0, "hardswish")


def tanhshrink(input: Tensor) -> Tensor:  # noqa: A002
    """``x - tanh(x)``."""
    x = _float_input("tanhshrink", input)
    return x - x.tanh()


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:  # noqa: A002
    """``x - lambd`` above ``lambd``, ``x + lambd`` below ``-lambd``, 0 between."""
    x = _float_input("softshrink", input)
    if lambd < 0:
        raise ValueError(f"softshrink: lambd must be non-negative, got {lambd}")
    return x - x.clamp(-lambd, lambd)


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:  # noqa: A002
    """``x`` where ``|x| > lambd``, else 0."""
    x = _float_input("hardshrink", input)
    return where(x.abs() <= lambd, 0.0, x)  # this way round NaN stays NaN


def glu(input: Tensor, dim: int = -1) -> Tensor:  # noqa: A002
    """Gated linear unit: the first half of ``dim`` times the sigmoid of the second half."""
    x = _float_input("glu", input)
    if x.ndim == 0:
        raise ShapeError("glu: does not support 0-d tensors (the halved dimension must be even)")
    d = dim % x.ndim if -x.ndim <= dim < x.ndim else None
    if d is None:
        raise ShapeError(f"glu: dim {dim} is out of range for a tensor of shape {x.shape}")
    n = x.shape[d]
    if n % 2:
        raise ShapeError(f"glu: halving dimension must be even, but dimension {dim} of shape {x.shape} is {n}")
    return x.narrow(d, 0, n // 2) * E.Sigmoid.apply(x.narrow(d, n // 2, n // 2))


# ----- softmax family ---------------------------------------------------------------------------
def _implicit_dim(name: str, ndim: int, stacklevel: int) -> int:
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an argument.",
        UserWarning, stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:  # noqa: A002
    """``exp(x) / sum(exp(x))`` along ``dim`` (PyTorch's legacy implicit ``dim`` when None, with a warning)."""
    if dim is None:
        dim = _implicit_dim("softmax", input.ndim, _stacklevel)
    return _math.softmax(input, dim, dtype)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:  # noqa: A002
    """``log(softmax(x))`` along ``dim``, computed stably."""
    if dim is None:
        dim = _implicit_dim("log_softmax", input.ndim, _stacklevel)
    return _math.log_softmax(input, dim, dtype)


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:  # noqa: A002
    """``softmax(-x)`` along ``dim``."""
    if dim is None:
        dim = _implicit_dim("softmin", input.ndim, _stacklevel)
    return _math.softmax(-input, dim, dtype)


@autocast_op("fp32")
def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12,  # noqa: A002
              out: Tensor | None = None) -> Tensor:
    """``x / max(||x||_p, eps)`` along ``dim``; with ``out`` the result is also copied there."""
    x = _float_input("normalize", input)
    result = x / vector_norm(x, p, dim, keepdim=True).clamp(min=eps)
    return result if out is None else out.copy_(result)


# ----- dropout ----------------------------------------------------------------------------------
_ALPHA = -_SELU_ALPHA * _SELU_SCALE  # SELU's negative saturation value, which alpha dropout drops to


def _check_p(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _keep(x: Tensor, shape: tuple[int, ...], p: float, scale: float, generator: Generator | None) -> Any:
    """An array of ``shape`` in ``x``'s dtype: ``scale`` with probability ``1 - p``, else 0 (from ``generator``).

    Drawn in float32 for every input dtype: one seed gives the same mask to float32 and float64 models.
    """
    gen, dev = resolve(generator, x.device)
    return gen._stream(dev).keep_mask(shape, p, scale, x._data.dtype)


def _dropout(x: Tensor, p: float, training: bool, inplace: bool, op: str, feature: bool,
             alpha: bool, generator: Generator | None) -> Tensor:
    _check_p(p)
    _float_input(op, x)
    if not training or p == 0 or x.numel() == 0:
        return x
    if feature and x.ndim < 2:
        raise ShapeError(f"{op}: feature dropout needs at least 2 dimensions (N, C, ...), got shape {x.shape}")
    shape = (x.shape[0], x.shape[1]) + (1,) * (x.ndim - 2) if feature else x.shape
    dev = x.device
    if p == 1:
        noise = Tensor._make(dev.xp.zeros(shape, x._data.dtype), dev)
        return _maybe_inplace(x, inplace, lambda s: s * noise, op)
    if not alpha and not inplace and not feature and dev.type == "cuda" and x._data.dtype.char in "fd":
        gen, gdev = resolve(generator, dev)  # one launch for the mask and the product
        return DropoutMask.apply(x, gen._stream(gdev), p, 1.0 / (1.0 - p))
    if not alpha:  # scaled so that the expectation is unchanged
        mask = Tensor._make(_keep(x, shape, p, 1.0 / (1.0 - p), generator), dev)
        return _maybe_inplace(x, inplace, lambda s: s * mask, op)
    keep = _keep(x, shape, p, 1.0, generator)
    # alpha dropout: dropped units go to SELU's saturation, then an affine map restores mean and variance
    a = 1.0 / math.sqrt((_ALPHA * _ALPHA * p + 1.0) * (1.0 - p))
    scale = Tensor._make(keep * a, dev)
    shift = Tensor._make((keep - 1.0) * (-_ALPHA * a) + (-_ALPHA * a * p), dev)
    return _maybe_inplace(x, inplace, lambda s: s * scale + shift, op)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,  # noqa: A002
            generator: Generator | None = None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``; identity in eval.

    ``generator`` (an axonml extension) draws the mask from that generator instead of the default one.
    """
    return _dropout(input, p, training, inplace, "dropout", False, False, generator)


def _channel_dropout(op: str, input: Tensor, p: float, training: bool, inplace: bool, unbatched: int,  # noqa: A002
                     batched: int, generator: Generator | None) -> Tensor:
    """Dropout of whole channels of ``(N, C, *spatial)`` or unbatched ``(C, *spatial)`` inputs."""
    _check_p(p)
    if input.ndim not in (unbatched, batched):
        raise ShapeError(
            f"{op}: expected a {unbatched}-D (C, ...) or {batched}-D (N, C, ...) input, got shape {input.shape}"
        )
    if input.ndim == batched:
        return _dropout(input, p, training, inplace, op, True, False, generator)
    if inplace:
        _dropout(input.unsqueeze(0), p, training, True, op, True, False, generator)
        return input
    return _dropout(input.unsqueeze(0), p, training, False, op, True, False, generator).squeeze(0)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,  # noqa: A002
              generator: Generator | None = None) -> Tensor:
    """Channel-wise dropout of ``(N, C, L)`` or ``(C, L)`` inputs (whole channels are zeroed)."""
    return _channel_dropout("dropout1d", input, p, training, inplace, 2, 3, generator)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,  # noqa: A002
              generator: Generator | None = None) -> Tensor:
    """Channel-wise dropout of ``(N, C, H, W)`` inputs.

    As in PyTorch, a 3-D input is read as ``(N, C, L)`` (1-D channel dropout), with a warning.
    """
    _check_p(p)
    if input.ndim == 3:
        warnings.warn(
            "dropout2d: received a 3D input and assuming channel-wise 1D dropout (input read as (N, C, L)), as "
            "PyTorch does; use dropout1d for that", UserWarning, stacklevel=2,
        )
    elif input.ndim != 4:
        warnings.warn(f"dropout2d: received a {input.ndim}-D input; dropout2d expects 3-D or 4-D inputs",
                      UserWarning, stacklevel=2)
    return _dropout(input, p, training, inplace, "dropout2d", True, False, generator)


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,  # noqa: A002
              generator: Generator | None = None) -> Tensor:
    """Channel-wise dropout of ``(N, C, D, H, W)`` or ``(C, D, H, W)`` inputs."""
    return _channel_dropout("dropout3d", input, p, training, inplace, 4, 5, generator)


def alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False, *,  # noqa: A002
                  generator: Generator | None = None) -> Tensor:
    """Dropout for SELU networks: keeps mean and variance (dropped units go to SELU's saturation value)."""
    return _dropout(input, p, training, inplace, "alpha_dropout", False, True, generator)


def feature_alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False, *,  # noqa: A002
                          generator: Generator | None = None) -> Tensor:
    """:func:`alpha_dropout` of whole channels of ``(N, C, ...)`` inputs."""
    return _dropout(input, p, training, inplace, "feature_alpha_dropout", True, True, generator)


# ----- padding ----------------------------------------------------------------------------------
_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def _pad_pairs(x: Tensor, pad: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(dim, before, after)`` for each padded dimension; ``pad`` starts at the last dimension."""
    pad = [int(v) for v in pad]
    if len(pad) % 2:
        raise ShapeError(f"pad: padding length must be divisible by 2, got {len(pad)} values {tuple(pad)}")
    if len(pad) // 2 > x.ndim:
        raise ShapeError(f"pad: {len(pad)} values pad {len(pad) // 2} dimensions of an input of shape {x.shape}")
    return [(x.ndim - 1 - i, pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)]


def _pad_edges(x: Tensor, d: int, lo: int, hi: int, mode: str) -> Tensor:
    """``x`` padded by ``lo``/``hi`` (both >= 0) elements along ``d`` by reflection, replication or wrapping."""
    n = x.shape[d]
    if mode == "reflect" and (lo >= n or hi >= n):
        raise ShapeError(f"pad: reflect padding ({lo}, {hi}) must be smaller than the size {n} of dimension {d}")
    if mode == "circular" and (lo > n or hi > n):
        raise ShapeError(f"pad: circular padding ({lo}, {hi}) wraps around more than once (size {n}, dimension {d})")
    if mode == "replicate" and n == 0 and (lo or hi):
        raise ShapeError(f"pad: cannot replicate-pad the empty dimension {d}")
    parts = []
    if lo:
        if mode == "reflect":
            parts.append(x.narrow(d, 1, lo).flip(d))
        elif mode == "replicate":
            parts.append(x.narrow(d, 0, 1).expand(*(lo if i == d else s for i, s in enumerate(x.shape))))
        else:
            parts.append(x.narrow(d, n - lo, lo))
    parts.append(x)
    if hi:
        if mode == "reflect":
            parts.append(x.narrow(d, n - 1 - hi, hi).flip(d))
        elif mode == "replicate":
            parts.append(x.narrow(d, n - 1, 1).expand(*(hi if i == d else s for i, s in enumerate(x.shape))))
        else:
            parts.append(x.narrow(d, 0, hi))
    return cat(parts, d) if len(parts) > 1 else x


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:  # noqa: A002
    """Pad the last ``len(pad) // 2`` dimensions: ``pad = (last_before, last_after, prev_before, ...)``.

    ``mode`` is 'constant' (``value``, default 0), 'reflect' (mirror without the edge), 'replicate'
    (repeat the edge) or 'circular' (wrap around). Negative amounts crop. Differentiable in ``input``.
    """
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode must be one of {_PAD_MODES}, got {mode!r}")
    if mode != "constant" and value not in (None, 0):
        raise ValueError(f"pad: padding mode {mode!r} doesn't take a value argument")
    pairs = _pad_pairs(input, pad)
    x = input
    for d, lo, hi in pairs:  # negative amounts crop first
        n = x.shape[d]
        if n + lo + hi < 0:
            raise ShapeError(f"pad: padding ({lo}, {hi}) of dimension {d} (size {n}) gives a negative size")
        if lo < 0 or hi < 0:
            x = x.narrow(d, max(-lo, 0), n - max(-lo, 0) - max(-hi, 0))
    pos = [(d, max(lo, 0), max(hi, 0)) for d, lo, hi in pairs]
    if mode != "constant":
        for d, lo, hi in pos:
            x = _pad_edges(x, d, lo, hi, mode)
        return x if x is not input else input.clone()
    if not any(lo or hi for _, lo, hi in pos):
        return x.clone()
    shape = list(x.shape)
    index: list[Any] = [slice(None)] * x.ndim
    for d, lo, hi in pos:
        index[d] = slice(lo, lo + shape[d])
        shape[d] += lo + hi
    xp = x.device.xp
    base = Tensor._make(xp.full(tuple(shape), 0 if value is None else value, dtype=x._data.dtype), x.device)
    return V.IndexPut.apply(base, tuple(index), x)  # type: ignore[no-any-return]
