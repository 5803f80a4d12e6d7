"""LAMB and Lion: two optimizers PyTorch does not ship, written from their papers."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..backend.fused import Kernel, elementwise, fusable
from ..backend.graphs import current_capture
from ..core.tensor import Tensor
from ._captured import DeviceScalars, reading
from ._helpers import (
    adam_defaults,
    adam_moments,
    bump_version,
    check_betas,
    check_lr,
    check_range,
    grad_cpu,
    grad_src,
    lerp_,
    lerp_scalar,
    lerp_src,
    moments_src,
    run_arrays,
    to_scalar,
    update_moments,
    zeros_state,
)
from .optimizer import Optimizer

__all__ = ["LAMB", "Lion"]


def _norm(xp: Any, a: Any) -> float:
    """The Euclidean norm of all elements of ``a``: the dot product on the device, its square root on the host
    (one launch fewer on CUDA; the same float32/float64 square root as on the device)."""
    flat = a.reshape(-1)
    s = xp.dot(flat, flat)
    return float(np.sqrt(s if xp is np else s.get()))


def _lamb_arrays(xp: Any, p: Any, g: Any, m: Any, v: Any, r: Any, t0: Any, wd: float, maximize: bool, beta1: float,
                 beta2: float, bc1: float, bc2: float, eps: float) -> None:
    """LAMB's elementwise part as in-place ufuncs: the moments and ``r = (m / bc1) / (sqrt(v / bc2) + eps) + wd p``."""
    d = grad_cpu(xp, p, g, t0, 0, maximize)
    update_moments(xp, m, v, d, beta1, beta2, r)
    xp.divide(v, bc2, out=r)
    xp.sqrt(r, out=r)
    r += eps
    xp.divide(m, r, out=r)
    r /= bc1
    if wd != 0:
        xp.multiply(p, wd, out=t0)
        r += t0


@functools.cache
def _lamb_kernel(maximize: bool, small: bool, has_wd: bool) -> Kernel:
    """The fused CUDA twin of :func:`_lamb_arrays` (``r`` is written, the norms follow on the host)."""
    body = grad_src(False, maximize) + " " + moments_src(small) + " r = m / (ax_sqrt(v / bc2) + eps) / bc1;"
    if has_wd:
        body += " r = r + p * wd;"
    name = "axonml_lamb" + "_max" * maximize + "_lerp2" * (not small) + "_wd" * has_wd
    return elementwise(name, "T g, T p, T w1, T b2, T omb2, T bc1, T bc2, T eps, T wd", "T m, T v, T r", body)


def _axpy_arrays(xp: Any, p: Any, r: Any, scale: float) -> None:
    """``p += r * scale`` (``r`` is scaled in place)."""
    r *= scale
    p += r


_AXPY = elementwise("axonml_lamb_apply", "T r, T scale", "T p", "p = p + r * scale;")


def _lion_arrays(xp: Any, p: Any, g: Any, m: Any, t0: Any, t1: Any, maximize: bool, beta1: float, beta2: float,
                 dec: float | None, nlr: float) -> None:
    """One Lion update as in-place ufuncs (``dec``: the decoupled decay factor or None)."""
    d = grad_cpu(xp, p, g, t0, 0, maximize)
    c = t1
    xp.subtract(d, m, out=c)
    c *= 1 - beta1
    c += m
    xp.sign(c, out=c)
    if dec is not None:
        p *= dec
    c *= nlr
    p += c
    lerp_(xp, m, d, 1 - beta2, c)


@functools.cache
def _lion_kernel(maximize: bool, decay: bool, small: bool) -> Kernel:
    """The fused CUDA twin of :func:`_lion_arrays`."""
    body = grad_src(False, maximize) + " T c = ax_sign((d - m) * omb1 + m);"
    body += (" p = p * dec;" if decay else "") + " p = p + c * nlr; " + lerp_src("m", "d", "w2", small)
    name = "axonml_lion" + "_max" * maximize + "_wd" * decay + "_lerp2" * (not small)
    return elementwise(name, "T g, T omb1, T dec, T nlr, T w2", "T p, T m", body)


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
        super().__init__(params, adam_defaults(lr, betas, eps, weight_decay, bias_correction=bias_correction,
                                               maximize=maximize))

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        scratch = self._scratch
        for group in self.param_groups:
            lr = to_scalar(group["lr"])
            beta1, beta2 = group["betas"]
            eps, wd, maximize, debias = group["eps"], group["weight_decay"], group["maximize"], group["bias_correction"]
            small, w1 = lerp_scalar(1 - beta1)
            for p, dev, x, g in self._with_grads(group):
                xp = dev.xp
                state = self.state[p]
                t = adam_moments(state, p)
                m, v = state["exp_avg"]._data, state["exp_avg_sq"]._data
                bc1 = 1 - beta1**t if debias else 1.0
                bc2 = 1 - beta2**t if debias else 1.0
                r = scratch.take(dev, g, 1)  # the whole update direction: the norms need all of it
                fused = fusable(dev, x, g, m, v)
                if fused:
                    T = x.dtype.type
                    _lamb_kernel(maximize, small, wd != 0)(
                        g, x, T(w1), T(beta2), T(1 - beta2), T(bc1), T(bc2), T(eps), T(wd), m, v, r)
                else:
                    run_arrays(_lamb_arrays, scratch, dev, (x, g, m, v, r), 1, wd, maximize, beta1, beta2, bc1, bc2,
                               eps)
                w_norm, r_norm = _norm(xp, x), _norm(xp, r)
                trust = w_norm / r_norm if w_norm > 0 and r_norm > 0 else 1.0
                if fused:
                    _AXPY(r, x.dtype.type(-lr * trust), x)
                else:
                    run_arrays(_axpy_arrays, scratch, dev, (x, r), 0, -lr * trust)
                bump_version(p)
        return loss


def _lion_lr_numbers(group: dict[str, Any]) -> tuple[float, float]:
    """Lion's numbers that follow ``lr``: the decay factor (1 without weight decay) and ``-lr``; computed here
    for the eager step and, before every replay, for a captured one."""
    lr, wd = to_scalar(group["lr"]), group["weight_decay"]
    return (1 - lr * wd if wd != 0 else 1.0), -lr


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

    _capture_safe = True  # no host-side per-step numbers: a CUDA graph may capture its step

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
            beta1, beta2 = group["betas"]
            wd, maximize = group["weight_decay"], group["maximize"]
            dec, nlr = _lion_lr_numbers(group)
            small, w2 = lerp_scalar(1 - beta2)
            capturing = current_capture() is not None
            hps = DeviceScalars(_lion_lr_numbers) if capturing else None
            for p, dev, x, g in self._with_grads(group):
                state = self.state[p]
                if not state:
                    state["exp_avg"] = zeros_state(p)
                m = state["exp_avg"]._data
                if fusable(dev, x, g, m):
                    T = x.dtype.type
                    k = _lion_kernel(maximize, wd != 0, small)
                    if hps is None:
                        k(g, T(1 - beta1), T(dec), T(nlr), T(w2), x, m)
                    else:  # a CUDA graph reads lr from the device: a scheduler may change it between replays
                        reading(k, ("dec", "nlr"))(g, T(1 - beta1), T(w2), hps.get(group, dev, x.dtype), x, m)
                else:
                    if capturing:
                        self._host_lr_captured = True
                    run_arrays(_lion_arrays, scratch, dev, (x, g, m), 2, maximize, beta1, beta2,
                               dec if wd != 0 else None, nlr)
                bump_version(p)
        return loss
