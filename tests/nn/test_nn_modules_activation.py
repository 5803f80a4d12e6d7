"""Activation modules vs torch.nn: reprs, attributes, state dicts, float64 outputs and gradients, in place."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml.nn.modules import activation as A

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def torch() -> Any:
    return pytest.importorskip("torch")


# (class name, constructor args, constructor kwargs, input shape, input scale)
CASES: list[tuple[str, tuple[Any, ...], dict[str, Any], tuple[int, ...], float]] = [
    ("ReLU", (), {}, (3, 4), 2.0),
    ("ReLU", (True,), {}, (3, 4), 2.0),
    ("ReLU6", (), {}, (3, 4), 5.0),
    ("ReLU6", (), {"inplace": True}, (3, 4), 5.0),
    ("LeakyReLU", (), {}, (3, 4), 2.0),
    ("LeakyReLU", (0.2, True), {}, (2, 3, 4), 2.0),
    ("PReLU", (), {}, (2, 3, 4), 2.0),
    ("PReLU", (3, 0.1), {}, (2, 3, 4), 2.0),
    ("ELU", (), {}, (3, 4), 2.0),
    ("ELU", (0.5, True), {}, (3, 4), 2.0),
    ("SELU", (), {}, (3, 4), 2.0),
    ("SELU", (), {"inplace": True}, (3, 4), 2.0),
    ("CELU", (), {}, (3, 4), 2.0),
    ("CELU", (2.0, True), {}, (3, 4), 2.0),
    ("GELU", (), {}, (3, 4), 2.0),
    ("GELU", ("tanh",), {}, (3, 4), 2.0),
    ("SiLU", (), {}, (3, 4), 2.0),
    ("SiLU", (True,), {}, (3, 4), 2.0),
    ("Mish", (), {}, (3, 4), 2.0),
    ("Mish", (), {"inplace": True}, (3, 4), 2.0),
    ("Softplus", (), {}, (3, 4), 3.0),
    ("Softplus", (2, 10), {}, (3, 4), 4.0),
    ("Softsign", (), {}, (3, 4), 2.0),
    ("Hardtanh", (), {}, (3, 4), 2.0),
    ("Hardtanh", (-2, 3, True), {}, (3, 4), 4.0),
    ("Hardsigmoid", (), {}, (3, 4), 4.0),
    ("Hardsigmoid", (True,), {}, (3, 4), 4.0),
    ("Hardswish", (), {}, (3, 4), 4.0),
    ("Hardswish", (True,), {}, (3, 4), 4.0),
    ("Sigmoid", (), {}, (3, 4), 2.0),
    ("Tanh", (), {}, (3, 4), 2.0),
    ("LogSigmoid", (), {}, (3, 4), 4.0),
    ("Softmax", (1,), {}, (3, 4), 2.0),
    ("Softmax", (), {"dim": -1}, (2, 3, 4), 2.0),
    ("LogSoftmax", (0,), {}, (3, 4), 2.0),
    ("Softmin", (), {"dim": -1}, (3, 4), 2.0),
    ("Softmax2d", (), {}, (2, 3, 2, 2), 2.0),
    ("Softmax2d", (), {}, (3, 2, 2), 2.0),
    ("Threshold", (0.1, 20), {}, (3, 4), 2.0),
    ("Threshold", (0.1, 20.0, True), {}, (3, 4), 2.0),
    ("GLU", (), {}, (3, 4), 2.0),
    ("GLU", (0,), {}, (4, 3), 2.0),
    ("Tanhshrink", (), {}, (3, 4), 2.0),
    ("Softshrink", (), {}, (3, 4), 2.0),
    ("Hardshrink", (0.3,), {}, (3, 4), 2.0),
    ("ReLU", (), {}, (0, 4), 1.0),
    ("GELU", (), {}, (), 1.0),
]


def _ids(case: tuple[Any, ...]) -> str:
    name, args, kwargs, shape = case[:4]
    return f"{name}{args}{sorted(kwargs.items())}{shape}"


def _public(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


def _pair(torch: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    return getattr(A, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_activation_matches_torch(torch: Any, case: tuple[Any, ...]) -> None:
    name, args, kwargs, shape, scale = case
    m, tm = _pair(torch, name, args, kwargs)
    assert repr(m) == repr(tm)
    assert _public(m) == _public(tm)
    assert list(m.state_dict()) == list(tm.state_dict())
    if name == "PReLU":
        m.double()
        tm.double()
    rng = np.random.default_rng(abs(hash(_ids(case))) % 2**32)
    x0 = rng.standard_normal(shape) * scale
    g0 = rng.standard_normal(tuple(tm(torch.tensor(x0)).shape))
    x, tx = ax.tensor(x0, requires_grad=True), torch.tensor(x0, requires_grad=True)
    # a non-leaf input, so that in-place modules may write into it (as they would inside a model)
    xi, txi = x * 1.0, tx * 1.0
    y, ty = m(xi), tm(txi)
    assert y.dtype == ax.float64 and y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    if getattr(m, "inplace", False):
        assert y is xi and ty is txi  # the input itself, modified, as PyTorch's
    (y * ax.tensor(g0)).sum().backward()
    (ty * torch.tensor(g0)).sum().backward()
    # PyTorch's hard-sigmoid backward multiplies by 1/6 rounded to float32, even for float64 inputs
    rtol = 1e-7 if name in ("Hardsigmoid", "Hardswish") else 1e-12
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=rtol, atol=1e-14)
    if name == "PReLU":
        np.testing.assert_allclose(m.weight.grad.numpy(), tm.weight.grad.numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", ["Hardsigmoid", "Hardswish"])
def test_hard_activations_inplace_write_input(name: str) -> None:
    x = ax.tensor([-4.0, -1.0, 0.5, 4.0])
    y = getattr(A, name)(inplace=True)(x)
    assert y is x and repr(getattr(A, name)(inplace=True)) == f"{name}()"


def test_prelu_parameter(torch: Any) -> None:
    m = A.PReLU(4, init=0.5, dtype=ax.float64)
    assert [(n, p.shape, p.dtype) for n, p in m.named_parameters()] == [("weight", (4,), ax.float64)]
    assert m.weight.requires_grad and m.weight.tolist() == [0.5] * 4
    with ax.no_grad():
        m.weight.mul_(3.0)
    m.reset_parameters()
    assert m.weight.tolist() == [0.5] * 4
    tm = torch.nn.PReLU(4, 0.5).double()
    m.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((5, 4, 3))
    x, tx = ax.tensor(x0, requires_grad=True), torch.tensor(x0, requires_grad=True)
    m(x).square().sum().backward()
    tm(tx).square().sum().backward()
    np.testing.assert_allclose(m.weight.grad.numpy(), tm.weight.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    # a state dict from axonml loads into torch too
    tm2 = torch.nn.PReLU(4).double()
    tm2.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    assert tm2.weight.tolist() == [0.5] * 4
    with pytest.raises(ValueError, match="prelu"):
        m(ax.zeros(2, 3, dtype=ax.float64))  # 3 channels for 4 slopes


def test_softmax_implicit_dim_warns_like_torch(torch: Any) -> None:
    x0 = np.random.default_rng(1).standard_normal((2, 3, 4))
    for name in ("Softmax", "LogSoftmax", "Softmin"):
        m, tm = getattr(A, name)(), getattr(torch.nn, name)()
        assert repr(m) == repr(tm) == f"{name}(dim=None)"
        with pytest.warns(UserWarning, match="Implicit dimension") as rec:
            y = m(ax.tensor(x0))
        assert rec[0].filename == __file__  # the warning points at the caller of the module
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ty = tm(torch.tensor(x0))
        np.testing.assert_allclose(y.numpy(), ty.numpy(), rtol=1e-12)


def test_settings_errors_and_stateless_arguments() -> None:
    with pytest.raises(ValueError, match="max_val"):
        A.Hardtanh(1.0, 1.0)
    with pytest.warns(FutureWarning, match="min_value"):
        h = A.Hardtanh(min_value=-2.0)
    assert (h.min_val, h.max_val) == (-2.0, 1.0)
    with pytest.raises(ValueError, match="3D or 4D"):
        A.Softmax2d()(ax.zeros(2, 3))
    with pytest.raises(ValueError, match="approximate"):
        A.GELU("fast")(ax.zeros(2))
    assert repr(A.Sigmoid(1, key=2)) == "Sigmoid()"  # PyTorch's stateless modules ignore arguments
    m = A.ReLU6()
    assert isinstance(m, A.Hardtanh) and not isinstance(A.LogSoftmax(1), A.Softmax)


def test_activation_modules_in_a_model_state_dict(torch: Any) -> None:
    from axonml.nn.containers import Sequential

    m = Sequential(A.ReLU(), A.PReLU(3), A.GELU("tanh"), A.PReLU())
    tm = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.PReLU(3), torch.nn.GELU("tanh"), torch.nn.PReLU())
    assert list(m.state_dict()) == list(tm.state_dict()) == ["1.weight", "3.weight"]
    assert repr(m) == repr(tm)
