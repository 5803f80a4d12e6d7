"""``axonml.amp.GradScaler``: the scale trajectory and skipped steps against ``torch.amp.GradScaler``,
the unscale_/step/update protocol and its errors, checkpoints, and training with autocast."""

from __future__ import annotations

import itertools
import pickle
from typing import Any

import numpy as np
import pytest

import axonml as ax
import axonml.nn.functional as F
from axonml import nn, optim
from axonml.amp import GradScaler

SHAPES = [(3, 4), (5,)]


def _params(seed: int = 0) -> list[ax.Tensor]:
    rng = np.random.default_rng(seed)
    return [ax.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in SHAPES]


class _Recorder:
    """A duck-typed optimizer: param_groups and a step() that counts its calls."""

    def __init__(self, params: list[ax.Tensor]) -> None:
        self.param_groups = [{"params": params}]
        self.steps = 0

    def step(self, *args: Any, **kwargs: Any) -> str:
        self.steps += 1
        return "stepped"


def _set_grads(params: list[ax.Tensor], grads: list[np.ndarray]) -> None:
    for p, g in zip(params, grads):
        p.grad = ax.tensor(g)


# ----- the trajectory against PyTorch --------------------------------------------------------------
# per iteration: what the (scaled) gradients hold, and whether unscale_ is called explicitly first
SCRIPT = [
    ("finite", False), ("finite", True), ("inf", False), ("finite", False), ("nan", True),
    ("finite", False), ("finite", False), ("finite", True), ("finite", False), ("-inf", False),
    ("finite", False), ("finite", False), ("finite", False), ("finite", False), ("huge", False),
]


def _script_grads(kind: str, scale: float, rng: np.random.Generator) -> list[np.ndarray]:
    grads = [rng.standard_normal(s).astype(np.float32) * np.float32(scale) for s in SHAPES]
    if kind in ("inf", "-inf", "nan"):
        grads[1][2] = float(kind)
    elif kind == "huge":  # finite, but its unscaled value is still finite: a normal step
        grads[0][0, 0] = 3e38
    return grads


@pytest.mark.torch
def test_scale_trajectory_and_skipped_steps_match_torch() -> None:
    torch = pytest.importorskip("torch")
    kw = {"init_scale": 2.0**10, "growth_factor": 3.0, "backoff_factor": 0.25, "growth_interval": 3}
    ours, theirs = GradScaler("cpu", **kw), torch.amp.GradScaler("cpu", **kw)
    p_ours = _params()
    p_theirs = [torch.tensor(p.detach().numpy().copy(), requires_grad=True) for p in p_ours]
    opt_ours, opt_theirs = optim.SGD(p_ours, lr=0.1), torch.optim.SGD(p_theirs, lr=0.1)
    rng = np.random.default_rng(1)
    for kind, explicit in SCRIPT:
        # scale() starts the iteration (and lazily creates the scale), as loss scaling does
        ours.scale(ax.tensor(1.0))
        theirs.scale(torch.tensor(1.0))
        assert ours.get_scale() == theirs.get_scale()
        grads = _script_grads(kind, ours.get_scale(), rng)
        _set_grads(p_ours, grads)
        for p, g in zip(p_theirs, grads):
            p.grad = torch.tensor(g.copy())
        if explicit:
            ours.unscale_(opt_ours)
            theirs.unscale_(opt_theirs)
            for p, q in zip(p_ours, p_theirs):
                np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
        ours.step(opt_ours)
        theirs.step(opt_theirs)
        ours.update()
        theirs.update()
        assert ours.get_scale() == theirs.get_scale(), kind
        assert ours._get_growth_tracker() == theirs._get_growth_tracker()
        for p, q in zip(p_ours, p_theirs):
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-6, atol=1e-6)
    assert ours.state_dict() == theirs.state_dict()


def test_growth_and_backoff_rules() -> None:
    ps = _params()
    opt = _Recorder(ps)
    s = GradScaler("cpu", init_scale=8.0, growth_interval=2)
    expected = [(8.0, 1, 1), (16.0, 0, 2), (8.0, 0, 2), (8.0, 1, 3), (16.0, 0, 4)]
    for i, kind in enumerate(["finite", "finite", "nan", "finite", "finite"]):
        s.scale(ax.tensor(1.0))
        _set_grads(ps, _script_grads(kind, s.get_scale(), np.random.default_rng(i)))
        assert s.step(opt) == ("stepped" if kind == "finite" else None)
        s.update()
        assert (s.get_scale(), s._get_growth_tracker(), opt.steps) == expected[i]


def test_scale_never_grows_past_float32() -> None:
    ps = _params()
    s = GradScaler("cpu", init_scale=2.0**127, growth_interval=1)
    s.scale(ax.tensor(1.0))
    _set_grads(ps, [np.zeros(sh, np.float32) for sh in SHAPES])
    s.step(_Recorder(ps))
    s.update()
    assert s.get_scale() == 2.0**127 and s._get_growth_tracker() == 0


# ----- the protocol ----------------------------------------------------------------------------------
def test_unscale_divides_in_place_once_per_iteration() -> None:
    ps = _params()
    opt = _Recorder(ps)
    s = GradScaler("cpu", init_scale=4.0)
    loss = (ps[0].sum() + ps[1].sum()) * 0.5
    scaled = s.scale(loss)
    assert scaled.item() == pytest.approx(4.0 * loss.item())
    scaled.backward()
    grad_buffer = ps[0].grad
    np.testing.assert_array_equal(ps[0].grad.numpy(), np.full((3, 4), 2.0, np.float32))
    s.unscale_(opt)
    assert ps[0].grad is grad_buffer  # in place
    np.testing.assert_array_equal(ps[0].grad.numpy(), np.full((3, 4), 0.5, np.float32))
    with pytest.raises(RuntimeError, match="already been called"):
        s.unscale_(opt)
    s.step(opt)  # does not unscale again
    np.testing.assert_array_equal(ps[0].grad.numpy(), np.full((3, 4), 0.5, np.float32))
    with pytest.raises(RuntimeError, match="after step"):
        s.unscale_(opt)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        s.step(opt)
    s.update()
    s.scale(loss)
    s.unscale_(opt)  # a new iteration
    assert opt.steps == 1


def test_read_only_gradient_is_replaced_not_written() -> None:
    p = ax.tensor([1.0, 2.0, 3.0], requires_grad=True)
    view = np.broadcast_to(np.float32(8.0), (3,))  # NumPy marks broadcast views read-only
    p.grad = ax.from_numpy(view)
    s = GradScaler("cpu", init_scale=4.0)
    s.scale(ax.tensor(1.0))
    s.unscale_(_Recorder([p]))
    np.testing.assert_array_equal(p.grad.numpy(), [2.0, 2.0, 2.0])
    assert view[0] == 8.0


def test_inf_found_is_recorded_per_optimizer_and_grads_still_unscaled() -> None:
    pa, pb = _params(0), _params(1)
    oa, ob = _Recorder(pa), _Recorder(pb)
    s = GradScaler("cpu", init_scale=2.0)
    s.scale(ax.tensor(1.0))
    _set_grads(pa, [np.full(sh, 4.0, np.float32) for sh in SHAPES])
    bad = [np.full(sh, 4.0, np.float32) for sh in SHAPES]
    bad[0][1, 1] = np.inf
    _set_grads(pb, bad)
    s.step(oa)
    s.step(ob)
    assert (oa.steps, ob.steps) == (1, 0)  # only the optimizer with the inf skips
    assert pb[1].grad.numpy()[0] == 2.0 and np.isinf(pb[0].grad.numpy()[1, 1])
    s.update()
    assert s.get_scale() == 1.0  # any inf in the iteration backs off


def test_protocol_errors() -> None:
    ps = _params()
    opt = _Recorder(ps)
    s = GradScaler("cpu")
    for call in (lambda: s.unscale_(opt), lambda: s.step(opt), s.update):
        with pytest.raises(RuntimeError, match="scale"):
            call()
    s.scale(ax.tensor(1.0))
    with pytest.raises(RuntimeError, match="No inf checks"):
        s.step(opt)  # no parameter has a gradient
    with pytest.raises(RuntimeError, match="No inf checks"):
        s.update()
    with pytest.raises(RuntimeError, match="Closure"):
        s.step(opt, closure=lambda: 0.0)
    s = GradScaler("cpu")
    s.scale(ax.tensor(1.0))
    ps[0].grad = ax.zeros(3, 4, dtype=ax.float16)
    with pytest.raises(ValueError, match="FP16"):
        s.unscale_(opt)
    with pytest.raises(ValueError, match="Tensor"):
        s.scale(3.0)
    for bad in ({"growth_factor": 1.0}, {"backoff_factor": 1.5}, {"growth_interval": 0}):
        with pytest.raises(ValueError):
            GradScaler("cpu", **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device"):
        GradScaler("tpu")


def test_scale_of_collections_and_update_with_a_new_scale() -> None:
    s = GradScaler("cpu", init_scale=3.0)
    a, b = ax.tensor([1.0]), ax.tensor([2.0])
    lst, tup = s.scale([a, b]), s.scale((a, [b]))
    assert isinstance(lst, list) and [t.item() for t in lst] == [3.0, 6.0]
    assert isinstance(tup, tuple) and tup[0].item() == 3.0 and tup[1][0].item() == 6.0
    assert [t.item() for t in s.scale(t for t in (a, b))] == [3.0, 6.0]
    assert s.scale(ax.tensor([1.0], dtype=ax.bfloat16)).dtype is ax.bfloat16  # the output keeps its dtype
    s.update(5.0)
    assert s.get_scale() == 5.0
    s.update(ax.tensor(7.0))
    assert s.get_scale() == 7.0
    with pytest.raises(ValueError):
        s.update(ax.tensor([1.0, 2.0]))
    with pytest.raises(TypeError):
        s.update("2")  # type: ignore[arg-type]


def test_disabled_scaler_is_a_pass_through() -> None:
    ps = _params()
    opt = _Recorder(ps)
    s = GradScaler("cpu", enabled=False)
    x = ax.tensor(2.0)
    assert s.scale(x) is x and not s.is_enabled() and s.get_scale() == 1.0
    s.unscale_(opt)
    assert s.step(opt) == "stepped"
    s.update()
    assert s.state_dict() == {}
    s.load_state_dict({"scale": 3.0})  # ignored


def test_cuda_scaler_without_a_gpu_disables_itself() -> None:
    if ax.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.warns(UserWarning, match="CUDA is not available"):
        s = GradScaler()
    assert not s.is_enabled()


# ----- checkpoints ---------------------------------------------------------------------------------
def _advance(s: GradScaler, kinds: list[str]) -> None:
    ps = _params()
    for i, kind in enumerate(kinds):
        s.scale(ax.tensor(1.0))
        _set_grads(ps, _script_grads(kind, s.get_scale(), np.random.default_rng(i)))
        s.step(_Recorder(ps))
        s.update()


def test_state_dict_round_trip_and_pickle() -> None:
    s = GradScaler("cpu", init_scale=64.0, growth_factor=4.0, backoff_factor=0.125, growth_interval=5)
    _advance(s, ["finite", "inf", "finite", "finite"])
    sd = s.state_dict()
    assert sd == {"scale": 8.0, "growth_factor": 4.0, "backoff_factor": 0.125, "growth_interval": 5,
                  "_growth_tracker": 2}
    fresh = GradScaler("cpu")
    fresh.load_state_dict(sd)
    assert fresh.state_dict() == sd
    _advance(fresh, ["finite"] * 3)
    _advance(s, ["finite"] * 3)
    assert fresh.state_dict() == s.state_dict() and s.get_scale() == 32.0
    clone = pickle.loads(pickle.dumps(s))
    assert clone.state_dict() == s.state_dict()
    _advance(clone, ["finite"])
    with pytest.raises(RuntimeError, match="empty"):
        fresh.load_state_dict({})
    with pytest.raises(KeyError, match="growth"):
        fresh.load_state_dict({"scale": 1.0})
    s.scale(ax.tensor(1.0))
    ps = _params()
    _set_grads(ps, [np.ones(sh, np.float32) for sh in SHAPES])
    s.unscale_(_Recorder(ps))
    with pytest.raises(RuntimeError, match="pickled"):
        pickle.dumps(s)


@pytest.mark.torch
def test_state_dict_moves_between_axonml_and_torch() -> None:
    torch = pytest.importorskip("torch")
    s = GradScaler("cpu", init_scale=128.0, growth_interval=7)
    _advance(s, ["finite", "nan", "finite"])
    t = torch.amp.GradScaler("cpu")
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict()
    back = GradScaler("cpu")
    back.load_state_dict(t.state_dict())
    assert back.state_dict() == s.state_dict()


# ----- training --------------------------------------------------------------------------------------
def _train(mixed: bool, init_scale: float = 2.0**16, steps: int = 40,
           dtype: Any = ax.bfloat16) -> tuple[list[float], list[float]]:
    """Losses and scales of a 2-layer MLP trained with SGD, in float32 or with autocast + GradScaler."""
    rng = np.random.default_rng(0)
    params = [nn.Parameter(ax.tensor(rng.uniform(-k, k, s).astype(np.float32)))
              for s, k in (((32, 8), 8**-0.5), ((32,), 8**-0.5), ((3, 32), 32**-0.5), ((3,), 32**-0.5))]
    w1, b1, w2, b2 = params
    opt = optim.SGD(params, lr=1.0, momentum=0.9)
    scaler = GradScaler("cpu", init_scale=init_scale, growth_interval=10, enabled=mixed)
    x = ax.tensor(rng.standard_normal((64, 8)).astype(np.float32))
    y = ax.tensor((rng.standard_normal((64, 8)) @ rng.standard_normal((8, 3))).argmax(1))
    losses, scales = [], []
    for _ in range(steps):
        opt.zero_grad()
        with ax.autocast("cpu", dtype=dtype, enabled=mixed):
            logits = F.linear(F.relu(F.linear(x, w1, b1)), w2, b2)
            loss = F.cross_entropy(logits, y)
        assert logits.dtype is (dtype if mixed else ax.float32) and loss.dtype is ax.float32
        scaler.scale(loss).backward()
        for p in params:
            assert p.grad.dtype is ax.float32
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
        scales.append(scaler.get_scale())
    return losses, scales


def test_mixed_precision_training_follows_float32() -> None:
    full, _ = _train(False)
    mixed, scales = _train(True)
    assert mixed[-1] < 0.1 * mixed[0] and full[-1] < 0.1 * full[0]
    np.testing.assert_allclose(mixed, full, rtol=0.05, atol=0.02)
    assert scales[-1] == 2.0**16 * 2**4  # 40 clean steps, growth every 10


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy reports the overflows the scaler is there to catch
def test_training_recovers_from_an_overflowing_scale() -> None:
    # float16 gradients overflow (above 65504) under a scale of 2**24: those steps are skipped while
    # the scale backs off (and again each time it grows back too far); training goes on as in float32
    full, _ = _train(False, steps=60)
    mixed, scales = _train(True, init_scale=2.0**24, steps=60, dtype=ax.float16)
    skipped = sum(1 for a, b in itertools.pairwise(mixed) if a == b)
    assert skipped >= 3 and min(scales) <= 2.0**21
    assert mixed[-1] < 0.01 and full[-1] < 0.01
    np.testing.assert_allclose(mixed[0], full[0], rtol=1e-2)


# ----- CUDA ------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_float16_training_with_the_scaler() -> None:
    rng = np.random.default_rng(0)
    weight = ax.tensor(rng.uniform(-0.25, 0.25, (4, 16)).astype(np.float32), device="cuda", requires_grad=True)
    bias = ax.zeros(4, device="cuda", requires_grad=True)
    opt = optim.SGD([weight, bias], lr=0.1)
    scaler = GradScaler("cuda", init_scale=2.0**24, growth_interval=5)
    x = ax.tensor(rng.standard_normal((32, 16)).astype(np.float32), device="cuda")
    y = ax.tensor(rng.integers(0, 4, 32), device="cuda")
    losses = []
    for _ in range(30):
        opt.zero_grad()
        with ax.autocast("cuda"):
            out = F.linear(x, weight, bias)
            loss = F.cross_entropy(out, y)
        assert out.dtype is ax.float16 and loss.dtype is ax.float32
        scaler.scale(loss).backward()
        assert weight.grad.dtype is ax.float32 and weight.grad.device.type == "cuda"
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert scaler.get_scale() <= 2.0**22  # float16 gradients overflowed at 2**24: the scale backed off
