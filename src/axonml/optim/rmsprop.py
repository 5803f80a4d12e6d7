"""RMSprop, Adagrad and Adadelta (``torch.optim.RMSprop``, ``Adagrad``, ``Adadelta``), PyTorch's formulas."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..core.tensor import Tensor
from ._helpers import (
    bump_version,
    check_lr,
    check_range,
    effective_grad,
    lerp_,
    scalar_state,
    step_up,
    to_scalar,
    zeros_state,
)
from .optimizer import Optimizer

__all__ = ["Adadelta", "Adagrad", "RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop (Hinton), optionally centered and with momentum, as PyTorch.

    With ``g = ±grad + weight_decay * p``::

        s = alpha * s + (1 - alpha) * g * g
        a = sqrt(s - gbar * gbar) + eps,  gbar = lerp(gbar, g, 1 - alpha)   if centered
        a = sqrt(s) + eps                                                   otherwise
        b = momentum * b + g / a;  p = p - lr * b                           if momentum > 0
        p = p - lr * g / a                                                  otherwise

    Args:
        params: parameters or parameter groups.
        lr: learning rate (default 1e-2).
        alpha: smoothing constant (default 0.99).
        eps: added to the denominator (default 1e-8).
        weight_decay: L2 penalty (default 0).
        momentum: momentum factor (default 0).
        centered: normalize by an estimate of the gradient's variance.
        maximize: maximize the objective.

    State per parameter: ``step``, ``square_avg``, ``momentum_buffer`` (momentum > 0), ``grad_avg`` (centered).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        check_lr(lr)
        check_range("epsilon value", eps)
        check_range("momentum value", momentum)
        check_range("weight_decay value", weight_decay)
        check_range("alpha value", alpha)
        defaults = {
            "lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps, "centered": centered,
            "weight_decay": weight_decay, "maximize": maximize,
        }
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        scratch = self._scratch
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            alpha, eps, wd = group["alpha"], group["eps"], group["weight_decay"]
            momentum, centered, maximize = group["momentum"], group["centered"], group["maximize"]
            for p in group["params"]:
                if p._grad is None:
                    continue
                dev = p._device
                xp = dev.xp
                state = self.state[p]
                if not state:
                    state["step"] = scalar_state(0.0)
                    state["square_avg"] = zeros_state(p)
                    if momentum > 0:
                        state["momentum_buffer"] = zeros_state(p)
                    if centered:
                        state["grad_avg"] = zeros_state(p)
                step_up(state)
                g = effective_grad(scratch, p, p._grad._data, wd, maximize)
                sq = state["square_avg"]._data
                avg = scratch.take(dev, g, 1)
                sq *= alpha
                xp.multiply(g, 1 - alpha, out=avg)
                avg *= g
                sq += avg
                if centered:
                    ga = state["grad_avg"]._data
                    lerp_(xp, ga, g, 1 - alpha, avg)
                    xp.multiply(ga, ga, out=avg)
                    xp.subtract(sq, avg, out=avg)
                    xp.sqrt(avg, out=avg)
                else:
                    xp.sqrt(sq, out=avg)
                avg += eps
                if momentum > 0:
                    buf = state["momentum_buffer"]._data
                    buf *= momentum
                    xp.divide(g, avg, out=avg)
                    buf += avg
                    xp.multiply(buf, -lr, out=avg)
                    p._data += avg
                else:
                    num = scratch.take(dev, g, 2)
                    xp.multiply(g, -lr, out=num)
                    num /= avg
                    p._data += num
                bump_version(p)
        return loss


class Adagrad(Optimizer):
    r"""Adagrad (Duchi et al.), as PyTorch.

    With ``g = ±grad + weight_decay * p`` and step count ``t``::

        clr = lr / (1 + (t - 1) * lr_decay)
        s = s + g * g;  p = p - clr * g / (sqrt(s) + eps)

    Args:
        params: parameters or parameter groups.
        lr: learning rate (default 1e-2).
        lr_decay: learning-rate decay (default 0).
        weight_decay: L2 penalty (default 0).
        initial_accumulator_value: the starting value of the sum of squares (default 0).
        eps: added to the denominator (default 1e-10).
        maximize: maximize the objective.

    State per parameter (created at construction, as PyTorch): ``step``, ``sum``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        check_lr(lr)
        check_range("lr_decay value", lr_decay)
        check_range("weight_decay value", weight_decay)
        check_range("initial_accumulator_value value", initial_accumulator_value)
        check_range("epsilon value", eps)
        defaults = {
            "lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value, "maximize": maximize,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = {
                    "step": scalar_state(0.0), "sum": zeros_state(p, initial_accumulator_value),
                }

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        scratch = self._scratch
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            lr_decay, eps, wd, maximize = group["lr_decay"], group["eps"], group["weight_decay"], group["maximize"]
            for p in group["params"]:
                if p._grad is None:
                    continue
                dev = p._device
                xp = dev.xp
                state = self.state[p]
                if not state:  # a parameter added later by add_param_group
                    state["step"] = scalar_state(0.0)
                    state["sum"] = zeros_state(p, self.defaults["initial_accumulator_value"])
                t = step_up(state)
                g = effective_grad(scratch, p, p._grad._data, wd, maximize)
                clr = lr / (1 + (t - 1) * lr_decay)
                s = state["sum"]._data
                std = scratch.take(dev, g, 1)
                xp.multiply(g, g, out=std)
                s += std
                xp.sqrt(s, out=std)
                std += eps
                num = scratch.take(dev, g, 2)
                xp.multiply(g, -clr, out=num)
                num /= std
                p._data += num
                bump_version(p)
        return loss


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler), as PyTorch.

    With ``g = ±grad + weight_decay * p``::

        s = rho * s + (1 - rho) * g * g
        delta = sqrt(acc + eps) / sqrt(s + eps) * g
        acc = rho * acc + (1 - rho) * delta * delta
        p = p - lr * delta

    Args:
        params: parameters or parameter groups.
        lr: scale of the update (default 1.0).
        rho: coefficient of the running averages (default 0.9).
        eps: added inside the square roots (default 1e-6).
        weight_decay: L2 penalty (default 0).
        maximize: maximize the objective.

    State per parameter: ``step``, ``square_avg``, ``acc_delta``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
    ) -> None:
        check_lr(lr)
        check_range("rho value", rho, 0.0, 1.0)
        check_range("epsilon value", eps)
        check_range("weight_decay value", weight_decay)
        defaults = {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay, "maximize": maximize}
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        scratch = self._scratch
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            rho, eps, wd, maximize = group["rho"], group["eps"], group["weight_decay"], group["maximize"]
            for p in group["params"]:
                if p._grad is None:
                    continue
                dev = p._device
                xp = dev.xp
                state = self.state[p]
                if not state:
                    state["step"] = scalar_state(0.0)
                    state["square_avg"] = zeros_state(p)
                    state["acc_delta"] = zeros_state(p)
                step_up(state)
                g = effective_grad(scratch, p, p._grad._data, wd, maximize)
                sq, acc = state["square_avg"]._data, state["acc_delta"]._data
                std = scratch.take(dev, g, 1)
                delta = scratch.take(dev, g, 2)
                sq *= rho
                xp.multiply(g, 1 - rho, out=std)
                std *= g
                sq += std
                xp.add(sq, eps, out=std)
                xp.sqrt(std, out=std)
                xp.add(acc, eps, out=delta)
                xp.sqrt(delta, out=delta)
                delta /= std
                delta *= g
                acc *= rho
                xp.multiply(delta, 1 - rho, out=std)
                std *= delta
                acc += std
                delta *= -lr
                p._data += delta
                bump_version(p)
        return loss
