"""nn.utils.weight_norm / spectral_norm (and their removal), against PyTorch."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml import nn
from axonml.nn.utils import remove_spectral_norm, remove_weight_norm, spectral_norm, weight_norm

pytestmark = pytest.mark.torch


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


class Proj(nn.Module):
    """A layer with a weight of any shape: y = x @ weight.reshape(out, -1).T + bias."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.weight = nn.Parameter(ax.randn(*shape, dtype=ax.float64))
        self.bias = nn.Parameter(ax.randn(shape[0], dtype=ax.float64))

    def forward(self, x: Any) -> Any:
        return x @ self.weight.reshape(self.weight.shape[0], -1).T + self.bias


def _torch_proj(torch: Any, shape: tuple[int, ...]) -> Any:
    class TProj(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(shape, dtype=torch.float64))
            self.bias = torch.nn.Parameter(torch.zeros(shape[0], dtype=torch.float64))

        def forward(self, x: Any) -> Any:
            return x @ self.weight.reshape(self.weight.shape[0], -1).T + self.bias

    return TProj()


def _pair(torch: Any, shape: tuple[int, ...] | None) -> tuple[Any, Any]:
    """The same layer in both (a float64 Linear(5, 3), or a Proj of ``shape``)."""
    ax.manual_seed(0)
    if shape is None:
        ours, theirs = nn.Linear(5, 3, dtype=ax.float64), torch.nn.Linear(5, 3, dtype=torch.float64)
    else:
        ours, theirs = Proj(shape), _torch_proj(torch, shape)
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    ours.n_in = 5 if shape is None else int(np.prod(shape[1:]))  # a plain attribute: the input width
    return ours, theirs


def _np(t: Any) -> np.ndarray:
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def _close(a: Any, b: Any, tol: float = 1e-12) -> None:
    np.testing.assert_allclose(_np(a), _np(b), rtol=tol, atol=tol)


def _step(torch: Any, ours: Any, theirs: Any, seed: int) -> None:
    """One forward/backward in both with the same input; outputs and every gradient must match."""
    x = np.random.default_rng(seed).standard_normal((4, ours.n_in))
    y, ty = ours(ax.tensor(x)), theirs(torch.tensor(x))
    _close(y, ty)
    (y.square().sum()).backward()
    (ty.square().sum()).backward()
    tp = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        _close(p.grad, tp[name].grad, 1e-10)


# ----- weight_norm ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("shape", "dim"), [(None, 0), (None, 1), (None, None), ((3, 2, 4), 0), ((3, 2, 4), 1),
                                            ((3, 2, 4), 2), ((3, 2, 4), -2), ((3, 2, 4), None)])
def test_weight_norm_matches_torch(torch: Any, shape: Any, dim: Any) -> None:
    ours, theirs = _pair(torch, shape)
    weight_norm(ours, dim=dim)
    with pytest.warns(FutureWarning):
        torch.nn.utils.weight_norm(theirs, dim=dim)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert sorted(n for n, _ in ours.named_parameters()) == sorted(n for n, _ in theirs.named_parameters())
    assert ours.weight_g.shape == tuple(theirs.weight_g.shape)
    _close(ours.weight_g, theirs.weight_g)
    _close(ours.weight, theirs.weight)
    for seed in range(2):
        _step(torch, ours, theirs, seed)
        with ax.no_grad():  # a training step changes g and v: the weight follows at the next forward
            for p in ours.parameters():
                p.sub_(p.grad * 0.1)
        with torch.no_grad():
            for p in theirs.parameters():
                p.sub_(p.grad * 0.1)
        ours.zero_grad()
        theirs.zero_grad()
    remove_weight_norm(ours)
    torch.nn.utils.remove_weight_norm(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert isinstance(ours.weight, nn.Parameter)
    _close(ours.weight, theirs.weight)
    _step(torch, ours, theirs, 5)


def test_weight_norm_keeps_the_weight_and_shares_v_with_it() -> None:
    lin = nn.Linear(4, 3, dtype=ax.float64)
    w = lin.weight.detach().numpy().copy()
    weight_norm(lin)
    np.testing.assert_allclose(lin.weight.detach().numpy(), w, rtol=1e-14)
    np.testing.assert_allclose(lin.weight_g.detach().numpy(), np.linalg.norm(w, axis=1, keepdims=True), rtol=1e-14)
    assert "weight" not in dict(lin.named_parameters())
    # the pre-hook recomputes the weight at each call from the current g and v
    with ax.no_grad():
        lin.weight_g.mul_(2)
    lin(ax.zeros(1, 4, dtype=ax.float64))
    np.testing.assert_allclose(lin.weight.detach().numpy(), 2 * w, rtol=1e-14)


def test_weight_norm_errors_and_pickling() -> None:
    lin = weight_norm(nn.Linear(3, 2))
    with pytest.raises(RuntimeError, match="two weight_norm hooks"):
        weight_norm(lin)
    with pytest.raises(ValueError, match="no parameter"):
        weight_norm(nn.Linear(3, 2), name="nope")
    with pytest.raises(IndexError, match="out of range"):
        weight_norm(nn.Linear(3, 2), dim=2)
    back = pickle.loads(pickle.dumps(remove_weight_norm(weight_norm(nn.Linear(3, 2)))))
    assert set(back.state_dict()) == {"weight", "bias"}
    with pytest.raises(ValueError, match="not found"):
        remove_weight_norm(nn.Linear(3, 2))
    lin2 = weight_norm(nn.Linear(3, 2), name="bias", dim=None)
    assert set(lin2.state_dict()) == {"weight", "bias_g", "bias_v"} and lin2.bias_g.shape == ()


# ----- spectral_norm --------------------------------------------------------------------------------------
def _copy_uv(ours: Any, theirs: Any) -> None:
    """Start our u and v from PyTorch's random ones."""
    with ax.no_grad():
        ours.weight_u.copy_(ax.tensor(theirs.weight_u.numpy()))
        ours.weight_v.copy_(ax.tensor(theirs.weight_v.numpy()))


@pytest.mark.parametrize(("shape", "dim", "iters"), [(None, None, 1), (None, None, 3), ((3, 2, 4), None, 1),
                                                     ((3, 2, 4), 1, 2), ((3, 2, 4), 2, 1)])
def test_spectral_norm_matches_torch(torch: Any, shape: Any, dim: Any, iters: int) -> None:
    ours, theirs = _pair(torch, shape)
    spectral_norm(ours, n_power_iterations=iters, dim=dim)
    torch.nn.utils.spectral_norm(theirs, n_power_iterations=iters, dim=dim)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["bias", "weight_orig", "weight_u", "weight_v"]
    assert sorted(n for n, _ in ours.named_parameters()) == ["bias", "weight_orig"]
    assert ours.weight_u.shape == tuple(theirs.weight_u.shape) and ours.weight_v.shape == tuple(theirs.weight_v.shape)
    np.testing.assert_allclose(np.linalg.norm(ours.weight_u.numpy()), 1.0, rtol=1e-12)
    _copy_uv(ours, theirs)
    for seed in range(3):  # training mode: each forward refines u and v as PyTorch's does
        _step(torch, ours, theirs, seed)
        _close(ours.weight_u, theirs.weight_u)
        _close(ours.weight_v, theirs.weight_v)
        _close(ours.weight, theirs.weight)
        with ax.no_grad():
            ours.weight_orig.sub_(ours.weight_orig.grad * 0.1)
        with torch.no_grad():
            theirs.weight_orig.sub_(theirs.weight_orig.grad * 0.1)
        ours.zero_grad()
        theirs.zero_grad()
    ours.eval()
    theirs.eval()
    u = ours.weight_u.numpy().copy()
    _step(torch, ours, theirs, 9)  # eval: no power iteration
    np.testing.assert_array_equal(ours.weight_u.numpy(), u)
    _close(ours.weight_u, theirs.weight_u)
    remove_spectral_norm(ours)
    torch.nn.utils.remove_spectral_norm(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["bias", "weight"]
    _close(ours.weight, theirs.weight)


def test_spectral_norm_gives_unit_spectral_norm_and_loads_torch_state(torch: Any) -> None:
    ours, theirs = _pair(torch, None)
    spectral_norm(ours, n_power_iterations=100)
    torch.nn.utils.spectral_norm(theirs)
    ours(ax.zeros(1, 5, dtype=ax.float64))
    assert abs(np.linalg.svd(ours.weight.detach().numpy(), compute_uv=False)[0] - 1) < 1e-6
    theirs(torch.zeros(1, 5, dtype=torch.float64))
    ours.load_state_dict({k: ax.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    ours.eval()
    theirs.eval()
    _close(ours(ax.ones(2, 5, dtype=ax.float64)), theirs(torch.ones(2, 5, dtype=torch.float64)))


def test_spectral_norm_errors_and_copies() -> None:
    lin = spectral_norm(nn.Linear(3, 2))
    with pytest.raises(RuntimeError, match="two spectral_norm hooks"):
        spectral_norm(lin)
    with pytest.raises(ValueError, match="positive"):
        spectral_norm(nn.Linear(3, 2), n_power_iterations=0)
    with pytest.raises(ValueError, match="no parameter"):
        spectral_norm(nn.Linear(3, 2), name="nope")
    with pytest.raises(ValueError, match="not found"):
        remove_spectral_norm(nn.Linear(3, 2))
    twin = copy.deepcopy(lin)  # before any forward the weight attribute is a plain leaf copy
    assert set(twin.state_dict()) == set(lin.state_dict())
    back = pickle.loads(pickle.dumps(lin))
    back(ax.ones(1, 3))
    remove_spectral_norm(back)
    assert set(back.state_dict()) == {"weight", "bias"}


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_weight_and_spectral_norm_on_cuda_match_cpu() -> None:
    for wrap in (weight_norm, spectral_norm):
        cpu = wrap(nn.Linear(6, 4, dtype=ax.float64))
        gpu = wrap(nn.Linear(6, 4, dtype=ax.float64, device="cuda"))
        gpu.load_state_dict(cpu.state_dict())
        x = np.random.default_rng(0).standard_normal((3, 6))
        y, yg = cpu(ax.tensor(x)), gpu(ax.tensor(x, device="cuda"))
        np.testing.assert_allclose(yg.detach().cpu().numpy(), y.detach().numpy(), rtol=1e-10, atol=1e-12)
        y.sum().backward()
        yg.sum().backward()
        for (name, p), pg in zip(cpu.named_parameters(), gpu.parameters()):
            np.testing.assert_allclose(pg.grad.cpu().numpy(), p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
