"""NAdam and RAdam (``torch.optim.NAdam``, ``torch.optim.RAdam``), with PyTorch's update formulas."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

from ..backend.fused import Kernel, elementwise, fusable
from ..core.tensor import Tensor
from ._helpers import (
    adam_defaults,
    adam_moments,
    bump_version,
    check_range,
    grad_cpu,
    grad_src,
    lerp_scalar,
    moments_src,
    run_arrays,
    scalar_state,
    to_scalar,
    torch_flags,
    update_moments,
)
from .optimizer import Optimizer

__all__ = ["NAdam", "RAdam"]


def _nadam_arrays(xp: Any, p: Any, g: Any, m: Any, v: Any, t0: Any, t1: Any, t2: Any, dec: float | None, wd: float,
                  maximize: bool, beta1: float, beta2: float, bc2: float, eps: float, cg: float, cm: float) -> None:
    """One NAdam update as in-place ufuncs (``cg``, ``cm``: the signed step sizes of the gradient and momentum)."""
    if dec is not None:
        p *= dec
    d = grad_cpu(xp, p, g, t0, wd, maximize)
    update_moments(xp, m, v, d, beta1, beta2, t1)
    denom = t1
    xp.divide(v, bc2, out=denom)
    xp.sqrt(denom, out=denom)
    denom += eps
    xp.multiply(d, cg, out=t2)
    t2 /= denom
    p += t2
    xp.multiply(m, cm, out=t2)
    t2 /= denom
    p += t2


@functools.cache
def _nadam_kernel(decoupled: bool, has_wd: bool, maximize: bool, small: bool) -> Kernel:
    """The fused CUDA twin of :func:`_nadam_arrays`."""
    body = ("p = p * dec; " if decoupled else "") + grad_src(has_wd, maximize) + " " + moments_src(small)
    body += " T den = ax_sqrt(v / bc2) + eps; p = p + d * cg / den; p = p + m * cm / den;"
    name = "axonml_nadam" + "_decoupled" * decoupled + "_wd" * has_wd + "_max" * maximize + "_lerp2" * (not small)
    return elementwise(name, "T g, T dec, T wd, T w1, T b2, T omb2, T bc2, T eps, T cg, T cm", "T p, T m, T v", body)


def _radam_arrays(xp: Any, p: Any, g: Any, m: Any, v: Any, t0: Any, t1: Any, dec: float | None, wd: float,
                  maximize: bool, beta1: float, beta2: float, rect: bool, eps: float, scale: float) -> None:
    """One RAdam update as in-place ufuncs: ``scale`` is the rectified step size when ``rect``, else ``lr / bc1``."""
    if dec is not None:
        p *= dec
    d = grad_cpu(xp, p, g, t0, wd, maximize)
    update_moments(xp, m, v, d, beta1, beta2, t1)
    if rect:
        xp.sqrt(v, out=t1)
        t1 += eps
        xp.divide(scale, t1, out=t1)  # the adaptive step size
        t1 *= m
    else:
        xp.multiply(m, scale, out=t1)
    xp.subtract(p, t1, out=p)


@functools.cache
def _radam_kernel(decoupled: bool, has_wd: bool, maximize: bool, small: bool, rect: bool) -> Kernel:
    """The fused CUDA twin of :func:`_radam_arrays` (``rect`` changes once in a run: two kernels at most)."""
    body = ("p = p * dec; " if decoupled else "") + grad_src(has_wd, maximize) + " " + moments_src(small)
    body += " p = p - scale / (ax_sqrt(v) + eps) * m;" if rect else " p = p - m * scale;"
    name = "axonml_radam" + "_decoupled" * decoupled + "_wd" * has_wd + "_max" * maximize + "_lerp2" * (not small) \
        + "_rect" * rect
    return elementwise(name, "T g, T dec, T wd, T w1, T b2, T omb2, T eps, T scale", "T p, T m, T v", body)


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
        foreach, fused, capturable, differentiable: PyTorch's implementation switches, accepted as
            there; they select no other arithmetic here (``axonml.optim._helpers.torch_flags``).

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
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        defaults = adam_defaults(lr, betas, eps, weight_decay, momentum_decay=momentum_decay,
                                 decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                                 **torch_flags(foreach=foreach, capturable=capturable, differentiable=differentiable))
        check_range("momentum_decay value", momentum_decay)
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
            has_wd = wd != 0
            dec = 1 - lr * wd if has_wd and decoupled else None
            small, w1 = lerp_scalar(1 - beta1)
            for p, dev, x, g in self._with_grads(group):
                state = self.state[p]
                if "mu_product" not in state:
                    state["mu_product"] = scalar_state(1.0)
                t = adam_moments(state, p)
                bc2 = 1 - beta2**t
                mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))
                mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
                # the product is a 0-d tensor of the scalar dtype, multiplied in that dtype as PyTorch does
                mu_prod_arr = state["mu_product"]._data
                mu_prod_arr *= mu
                mu_product = float(mu_prod_arr)
                cg = -lr * (1.0 - mu) / (1.0 - mu_product)
                cm = (-lr * mu_next) / (1.0 - mu_product * mu_next)
                m, v = state["exp_avg"]._data, state["exp_avg_sq"]._data
                if fusable(dev, x, g, m, v):
                    T = x.dtype.type
                    _nadam_kernel(dec is not None, has_wd and not decoupled, maximize, small)(
                        g, T(1 if dec is None else dec), T(wd), T(w1), T(beta2), T(1 - beta2), T(bc2), T(eps), T(cg),
                        T(cm), x, m, v)
                else:
                    run_arrays(_nadam_arrays, scratch, dev, (x, g, m, v), 3, dec, 0 if decoupled else wd, maximize,
                               beta1, beta2, bc2, eps, cg, cm)
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
        foreach, fused, capturable, differentiable: PyTorch's implementation switches, accepted as
            there; they select no other arithmetic here (``axonml.optim._helpers.torch_flags``).

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
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        super().__init__(params, adam_defaults(lr, betas, eps, weight_decay,
                                               decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                                               **torch_flags(foreach=foreach, capturable=capturable,
                                                             differentiable=differentiable)))

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
            has_wd = wd != 0
            dec = 1 - lr * wd if has_wd and decoupled else None
            small, w1 = lerp_scalar(1 - beta1)
            for p, dev, x, g in self._with_grads(group):
                state = self.state[p]
                t = adam_moments(state, p)
                m, v = state["exp_avg"]._data, state["exp_avg_sq"]._data
                bc1 = 1 - beta1**t
                bc2 = 1 - beta2**t
                rho_t = rho_inf - 2 * t * (beta2**t) / bc2
                rect = rho_t > 5.0
                if rect:
                    r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
                    scale = bc2**0.5 * r * lr / bc1
                else:
                    scale = lr / bc1
                if fusable(dev, x, g, m, v):
                    T = x.dtype.type
                    _radam_kernel(dec is not None, has_wd and not decoupled, maximize, small, rect)(
                        g, T(1 if dec is None else dec), T(wd), T(w1), T(beta2), T(1 - beta2), T(eps), T(scale),
                        x, m, v)
                else:
                    run_arrays(_radam_arrays, scratch, dev, (x, g, m, v), 2, dec, 0 if decoupled else wd, maximize,
                               beta1, beta2, rect, eps, scale)
                bump_version(p)
        return loss
