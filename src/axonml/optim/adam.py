"""Adam, AdamW and Adamax (``torch.optim.Adam``, ``AdamW``, ``Adamax``), with PyTorch's update formulas."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..core.tensor import Tensor
from ._helpers import (
    adam_moments,
    bump_version,
    check_betas,
    check_lr,
    check_range,
    decayed_grad,
    effective_grad,
    lerp_,
    scalar_state,
    step_up,
    to_scalar,
    update_moments,
    zeros_state,
)
from .optimizer import Optimizer

__all__ = ["Adam", "AdamW", "Adamax"]


class Adam(Optimizer):
    r"""Adam (Kingma & Ba), optionally AMSGrad, with L2 or decoupled weight decay (PyTorch's formulation).

    With ``g = ±grad`` and step count ``t``::

        p = p * (1 - lr * weight_decay)       if decoupled_weight_decay   (AdamW)
        g = g + weight_decay * p              otherwise
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                 if amsgrad (used for v below)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    Args:
        params: parameters or parameter groups.
        lr: learning rate (default 1e-3).
        betas: coefficients of the running averages of the gradient and its square (default (0.9, 0.999)).
        eps: added to the denominator (default 1e-8).
        weight_decay: weight decay (default 0).
        amsgrad: use the maximum of past squared-gradient averages (default False).
        maximize: maximize the objective.
        decoupled_weight_decay: decay the weights directly (AdamW) instead of adding to the gradient.

    State per parameter: ``step`` (0-d float tensor), ``exp_avg``, ``exp_avg_sq``, and ``max_exp_avg_sq`` with amsgrad.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        check_lr(lr)
        check_range("epsilon value", eps)
        betas = check_betas(betas)
        check_range("weight_decay value", weight_decay)
        defaults = {
            "lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad,
            "maximize": maximize, "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        scratch = self._scratch
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            beta1, beta2 = (to_scalar(b) for b in group["betas"])
            eps, wd, amsgrad = group["eps"], group["weight_decay"], group["amsgrad"]
            maximize, decoupled = group["maximize"], group["decoupled_weight_decay"]
            for p in group["params"]:
                if p._grad is None:
                    continue
                dev = p._device
                xp = dev.xp
                state = self.state[p]
                t = adam_moments(state, p)
                if amsgrad and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = zeros_state(p)
                g = decayed_grad(scratch, p, lr, wd, decoupled, maximize)
                m, v = state["exp_avg"]._data, state["exp_avg_sq"]._data
                tmp = scratch.take(dev, g, 1)
                update_moments(xp, m, v, g, beta1, beta2, tmp)
                step_size = lr / (1 - beta1**t)
                bc2_sqrt = (1 - beta2**t) ** 0.5
                if amsgrad:
                    vmax = state["max_exp_avg_sq"]._data
                    xp.maximum(vmax, v, out=vmax)
                    v = vmax
                xp.sqrt(v, out=tmp)
                tmp /= bc2_sqrt
                tmp += eps
                num = scratch.take(dev, g, 2)
                xp.multiply(m, -step_size, out=num)
                num /= tmp
                p._data += num
                bump_version(p)
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``.

    The same as ``Adam(..., decoupled_weight_decay=True)``; the default weight decay is 1e-2.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True
        )

    def _fill_group(self, group: dict[str, Any]) -> None:
        super()._fill_group(group)
        group["decoupled_weight_decay"] = True  # as PyTorch: an AdamW loading an Adam state stays AdamW


class Adamax(Optimizer):
    r"""Adamax, Adam with the infinity norm (PyTorch's formulation).

    With ``g = ±grad + weight_decay * p`` and step count ``t``::

        m = lerp(m, g, 1 - beta1);  u = max(beta2 * u, |g| + eps)
        p = p - lr / (1 - beta1^t) * m / u

    Args:
        params: parameters or parameter groups.
        lr: learning rate (default 2e-3).
        betas: coefficients of the running average and the infinity norm (default (0.9, 0.999)).
        eps: added to ``|g|`` (default 1e-8).
        weight_decay: L2 penalty (default 0).
        maximize: maximize the objective.

    State per parameter: ``step``, ``exp_avg``, ``exp_inf``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
    ) -> None:
        check_lr(lr)
        check_range("epsilon value", eps)
        betas = check_betas(betas)
        check_range("weight_decay value", weight_decay)
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "maximize": maximize}
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        scratch = self._scratch
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            beta1, beta2 = group["betas"]
            eps, wd, maximize = group["eps"], group["weight_decay"], group["maximize"]
            for p in group["params"]:
                if p._grad is None:
                    continue
                dev = p._device
                xp = dev.xp
                state = self.state[p]
                if not state:
                    state["step"] = scalar_state(0.0)
                    state["exp_avg"] = zeros_state(p)
                    state["exp_inf"] = zeros_state(p)
                t = step_up(state)
                g = effective_grad(scratch, p, p._grad._data, wd, maximize)
                m, u = state["exp_avg"]._data, state["exp_inf"]._data
                tmp = scratch.take(dev, g, 1)
                lerp_(xp, m, g, 1 - beta1, tmp)
                u *= beta2
                xp.abs(g, out=tmp)
                tmp += eps
                xp.maximum(u, tmp, out=u)
                clr = lr / (1 - beta1**t)
                xp.multiply(m, -clr, out=tmp)
                tmp /= u
                p._data += tmp
                bump_version(p)
        return loss
