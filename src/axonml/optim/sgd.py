"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay (``torch.optim.SGD``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from ..backend.fused import Kernel, elementwise, fusable
from ..backend.fused_multi import MultiKernel
from ..backend.graphs import current_capture
from ..core.tensor import Tensor
from ._captured import DeviceScalars, reading
from ._helpers import (
    bump_version,
    check_lr,
    check_range,
    grad_cpu,
    grad_src,
    run_arrays,
    to_scalar,
    torch_flags,
)
from .optimizer import Optimizer

__all__ = ["SGD"]


def _sgd_arrays(xp: Any, p: Any, g: Any, buf: Any, t0: Any, t1: Any, wd: float, maximize: bool, momentum: float,
                dampening: float, nesterov: bool, first: bool, nlr: float) -> None:
    """One SGD update as in-place ufuncs (``buf`` is None without momentum; ``first`` fills it)."""
    d = grad_cpu(xp, p, g, t0, wd, maximize)
    if buf is not None:
        if first:
            xp.copyto(buf, d)
        else:
            buf *= momentum
            if dampening == 0:
                buf += d
            else:
                xp.multiply(d, 1 - dampening, out=t1)
                buf += t1
        if nesterov:
            xp.multiply(buf, momentum, out=t1)
            t1 += d
            d = t1
        else:
            d = buf
    xp.multiply(d, nlr, out=t1)
    p += t1


@functools.cache
def _sgd_kernel(has_wd: bool, maximize: bool, momentum: bool, first: bool, damp: bool, nesterov: bool) -> Kernel:
    """The fused CUDA twin of :func:`_sgd_arrays` for one combination of options."""
    body = [grad_src(has_wd, maximize)]
    if momentum:
        if first:
            body.append("buf = d;")
        else:
            body.append("buf = buf * mom + d * omd;" if damp else "buf = buf * mom + d;")
        body.append("d = buf * mom + d;" if nesterov else "d = buf;")
    body.append("p = p + d * nlr;")
    name = "axonml_sgd" + "_wd" * has_wd + "_max" * maximize + "_mom" * momentum + "_first" * first \
        + "_damp" * damp + "_nesterov" * nesterov
    return elementwise(name, "T g, T wd, T mom, T omd, T nlr", "T p, T buf" if momentum else "T p", " ".join(body))


def _sgd_lr_numbers(group: dict[str, Any]) -> tuple[float]:
    """SGD's number that follows ``lr``: ``-lr``; for the eager step and, before every replay, a captured one."""
    return (-to_scalar(group["lr"]),)


@functools.cache
def _sgd_multi(has_wd: bool, maximize: bool, momentum: bool, damp: bool, nesterov: bool) -> MultiKernel:
    """:func:`_sgd_kernel`'s body (after the first step) over all parameters of a group in one launch."""
    k = _sgd_kernel(has_wd, maximize, momentum, False, damp, nesterov)
    arrays, writes = (("g", "p", "buf"), ("p", "buf")) if momentum else (("g", "p"), ("p",))
    return MultiKernel(k.name + "_multi", arrays, writes, "T wd, T mom, T omd, T nlr", k.body)


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with momentum (PyTorch's formulation).

    With ``g = ±grad + weight_decay * p`` (minus when ``maximize``), each step does::

        b = g                                          (first step)
        b = momentum * b + (1 - dampening) * g         (later steps)
        g = g + momentum * b  if nesterov  else  b     (when momentum != 0)
        p = p - lr * g

    On CUDA (float32/float64) the update of all parameters is one fused kernel launch per device and dtype
    (one per parameter on the first step, which fills the momentum buffers, inside a CUDA graph capture, and with
    ``foreach=False``).

    Args:
        params: parameters or parameter groups to optimize.
        lr: learning rate (default 1e-3).
        momentum: momentum factor (default 0).
        dampening: dampening of the momentum (default 0).
        weight_decay: L2 penalty (default 0).
        nesterov: use Nesterov momentum (needs momentum > 0 and dampening 0).
        maximize: maximize the objective instead of minimizing it.
        foreach, fused, capturable, differentiable: PyTorch's implementation switches, accepted as
            there; they select no other arithmetic here (``axonml.optim._helpers.torch_flags``).

    State per parameter: ``momentum_buffer`` (only when momentum != 0).
    """

    _capture_safe = True  # no host-side per-step numbers: a CUDA graph may capture its step

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        check_lr(lr)
        check_range("momentum value", momentum)
        check_range("weight_decay value", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = {
            "lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
            "nesterov": nesterov, "maximize": maximize,
            **torch_flags(foreach=foreach, differentiable=differentiable, fused=fused),
        }
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = self._eval_closure(closure)
        scratch = self._scratch
        for group in self.param_groups:
            (nlr,) = _sgd_lr_numbers(group)
            momentum, dampening = group["momentum"], group["dampening"]
            wd, nesterov, maximize = group["weight_decay"], group["nesterov"], group["maximize"]
            # CUDA updates after the first step, by (device, dtype): one launch each (none while capturing)
            capturing = current_capture() is not None
            one_launch = group.get("foreach") is not False and not capturing  # foreach=False: one per parameter
            batches: dict[tuple[Any, Any], list[tuple[Any, ...]]] | None = {} if one_launch else None
            hps = DeviceScalars(_sgd_lr_numbers) if capturing else None
            for p, dev, x, g in self._with_grads(group):
                buf, first = None, False
                if momentum != 0:
                    state = self.state[p]
                    buf_t = state.get("momentum_buffer")
                    if buf_t is None:  # filled with the first step's gradient
                        first, buf = True, dev.xp.empty(g.shape, g.dtype)
                        state["momentum_buffer"] = Tensor._make(buf, dev)
                    else:
                        buf = buf_t._data
                if batches is not None and not first and fusable(dev, x, g, buf) and x.flags.c_contiguous \
                        and g.flags.c_contiguous:
                    batches.setdefault((dev, x.dtype), []).append((g, x) if buf is None else (g, x, buf))
                elif fusable(dev, x, g, buf):
                    T = x.dtype.type
                    k = _sgd_kernel(wd != 0, maximize, buf is not None, first, dampening != 0, nesterov)
                    if hps is None:
                        args: tuple[Any, ...] = (g, T(wd), T(momentum), T(1 - dampening), T(nlr))
                    else:  # a CUDA graph reads lr from the device: a scheduler may change it between replays
                        k = reading(k, ("nlr",))
                        args = (g, T(wd), T(momentum), T(1 - dampening), hps.get(group, dev, x.dtype))
                    if buf is None:
                        k(*args, x)
                    else:
                        k(*args, x, buf)
                else:
                    if capturing:
                        self._host_lr_captured = True
                    run_arrays(_sgd_arrays, scratch, dev, (x, g, buf), 2, wd, maximize, momentum, dampening, nesterov,
                               first, nlr)
                bump_version(p)
            for (_, dtype), arrays in (batches or {}).items():
                T = dtype.type
                _sgd_multi(wd != 0, maximize, momentum != 0, dampening != 0, nesterov)(
                    arrays, T(wd), T(momentum), T(1 - dampening), T(nlr))
        return loss
