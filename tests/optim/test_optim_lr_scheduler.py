"""Learning-rate schedulers: the lr (and momentum) sequence equals PyTorch's over 120 steps; state dicts."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from optimhelp import torch

import axonml as ax
from axonml import optim
from axonml.optim import lr_scheduler as axs

STEPS = 120


def _optimizer(lib: Any, kind: str) -> Any:
    """Two parameter groups with different learning rates; SGD with momentum or Adam."""
    mod = optim if lib is ax else torch.optim
    ps = [lib.zeros(3, requires_grad=True), lib.zeros(2, requires_grad=True)]
    groups = [{"params": ps[:1]}, {"params": ps[1:], "lr": 0.05}]
    return mod.SGD(groups, lr=0.1, momentum=0.9) if kind == "sgd" else mod.Adam(groups, lr=0.1)


def _metric(i: int) -> float:
    """A loss that falls, plateaus, wiggles and falls again (drives ReduceLROnPlateau)."""
    return [1.0 / (1 + i), 0.2, 0.2 + 0.001 * (i % 3), 0.25 - 0.01 * (i % 7), 0.05][min(i // 25, 4)]


Make = Callable[[Any, Any], Any]  # (lr_scheduler module, optimizer) -> scheduler

CONFIGS: list[tuple[str, str, Make]] = [
    ("LambdaLR", "sgd", lambda s, o: s.LambdaLR(o, lambda e: 0.95**e)),
    ("LambdaLR-per-group", "sgd", lambda s, o: s.LambdaLR(o, [lambda e: 1 / (1 + e), lambda e: 0.99**e])),
    ("MultiplicativeLR", "sgd", lambda s, o: s.MultiplicativeLR(o, lambda e: 0.97)),
    ("StepLR", "sgd", lambda s, o: s.StepLR(o, step_size=7, gamma=0.5)),
    ("MultiStepLR", "sgd", lambda s, o: s.MultiStepLR(o, milestones=[10, 30, 30, 80], gamma=0.3)),
    ("ConstantLR", "sgd", lambda s, o: s.ConstantLR(o, factor=0.25, total_iters=13)),
    ("LinearLR", "sgd", lambda s, o: s.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=37)),
    ("LinearLR-decay", "sgd", lambda s, o: s.LinearLR(o, start_factor=1.0, end_factor=0.0, total_iters=60)),
    ("ExponentialLR", "sgd", lambda s, o: s.ExponentialLR(o, gamma=0.97)),
    ("PolynomialLR", "sgd", lambda s, o: s.PolynomialLR(o, total_iters=50, power=2.0)),
    ("CosineAnnealingLR", "sgd", lambda s, o: s.CosineAnnealingLR(o, T_max=25, eta_min=1e-3)),
    ("CosineAnnealingWarmRestarts", "sgd",
     lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2, eta_min=1e-4)),
    ("CosineAnnealingWarmRestarts-T_mult1", "sgd", lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=7)),
    ("CyclicLR-triangular", "sgd", lambda s, o: s.CyclicLR(o, 0.01, 0.1, step_size_up=9)),
    ("CyclicLR-triangular2", "sgd", lambda s, o: s.CyclicLR(o, [0.01, 0.02], [0.1, 0.3], step_size_up=9,
                                                            step_size_down=5, mode="triangular2")),
    ("CyclicLR-exp_range", "sgd", lambda s, o: s.CyclicLR(o, 0.01, 0.1, step_size_up=6, mode="exp_range", gamma=0.98,
                                                          base_momentum=0.7, max_momentum=0.95)),
    ("CyclicLR-scale_fn", "sgd", lambda s, o: s.CyclicLR(o, 0.01, 0.1, step_size_up=8, scale_fn=lambda x: 0.9**x,
                                                         scale_mode="iterations", cycle_momentum=False)),
    ("CyclicLR-adam-betas", "adam", lambda s, o: s.CyclicLR(o, 0.001, 0.01, step_size_up=10)),
    ("OneCycleLR-cos", "sgd", lambda s, o: s.OneCycleLR(o, max_lr=[0.1, 0.2], total_steps=STEPS + 1)),
    ("OneCycleLR-linear", "sgd", lambda s, o: s.OneCycleLR(o, max_lr=0.3, epochs=11, steps_per_epoch=11,
                                                           anneal_strategy="linear", pct_start=0.25)),
    ("OneCycleLR-three-phase", "sgd", lambda s, o: s.OneCycleLR(o, max_lr=0.3, total_steps=STEPS + 1,
                                                                three_phase=True, div_factor=10.0)),
    ("OneCycleLR-adam-betas", "adam", lambda s, o: s.OneCycleLR(o, max_lr=0.01, total_steps=STEPS + 5,
                                                                base_momentum=0.8, max_momentum=0.9)),
    ("OneCycleLR-no-momentum", "adam", lambda s, o: s.OneCycleLR(o, max_lr=0.01, total_steps=STEPS + 1,
                                                                 cycle_momentum=False, final_div_factor=100.0)),
    ("SequentialLR", "sgd", lambda s, o: s.SequentialLR(
        o, [s.LinearLR(o, start_factor=0.1, total_iters=10), s.ExponentialLR(o, gamma=0.95)], milestones=[10])),
    ("SequentialLR-three", "sgd", lambda s, o: s.SequentialLR(
        o, [s.ConstantLR(o, factor=0.5, total_iters=5), s.CosineAnnealingLR(o, T_max=30), s.StepLR(o, 10, 0.5)],
        milestones=[5, 40])),
    ("ChainedScheduler", "sgd", lambda s, o: s.ChainedScheduler(
        [s.ConstantLR(o, factor=0.1, total_iters=20), s.ExponentialLR(o, gamma=0.98)])),
    ("ChainedScheduler-with-optimizer", "sgd", lambda s, o: s.ChainedScheduler(
        [s.LinearLR(o, start_factor=0.5, total_iters=15), s.MultiStepLR(o, [30, 60], gamma=0.5)], optimizer=o)),
    ("ReduceLROnPlateau", "sgd", lambda s, o: s.ReduceLROnPlateau(o, patience=3)),
    ("ReduceLROnPlateau-max-abs", "sgd", lambda s, o: s.ReduceLROnPlateau(
        o, mode="max", factor=0.5, patience=2, threshold=0.01, threshold_mode="abs", cooldown=4, min_lr=[0.01, 0.0])),
    ("ReduceLROnPlateau-cooldown", "sgd", lambda s, o: s.ReduceLROnPlateau(
        o, factor=0.3, patience=1, threshold=0.05, cooldown=2, min_lr=1e-3, eps=1e-3)),
]


def _is_plateau(sched: Any) -> bool:
    return type(sched).__name__ == "ReduceLROnPlateau"


def _run(sched: Any, opt: Any, start: int, stop: int, metric_sign: float = 1.0) -> list[tuple[Any, ...]]:
    """Step optimizer then scheduler for epochs ``start..stop-1``; (lrs, momenta/beta1) after each."""
    out = []
    for i in range(start, stop):
        opt.step()
        if _is_plateau(sched):
            sched.step(metric_sign * _metric(i) if sched.mode == "min" else -_metric(i))
        else:
            sched.step()
        moms = [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]
        out.append((*sched.get_last_lr(), *[g["lr"] for g in opt.param_groups], *moms))
    return out


@pytest.mark.torch
@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize(("name", "kind", "make"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_sequence_matches_torch(name: str, kind: str, make: Make) -> None:
    oa, ot = _optimizer(ax, kind), _optimizer(torch, kind)
    sa, st = make(axs, oa), make(torch.optim.lr_scheduler, ot)
    assert sa.get_last_lr() == st.get_last_lr()
    np.testing.assert_allclose(np.array(_run(sa, oa, 0, STEPS)), np.array(_run(st, ot, 0, STEPS)), rtol=1e-13, atol=0)


@pytest.mark.parametrize(("name", "kind", "make"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_state_dict_round_trip(name: str, kind: str, make: Make) -> None:
    """Save optimizer and scheduler at step 50, rebuild both, load, continue: the same as running straight."""
    opt = _optimizer(ax, kind)
    straight = _run(make(axs, opt), opt, 0, STEPS)
    opt = _optimizer(ax, kind)
    sched = make(axs, opt)
    head = _run(sched, opt, 0, 50)
    saved = copy.deepcopy((opt.state_dict(), sched.state_dict()))
    opt2 = _optimizer(ax, kind)
    sched2 = make(axs, opt2)
    opt2.load_state_dict(saved[0])
    sched2.load_state_dict(saved[1])
    assert head + _run(sched2, opt2, 50, STEPS) == straight


@pytest.mark.torch
@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("name", ["StepLR", "CosineAnnealingLR", "CyclicLR-triangular2", "OneCycleLR-cos",
                                  "SequentialLR", "ReduceLROnPlateau-max-abs", "CosineAnnealingWarmRestarts"])
def test_load_a_torch_scheduler_state(name: str) -> None:
    """PyTorch's scheduler state dicts load into ours (the same attribute names) and continue identically."""
    _, kind, make = next(c for c in CONFIGS if c[0] == name)
    ot = _optimizer(torch, kind)
    st = make(torch.optim.lr_scheduler, ot)
    _run(st, ot, 0, 40)
    oa = _optimizer(ax, kind)
    sa = make(axs, oa)
    oa.load_state_dict(ot.state_dict())
    sa.load_state_dict(st.state_dict())
    assert _run(sa, oa, 40, STEPS) == _run(st, ot, 40, STEPS)


@pytest.mark.torch
@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize(
    "make",
    [lambda s, o: s.StepLR(o, 4, 0.5), lambda s, o: s.MultiStepLR(o, [3, 9, 9]), lambda s, o: s.ExponentialLR(o, 0.9),
     lambda s, o: s.ConstantLR(o, 0.5, 6), lambda s, o: s.LinearLR(o, 0.2, 1.0, 8),
     lambda s, o: s.PolynomialLR(o, 10, 0.5), lambda s, o: s.CosineAnnealingLR(o, 12, 0.01),
     lambda s, o: s.LambdaLR(o, lambda e: 1 / (e + 1))],
    ids=["StepLR", "MultiStepLR", "ExponentialLR", "ConstantLR", "LinearLR", "PolynomialLR", "Cosine", "LambdaLR"],
)
def test_step_with_an_epoch_uses_the_closed_form(make: Make) -> None:
    epochs = [3, 7, 7, 0, 11, 5, 20, 9]
    oa, ot = _optimizer(ax, "sgd"), _optimizer(torch, "sgd")
    sa, st = make(axs, oa), make(torch.optim.lr_scheduler, ot)
    ours, theirs = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch deprecates the epoch argument
        for e in epochs:
            oa.step()
            ot.step()
            sa.step(e)
            st.step(e)
            ours.append(sa.get_last_lr())
            theirs.append(st.get_last_lr())
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=0)


@pytest.mark.torch
@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("t_mult", [1, 2, 3])
def test_warm_restarts_with_fractional_epochs(t_mult: int) -> None:
    oa, ot = _optimizer(ax, "sgd"), _optimizer(torch, "sgd")
    sa = axs.CosineAnnealingWarmRestarts(oa, T_0=5, T_mult=t_mult, eta_min=0.001)
    st = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(ot, T_0=5, T_mult=t_mult, eta_min=0.001)
    ours, theirs = [], []
    for epoch in range(40):
        for batch in range(4):
            for s in (sa, st):
                s.step(epoch + batch / 4)
            ours.append(sa.get_last_lr())
            theirs.append(st.get_last_lr())
            assert sa.T_i == st.T_i and sa.last_epoch == st.last_epoch
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=0)


def test_onecycle_refuses_to_step_past_total_steps() -> None:
    opt = _optimizer(ax, "sgd")
    sched = axs.OneCycleLR(opt, max_lr=0.1, total_steps=3)
    for _ in range(3):
        opt.step()
        sched.step()
    with pytest.raises(ValueError, match="total steps is 3"):
        sched.step()


def test_warns_when_the_scheduler_steps_before_the_optimizer() -> None:
    opt = _optimizer(ax, "sgd")
    sched = axs.StepLR(opt, 2)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        sched.step()
    opt = _optimizer(ax, "sgd")
    sched = axs.StepLR(opt, 2)
    opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()
        sched.get_last_lr()
    with pytest.warns(UserWarning, match="get_last_lr"):
        sched.get_lr()


def test_initial_lr_is_recorded_and_required_to_resume() -> None:
    opt = _optimizer(ax, "sgd")
    axs.ExponentialLR(opt, 0.5)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.05]
    with pytest.raises(KeyError, match="initial_lr"):
        axs.ExponentialLR(_optimizer(ax, "sgd"), 0.5, last_epoch=3)
    # resuming at epoch 3 continues the closed form from the recorded initial_lr
    sched = axs.ExponentialLR(opt, 0.5, last_epoch=3)
    assert sched.base_lrs == [0.1, 0.05] and sched.last_epoch == 4


def test_a_tensor_learning_rate_is_updated_in_place() -> None:
    lr = ax.tensor(np.array(0.1))
    opt = optim.SGD([ax.zeros(2, requires_grad=True)], lr=lr)
    sched = axs.StepLR(opt, step_size=1, gamma=0.5)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] is lr and float(lr) == 0.05
    assert float(sched.get_last_lr()[0]) == 0.05 and sched.get_last_lr()[0] is not lr


@pytest.mark.parametrize(
    ("make", "err", "match"),
    [
        (lambda o: axs.StepLR(object(), 3), TypeError, "not an Optimizer"),
        (lambda o: axs.ConstantLR(o, factor=1.5), ValueError, "between 0 and 1"),
        (lambda o: axs.LinearLR(o, start_factor=0.0), ValueError, "greater than 0"),
        (lambda o: axs.LinearLR(o, end_factor=2.0), ValueError, "between 0 and 1"),
        (lambda o: axs.LambdaLR(o, [lambda e: 1.0]), ValueError, "Expected 2 lr_lambdas"),
        (lambda o: axs.MultiplicativeLR(o, 0.5), TypeError, "should be a function"),
        (lambda o: axs.CosineAnnealingWarmRestarts(o, T_0=0), ValueError, "positive integer T_0"),
        (lambda o: axs.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=0), ValueError, "T_mult >= 1"),
        (lambda o: axs.CyclicLR(o, 0.1, 1.0, mode="square"), ValueError, "mode is invalid"),
        (lambda o: axs.CyclicLR(o, [0.1], 1.0), ValueError, "same length"),
        (lambda o: axs.CyclicLR(optim.Adagrad(o.param_groups[0]["params"]), 0.1, 1.0), ValueError, "momentum"),
        (lambda o: axs.OneCycleLR(o, 0.1), ValueError, "total_steps OR"),
        (lambda o: axs.OneCycleLR(o, 0.1, total_steps=0), ValueError, "total_steps"),
        (lambda o: axs.OneCycleLR(o, 0.1, 10, pct_start=1.5), ValueError, "pct_start"),
        (lambda o: axs.OneCycleLR(o, 0.1, 10, anneal_strategy="exp"), ValueError, "anneal_strategy"),
        (lambda o: axs.SequentialLR(o, [axs.StepLR(o, 2)], milestones=[3]), ValueError, "one more"),
        (lambda o: axs.SequentialLR(o, [axs.ReduceLROnPlateau(o)], milestones=[]), ValueError, "ReduceLROnPlateau"),
        (lambda o: axs.SequentialLR(o, [], milestones=[]), ValueError, "at least one"),
        (lambda o: axs.ChainedScheduler([axs.StepLR(o, 2), axs.StepLR(_optimizer(ax, "sgd"), 2)]), ValueError,
         "same optimizer"),
        (lambda o: axs.ReduceLROnPlateau(o, factor=1.0), ValueError, "Factor"),
        (lambda o: axs.ReduceLROnPlateau(o, mode="avg"), ValueError, "mode avg"),
        (lambda o: axs.ReduceLROnPlateau(o, threshold_mode="pct"), ValueError, "threshold mode"),
        (lambda o: axs.ReduceLROnPlateau(o, min_lr=[0.1]), ValueError, "min_lrs"),
    ],
)
def test_invalid_arguments(make: Callable[[Any], Any], err: type[Exception], match: str) -> None:
    with pytest.raises(err, match=match):
        make(_optimizer(ax, "sgd"))


def test_every_scheduler_is_covered() -> None:
    covered = {c[0].split("-")[0] for c in CONFIGS}
    assert set(axs.__all__) - {"LRScheduler"} == covered
