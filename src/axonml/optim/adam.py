"""Adam, AdamW and Adamax (``torch.optim.Adam``, ``AdamW``, ``Adamax``), with PyTorch's update formulas."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from ..backend.fused import Kernel, elementwise, fusable
from ..core.tensor import Tensor
from ._helpers import (
    adam_defaults,
    adam_moments,
    bump_version,
    grad_cpu,
    grad_src,
    lerp_,
    lerp_scalar,
    lerp_src,
    moments_src,
    run_arrays,
    scalar_state,
    step_up,
    to_scalar,
    torch_flags,
    update_moments,
    zeros_state,
)
from .optimizer import Optimizer

__all__ = ["Adam", "AdamW", "Adamax"]


def _adam_arrays(xp: Any, p: Any, g: Any, m: Any, v: Any, vmax: Any, t0: Any, t1: Any, t2: Any, dec: float | None,
                 wd: float, maximize: bool, beta1: float, beta2: float, bc2s: float, eps: float, nss: float) -> None:
    """One Adam update as in-place ufuncs (``dec``: the decoupled decay factor or None; ``vmax`` None without
    amsgrad; ``nss`` the negated step size, ``bc2s`` the square root of the second bias correction)."""
    if dec is not None:
        p *= dec
    d = grad_cpu(xp, p, g, t0, wd, maximize)
    update_moments(xp, m, v, d, beta1, beta2, t1)
    if vmax is not None:
        xp.maximum(vmax, v, out=vmax)
        v = vmax
    xp.sqrt(v, out=t1)
    t1 /= bc2s
    t1 += eps
    xp.multiply(m, nss, out=t2)
    t2 /= t1
    p += t2


@functools.cache
def _adam_kernel(decoupled: bool, has_wd: bool, maximize: bool, small: bool, amsgrad: bool) -> Kernel:
    """The fused CUDA twin of :func:`_adam_arrays` for one combination of options."""
    body = ("p = p * dec; " if decoupled else "") + grad_src(has_wd, maximize) + " " + moments_src(small)
    body += " vmax = ax_max(vmax, v); T vv = vmax;" if amsgrad else " T vv = v;"
    body += " p = p + m * nss / (ax_sqrt(vv) / bc2s + eps);"
    name = "axonml_adam" + "_decoupled" * decoupled + "_wd" * has_wd + "_max" * maximize + "_lerp2" * (not small) \
        + "_amsgrad" * amsgrad
    return elementwise(name, "T g, T dec, T wd, T w1, T b2, T omb2, T bc2s, T eps, T nss",
                       "T p, T m, T v" + ", T vmax" * amsgrad, body)


def _adamax_arrays(xp: Any, p: Any, g: Any, m: Any, u: Any, t0: Any, t1: Any, wd: float, maximize: bool,
                   beta1: float, beta2: float, eps: float, nclr: float) -> None:
    """One Adamax update as in-place ufuncs (``nclr``: minus the bias-corrected learning rate)."""
    d = grad_cpu(xp, p, g, t0, wd, maximize)
    lerp_(xp, m, d, 1 - beta1, t1)
    u *= beta2
    xp.abs(d, out=t1)
    t1 += eps
    xp.maximum(u, t1, out=u)
    xp.multiply(m, nclr, out=t1)
    t1 /= u
    p += t1


@functools.cache
def _adamax_kernel(has_wd: bool, maximize: bool, small: bool) -> Kernel:
    """The fused CUDA twin of :func:`_adamax_arrays`."""
    body = grad_src(has_wd, maximize) + " " + lerp_src("m", "d", "w1", small)
    body += " u = ax_max(u * b2, ax_abs(d) + eps); p = p + m * nclr / u;"
    name = "axonml_adamax" + "_wd" * has_wd + "_max" * maximize + "_lerp2" * (not small)
    return elementwise(name, "T g, T wd, T w1, T b2, T eps, T nclr", "T p, T m, T u", body)


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
        foreach, fused, capturable, differentiable: PyTorch's implementation switches, accepted as
            there; they select no other arithmetic here (``axonml.optim._helpers.torch_flags``).
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
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        super().__init__(params, adam_defaults(lr, betas, eps, weight_decay, amsgrad=amsgrad, maximize=maximize,
                                               decoupled_weight_decay=decoupled_weight_decay,
                                               **torch_flags(foreach=foreach, capturable=capturable,
                                                             differentiable=differentiable, fused=fused)))

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        scratch = self._scratch
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            beta1, beta2 = (to_scalar(b) for b in group["betas"])
            eps, wd, amsgrad = group["eps"], group["weight_decay"], group["amsgrad"]
            maximize, decoupled = group["maximize"], group["decoupled_weight_decay"]
            has_wd = wd != 0
            dec = 1 - lr * wd if has_wd and decoupled else None
            small, w1 = lerp_scalar(1 - beta1)
            for p, dev, x, g in self._with_grads(group):
                state = self.state[p]
                t = adam_moments(state, p)
                if amsgrad and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = zeros_state(p)
                m, v = state["exp_avg"]._data, state["exp_avg_sq"]._data
                vmax = state["max_exp_avg_sq"]._data if amsgrad else None
                nss = -(lr / (1 - beta1**t))
                bc2s = (1 - beta2**t) ** 0.5
                if fusable(dev, x, g, m, v, vmax):
                    T = x.dtype.type
                    k = _adam_kernel(dec is not None, has_wd and not decoupled, maximize, small, amsgrad)
                    args = (g, T(1 if dec is None else dec), T(wd), T(w1), T(beta2), T(1 - beta2), T(bc2s), T(eps),
                            T(nss), x, m, v)
                    if vmax is None:
                        k(*args)
                    else:
                        k(*args, vmax)
                else:
                    run_arrays(_adam_arrays, scratch, dev, (x, g, m, v, vmax), 3, dec, 0 if decoupled else wd,
                               maximize, beta1, beta2, bc2s, eps, nss)
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
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True,
            foreach=foreach, capturable=capturable, differentiable=differentiable, fused=fused,
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
        foreach, fused, capturable, differentiable: PyTorch's implementation switches, accepted as
            there; they select no other arithmetic here (``axonml.optim._helpers.torch_flags``).

    State per parameter: ``step``, ``exp_avg``, ``exp_inf``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        super().__init__(params, adam_defaults(lr, betas, eps, weight_decay, maximize=maximize, **torch_flags(
            foreach=foreach, capturable=capturable, differentiable=differentiable)))

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        scratch = self._scratch
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            beta1, beta2 = group["betas"]
            eps, wd, maximize = group["eps"], group["weight_decay"], group["maximize"]
            small, w1 = lerp_scalar(1 - beta1)
            for p, dev, x, g in self._with_grads(group):
                state = self.state[p]
                if not state:
                    state["step"] = scalar_state(0.0)
                    state["exp_avg"] = zeros_state(p)
                    state["exp_inf"] = zeros_state(p)
                t = step_up(state)
                m, u = state["exp_avg"]._data, state["exp_inf"]._data
                nclr = -(lr / (1 - beta1**t))
                if fusable(dev, x, g, m, u):
                    T = x.dtype.type
                    _adamax_kernel(wd != 0, maximize, small)(g, T(wd), T(w1), T(beta2), T(eps), T(nclr), x, m, u)
                else:
                    run_arrays(_adamax_arrays, scratch, dev, (x, g, m, u), 2, wd, maximize, beta1, beta2, eps, nclr)
                bump_version(p)
        return loss
