"""Identity, Flatten, Unflatten, Linear, Bilinear: parameters, default init, forward and gradients vs PyTorch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml import nn
from axonml.errors import ShapeError


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def _copy_from_torch(model: nn.Module, tmodel: Any) -> None:
    model.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})


def _close(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    a = a.detach().numpy() if isinstance(a, ax.Tensor) else a
    b = b.detach().numpy() if hasattr(b, "detach") else b
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_linear_parameters_and_default_init() -> None:
    ax.manual_seed(0)
    m = nn.Linear(50, 30)
    assert [(n, p.shape) for n, p in m.named_parameters()] == [("weight", (30, 50)), ("bias", (30,))]
    bound = 1 / math.sqrt(50)
    w = m.weight.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound  # U(-k, k) has std k/sqrt(3)
    assert np.abs(m.bias.detach().numpy()).max() <= bound
    assert m.weight.dtype == ax.float32 and m.weight.requires_grad
    assert repr(m) == "Linear(in_features=50, out_features=30, bias=True)"
    nb = nn.Linear(3, 2, bias=False, dtype=ax.float64)
    assert nb.bias is None and list(nb.state_dict()) == ["weight"] and nb.weight.dtype == ax.float64
    assert repr(nb) == "Linear(in_features=3, out_features=2, bias=False)"
    with pytest.warns(UserWarning, match="zero-element"):
        empty = nn.Linear(0, 2)
    assert list(empty.bias.detach().numpy()) == [0.0, 0.0]  # fan_in 0: a zero bias, as PyTorch


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(4, 5), (5,), (2, 3, 5), (0, 5)], ids=["2d", "1d", "3d", "empty"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(torch: Any, shape: tuple[int, ...], bias: bool) -> None:
    tm = torch.nn.Linear(5, 3, bias=bias)
    m = nn.Linear(5, 3, bias=bias)
    _copy_from_torch(m, tm)
    x0 = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    x, tx = ax.tensor(x0, requires_grad=True), torch.tensor(x0, requires_grad=True)
    y, ty = m(x), tm(tx)
    assert y.shape == tuple(ty.shape)
    _close(y, ty)
    g0 = np.random.default_rng(2).standard_normal(tuple(ty.shape)).astype(np.float32)
    (y * ax.tensor(g0)).sum().backward()
    (ty * torch.tensor(g0)).sum().backward()
    _close(x.grad, tx.grad)
    _close(m.weight.grad, tm.weight.grad, atol=1e-5)
    if bias:
        _close(m.bias.grad, tm.bias.grad, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(4,), (6, 4), (2, 3, 4)], ids=["1d", "2d", "3d"])
def test_bilinear_matches_torch(torch: Any, shape: tuple[int, ...]) -> None:
    tm = torch.nn.Bilinear(4, 3, 2)
    m = nn.Bilinear(4, 3, 2)
    assert [(n, p.shape) for n, p in m.named_parameters()] == [("weight", (2, 4, 3)), ("bias", (2,))]
    _copy_from_torch(m, tm)
    rng = np.random.default_rng(3)
    a0 = rng.standard_normal(shape).astype(np.float32)
    b0 = rng.standard_normal((*shape[:-1], 3)).astype(np.float32)
    a, b = ax.tensor(a0, requires_grad=True), ax.tensor(b0, requires_grad=True)
    ta, tb = torch.tensor(a0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    y, ty = m(a, b), tm(ta, tb)
    _close(y, ty)
    y.sum().backward()
    ty.sum().backward()
    for ours, theirs in ((a.grad, ta.grad), (b.grad, tb.grad), (m.weight.grad, tm.weight.grad),
                         (m.bias.grad, tm.bias.grad)):
        _close(ours, theirs, atol=1e-5)
    assert repr(m) == repr(tm)


def test_bilinear_init_and_errors() -> None:
    m = nn.Bilinear(16, 3, 5, bias=False)
    assert m.bias is None and np.abs(m.weight.detach().numpy()).max() <= 1 / 4
    with pytest.raises(ShapeError, match="bilinear"):
        m(ax.zeros(2, 16), ax.zeros(3, 3))  # leading dimensions differ
    with pytest.raises(ShapeError, match="bilinear"):
        m(ax.zeros(2, 15), ax.zeros(2, 3))


def test_linear_errors_and_gradcheck() -> None:
    m = nn.Linear(3, 2, dtype=ax.float64)
    with pytest.raises(ShapeError, match=r"linear: input of shape \(4, 5\)"):
        m(ax.zeros(4, 5, dtype=ax.float64))
    x = ax.randn(2, 3, dtype=ax.float64, requires_grad=True)
    assert ax.autograd.gradcheck(lambda x, w, b: nn.modules.linear.linear(x, w, b), (x, m.weight, m.bias))
    assert ax.autograd.gradgradcheck(lambda x, w: nn.modules.linear.linear(x, w) ** 2, (x, m.weight))
    bl = nn.Bilinear(2, 3, 2, dtype=ax.float64)
    x1 = ax.randn(4, 2, dtype=ax.float64, requires_grad=True)
    x2 = ax.randn(4, 3, dtype=ax.float64, requires_grad=True)
    assert ax.autograd.gradcheck(lambda a, b, w: nn.modules.linear.bilinear(a, b, w, bl.bias), (x1, x2, bl.weight))


@pytest.mark.torch
def test_identity_flatten_unflatten_match_torch(torch: Any) -> None:
    x0 = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    x, tx = ax.tensor(x0), torch.tensor(x0)
    ident = nn.Identity(54, unused="ok")
    assert ident(x) is x and repr(ident) == "Identity()"
    for args in [(), (0,), (1, 2), (2, -1), (-3, -2)]:
        f, tf = nn.Flatten(*args), torch.nn.Flatten(*args)
        assert f(x).shape == tuple(tf(tx).shape)
        np.testing.assert_array_equal(f(x).numpy(), tf(tx).numpy())
        assert repr(f) == repr(tf)
    u, tu = nn.Unflatten(1, (3, 1)), torch.nn.Unflatten(1, (3, 1))
    np.testing.assert_array_equal(u(x).numpy(), tu(tx).numpy())
    assert repr(u) == repr(tu)
    u2 = nn.Unflatten(-1, [5, -1])
    assert u2(x).shape == (2, 3, 4, 5, 1) and repr(u2) == repr(torch.nn.Unflatten(-1, [5, -1]))
    with pytest.raises(TypeError, match="tuple of ints"):
        nn.Unflatten(1, (2, 2.5))  # type: ignore[arg-type]
    # gradients flow through the reshapes
    y = ax.randn(2, 6, requires_grad=True)
    nn.Sequential(nn.Unflatten(1, (2, 3)), nn.Flatten())(y).sum().backward()
    assert y.grad is not None and np.all(y.grad.numpy() == 1)


@pytest.mark.torch
def test_sequential_mlp_matches_torch_through_a_few_sgd_steps(torch: Any) -> None:
    def build(lib: Any) -> Any:
        return lib.Sequential(lib.Flatten(), lib.Linear(12, 16), lib.Linear(16, 8), lib.Identity(), lib.Linear(8, 3))

    ours, theirs = build(nn), build(torch.nn)
    _copy_from_torch(ours, theirs)
    rng = np.random.default_rng(4)
    for _ in range(3):
        x0 = rng.standard_normal((5, 3, 4)).astype(np.float32)
        y, ty = ours(ax.tensor(x0)), theirs(torch.tensor(x0))
        _close(y, ty, atol=1e-5)
        (y * y).mean().backward()
        (ty * ty).mean().backward()
        with ax.no_grad():
            for p in ours.parameters():
                p.sub_(0.1 * p.grad)
        with torch.no_grad():
            for p in theirs.parameters():
                p.sub_(0.1 * p.grad)
        ours.zero_grad()
        theirs.zero_grad()
    for (k, v), (tk, tv) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert k == tk
        _close(v, tv, atol=1e-5)


def test_linear_float64_and_half_outputs_keep_dtype() -> None:
    for d in (ax.float64, ax.float16):
        m = nn.Linear(4, 2, dtype=d)
        assert m(ax.ones(3, 4, dtype=d)).dtype == d


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_linear_and_bilinear_on_cuda_match_cpu() -> None:
    for cpu in (nn.Linear(6, 4), nn.Bilinear(6, 5, 4)):
        gpu = type(cpu)(*((6, 4) if isinstance(cpu, nn.Linear) else (6, 5, 4)), device="cuda")
        assert gpu.weight.device.type == "cuda"
        gpu.load_state_dict(cpu.state_dict())
        rng = np.random.default_rng(7)
        widths = (6,) if isinstance(cpu, nn.Linear) else (6, 5)
        xs = [rng.standard_normal((3, 2, n)).astype(np.float32) for n in widths]
        y = cpu(*[ax.tensor(x) for x in xs])
        yg = gpu(*[ax.tensor(x, device="cuda") for x in xs])
        _close(yg.cpu(), y, atol=1e-5)
        y.sum().backward()
        yg.sum().backward()
        _close(gpu.weight.grad.cpu(), cpu.weight.grad, atol=1e-4)
        _close(gpu.bias.grad.cpu(), cpu.bias.grad, atol=1e-4)
