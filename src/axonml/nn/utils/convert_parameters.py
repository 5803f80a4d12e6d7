"""``parameters_to_vector`` and ``vector_to_parameters``: all parameters as one flat vector and back."""

from __future__ import annotations

from collections.abc import Iterable

from ...core.methods import cat
from ...core.tensor import Tensor
from ...errors import DeviceError, ShapeError

__all__ = ["parameters_to_vector", "vector_to_parameters"]


def _check_device(param: Tensor, device: object | None) -> object:
    if device is not None and param.device != device:
        raise DeviceError(f"Found two parameters on different devices, this is currently not supported "
                          f"({device} and {param.device})")
    return param.device


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """Every parameter flattened and concatenated, in order (differentiable)."""
    device = None
    parts = []
    for p in parameters:
        device = _check_device(p, device)
        parts.append(p.reshape(-1))
    if not parts:
        raise ValueError("parameters_to_vector: got no parameters")
    return cat(parts)


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Point each parameter's data at its slice of ``vec`` (a view: they share memory afterwards)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected a Tensor, but got: {type(vec).__name__}")
    if vec.ndim != 1:
        raise ShapeError(f"vector_to_parameters: expected a 1-D vector, got shape {tuple(vec.shape)}")
    params = list(parameters)
    needed = sum(p.numel() for p in params)
    if needed != vec.numel():
        raise ShapeError(f"vector_to_parameters: the vector has {vec.numel()} elements, the parameters {needed}")
    device = None
    pointer = 0
    for p in params:
        device = _check_device(p, device)
        n = p.numel()
        p.data = vec.detach()[pointer:pointer + n].view(p.shape)
        pointer += n
