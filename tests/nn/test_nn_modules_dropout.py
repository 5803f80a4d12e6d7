"""Dropout modules: reprs and attributes vs torch.nn, training vs eval, masks, gradients, statistics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml.nn.containers import Sequential
from axonml.nn.modules import dropout as D

NAMES = ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"]
# an input shape each module accepts (batched), and whether whole channels are dropped
SHAPES = {"Dropout": ((40, 50), False), "Dropout1d": ((8, 30, 5), True), "Dropout2d": ((8, 30, 2, 3), True),
          "Dropout3d": ((4, 30, 2, 2, 2), True), "AlphaDropout": ((40, 50), False),
          "FeatureAlphaDropout": ((8, 30, 4), True)}
_SELU_NEG = -1.6732632423543772848170429916717 * 1.0507009873554804934193349852946


@pytest.mark.torch
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("args", [(), (0.2,), (0.3, True), (1.0,), (0,)], ids=str)
def test_dropout_module_matches_torch_description(name: str, args: tuple[Any, ...]) -> None:
    torch = pytest.importorskip("torch")
    m, tm = getattr(D, name)(*args), getattr(torch.nn, name)(*args)
    assert repr(m) == repr(tm)
    assert {k: v for k, v in vars(m).items() if not k.startswith("_")} == {
        k: v for k, v in vars(tm).items() if not k.startswith("_")}
    assert list(m.state_dict()) == list(tm.state_dict()) == []


@pytest.mark.parametrize("name", NAMES)
def test_dropout_probability_is_checked(name: str) -> None:
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            getattr(D, name)(p)


@pytest.mark.parametrize("name", NAMES)
def test_dropout_is_identity_in_eval(name: str) -> None:
    m = getattr(D, name)(0.5)
    shape, _ = SHAPES[name]
    x = ax.randn(*shape, dtype=ax.float64, requires_grad=True)
    assert m.eval() is m and not m.training
    y = m(x)
    np.testing.assert_array_equal(y.detach().numpy(), x.detach().numpy())
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(shape))


@pytest.mark.parametrize("name", ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d"])
def test_dropout_training_masks_and_gradient(name: str) -> None:
    p = 0.4
    m = getattr(D, name)(p)
    shape, channels = SHAPES[name]
    ax.manual_seed(0)
    x0 = np.random.default_rng(0).uniform(1.0, 2.0, shape)  # no zeros: a zero output means dropped
    x = ax.tensor(x0, requires_grad=True)
    y = m(x)
    ratio = y.detach().numpy() / x0
    assert set(np.unique(np.round(ratio, 12))) == {0.0, round(1 / (1 - p), 12)}  # dropped, or scaled
    kept = ratio > 0
    if channels:  # one decision per (sample, channel)
        per_channel = kept.reshape(shape[0], shape[1], -1)
        assert (per_channel == per_channel[..., :1]).all()
        kept = per_channel[..., 0]
    assert abs(1 - kept.mean() - p) < 0.12  # the fraction dropped is about p
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), ratio, rtol=1e-12)  # the gradient passes the same mask
    # the default generator drives the masks: one seed, one mask
    ax.manual_seed(0)
    np.testing.assert_array_equal(m(ax.tensor(x0)).numpy(), y.detach().numpy())


@pytest.mark.parametrize(("name", "shape"), [("Dropout1d", (30, 5)), ("Dropout3d", (30, 2, 2, 2))])
def test_channel_dropout_unbatched(name: str, shape: tuple[int, ...]) -> None:
    ax.manual_seed(1)
    y = getattr(D, name)(0.5)(ax.ones(*shape)).numpy().reshape(shape[0], -1)
    assert (y == y[:, :1]).all() and set(np.unique(y)) == {0.0, 2.0}


@pytest.mark.parametrize("name", ["AlphaDropout", "FeatureAlphaDropout"])
def test_alpha_dropout_keeps_mean_and_variance(name: str) -> None:
    p = 0.3
    m = getattr(D, name)(p)
    ax.manual_seed(2)
    x0 = np.random.default_rng(2).standard_normal((200, 100, 10) if name == "FeatureAlphaDropout" else (500, 400))
    x = ax.tensor(x0, requires_grad=True)
    y = m(x)
    out = y.detach().numpy()
    assert abs(out.mean()) < 0.03 and abs(out.std() - 1.0) < 0.03
    # dropped units all land on one value: a * SELU's saturation value + b
    a = 1.0 / math.sqrt((_SELU_NEG**2 * p + 1) * (1 - p))
    dropped_value = a * _SELU_NEG * (1 - p)  # a * alpha' + b with b = -a * alpha' * p
    dropped = np.isclose(out, dropped_value, rtol=0, atol=1e-12)
    assert abs(dropped.mean() - p) < 0.02
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.where(dropped, 0.0, a), rtol=1e-12)


def test_dropout_inplace_and_edge_probabilities() -> None:
    x = ax.ones(20, 30) * 1.0
    y = D.Dropout(0.5, inplace=True)(x)
    assert y is x and set(np.unique(x.numpy())) <= {0.0, 2.0}
    a = ax.randn(20, 30)
    before = a.numpy().copy()
    D.AlphaDropout(0.5, inplace=True)(a)  # never in place, as PyTorch's
    np.testing.assert_array_equal(a.numpy(), before)
    np.testing.assert_array_equal(D.Dropout(1.0)(ax.ones(3, 4)).numpy(), np.zeros((3, 4)))
    x = ax.randn(3, 4)
    np.testing.assert_array_equal(D.Dropout(0.0)(x).numpy(), x.numpy())
    with pytest.warns(UserWarning, match="3D input"):
        D.Dropout2d()(ax.ones(2, 3, 4))
    with pytest.raises(ValueError, match="dropout1d"):
        D.Dropout1d()(ax.ones(2, 3, 4, 5))


def test_train_and_eval_reach_dropout_inside_a_model() -> None:
    model = Sequential(D.Dropout(0.5), Sequential(D.Dropout2d(0.5), D.AlphaDropout(0.5)))
    x = ax.ones(4, 3, 8, 8)
    model.eval()
    assert not any(m.training for m in model.modules())
    np.testing.assert_array_equal(model(x).numpy(), x.numpy())
    model.train()
    assert all(m.training for m in model.modules())
    assert not np.array_equal(model(x).numpy(), x.numpy())
