"""Shared check for the nn module tests: a module on CUDA matches its CPU twin."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

import axonml as ax


def cpu_vs_cuda(m: Any, args: list[Any], kwargs: dict[str, Any] | None = None) -> None:
    """A deep copy of ``m`` moved to CUDA gives the CPU module's outputs, gradients and buffers (float64)."""
    g = copy.deepcopy(m).to("cuda")
    kwargs = kwargs or {}

    def conv(a: Any, device: str) -> Any:
        if isinstance(a, tuple):
            return tuple(conv(b, device) for b in a)
        if not isinstance(a, np.ndarray):
            return a
        return ax.tensor(a, device=device, requires_grad=a.dtype.kind == "f")

    xs, gxs = [conv(a, "cpu") for a in args], [conv(a, "cuda") for a in args]
    outs = flat_outputs(m(*xs, **{k: conv(v, "cpu") for k, v in kwargs.items()}))
    gouts = flat_outputs(g(*gxs, **{k: conv(v, "cuda") for k, v in kwargs.items()}))
    loss, gloss = 0.0, 0.0
    for i, (o, go) in enumerate(zip(outs, gouts, strict=True)):
        if o is None:
            continue
        assert go.device.type == "cuda"
        np.testing.assert_allclose(go.cpu().detach().numpy(), o.detach().numpy(), rtol=1e-9, atol=1e-10)
        if o.is_floating_point():
            w = np.random.default_rng(i).standard_normal(o.shape)
            loss = loss + (o * ax.tensor(w)).sum()
            gloss = gloss + (go * ax.tensor(w, device="cuda")).sum()
    loss.backward()  # type: ignore[union-attr]
    gloss.backward()  # type: ignore[union-attr]
    for x, gx in zip(flat_outputs(xs), flat_outputs(gxs), strict=True):
        if isinstance(x, ax.Tensor) and x.grad is not None:
            np.testing.assert_allclose(gx.grad.cpu().numpy(), x.grad.numpy(), rtol=1e-9, atol=1e-10)
    for (n, p), (_, gp) in zip(m.named_parameters(), g.named_parameters(), strict=True):
        if p.grad is not None:
            np.testing.assert_allclose(gp.grad.cpu().numpy(), p.grad.numpy(), rtol=1e-9, atol=1e-10, err_msg=n)
    for (n, b), (_, gb) in zip(m.named_buffers(), g.named_buffers(), strict=True):
        assert gb.device.type == "cuda" and gb.dtype == b.dtype
        np.testing.assert_allclose(gb.cpu().numpy(), b.numpy(), rtol=1e-9, atol=1e-10, err_msg=n)


def flat_outputs(out: Any) -> list[Any]:
    if isinstance(out, tuple | list):
        return [y for o in out for y in flat_outputs(o)]
    return [out]
