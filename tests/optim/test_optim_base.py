"""The Optimizer base: parameter groups, state dicts, resume bit for bit, zero_grad, closures, hooks, errors."""

from __future__ import annotations

import copy
import inspect
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from optimhelp import FACTORIES, INIT, SHAPES, assert_bitwise_equal, ax_params, feed_ax, run_ax, values

import axonml as ax
from axonml import optim
from axonml.errors import AutogradError
from axonml.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
    required,
)


def test_every_optimizer_is_covered() -> None:
    """The registry check of DESIGN.md for optimizers: each public one is in FACTORIES (or tested as LBFGS is)."""
    classes = [getattr(optim, n) for n in optim.__all__]
    public = {c.__name__ for c in classes if inspect.isclass(c) and issubclass(c, optim.Optimizer)}
    assert public - {"Optimizer"} == set(FACTORIES) | {"LBFGS"}


# ----- construction ----------------------------------------------------------------------------
def test_groups_get_defaults_and_keep_their_own_values() -> None:
    ps = ax_params()
    opt = optim.Adam([{"params": ps[:2], "lr": 0.1}, {"params": ps[2:], "betas": (0.5, 0.6)}], lr=0.01)
    g0, g1 = opt.param_groups
    assert g0["lr"] == 0.1 and g0["betas"] == (0.9, 0.999) and g0["params"] == ps[:2]
    assert g1["lr"] == 0.01 and g1["betas"] == (0.5, 0.6)
    assert set(g0) == {"params", "lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay",
                       "foreach", "capturable", "differentiable", "fused"}  # PyTorch's keys, its switches included


def test_params_from_a_generator_a_single_tensor_group_and_named_pairs() -> None:
    ps = ax_params()
    assert optim.SGD(iter(ps)).param_groups[0]["params"] == ps
    assert optim.SGD([{"params": ps[0]}]).param_groups[0]["params"] == [ps[0]]
    opt = optim.SGD([("w", ps[0]), ("b", ps[1])])
    assert opt.param_groups[0]["param_names"] == ["w", "b"]
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]


def test_add_param_group_trains_the_new_group() -> None:
    ps = ax_params()
    opt = optim.Adagrad(ps[:1], lr=0.1, initial_accumulator_value=0.5)
    opt.add_param_group({"params": ps[1:3], "lr": 0.2})
    assert opt.param_groups[1]["lr"] == 0.2 and opt.param_groups[1]["lr_decay"] == 0
    before = values(ps)
    feed_ax(ps)
    opt.step()
    after = values(ps)
    assert all(not np.array_equal(a, b) for a, b in zip(before[:3], after[:3]))
    np.testing.assert_array_equal(opt.state[ps[1]]["sum"].numpy(), 0.5 + ps[1].grad.numpy() ** 2)


@pytest.mark.parametrize(
    ("make", "err", "match"),
    [
        (lambda ps: optim.SGD([]), ValueError, "empty parameter list"),
        (lambda ps: optim.SGD(ps[0]), TypeError, "iterable of Tensors"),
        (lambda ps: optim.SGD({ps[0], ps[1]}), TypeError, "ordered collections"),
        (lambda ps: optim.SGD([ps[0], np.zeros(3)]), TypeError, "can only optimize Tensors"),
        (lambda ps: optim.SGD([ps[0] * 2]), ValueError, "non-leaf"),
        (lambda ps: optim.SGD([ps[0], ps[1], ps[0]]), ValueError, "duplicate parameters"),
        (lambda ps: optim.SGD([{"params": ps[:2]}, {"params": ps[1:]}]), ValueError, "more than one parameter group"),
        (lambda ps: optim.SGD([("w", ps[0]), ps[1]]), ValueError, "names"),
        (lambda ps: optim.SGD([{"params": [("w", ps[0])]}, {"params": [ps[1]]}]), ValueError, "names"),
        (lambda ps: optim.SGD(ps).add_param_group([ps[0]]), TypeError, "must be a dict"),
    ],
)
def test_bad_parameter_lists(make: Callable[[list[Any]], Any], err: type[Exception], match: str) -> None:
    with pytest.raises(err, match=match):
        make(ax_params())


def test_a_required_default_must_be_given_by_every_group() -> None:
    class Custom(optim.Optimizer):
        def __init__(self, params: Any, lr: Any = required) -> None:
            super().__init__(params, {"lr": lr})

        def step(self, closure: Any = None) -> Any:
            for g in self.param_groups:
                for p in g["params"]:
                    if p.grad is not None:
                        p.sub_(g["lr"] * p.grad)  # plain Tensor ops work: step runs under no_grad
            return None

    ps = ax_params()
    with pytest.raises(ValueError, match="required optimization parameter lr"):
        Custom(ps)
    opt = Custom([{"params": ps[:1], "lr": 0.5}])
    feed_ax(ps)
    g = ps[0].grad.numpy().copy()
    opt.step()
    np.testing.assert_allclose(ps[0].detach().numpy(), INIT[0] - 0.5 * g)
    assert repr(required) == "<required parameter>"


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda ps: optim.SGD(ps, lr=-0.1), "Invalid learning rate"),
        (lambda ps: optim.SGD(ps, lr=ax.tensor([0.1, 0.2])), "1-element"),
        (lambda ps: optim.SGD(ps, momentum=-0.5), "Invalid momentum"),
        (lambda ps: optim.SGD(ps, weight_decay=-1), "Invalid weight_decay"),
        (lambda ps: optim.SGD(ps, nesterov=True), "Nesterov"),
        (lambda ps: optim.SGD(ps, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
        (lambda ps: optim.Adam(ps, eps=-1e-8), "Invalid epsilon"),
        (lambda ps: optim.Adam(ps, betas=(1.0, 0.999)), "beta parameter at index 0"),
        (lambda ps: optim.AdamW(ps, betas=(0.9, -0.1)), "beta parameter at index 1"),
        (lambda ps: optim.Adam(ps, betas=(0.9,)), "pair"),
        (lambda ps: optim.Adamax(ps, betas=(0.9, 1.5)), "beta parameter at index 1"),
        (lambda ps: optim.NAdam(ps, momentum_decay=-1), "Invalid momentum_decay"),
        (lambda ps: optim.RAdam(ps, lr=-1), "Invalid learning rate"),
        (lambda ps: optim.RMSprop(ps, alpha=-0.1), "Invalid alpha"),
        (lambda ps: optim.Adagrad(ps, lr_decay=-1), "Invalid lr_decay"),
        (lambda ps: optim.Adagrad(ps, initial_accumulator_value=-1), "Invalid initial_accumulator_value"),
        (lambda ps: optim.Adadelta(ps, rho=1.5), "Invalid rho"),
        (lambda ps: optim.LAMB(ps, betas=(0.9, 1.0)), "beta parameter at index 1"),
        (lambda ps: optim.Lion(ps, weight_decay=-0.1), "Invalid weight_decay"),
        (lambda ps: optim.LBFGS(ps, lr=-1), "Invalid learning rate"),
        (lambda ps: optim.LBFGS(ps, line_search_fn="armijo"), "strong_wolfe"),
        (lambda ps: optim.LBFGS([{"params": ps[:1]}, {"params": ps[1:]}]), "parameter groups"),
    ],
)
def test_invalid_hyperparameters(make: Callable[[list[Any]], Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make(ax_params())


def test_a_tensor_learning_rate_equals_the_float_one() -> None:
    pa, pb = ax_params(), ax_params()
    a = run_ax(optim.Adam(pa, lr=ax.tensor(np.array(0.05))), pa, 5)
    b = run_ax(optim.Adam(pb, lr=0.05), pb, 5)
    assert_bitwise_equal(a, b)


# ----- gradients, closures, in-place updates -----------------------------------------------------
def test_zero_grad_to_none_or_to_zeros() -> None:
    ps = ax_params()
    opt = optim.SGD(ps, lr=0.1)
    feed_ax(ps)
    grads = [p.grad for p in ps[:3]]
    opt.zero_grad(set_to_none=False)
    for p, g in zip(ps[:3], grads):
        assert p.grad is g and not g.requires_grad and float(g.abs().sum()) == 0.0
    assert ps[3].grad is None
    opt.zero_grad()
    assert all(p.grad is None for p in ps)


def test_step_returns_the_closure_loss_computed_with_grad_enabled() -> None:
    w = ax.tensor([1.0, -2.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.25)

    def closure() -> ax.Tensor:
        opt.zero_grad()
        loss = (w * w).sum()
        assert ax.is_grad_enabled()
        loss.backward()
        return loss

    with ax.no_grad():
        loss = opt.step(closure)
    assert float(loss) == 5.0
    np.testing.assert_array_equal(w.detach().numpy(), [0.5, -1.0])  # w - 0.25 * 2w
    assert opt.step() is None


def test_the_update_is_in_place_and_bumps_the_version() -> None:
    """Parameters keep their memory; autograd sees the write (a saved parameter can't be used after a step)."""
    w = ax.tensor([1.0, 2.0], requires_grad=True)
    arr = w._data
    y = (w * w).sum()
    w.grad = ax.tensor([1.0, 1.0])
    optim.SGD([w], lr=0.1).step()
    assert w._data is arr
    np.testing.assert_allclose(w.detach().numpy(), [0.9, 1.9])
    with pytest.raises(AutogradError):
        y.backward()


def test_step_hooks_instance_and_global() -> None:
    ps = ax_params()
    opt = optim.SGD(ps, lr=0.1)
    calls: list[str] = []
    h1 = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    h2 = opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))
    g1 = register_optimizer_step_pre_hook(lambda o, args, kwargs: calls.append("gpre"))
    g2 = register_optimizer_step_post_hook(lambda o, args, kwargs: calls.append("gpost"))
    try:
        opt.step()
        assert calls == ["gpre", "pre", "post", "gpost"]
    finally:
        g1.remove()
        g2.remove()
    h1.remove()
    h2.remove()
    calls.clear()
    opt.step()
    assert calls == []
    # a pre-hook may replace the arguments: here it supplies a closure
    opt.register_step_pre_hook(lambda o, args, kwargs: ((), {"closure": lambda: 42}))
    assert opt.step() == 42


def test_load_state_dict_hooks() -> None:
    ps = ax_params()
    opt = FACTORIES["Adam"](ps)
    run_ax(opt, ps, 2)
    seen: list[Any] = []

    def pre(o: Any, sd: dict[str, Any]) -> dict[str, Any]:
        sd = dict(sd)
        sd["param_groups"] = [dict(g, lr=0.123) for g in sd["param_groups"]]
        return sd

    opt.register_load_state_dict_pre_hook(pre)
    opt.register_load_state_dict_post_hook(lambda o: seen.append(o.param_groups[0]["lr"]))
    opt.load_state_dict(opt.state_dict())
    assert seen == [0.123]


# ----- state dicts --------------------------------------------------------------------------------
def test_state_dict_has_pytorch_layout() -> None:
    ps = ax_params()
    opt = optim.Adam([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.5}])
    run_ax(opt, ps, 3)
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2, 3]]
    assert sorted(sd["state"]) == [0, 1, 2]  # the frozen parameter never got state
    st = sd["state"][1]
    assert set(st) == {"step", "exp_avg", "exp_avg_sq"}
    assert isinstance(st["step"], ax.Tensor) and st["step"].shape == () and st["step"].dtype == ax.float32
    assert float(st["step"]) == 3.0
    assert isinstance(st["exp_avg"], ax.Tensor) and st["exp_avg"].shape == SHAPES[1]


def _resume(name: str, dtype: Any) -> None:
    make = FACTORIES[name]
    pa = ax_params(dtype)
    straight = run_ax(make(pa), pa, 20)
    pb = ax_params(dtype)
    first = make(pb)
    head = run_ax(first, pb, 10)
    blob = pickle.dumps({"params": [p.detach() for p in pb], "optim": first.state_dict()})
    del first
    saved = pickle.loads(blob)
    pc = [p.clone().requires_grad_(True) for p in saved["params"]]
    second = make(pc)
    second.load_state_dict(saved["optim"])
    tail = run_ax(second, pc, 10)
    assert_bitwise_equal(head + tail, straight)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_resume_from_a_saved_state_is_bit_for_bit(name: str) -> None:
    _resume(name, ax.float64)


@pytest.mark.parametrize("name", ["Adam", "NAdam", "SGD"])
def test_resume_is_bit_for_bit_in_float32(name: str) -> None:
    _resume(name, ax.float32)


def test_loading_casts_state_to_the_parameter_dtype_and_copies() -> None:
    p64 = ax_params()
    opt64 = FACTORIES["Adam"](p64)
    run_ax(opt64, p64, 3)
    sd = opt64.state_dict()
    p32 = ax_params(ax.float32)
    opt32 = FACTORIES["Adam"](p32)
    opt32.load_state_dict(sd)
    st = opt32.state[p32[0]]
    assert st["exp_avg"].dtype == ax.float32 and st["step"].dtype == ax.float32
    np.testing.assert_allclose(st["exp_avg"].numpy(), sd["state"][0]["exp_avg"].numpy(), rtol=1e-6)
    # the loaded state does not share memory with the dict (same dtype too)
    opt_b = FACTORIES["Adam"](ax_params())
    opt_b.load_state_dict(sd)
    assert opt_b.state[opt_b.param_groups[0]["params"][0]]["exp_avg"]._data is not sd["state"][0]["exp_avg"]._data
    # NumPy arrays in a foreign dict are accepted
    foreign = copy.deepcopy(sd)
    foreign["state"][0]["exp_avg"] = foreign["state"][0]["exp_avg"].numpy()
    opt_b.load_state_dict(foreign)
    assert isinstance(opt_b.state[opt_b.param_groups[0]["params"][0]]["exp_avg"], ax.Tensor)


def test_load_state_dict_checks_the_groups() -> None:
    ps = ax_params()
    sd = optim.SGD([{"params": ps[:2]}, {"params": ps[2:]}]).state_dict()
    with pytest.raises(ValueError, match="parameter group"):
        optim.SGD(ps).load_state_dict(sd)
    with pytest.raises(ValueError, match="group 0 has 2 parameter"):
        optim.SGD([{"params": ps[:1]}, {"params": ps[1:]}]).load_state_dict(sd)


def test_loaded_hyperparameters_replace_the_constructor_ones() -> None:
    ps = ax_params()
    src = optim.AdamW(ps, lr=0.3, weight_decay=0.2)
    dst = optim.AdamW(ax_params(), lr=0.001)
    dst.load_state_dict(src.state_dict())
    assert dst.param_groups[0]["lr"] == 0.3 and dst.param_groups[0]["weight_decay"] == 0.2
    # an AdamW loading an Adam state stays decoupled, as in PyTorch
    dst.load_state_dict(optim.Adam(ps, weight_decay=0.1).state_dict())
    assert dst.param_groups[0]["decoupled_weight_decay"] is True


def test_pickle_and_deepcopy_an_optimizer() -> None:
    ps = ax_params()
    opt = FACTORIES["RMSprop"](ps)
    run_ax(opt, ps, 3)
    clones = [pickle.loads(pickle.dumps(opt)), copy.deepcopy(opt)]
    reference = run_ax(opt, ps, 3)
    for clone in clones:
        cps = clone.param_groups[0]["params"]
        assert all(p in clone.state for p in cps[:3])  # the state is keyed by the copied parameters
        assert_bitwise_equal(run_ax(clone, cps, 3), reference)


def test_repr_lists_the_groups() -> None:
    text = repr(optim.SGD([{"params": ax_params()[:1]}, {"params": ax_params()[1:2], "lr": 0.5}], lr=0.1))
    assert text.startswith("SGD (\nParameter Group 0\n") and "    lr: 0.5\n" in text and "Parameter Group 1" in text


def test_pytorchs_implementation_switches_are_checked_as_there() -> None:
    ps = ax_params()
    with pytest.raises(RuntimeError, match="`fused` and `foreach` cannot be `True` together"):
        optim.SGD(ps, lr=0.1, foreach=True, fused=True)
    for name in ("SGD", "Adam", "RMSprop", "Adadelta"):
        with pytest.raises(NotImplementedError, match="differentiable=True"):
            getattr(optim, name)(ps, differentiable=True)
    group = optim.Adam(ps, capturable=True, foreach=False).param_groups[0]
    assert group["capturable"] is True and group["foreach"] is False and group["fused"] is None
