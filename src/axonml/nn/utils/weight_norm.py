"""Weight normalization by a forward pre-hook, as ``torch.nn.utils.weight_norm``.

``weight = g * v / ||v||``: the parameter ``name`` is replaced by a magnitude
``name_g`` and a direction ``name_v``, and the weight is recomputed from them
before every forward (Salimans & Kingma, 2016).
"""

from __future__ import annotations

from typing import Any

from ...core.grad_mode import no_grad
from ...core.tensor import Tensor
from ..module import Module
from ..parameter import Parameter

__all__ = ["WeightNorm", "remove_weight_norm", "weight_norm"]


def norm_except_dim(v: Tensor, dim: int) -> Tensor:
    """The 2-norm of ``v`` over every dimension but ``dim``, kept as size-1 dimensions; ``dim=-1``: over all."""
    if dim == -1:
        return v.norm()  # a 0-d tensor, as PyTorch
    keep = dim % v.ndim
    others = tuple(d for d in range(v.ndim) if d != keep)
    return v.norm(dim=others, keepdim=True) if others else v.abs()


class WeightNorm:
    """The forward pre-hook that recomputes ``module.<name>`` from ``<name>_g`` and ``<name>_v``."""

    def __init__(self, name: str, dim: int | None) -> None:
        self.name = name
        self.dim = -1 if dim is None else dim

    def compute_weight(self, module: Module) -> Tensor:
        g = getattr(module, self.name + "_g")
        v = getattr(module, self.name + "_v")
        return v * (g / norm_except_dim(v, self.dim))  # type: ignore[no-any-return]

    @staticmethod
    def apply(module: Module, name: str, dim: int | None) -> WeightNorm:
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, WeightNorm) and hook.name == name:
                raise RuntimeError(f"Cannot register two weight_norm hooks on the same parameter {name}")
        weight = module._parameters.get(name)
        if weight is None:
            raise ValueError(f"weight_norm: {type(module).__name__} has no parameter '{name}'")
        fn = WeightNorm(name, dim)
        if fn.dim != -1 and not -weight.ndim <= fn.dim < weight.ndim:
            raise IndexError(f"weight_norm: dim {fn.dim} is out of range for a weight of shape {weight.shape}")
        del module._parameters[name]
        with no_grad():
            g = norm_except_dim(weight, fn.dim)
        module.register_parameter(name + "_g", Parameter(g))
        module.register_parameter(name + "_v", Parameter(weight.detach()))  # shares the old weight's memory
        setattr(module, name, fn.compute_weight(module))  # a plain attribute: code reading module.weight works
        module.register_forward_pre_hook(fn)
        return fn

    def remove(self, module: Module) -> None:
        with no_grad():
            weight = self.compute_weight(module)
        delattr(module, self.name)
        del module._parameters[self.name + "_g"]
        del module._parameters[self.name + "_v"]
        setattr(module, self.name, Parameter(weight))

    def __call__(self, module: Module, inputs: Any) -> None:
        setattr(module, self.name, self.compute_weight(module))


def weight_norm(module: Module, name: str = "weight", dim: int | None = 0) -> Module:
    """Reparametrize ``module.<name>`` as ``g * v / ||v||``; returns ``module``.

    ``<name>_g`` (the norms, shape of the weight with every dimension but
    ``dim`` set to 1) and ``<name>_v`` (initially the weight) become the
    parameters; ``dim=None`` (or -1) uses one norm over the whole tensor.
    The weight is recomputed by a forward pre-hook before each call.
    """
    WeightNorm.apply(module, name, dim)
    return module


def remove_weight_norm(module: Module, name: str = "weight") -> Module:
    """Undo :func:`weight_norm`: ``<name>`` becomes a parameter again holding the current weight."""
    for k, hook in list(module._forward_pre_hooks.items()):
        if isinstance(hook, WeightNorm) and hook.name == name:
            hook.remove(module)
            del module._forward_pre_hooks[k]
            module._forward_pre_hooks_with_kwargs.pop(k, None)
            return module
    raise ValueError(f"weight_norm of '{name}' not found in {module}")
