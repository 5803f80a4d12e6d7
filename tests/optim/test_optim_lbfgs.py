"""L-BFGS against PyTorch's, with and without the strong-Wolfe line search, on functions of two tensors."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from optimhelp import torch

import axonml as ax
from axonml import optim

X0, Y0 = np.array([-1.2, 1.0]), np.array([0.7])  # 3-D Rosenbrock: one minimum, at (1, 1, 1)
_C = np.array([0.5, -1.0, 2.0])


def rosenbrock(lib: Any, x: Any, y: Any) -> Any:
    z = lib.cat([x, y])
    return (100.0 * (z[1:] - z[:-1] ** 2) ** 2 + (1.0 - z[:-1]) ** 2).sum()


def rosenbrock_np(z: np.ndarray) -> tuple[float, np.ndarray]:
    """Value and gradient in NumPy float64."""
    r = z[1:] - z[:-1] ** 2
    g = np.zeros_like(z)
    g[:-1] += -400.0 * z[:-1] * r - 2.0 * (1.0 - z[:-1])
    g[1:] += 200.0 * r
    return float((100.0 * r**2 + (1.0 - z[:-1]) ** 2).sum()), g


def smooth_np(z: np.ndarray) -> tuple[float, np.ndarray]:
    """A convex quartic with coupled coordinates (plain L-BFGS steps with lr=1 converge on it)."""
    f = (z**2).sum() + 0.1 * (z**4).sum() + 0.5 * (z[1:] * z[:-1]).sum() + (_C * z).sum()
    g = 2.0 * z + 0.4 * z**3 + _C
    g[1:] += 0.5 * z[:-1]
    g[:-1] += 0.5 * z[1:]
    return float(f), g


def smooth(lib: Any, x: Any, y: Any) -> Any:
    z = lib.cat([x, y])
    return (z**2).sum() + 0.1 * (z**4).sum() + (z[1:] * z[:-1]).sum() * 0.5 + (z * lib.tensor(_C)).sum()


def _setup(lib: Any, fn: Callable[..., Any], **kw: Any) -> tuple[Any, list[Any], Callable[[], Any]]:
    """An LBFGS on (x, y) and its closure: autograd through ``fn``, or NumPy's value and gradient for ``*_np``."""
    params = [lib.tensor(X0.copy(), requires_grad=True), lib.tensor(Y0.copy(), requires_grad=True)]
    opt = (optim if lib is ax else torch.optim).LBFGS(params, **kw)

    def closure() -> Any:
        opt.zero_grad()
        if fn.__name__.endswith("_np"):  # identical values and gradients on both sides
            f, g = fn(_vals(params))
            params[0].grad, params[1].grad = lib.tensor(g[:2]), lib.tensor(g[2:])
            return lib.tensor(f)
        loss = fn(lib, *params)
        loss.backward()
        return loss

    return opt, params, closure


def _vals(params: list[Any]) -> np.ndarray:
    return np.concatenate([p.detach().numpy() for p in params])


LBFGS_CASES: list[tuple[Callable[..., Any], dict[str, Any]]] = [
    (smooth_np, {}),
    (smooth_np, {"lr": 0.5, "max_iter": 7, "history_size": 2}),
    (smooth_np, {"line_search_fn": "strong_wolfe", "lr": 0.8, "tolerance_change": 1e-12}),
    (smooth_np, {"line_search_fn": "strong_wolfe", "lr": 5.0}),  # too long a first step: bracketing and zoom
    (smooth_np, {"line_search_fn": "strong_wolfe", "lr": 20.0, "history_size": 2}),
    (smooth, {"line_search_fn": "strong_wolfe"}),  # autograd on both sides
    (rosenbrock_np, {"line_search_fn": "strong_wolfe"}),
    (rosenbrock_np, {"line_search_fn": "strong_wolfe", "history_size": 3, "max_iter": 10, "max_eval": 12}),
    (rosenbrock_np, {"lr": 0.1, "history_size": 5}),
]


@pytest.mark.torch
@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("case", LBFGS_CASES, ids=[f"{f.__name__}-{kw}" for f, kw in LBFGS_CASES])
def test_lbfgs_matches_torch(case: tuple[Callable[..., Any], dict[str, Any]]) -> None:
    fn, kw = case
    # PyTorch's kernels use fused multiply-adds and NumPy's do not. On the convex function the last-bit
    # differences stay at 1e-13; in Rosenbrock's curved valley L-BFGS amplifies them ~1e4-fold every 20
    # iterations (two PyTorch runs differing in the last bit diverge alike), so there we compare one step.
    steps, tol = (1, 1e-7) if fn is rosenbrock_np else (6, 1e-10)
    oa, pa, ca = _setup(ax, fn, **kw)
    ot, pt, ct = _setup(torch, fn, **kw)
    for _ in range(steps):
        la, lt = oa.step(ca), ot.step(ct)
        assert abs(float(la.detach()) - float(lt.detach())) <= tol * max(1.0, abs(float(lt.detach())))
        np.testing.assert_allclose(_vals(pa), _vals(pt), rtol=tol, atol=tol)
        sa, st = oa.state[pa[0]], ot.state[pt[0]]
        assert (sa["func_evals"], sa["n_iter"]) == (st["func_evals"], st["n_iter"])
        assert len(sa["old_dirs"]) == len(st["old_dirs"]) <= kw.get("history_size", 100)
        np.testing.assert_allclose(sa["d"].numpy(), st["d"].numpy(), rtol=tol, atol=tol)


def test_lbfgs_with_strong_wolfe_finds_the_rosenbrock_minimum() -> None:
    opt, params, closure = _setup(ax, rosenbrock, line_search_fn="strong_wolfe", max_iter=50)
    for _ in range(4):
        loss = opt.step(closure)
    np.testing.assert_allclose(_vals(params), np.ones(3), atol=1e-5)
    assert float(loss.detach()) < 1e-10
    # at the optimum a step evaluates once and returns (first-order optimality)
    evals = opt.state[params[0]]["func_evals"]
    opt.step(closure)
    assert opt.state[params[0]]["func_evals"] == evals + 1


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_resume_is_bit_for_bit(line_search_fn: str | None) -> None:
    kw = {"line_search_fn": line_search_fn, "max_iter": 5, "history_size": 4}
    opt, params, closure = _setup(ax, smooth, **kw)
    for _ in range(4):
        opt.step(closure)
    straight = _vals(params)

    opt, params, closure = _setup(ax, smooth, **kw)
    for _ in range(2):
        opt.step(closure)
    blob = pickle.dumps((_vals(params), opt.state_dict()))
    vals, sd = pickle.loads(blob)
    opt, params, closure = _setup(ax, smooth, **kw)
    with ax.no_grad():
        params[0].copy_(ax.tensor(vals[:2]))
        params[1].copy_(ax.tensor(vals[2:]))
    opt.load_state_dict(sd)
    assert isinstance(opt.state[params[0]]["d"], ax.Tensor)
    for _ in range(2):
        opt.step(closure)
    assert np.array_equal(_vals(params), straight)


def test_lbfgs_needs_a_closure() -> None:
    opt, _, _ = _setup(ax, smooth)
    with pytest.raises(TypeError, match="closure"):
        opt.step()


def test_lbfgs_a_parameter_without_gradient_counts_as_zero() -> None:
    w = ax.tensor(np.array([2.0, -3.0]), requires_grad=True)
    unused = ax.tensor(np.array([5.0]), requires_grad=True)
    opt = optim.LBFGS([w, unused], line_search_fn="strong_wolfe")

    def closure() -> ax.Tensor:
        opt.zero_grad()
        loss = ((w - 1.0) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    np.testing.assert_allclose(w.detach().numpy(), [1.0, 1.0], atol=1e-6)
    assert unused.detach().numpy().tolist() == [5.0]
