"""LAMB and Lion against NumPy float64 references written from their papers (PyTorch has neither)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from optimhelp import INIT, SHAPES, assert_same_trajectory, ax_params, grad_of, run_ax

import axonml as ax
from axonml import optim


def lamb_reference(steps: int, lr: float, betas: tuple[float, float], eps: float, weight_decay: float,
                   bias_correction: bool, sign: float) -> list[list[np.ndarray]]:
    """LAMB (You et al. 2020, Alg. 2) per parameter tensor, with the trust ratio ||p|| / ||r||."""
    b1, b2 = betas
    xs = [x.copy() for x in INIT]
    ms = [np.zeros(s) for s in SHAPES]
    vs = [np.zeros(s) for s in SHAPES]
    out = []
    for t in range(1, steps + 1):
        for i in range(len(xs)):
            g = grad_of(i, xs[i], sign) * sign  # maximize flips the fed gradient back
            ms[i] = b1 * ms[i] + (1 - b1) * g
            vs[i] = b2 * vs[i] + (1 - b2) * g * g
            m_hat = ms[i] / (1 - b1**t) if bias_correction else ms[i]
            v_hat = vs[i] / (1 - b2**t) if bias_correction else vs[i]
            r = m_hat / (np.sqrt(v_hat) + eps) + weight_decay * xs[i]
            w_norm, r_norm = np.linalg.norm(xs[i]), np.linalg.norm(r)
            trust = w_norm / r_norm if w_norm > 0 and r_norm > 0 else 1.0
            xs[i] = xs[i] - lr * trust * r
        out.append([np.array(x) for x in xs])
    return out


def lion_reference(steps: int, lr: float, betas: tuple[float, float], weight_decay: float,
                   sign: float) -> list[list[np.ndarray]]:
    """Lion (Chen et al. 2023, Program 1)."""
    b1, b2 = betas
    xs = [x.copy() for x in INIT]
    ms = [np.zeros(s) for s in SHAPES]
    out = []
    for _ in range(steps):
        for i in range(len(xs)):
            g = grad_of(i, xs[i], sign) * sign
            c = b1 * ms[i] + (1 - b1) * g
            xs[i] = xs[i] * (1 - lr * weight_decay) - lr * np.sign(c)
            ms[i] = b2 * ms[i] + (1 - b2) * g
        out.append([np.array(x) for x in xs])
    return out


LAMB_CASES: list[dict[str, Any]] = [
    {},
    {"lr": 0.02, "weight_decay": 0.1},
    {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-8, "bias_correction": False},
    {"lr": 0.01, "weight_decay": 0.05, "maximize": True},
    {"lr": 0.02, "betas": (0.3, 0.9)},
]


@pytest.mark.parametrize("kw", LAMB_CASES, ids=[str(k) for k in LAMB_CASES])
def test_lamb_matches_reference(kw: dict[str, Any]) -> None:
    sign = -1.0 if kw.get("maximize") else 1.0
    full = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.0, "bias_correction": True, **kw}
    full.pop("maximize", None)
    ps = ax_params()
    ours = [v[:3] for v in run_ax(optim.LAMB(ps, **kw), ps, 100, sign)]
    assert_same_trajectory(ours, lamb_reference(100, sign=sign, **full))


LION_CASES: list[dict[str, Any]] = [
    {},
    {"lr": 0.01, "weight_decay": 0.5},
    {"lr": 0.01, "betas": (0.95, 0.98), "maximize": True},
]


@pytest.mark.parametrize("kw", LION_CASES, ids=[str(k) for k in LION_CASES])
def test_lion_matches_reference(kw: dict[str, Any]) -> None:
    sign = -1.0 if kw.get("maximize") else 1.0
    full = {"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0, **kw}
    full.pop("maximize", None)
    ps = ax_params()
    ours = [v[:3] for v in run_ax(optim.Lion(ps, **kw), ps, 100, sign)]
    assert_same_trajectory(ours, lion_reference(100, sign=sign, **full))


def test_lion_update_is_a_signed_step_of_size_lr() -> None:
    w = ax.tensor([1.0, -2.0, 3.0], requires_grad=True)
    opt = optim.Lion([w], lr=0.1)
    w.grad = ax.tensor([0.5, -1e-6, 0.0])
    opt.step()
    np.testing.assert_allclose(w.detach().numpy(), [0.9, -1.9, 3.0])
    assert set(opt.state[w]) == {"exp_avg"}


def test_lamb_trust_ratio_is_one_for_a_zero_parameter() -> None:
    """A zero weight (e.g. a freshly zeroed bias) takes a plain Adam-normalized step of size lr."""
    b = ax.zeros(4, dtype=ax.float64, requires_grad=True)
    opt = optim.LAMB([b], lr=0.1, eps=0.0)
    b.grad = ax.tensor(np.array([1.0, -2.0, 0.5, 4.0]))
    opt.step()
    np.testing.assert_allclose(b.detach().numpy(), [-0.1, 0.1, -0.1, -0.1])
    # a nonzero weight: the step's norm is lr * ||p||
    w = ax.tensor(np.array([3.0, 4.0]), requires_grad=True)
    opt = optim.LAMB([w], lr=0.1)
    w.grad = ax.tensor(np.array([1.0, 1.0]))
    opt.step()
    assert np.isclose(np.linalg.norm(w.detach().numpy() - [3.0, 4.0]), 0.1 * 5.0)


@pytest.mark.parametrize("name", ["LAMB", "Lion"])
def test_float32_parameters_stay_float32(name: str) -> None:
    ps = ax_params(ax.float32)
    opt = getattr(optim, name)(ps, lr=0.01)
    run_ax(opt, ps, 5)
    assert all(p.dtype == ax.float32 for p in ps)
    assert all(t.dtype == ax.float32 for st in opt.state.values() for k, t in st.items() if k != "step")
