"""Optimizers on a CUDA device (CuPy arrays): the same trajectories as on the CPU, state on the device."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from optimhelp import FACTORIES, FROZEN_INIT, INIT, SHAPES, grad_of

import axonml as ax
from axonml import optim

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")]


def _params(device: str, dtype: Any) -> list[ax.Tensor]:
    return [ax.tensor(x, dtype=dtype, device=device, requires_grad=True) for x in [*INIT, FROZEN_INIT]]


def _run(opt: Any, params: list[ax.Tensor], steps: int) -> list[np.ndarray]:
    for _ in range(steps):
        for i, p in enumerate(params[: len(SHAPES)]):
            x = p.detach().cpu().numpy().astype(np.float64)
            p.grad = ax.tensor(grad_of(i, x), dtype=p.dtype, device=p.device)
        opt.step()
    return [p.detach().cpu().numpy() for p in params]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_cuda_matches_cpu(name: str, dtype: str) -> None:
    dt = getattr(ax, dtype)
    pc, pg = _params("cpu", dt), _params("cuda", dt)
    oc, og = FACTORIES[name](pc), FACTORIES[name](pg)
    rc, rg = _run(oc, pc, 20), _run(og, pg, 20)
    tol = 1e-10 if dtype == "float64" else 2e-4
    for a, b in zip(rc, rg):
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
    for st in og.state.values():
        for k, v in st.items():
            scalar = k in ("step", "mu_product")  # 0-d counters stay on the CPU, as PyTorch keeps ``step``
            if isinstance(v, ax.Tensor):
                assert v.device == ("cpu" if scalar else "cuda:0"), k
                assert scalar or v.dtype is dt


def test_state_moves_between_devices_on_load() -> None:
    pc = _params("cpu", ax.float64)
    oc = FACTORIES["Adam"](pc)
    _run(oc, pc, 5)
    pg = [p.detach().to("cuda").requires_grad_(True) for p in pc]
    og = FACTORIES["Adam"](pg)
    og.load_state_dict(oc.state_dict())
    assert og.state[pg[0]]["exp_avg"].device == "cuda:0"
    rc, rg = _run(oc, pc, 5), _run(og, pg, 5)
    for a, b in zip(rc, rg):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    # and back to the CPU
    p2 = [p.detach().cpu().requires_grad_(True) for p in pg]
    o2 = FACTORIES["Adam"](p2)
    o2.load_state_dict(og.state_dict())
    assert o2.state[p2[0]]["exp_avg"].device == "cpu"


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_on_cuda(line_search_fn: str | None) -> None:
    results = []
    for device in ("cpu", "cuda"):
        w = ax.tensor(np.array([-1.2, 1.0, 0.5]), device=device, requires_grad=True)
        opt = optim.LBFGS([w], line_search_fn=line_search_fn, lr=0.5 if line_search_fn is None else 1.0)

        def closure(w: ax.Tensor = w, opt: optim.LBFGS = opt) -> ax.Tensor:
            opt.zero_grad()
            loss = (100.0 * (w[1:] - w[:-1] ** 2) ** 2 + (1.0 - w[:-1]) ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        results.append(w.detach().cpu().numpy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-6, atol=1e-8)
