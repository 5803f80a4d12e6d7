"""RMSprop, Adagrad and Adadelta (``torch.optim.RMSprop``, ``Adagrad``, ``Adadelta``), PyTorch's formulas."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from ..backend.fused import Kernel, elementwise, fusable
from ..core.tensor import Tensor
from ._helpers import (
    bump_version,
    check_lr,
    check_range,
    grad_cpu,
    grad_src,
    lerp_,
    lerp_scalar,
    lerp_src,
    run_arrays,
    scalar_state,
    step_up,
    to_scalar,
    torch_flags,
    zeros_state,
)
from .optimizer import Optimizer

__all__ = ["Adadelta", "Adagrad", "RMSprop"]


def _rmsprop_arrays(xp: Any, p: Any, g: Any, sq: Any, ga: Any, buf: Any, t0: Any, t1: Any, t2: Any, wd: float,
                    maximize: bool, alpha: float, eps: float, momentum: float, nlr: float) -> None:
    """One RMSprop update as in-place ufuncs (``ga`` None unless centered, ``buf`` None without momentum)."""
    d = grad_cpu(xp, p, g, t0, wd, maximize)
    avg = t1
    sq *= alpha
    xp.multiply(d, 1 - alpha, out=avg)
    avg *= d
    sq += avg
    if ga is not None:
        lerp_(xp, ga, d, 1 - alpha, avg)
        xp.multiply(ga, ga, out=avg)
        xp.subtract(sq, avg, out=avg)
        xp.sqrt(avg, out=avg)
    else:
        xp.sqrt(sq, out=avg)
    avg += eps
    if buf is not None:
        buf *= momentum
        xp.divide(d, avg, out=avg)
        buf += avg
        xp.multiply(buf, nlr, out=avg)
        p += avg
    else:
        xp.multiply(d, nlr, out=t2)
        t2 /= avg
        p += t2


@functools.cache
def _rmsprop_kernel(has_wd: bool, maximize: bool, centered: bool, small: bool, momentum: bool) -> Kernel:
    """The fused CUDA twin of :func:`_rmsprop_arrays`."""
    body = grad_src(has_wd, maximize) + " sq = sq * alpha + d * oma * d;"
    if centered:
        body += " " + lerp_src("ga", "d", "wa", small) + " T a = ax_sqrt(sq - ga * ga) + eps;"
    else:
        body += " T a = ax_sqrt(sq) + eps;"
    body += " buf = buf * mom + d / a; p = p + buf * nlr;" if momentum else " p = p + d * nlr / a;"
    name = "axonml_rmsprop" + "_wd" * has_wd + "_max" * maximize + "_centered" * centered \
        + "_lerp2" * (centered and not small) + "_mom" * momentum
    outs = "T p, T sq" + ", T ga" * centered + ", T buf" * momentum
    return elementwise(name, "T g, T wd, T alpha, T oma, T wa, T eps, T mom, T nlr", outs, body)


def _adagrad_arrays(xp: Any, p: Any, g: Any, s: Any, t0: Any, t1: Any, t2: Any, wd: float, maximize: bool,
                    eps: float, nclr: float) -> None:
    """One Adagrad update as in-place ufuncs (``nclr``: minus the decayed learning rate)."""
    d = grad_cpu(xp, p, g, t0, wd, maximize)
    std = t1
    xp.multiply(d, d, out=std)
    s += std
    xp.sqrt(s, out=std)
    std += eps
    xp.multiply(d, nclr, out=t2)
    t2 /= std
    p += t2


@functools.cache
def _adagrad_kernel(has_wd: bool, maximize: bool) -> Kernel:
    """The fused CUDA twin of :func:`_adagrad_arrays`."""
    body = grad_src(has_wd, maximize) + " s = s + d * d; p = p + d * nclr / (ax_sqrt(s) + eps);"
    name = "axonml_adagrad" + "_wd" * has_wd + "_max" * maximize
    return elementwise(name, "T g, T wd, T eps, T nclr", "T p, T s", body)


def _adadelta_arrays(xp: Any, p: Any, g: Any, sq: Any, acc: Any, t0: Any, t1: Any, t2: Any, wd: float,
                     maximize: bool, rho: float, eps: float, nlr: float) -> None:
    """One Adadelta update as in-place ufuncs."""
    d = grad_cpu(xp, p, g, t0, wd, maximize)
    std, delta = t1, t2
    sq *= rho
    xp.multiply(d, 1 - rho, out=std)
    std *= d
    sq += std
    xp.add(sq, eps, out=std)
    xp.sqrt(std, out=std)
    xp.add(acc, eps, out=delta)
    xp.sqrt(delta, out=delta)
    delta /= std
    delta *= d
    acc *= rho
    xp.multiply(delta, 1 - rho, out=std)
    std *= delta
    acc += std
    delta *= nlr
    p += delta


@functools.cache
def _adadelta_kernel(has_wd: bool, maximize: bool) -> Kernel:
    """The fused CUDA twin of :func:`_adadelta_arrays`."""
    body = grad_src(has_wd, maximize) + (
        " sq = sq * rho + d * omr * d; T delta = ax_sqrt(acc + eps) / ax_sqrt(sq + eps) * d;"
        " acc = acc * rho + delta * omr * delta; p = p + delta * nlr;"
    )
    name = "axonml_adadelta" + "_wd" * has_wd + "_max" * maximize
    return elementwise(name, "T g, T wd, T rho, T omr, T eps, T nlr", "T p, T sq, T acc", body)


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
        foreach, fused, capturable, differentiable: PyTorch's implementation switches, accepted as
            there; they select no other arithmetic here (``axonml.optim._helpers.torch_flags``).

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
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_lr(lr)
        check_range("epsilon value", eps)
        check_range("momentum value", momentum)
        check_range("weight_decay value", weight_decay)
        check_range("alpha value", alpha)
        defaults = {
            "lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps, "centered": centered,
            "weight_decay": weight_decay, "maximize": maximize,
            **torch_flags(capturable=capturable, foreach=foreach, differentiable=differentiable),
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
            small, wa = lerp_scalar(1 - alpha)
            for p, dev, x, g in self._with_grads(group):
                state = self.state[p]
                if not state:
                    state["step"] = scalar_state(0.0)
                    state["square_avg"] = zeros_state(p)
                    if momentum > 0:
                        state["momentum_buffer"] = zeros_state(p)
                    if centered:
                        state["grad_avg"] = zeros_state(p)
                step_up(state)
                sq = state["square_avg"]._data
                ga = state["grad_avg"]._data if centered else None
                buf = state["momentum_buffer"]._data if momentum > 0 else None
                if fusable(dev, x, g, sq, ga, buf):
                    T = x.dtype.type
                    extra = [a for a in (ga, buf) if a is not None]
                    _rmsprop_kernel(wd != 0, maximize, centered, small, momentum > 0)(
                        g, T(wd), T(alpha), T(1 - alpha), T(wa), T(eps), T(momentum), T(-lr), x, sq, *extra)
                else:
                    run_arrays(_rmsprop_arrays, scratch, dev, (x, g, sq, ga, buf), 3, wd, maximize, alpha, eps,
                               momentum, -lr)
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
        foreach, fused, capturable, differentiable: PyTorch's implementation switches, accepted as
            there; they select no other arithmetic here (``axonml.optim._helpers.torch_flags``).

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
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        check_lr(lr)
        check_range("lr_decay value", lr_decay)
        check_range("weight_decay value", weight_decay)
        check_range("initial_accumulator_value value", initial_accumulator_value)
        check_range("epsilon value", eps)
        defaults = {
            "lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value, "maximize": maximize,
            **torch_flags(foreach=foreach, differentiable=differentiable, fused=fused),
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
            for p, dev, x, g in self._with_grads(group):
                state = self.state[p]
                if not state:  # a parameter added later by add_param_group
                    state["step"] = scalar_state(0.0)
                    state["sum"] = zeros_state(p, self.defaults["initial_accumulator_value"])
                t = step_up(state)
                nclr = -(lr / (1 + (t - 1) * lr_decay))
                s = state["sum"]._data
                if fusable(dev, x, g, s):
                    T = x.dtype.type
                    _adagrad_kernel(wd != 0, maximize)(g, T(wd), T(eps), T(nclr), x, s)
                else:
                    run_arrays(_adagrad_arrays, scratch, dev, (x, g, s), 3, wd, maximize, eps, nclr)
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
        foreach, fused, capturable, differentiable: PyTorch's implementation switches, accepted as
            there; they select no other arithmetic here (``axonml.optim._helpers.torch_flags``).

    State per parameter: ``step``, ``square_avg``, ``acc_delta``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_lr(lr)
        check_range("rho value", rho, 0.0, 1.0)
        check_range("epsilon value", eps)
        check_range("weight_decay value", weight_decay)
        defaults = {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay, "maximize": maximize,
                    **torch_flags(foreach=foreach, capturable=capturable, differentiable=differentiable)}
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        scratch = self._scratch
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            rho, eps, wd, maximize = group["rho"], group["eps"], group["weight_decay"], group["maximize"]
            for p, dev, x, g in self._with_grads(group):
                state = self.state[p]
                if not state:
                    state["step"] = scalar_state(0.0)
                    state["square_avg"] = zeros_state(p)
                    state["acc_delta"] = zeros_state(p)
                step_up(state)
                sq, acc = state["square_avg"]._data, state["acc_delta"]._data
                if fusable(dev, x, g, sq, acc):
                    T = x.dtype.type
                    _adadelta_kernel(wd != 0, maximize)(g, T(wd), T(rho), T(1 - rho), T(eps), T(-lr), x, sq, acc)
                else:
                    run_arrays(_adadelta_arrays, scratch, dev, (x, g, sq, acc), 3, wd, maximize, rho, eps, -lr)
                bump_version(p)
        return loss
