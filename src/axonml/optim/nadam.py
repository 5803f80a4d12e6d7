"""NAdam and RAdam (``torch.optim.NAdam``, ``torch.optim.RAdam``), with PyTorch's update formulas."""

from __future__ import annotations

import math
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
    scalar_state,
    to_scalar,
    update_moments,
)
from .optimizer import Optimizer

__all__ = ["NAdam", "RAdam"]


class NAdam(Optimizer):
    r"""Adam with Nesterov momentum (Dozat), with PyTorch's momentum-decay schedule.

    With ``g = ±grad`` (plus ``weight_decay * p``, or ``p *= 1 - lr * weight_decay`` when
    decoupled) and step count ``t``::

        mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay));  mu_{t+1} likewise
        mu_product = mu_product * mu_t          (kept in the state, a 0-d float tensor)
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        d = sqrt(v / (1 - beta2^t)) + eps
        p = p - lr * (1 - mu_t) / (1 - mu_product) * g / d
              - lr * mu_{t+1} / (1 - mu_product * mu_{t+1}) * m / d

    Args:
        params: parameters or parameter groups.
        lr: learning rate (default 2e-3).
        betas: running-average coefficients (default (0.9, 0.999)).
        eps: added to the denominator (default 1e-8).
        weight_decay: weight decay (default 0).
        momentum_decay: the momentum schedule's decay ``psi`` (default 4e-3).
        decoupled_weight_decay: decay the weights directly (NAdamW) instead of adding to the gradient.
        maximize: maximize the objective.

    State per parameter: ``step``, ``mu_product`` (0-d tensors), ``exp_avg``, ``exp_avg_sq``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        check_lr(lr)
        check_range("epsilon value", eps)
        betas = check_betas(betas)
        check_range("weight_decay value", weight_decay)
        check_range("momentum_decay value", momentum_decay)
        defaults = {
            "lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "momentum_decay": momentum_decay,
            "decoupled_weight_decay": decoupled_weight_decay, "maximize": maximize,
        }
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        scratch = self._scratch
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            beta1, beta2 = group["betas"]
            eps, wd, psi = group["eps"], group["weight_decay"], group["momentum_decay"]
            maximize, decoupled = group["maximize"], group["decoupled_weight_decay"]
            for p in group["params"]:
                if p._grad is None:
                    continue
                dev = p._device
                xp = dev.xp
                state = self.state[p]
                if "mu_product" not in state:
                    state["mu_product"] = scalar_state(1.0)
                t = adam_moments(state, p)
                bc2 = 1 - beta2**t
                g = decayed_grad(scratch, p, lr, wd, decoupled, maximize)
                mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))
                mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
                # the product is a 0-d tensor of the scalar dtype, multiplied in that dtype as PyTorch does
                mu_prod_arr = state["mu_product"]._data
                mu_prod_arr *= mu
                mu_product = float(mu_prod_arr)
                m, v = state["exp_avg"]._data, state["exp_avg_sq"]._data
                tmp = scratch.take(dev, g, 1)
                update_moments(xp, m, v, g, beta1, beta2, tmp)
                denom = tmp
                xp.divide(v, bc2, out=denom)
                xp.sqrt(denom, out=denom)
                denom += eps
                num = scratch.take(dev, g, 2)
                xp.multiply(g, -lr * (1.0 - mu) / (1.0 - mu_product), out=num)
                num /= denom
                p._data += num
                xp.multiply(m, (-lr * mu_next) / (1.0 - mu_product * mu_next), out=num)
                num /= denom
                p._data += num
                bump_version(p)
        return loss


class RAdam(Optimizer):
    r"""Rectified Adam (Liu et al.), with PyTorch's formulation.

    With ``g = ±grad`` (plus L2 or decoupled weight decay) and step count ``t``::

        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        rho_inf = 2 / (1 - beta2) - 1;  rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
        if rho_t > 5:  r = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
                       p = p - lr * m / (1 - beta1^t) * r * sqrt(1 - beta2^t) / (sqrt(v) + eps)
        else:          p = p - lr * m / (1 - beta1^t)

    Args:
        params: parameters or parameter groups.
        lr: learning rate (default 1e-3).
        betas: running-average coefficients (default (0.9, 0.999)).
        eps: added to the denominator (default 1e-8).
        weight_decay: weight decay (default 0).
        decoupled_weight_decay: decay the weights directly instead of adding to the gradient.
        maximize: maximize the objective.

    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        check_lr(lr)
        check_range("epsilon value", eps)
        betas = check_betas(betas)
        check_range("weight_decay value", weight_decay)
        defaults = {
            "lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
            "decoupled_weight_decay": decoupled_weight_decay, "maximize": maximize,
        }
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        scratch = self._scratch
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            beta1, beta2 = group["betas"]
            eps, wd = group["eps"], group["weight_decay"]
            maximize, decoupled = group["maximize"], group["decoupled_weight_decay"]
            rho_inf = 2 / (1 - beta2) - 1
            for p in group["params"]:
                if p._grad is None:
                    continue
                dev = p._device
                xp = dev.xp
                state = self.state[p]
                t = adam_moments(state, p)
                g = decayed_grad(scratch, p, lr, wd, decoupled, maximize)
                m, v = state["exp_avg"]._data, state["exp_avg_sq"]._data
                tmp = scratch.take(dev, g, 1)
                update_moments(xp, m, v, g, beta1, beta2, tmp)
                bc1 = 1 - beta1**t
                bc2 = 1 - beta2**t
                rho_t = rho_inf - 2 * t * (beta2**t) / bc2
                if rho_t > 5.0:
                    rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
                    xp.sqrt(v, out=tmp)
                    tmp += eps
                    xp.divide(bc2**0.5 * rect * lr / bc1, tmp, out=tmp)  # the adaptive step size
                    tmp *= m
                    xp.subtract(p._data, tmp, out=p._data)
                else:
                    xp.multiply(m, lr / bc1, out=tmp)
                    xp.subtract(p._data, tmp, out=p._data)
                bump_version(p)
        return loss
