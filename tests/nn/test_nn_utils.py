"""nn.utils: gradient clipping and parameters <-> vector, against PyTorch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml import nn
from axonml.errors import ShapeError
from axonml.nn.utils import (
    clip_grad_norm_,
    clip_grad_value_,
    clip_grads_with_norm_,
    get_total_norm,
    parameters_to_vector,
    vector_to_parameters,
)


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


SHAPES = [(4, 3), (3,), (2, 2, 2), (1,)]


def _pair(torch: Any, scale: float = 1.0, dtype: Any = np.float32, seed: int = 0) -> tuple[list[Any], list[Any]]:
    """The same parameters with the same gradients, in axonml and in PyTorch (the third has no gradient)."""
    rng = np.random.default_rng(seed)
    ours, theirs = [], []
    for i, shape in enumerate(SHAPES):
        w = rng.standard_normal(shape).astype(dtype)
        g = (rng.standard_normal(shape) * scale).astype(dtype)
        p, tp = nn.Parameter(ax.tensor(w)), torch.nn.Parameter(torch.tensor(w))
        if i != 2:
            p.grad, tp.grad = ax.tensor(g), torch.tensor(g)
        ours.append(p)
        theirs.append(tp)
    return ours, theirs


def _grads_equal(ours: list[Any], theirs: list[Any], rtol: float = 1e-6) -> None:
    for p, tp in zip(ours, theirs):
        assert (p.grad is None) == (tp.grad is None)
        if p.grad is not None:
            np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=rtol, atol=1e-7)


@pytest.mark.torch
@pytest.mark.parametrize("norm_type", [2.0, math.inf, 1.0, 3.0, 0.5, -math.inf, 0.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e4])
def test_clip_grad_norm_matches_torch(torch: Any, norm_type: float, max_norm: float) -> None:
    ours, theirs = _pair(torch)
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert total.shape == () and total.dtype == ax.float32 and not total.requires_grad
    np.testing.assert_allclose(float(total), float(ttotal), rtol=1e-6)
    _grads_equal(ours, theirs, rtol=1e-5)


@pytest.mark.torch
def test_clip_grad_norm_float64_single_tensor_and_generator(torch: Any) -> None:
    ours, theirs = _pair(torch, dtype=np.float64, scale=10.0)
    total = clip_grad_norm_(ours[0], 1.0)  # one tensor instead of an iterable
    ttotal = torch.nn.utils.clip_grad_norm_(theirs[0], 1.0)
    assert total.dtype == ax.float64
    np.testing.assert_allclose(float(total), float(ttotal), rtol=1e-12)
    _grads_equal(ours, theirs)
    total = clip_grad_norm_((p for p in ours), 1.0)  # a generator is consumed once and still works
    ttotal = torch.nn.utils.clip_grad_norm_((p for p in theirs), 1.0)
    np.testing.assert_allclose(float(total), float(ttotal), rtol=1e-12)
    _grads_equal(ours, theirs)
    assert float(get_total_norm([p.grad for p in ours if p.grad is not None])) <= 1.0 + 1e-6


@pytest.mark.torch
def test_get_total_norm_and_clip_grads_with_norm_match_torch(torch: Any) -> None:
    ours, theirs = _pair(torch, scale=5.0)
    grads = [p.grad for p in ours if p.grad is not None]
    tgrads = [p.grad for p in theirs if p.grad is not None]
    total = get_total_norm(grads, 3.0)
    ttotal = torch.nn.utils.get_total_norm(tgrads, 3.0)
    np.testing.assert_allclose(float(total), float(ttotal), rtol=1e-6)
    clip_grads_with_norm_(ours, 2.0, total)
    torch.nn.utils.clip_grads_with_norm_(theirs, 2.0, ttotal)
    _grads_equal(ours, theirs, rtol=1e-5)


def test_clip_grad_norm_scales_to_max_norm_in_place_and_half_precision() -> None:
    p = nn.Parameter(ax.zeros(3, 4))
    p.grad = ax.full((3, 4), 2.0)
    g = p.grad
    total = clip_grad_norm_([p], 1.0)
    assert float(total) == pytest.approx(math.sqrt(12 * 4))
    assert p.grad is g  # scaled in place: optimizers holding the buffer see it
    assert float(ax.linalg.vector_norm(p.grad)) == pytest.approx(1.0, rel=1e-5)
    # float16 gradients whose squares overflow float16 still give the right norm
    h = nn.Parameter(ax.zeros(1000, dtype=ax.float16))
    h.grad = ax.full((1000,), 300.0, dtype=ax.float16)
    total = clip_grad_norm_(h, 1.0)
    assert total.dtype == ax.float16 and float(total) == pytest.approx(300 * math.sqrt(1000), rel=1e-3)
    assert np.isfinite(h.grad.numpy()).all()


def test_clip_grad_norm_nonfinite_and_empty() -> None:
    p = nn.Parameter(ax.zeros(3))
    p.grad = ax.tensor([1.0, math.nan, 2.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(p, 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(p.grad.numpy(), [1.0, math.nan, 2.0])  # untouched when it raises
    assert math.isnan(float(clip_grad_norm_(p, 1.0)))  # without the flag the NaN spreads, as in PyTorch
    q = nn.Parameter(ax.zeros(2))
    q.grad = ax.tensor([math.inf, 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_([q], 1.0, norm_type=math.inf, error_if_nonfinite=True)
    empty = clip_grad_norm_([nn.Parameter(ax.zeros(2))], 1.0)  # no gradients at all
    assert float(empty) == 0.0 and empty.shape == ()
    assert float(clip_grad_norm_([], 1.0)) == 0.0


@pytest.mark.torch
def test_clip_grad_value_matches_torch(torch: Any) -> None:
    ours, theirs = _pair(torch, scale=2.0)
    assert clip_grad_value_(ours, 0.7) is None
    torch.nn.utils.clip_grad_value_(theirs, 0.7)
    _grads_equal(ours, theirs)
    assert max(float(p.grad.abs().max()) for p in ours if p.grad is not None) <= 0.7


@pytest.mark.torch
def test_parameters_to_vector_and_back_match_torch(torch: Any) -> None:
    ours, theirs = _pair(torch)
    vec, tvec = parameters_to_vector(ours), torch.nn.utils.parameters_to_vector(theirs)
    np.testing.assert_array_equal(vec.detach().numpy(), tvec.detach().numpy())
    assert vec.shape == (12 + 3 + 8 + 1,) and vec.requires_grad
    (vec * ax.arange(24, dtype=ax.float32)).sum().backward()  # differentiable back to every parameter
    assert ours[0].grad is not None
    new = np.arange(24, dtype=np.float32) * 0.5
    vector_to_parameters(ax.tensor(new), ours)
    torch.nn.utils.vector_to_parameters(torch.tensor(new), theirs)
    for p, tp in zip(ours, theirs):
        np.testing.assert_array_equal(p.detach().numpy(), tp.detach().numpy())
        assert isinstance(p, nn.Parameter) and p.requires_grad


def test_vector_to_parameters_shares_memory_and_errors() -> None:
    model = nn.Linear(3, 2)
    vec = ax.zeros(8)
    vector_to_parameters(vec, model.parameters())
    with ax.no_grad():
        vec.add_(1.0)
    assert np.all(model.weight.detach().numpy() == 1) and np.all(model.bias.detach().numpy() == 1)
    out = model(ax.ones(1, 3))  # the model still runs and trains on the new storage
    out.sum().backward()
    assert model.weight.grad is not None and model.weight.grad.shape == (2, 3)
    with pytest.raises(TypeError, match="expected a Tensor"):
        vector_to_parameters(np.zeros(8), model.parameters())  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="7 elements"):
        vector_to_parameters(ax.zeros(7), model.parameters())
    with pytest.raises(ValueError, match="no parameters"):
        parameters_to_vector([])


@pytest.mark.torch
def test_clip_inside_a_training_step_matches_torch(torch: Any) -> None:
    tm = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Linear(8, 2))
    m = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 2))
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x0 = np.random.default_rng(5).standard_normal((16, 6)).astype(np.float32) * 10
    (m(ax.tensor(x0)) ** 2).sum().backward()
    (tm(torch.tensor(x0)) ** 2).sum().backward()
    n = clip_grad_norm_(m.parameters(), 0.1)
    tn = torch.nn.utils.clip_grad_norm_(tm.parameters(), 0.1)
    np.testing.assert_allclose(float(n), float(tn), rtol=1e-5)
    _grads_equal(list(m.parameters()), list(tm.parameters()), rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_clipping_and_vectors_on_cuda() -> None:
    rng = np.random.default_rng(6)
    grads = [rng.standard_normal(s).astype(np.float32) * 3 for s in SHAPES]
    cpu = [nn.Parameter(ax.zeros(*s)) for s in SHAPES]
    gpu = [nn.Parameter(ax.zeros(*s, device="cuda")) for s in SHAPES]
    for p, q, g in zip(cpu, gpu, grads):
        p.grad, q.grad = ax.tensor(g), ax.tensor(g, device="cuda")
    for norm_type in (2.0, math.inf, 1.0):
        tc, tg = clip_grad_norm_(cpu, 1.0, norm_type), clip_grad_norm_(gpu, 1.0, norm_type)
        assert tg.device.type == "cuda"
        np.testing.assert_allclose(float(tg), float(tc), rtol=1e-5)
    for p, q in zip(cpu, gpu):
        np.testing.assert_allclose(q.grad.cpu().numpy(), p.grad.numpy(), rtol=1e-5, atol=1e-7)
    with pytest.raises(RuntimeError, match="non-finite"):
        q = nn.Parameter(ax.zeros(2, device="cuda"))
        q.grad = ax.tensor([math.nan, 1.0], device="cuda")
        clip_grad_norm_(q, 1.0, error_if_nonfinite=True)
    mixed = [cpu[0], gpu[1]]  # gradients on two devices: the total lands on the first one's
    total = clip_grad_norm_(mixed, 1e9)
    assert total.device.type == "cpu"
    clip_grad_value_(gpu, 0.01)
    assert max(float(q.grad.abs().max()) for q in gpu) <= 0.01
    vec = parameters_to_vector(gpu)
    assert vec.device.type == "cuda" and vec.shape == (24,)
    vector_to_parameters(ax.ones(24, device="cuda"), gpu)
    assert all(float(q.detach().sum()) == q.numel() for q in gpu)
    with pytest.raises(ax.errors.DeviceError, match="different devices"):
        parameters_to_vector(mixed)
