"""Optimizer trajectories equal PyTorch's: every optimizer and option, from identical float64 starts.

Both sides get identical gradients each step (a nonlinear function of the
parameters, evaluated at PyTorch's values), and the parameters must agree to
1e-10 after every one of 100 steps. Also: parameter groups with their own
hyperparameters, a small MLP trained through autograd on both sides, and state
dicts moved between PyTorch and axonml mid-run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from optimhelp import (
    assert_same_trajectory,
    ax_params,
    needs_torch,
    run_ax,
    run_pair,
    run_torch,
    torch,
    torch_params,
    values,
)

import axonml as ax
from axonml import optim

pytestmark = needs_torch

# (optimizer name, kwargs); ``maximize`` cases get the negated gradient so the run stays bounded.
CASES: list[tuple[str, dict[str, Any]]] = [
    ("SGD", {}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.05, "weight_decay": 0.2, "maximize": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.5, "dampening": 0.1, "weight_decay": 0.05, "maximize": True}),
    ("Adam", {"lr": 0.05}),
    ("Adam", {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.05, "amsgrad": True}),
    ("Adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    ("Adam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("Adam", {"lr": 0.05, "betas": (0.3, 0.9)}),  # beta1 < 0.5: the other branch of lerp
    ("AdamW", {"lr": 0.05}),
    ("AdamW", {"lr": 0.05, "weight_decay": 0.3, "amsgrad": True, "maximize": True}),
    ("Adamax", {"lr": 0.05}),
    ("Adamax", {"lr": 0.02, "betas": (0.7, 0.99), "weight_decay": 0.1, "maximize": True}),
    ("NAdam", {"lr": 0.05}),
    ("NAdam", {"lr": 0.05, "momentum_decay": 0.01, "weight_decay": 0.1}),
    ("NAdam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
    ("RAdam", {"lr": 0.05}),
    ("RAdam", {"lr": 0.05, "betas": (0.9, 0.9), "weight_decay": 0.1}),  # rho_t > 5 early: the rectified branch
    ("RAdam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
    ("RMSprop", {}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9}),
    ("RMSprop", {"lr": 0.01, "centered": True}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.5, "weight_decay": 0.1, "maximize": True}),
    ("Adagrad", {}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "eps": 1e-8}),
    ("Adagrad", {"lr": 0.1, "weight_decay": 0.1, "maximize": True}),
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.5, "eps": 1e-4, "weight_decay": 0.1}),
    ("Adadelta", {"lr": 0.5, "maximize": True}),
]


def _id(case: tuple[str, dict[str, Any]]) -> str:
    name, kw = case
    return name + "".join(f"-{k}={v}" for k, v in kw.items())


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_trajectory_matches_torch(case: tuple[str, dict[str, Any]]) -> None:
    name, kw = case
    sign = -1.0 if kw.get("maximize") else 1.0
    pa, pt = ax_params(), torch_params()
    ours, theirs = run_pair(getattr(optim, name)(pa, **kw), pa, getattr(torch.optim, name)(pt, **kw), pt, 100, sign)
    assert_same_trajectory(ours, theirs)
    assert np.array_equal(values(pa)[-1], values(pt)[-1])  # the parameter without a gradient never moved


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta"])
def test_param_groups_with_their_own_hyperparameters(name: str) -> None:
    extra = {"SGD": {"momentum": 0.9}, "RMSprop": {"momentum": 0.5}}.get(name, {})

    def groups(ps: list[Any]) -> list[dict[str, Any]]:
        return [{"params": ps[:1], "lr": 0.02}, {"params": ps[1:3], "lr": 0.08, "weight_decay": 0.1},
                {"params": ps[3:]}]

    pa, pt = ax_params(), torch_params()
    oa = getattr(optim, name)(groups(pa), lr=0.05, **extra)
    ot = getattr(torch.optim, name)(groups(pt), lr=0.05, **extra)
    assert [g["lr"] for g in oa.param_groups] == [0.02, 0.08, 0.05]
    assert_same_trajectory(*run_pair(oa, pa, ot, pt, 60))


def test_mlp_through_autograd_matches_torch() -> None:
    """A 4-8-1 tanh MLP fitted by Adam (amsgrad, weight decay) with backward() on both sides, 60 steps."""
    rng = np.random.default_rng(7)
    X, y = rng.standard_normal((16, 4)), rng.standard_normal((16, 1))
    inits = [rng.standard_normal((4, 8)) * 0.5, np.zeros(8), rng.standard_normal((8, 1)) * 0.5, np.zeros(1)]
    pa = [ax.tensor(w, requires_grad=True) for w in inits]
    pt = [torch.tensor(w, requires_grad=True) for w in inits]
    oa = optim.Adam(pa, lr=0.02, amsgrad=True, weight_decay=1e-3)
    ot = torch.optim.Adam(pt, lr=0.02, amsgrad=True, weight_decay=1e-3)
    xa, ya, xt, yt = ax.tensor(X), ax.tensor(y), torch.tensor(X), torch.tensor(y)
    for _ in range(60):
        for opt, (w1, b1, w2, b2), xx, yy, lib in ((oa, pa, xa, ya, ax), (ot, pt, xt, yt, torch)):
            opt.zero_grad()
            out = lib.tanh(xx @ w1 + b1) @ w2 + b2
            loss = ((out - yy) ** 2).mean()
            loss.backward()
            opt.step()
        assert_same_trajectory([values(pa)], [values(pt)], tol=1e-11)
    assert float(loss.detach()) < 0.5


def _to_torch(obj: Any) -> Any:
    """An axonml state dict with its tensors as torch tensors."""
    if isinstance(obj, ax.Tensor):
        return torch.from_numpy(obj.detach().numpy().copy())
    if isinstance(obj, dict):
        return {k: _to_torch(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_torch(v) for v in obj)
    return obj


@pytest.mark.parametrize("case", CASES[1::3], ids=[_id(c) for c in CASES[1::3]])
def test_state_dicts_move_between_torch_and_axonml(case: tuple[str, dict[str, Any]]) -> None:
    """Run 10 steps in PyTorch, continue in axonml from its state dict (and back), versus PyTorch throughout."""
    name, kw = case
    sign = -1.0 if kw.get("maximize") else 1.0
    pt = torch_params()
    ot = getattr(torch.optim, name)(pt, **kw)
    run_torch(ot, pt, 10, sign)
    # a fresh axonml optimizer takes over from PyTorch's state
    pa = [ax.tensor(v, requires_grad=True) for v in values(pt)]
    oa = getattr(optim, name)(pa, **kw)
    oa.load_state_dict(ot.state_dict())
    for st in oa.state.values():
        assert all(not isinstance(v, type(pt[0])) for v in st.values())  # converted to axonml tensors
    ours = run_ax(oa, pa, 10, sign)
    # and a fresh PyTorch optimizer takes over from ours
    pt2 = [torch.tensor(v, requires_grad=True) for v in values(pa)]
    ot2 = getattr(torch.optim, name)(pt2, **kw)
    ot2.load_state_dict(_to_torch(oa.state_dict()))
    theirs = run_torch(ot, pt, 20, sign)
    assert_same_trajectory(ours, theirs[:10])
    assert_same_trajectory(run_torch(ot2, pt2, 10, sign), theirs[10:])


TORCH_OPTIMIZERS = ["SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta", "LBFGS"]


@pytest.mark.parametrize("name", TORCH_OPTIMIZERS)
def test_constructors_and_group_keys_are_pytorchs(name: str) -> None:
    # a script ports by changing the import: every argument PyTorch takes (with its default), and the same keys in
    # state_dict()'s groups, including PyTorch's implementation switches (foreach, fused, capturable, ...)
    import inspect

    ours = inspect.signature(getattr(optim, name).__init__).parameters
    theirs = inspect.signature(getattr(torch.optim, name).__init__).parameters
    assert set(ours) == set(theirs)
    for arg, p in theirs.items():
        assert ours[arg].kind == p.kind, arg
        assert p.default is inspect.Parameter.empty or ours[arg].default == p.default, arg
    ax_group = getattr(optim, name)([ax.zeros(2, requires_grad=True)]).state_dict()["param_groups"][0]
    torch_group = getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)]).state_dict()["param_groups"][0]
    assert set(ax_group) == set(torch_group)
    assert {k: ax_group[k] for k in ("foreach", "differentiable") if k in ax_group} == \
        {k: torch_group[k] for k in ("foreach", "differentiable") if k in torch_group}


@pytest.mark.parametrize("name", ["SGD", "Adam", "Adagrad"])
def test_the_switches_do_not_change_the_trajectory(name: str) -> None:
    runs = []
    for flags in ({}, {"foreach": True}, {"foreach": False}, {"fused": True}):
        pa = ax_params()
        runs.append(run_ax(getattr(optim, name)(pa, lr=0.05, **flags), pa, 20))
    for other in runs[1:]:
        for step_a, step_b in zip(runs[0], other, strict=True):
            for a, b in zip(step_a, step_b, strict=True):
                assert np.array_equal(a, b)
