"""Shared fixtures of the optimizer tests: a small deterministic problem run on axonml and PyTorch."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml import optim

try:
    torch: Any = importlib.import_module("torch")
except ImportError:  # PyTorch is optional: its comparisons are skipped
    torch = None

needs_torch = [pytest.mark.torch, pytest.mark.skipif(torch is None, reason="PyTorch is not installed")]

# Three parameters of different ranks (a matrix, a vector, a scalar) and one that never gets a gradient.
SHAPES: list[tuple[int, ...]] = [(4, 3), (3,), ()]
_rng = np.random.default_rng(1234)
INIT = [_rng.standard_normal(s) for s in SHAPES]
FROZEN_INIT = _rng.standard_normal((2,))
_A = [_rng.uniform(0.5, 2.0, s) for s in SHAPES]
_B = [_rng.standard_normal(s) for s in SHAPES]


def grad_of(i: int, x: np.ndarray, sign: float = 1.0) -> np.ndarray:
    """The gradient fed to parameter ``i`` at value ``x``: a nonlinear, deterministic function (float64)."""
    return np.asarray(sign * (_A[i] * x + _B[i] + 0.5 * np.sin(3.0 * x)), dtype=np.float64)


def ax_params(dtype: Any = None) -> list[ax.Tensor]:
    """Fresh axonml parameters at ``INIT`` (plus the frozen one last), float64 by default."""
    dt = dtype or ax.float64
    return [ax.tensor(x, dtype=dt, requires_grad=True) for x in [*INIT, FROZEN_INIT]]


def torch_params() -> list[Any]:
    return [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in [*INIT, FROZEN_INIT]]


def values(params: list[Any]) -> list[np.ndarray]:
    """The parameters' values as float64 NumPy arrays (axonml or torch)."""
    return [np.array(p.detach().numpy(), dtype=np.float64) for p in params]


def feed_ax(params: list[ax.Tensor], sign: float = 1.0, at: list[np.ndarray] | None = None) -> None:
    """Set each trained parameter's ``grad`` from its current value, or from the values ``at`` if given.

    The frozen parameter (last) gets none.
    """
    at = at if at is not None else values(params)
    for i, p in enumerate(params[: len(SHAPES)]):
        p.grad = ax.tensor(grad_of(i, at[i], sign), dtype=p.dtype)


def feed_torch(params: list[Any], sign: float = 1.0, at: list[np.ndarray] | None = None) -> None:
    at = at if at is not None else values(params)
    for i, p in enumerate(params[: len(SHAPES)]):
        p.grad = torch.from_numpy(grad_of(i, at[i], sign))


def run_ax(opt: Any, params: list[ax.Tensor], steps: int, sign: float = 1.0) -> list[list[np.ndarray]]:
    """Step ``opt`` ``steps`` times on the fed gradients; the trajectory (values after each step)."""
    out = []
    for _ in range(steps):
        feed_ax(params, sign)
        opt.step()
        out.append(values(params))
    return out


def run_torch(opt: Any, params: list[Any], steps: int, sign: float = 1.0) -> list[list[np.ndarray]]:
    out = []
    for _ in range(steps):
        feed_torch(params, sign)
        opt.step()
        out.append(values(params))
    return out


def run_pair(
    oa: Any, pa: list[ax.Tensor], ot: Any, pt: list[Any], steps: int, sign: float = 1.0
) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """Step both optimizers on identical gradients (computed at PyTorch's values); both trajectories.

    Feeding the same gradient keeps rounding differences from compounding through the
    gradient function, which for sign-like updates near a minimum is chaotic.
    """
    ours, theirs = [], []
    for _ in range(steps):
        at = values(pt)
        feed_ax(pa, sign, at)
        feed_torch(pt, sign, at)
        oa.step()
        ot.step()
        ours.append(values(pa))
        theirs.append(values(pt))
    return ours, theirs


def assert_same_trajectory(a: list[list[np.ndarray]], b: list[list[np.ndarray]], tol: float = 1e-10) -> None:
    """Every step's values agree to ``tol`` (relative to the values' size, at least absolute ``tol``)."""
    assert len(a) == len(b)
    for step, (xa, xb) in enumerate(zip(a, b)):
        for i, (u, v) in enumerate(zip(xa, xb)):
            scale = max(1.0, float(np.abs(v).max(initial=0.0)))
            err = float(np.abs(u - v).max(initial=0.0))
            assert err <= tol * scale, f"step {step}, param {i}: max error {err:.3g} (values ~{scale:.3g})"


def assert_bitwise_equal(a: list[list[np.ndarray]], b: list[list[np.ndarray]]) -> None:
    for step, (xa, xb) in enumerate(zip(a, b)):
        for i, (u, v) in enumerate(zip(xa, xb)):
            assert np.array_equal(u, v), f"step {step}, param {i} differs"




# One configuration per optimizer that switches on its optional state (the registry below checks the list).
FACTORIES: dict[str, Callable[[list[Any]], optim.Optimizer]] = {
    "SGD": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "Adam": lambda ps: optim.Adam(ps, lr=0.05, amsgrad=True, weight_decay=0.01),
    "AdamW": lambda ps: optim.AdamW(ps, lr=0.05),
    "Adamax": lambda ps: optim.Adamax(ps, lr=0.05),
    "NAdam": lambda ps: optim.NAdam(ps, lr=0.05),
    "RAdam": lambda ps: optim.RAdam(ps, lr=0.05, betas=(0.9, 0.9)),
    "RMSprop": lambda ps: optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.5),
    "Adagrad": lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1),
    "Adadelta": lambda ps: optim.Adadelta(ps),
    "LAMB": lambda ps: optim.LAMB(ps, lr=0.05, weight_decay=0.01),
    "Lion": lambda ps: optim.Lion(ps, lr=0.01, weight_decay=0.1),
}
