"""LAMB and Lion: two optimizers PyTorch does not ship, written from their papers."""

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
    effective_grad,
    lerp_,
    to_scalar,
    update_moments,
    zeros_state,
)
from .optimizer import Optimizer

__all__ = ["LAMB", "Lion"]


def _norm(xp: Any, a: Any) -> float:
    """The Euclidean norm of all elements of ``a``."""
    flat = a.reshape(-1)
    return float(xp.sqrt(xp.dot(flat, flat)))


class LAMB(Optimizer):
    r"""LAMB: layer-wise adaptive moments for large-batch training (You et al., 2020, Algorithm 2).

    For each parameter tensor ``p`` (one "layer") with ``g = ±grad`` and step count ``t``::

        m = beta1 * m + (1 - beta1) * g                  (computed as lerp(m, g, 1 - beta1))
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t)     (m_hat = m, v_hat = v if not bias_correction)
        r = m_hat / (sqrt(v_hat) + eps) + weight_decay * p
        w = ||p||_2,  a = ||r||_2
        trust = w / a  if w > 0 and a > 0  else 1
        p = p - lr * trust * r

    The trust ratio uses the unclipped weight norm (the paper's scaling function
    phi is the identity). This is the formulation of the paper and of the common
    PyTorch implementations (torch-optimizer's ``Lamb`` with ``debias=True`` and no
    clamp, timm's ``Lamb`` without gradient clipping).

    Args:
        params: parameters or parameter groups.
        lr: learning rate (default 1e-3).
        betas: running-average coefficients (default (0.9, 0.999)).
        eps: added to the denominator (default 1e-6, as the paper).
        weight_decay: decoupled weight decay inside the trust-ratio update (default 0).
        bias_correction: divide the moments by ``1 - beta^t`` (default True).
        maximize: maximize the objective.

    State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0,
        bias_correction: bool = True,
        *,
        maximize: bool = False,
    ) -> None:
        check_lr(lr)
        check_range("epsilon value", eps)
        betas = check_betas(betas)
        check_range("weight_decay value", weight_decay)
        defaults = {
            "lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
            "bias_correction": bias_correction, "maximize": maximize,
        }
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        scratch = self._scratch
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            beta1, beta2 = group["betas"]
            eps, wd, maximize, debias = group["eps"], group["weight_decay"], group["maximize"], group["bias_correction"]
            for p in group["params"]:
                if p._grad is None:
                    continue
                dev = p._device
                xp = dev.xp
                state = self.state[p]
                t = adam_moments(state, p)
                g = effective_grad(scratch, p, p._grad._data, 0, maximize)
                m, v = state["exp_avg"]._data, state["exp_avg_sq"]._data
                r = scratch.take(dev, g, 1)
                update_moments(xp, m, v, g, beta1, beta2, r)
                bc1 = 1 - beta1**t if debias else 1.0
                bc2 = 1 - beta2**t if debias else 1.0
                # r = (m / bc1) / (sqrt(v / bc2) + eps) + wd * p
                xp.divide(v, bc2, out=r)
                xp.sqrt(r, out=r)
                r += eps
                xp.divide(m, r, out=r)
                r /= bc1
                if wd != 0:
                    w = scratch.take(dev, g, 2)
                    xp.multiply(p._data, wd, out=w)
                    r += w
                w_norm, r_norm = _norm(xp, p._data), _norm(xp, r)
                trust = w_norm / r_norm if w_norm > 0 and r_norm > 0 else 1.0
                r *= -lr * trust
                p._data += r
                bump_version(p)
        return loss


class Lion(Optimizer):
    r"""Lion: evolved sign momentum (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms").

    With ``g = ±grad``::

        c = beta1 * m + (1 - beta1) * g                  (computed as lerp(m, g, 1 - beta1))
        p = p * (1 - lr * weight_decay) - lr * sign(c)
        m = beta2 * m + (1 - beta2) * g                  (lerp(m, g, 1 - beta2))

    Use a learning rate 3-10x smaller than AdamW's and a weight decay 3-10x larger.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (default 1e-4).
        betas: interpolation coefficients of the update and of the momentum (default (0.9, 0.99)).
        weight_decay: decoupled weight decay (default 0).
        maximize: maximize the objective.

    State per parameter: ``exp_avg``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0,
        *,
        maximize: bool = False,
    ) -> None:
        check_lr(lr)
        betas = check_betas(betas)
        check_range("weight_decay value", weight_decay)
        defaults = {"lr": lr, "betas": betas, "weight_decay": weight_decay, "maximize": maximize}
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        scratch = self._scratch
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            beta1, beta2 = group["betas"]
            wd, maximize = group["weight_decay"], group["maximize"]
            for p in group["params"]:
                if p._grad is None:
                    continue
                dev = p._device
                xp = dev.xp
                state = self.state[p]
                if not state:
                    state["exp_avg"] = zeros_state(p)
                g = effective_grad(scratch, p, p._grad._data, 0, maximize)
                m = state["exp_avg"]._data
                c = scratch.take(dev, g, 1)
                xp.subtract(g, m, out=c)
                c *= 1 - beta1
                c += m
                xp.sign(c, out=c)
                if wd != 0:
                    p._data *= 1 - lr * wd
                c *= -lr
                p._data += c
                lerp_(xp, m, g, 1 - beta2, c)
                bump_version(p)
        return loss
