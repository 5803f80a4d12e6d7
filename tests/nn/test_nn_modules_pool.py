"""Pooling modules against torch.nn: MaxPool, MaxUnpool, AvgPool, AdaptiveAvgPool and AdaptiveMaxPool in
1-3 D: outputs, indices and input gradients in float64 over many configurations, reprs, attributes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml.errors import ShapeError
from axonml.nn.modules import pooling as P


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def _pair_up(torch: Any, name: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    m, tm = getattr(P, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    assert repr(m) == repr(tm)
    assert list(m.state_dict()) == list(tm.state_dict()) == []
    assert list(m.parameters()) == []
    return m, tm


def _compare(torch: Any, m: Any, tm: Any, shape: tuple[int, ...], seed: int = 0) -> Any:
    """Forward (values and indices when returned) and input gradients; returns torch's output."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(shape)  # distinct values: no ties in the maxima
    x, tx = ax.tensor(x0, requires_grad=True), torch.tensor(x0, requires_grad=True)
    out, tout = m(x), tm(tx)
    if isinstance(tout, tuple):
        (y, idx), (ty, tidx) = out, tout
        assert idx.dtype == ax.int64
        np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    else:
        y, ty = out, tout
    assert y.shape == tuple(ty.shape) and y.dtype == ax.float64
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    g0 = rng.standard_normal(tuple(ty.shape))
    y.backward(ax.tensor(g0))
    ty.backward(torch.tensor(g0))
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    return tout


# ----- max pooling ------------------------------------------------------------------------------------------
MAX_CASES = [
    ("MaxPool1d", (3,), {}, (2, 3, 10)),
    ("MaxPool1d", (4,), {"stride": 2, "padding": 2, "dilation": 2, "ceil_mode": True}, (2, 2, 11)),
    ("MaxPool1d", (2,), {"return_indices": True}, (3, 9)),
    ("MaxPool2d", (2,), {}, (2, 3, 6, 7)),
    ("MaxPool2d", ((3, 2),), {"stride": (2, 1), "padding": (1, 1), "return_indices": True}, (2, 2, 7, 6)),
    ("MaxPool2d", (3,), {"stride": 2, "dilation": (2, 1), "ceil_mode": True, "return_indices": True}, (1, 2, 10, 8)),
    ("MaxPool2d", (3,), {"stride": 2, "padding": 1, "ceil_mode": True}, (2, 6, 6)),
    ("MaxPool3d", (2,), {"return_indices": True}, (1, 2, 4, 5, 4)),
    ("MaxPool3d", ((3, 2, 2),), {"stride": 2, "padding": (1, 0, 1), "dilation": (1, 2, 1), "ceil_mode": True},
     (2, 1, 5, 6, 5)),
]


@pytest.mark.torch
@pytest.mark.parametrize("case", MAX_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(MAX_CASES)])
def test_max_pool_matches_torch(torch: Any, case: tuple[Any, ...]) -> None:
    name, args, kw, shape = case
    m, tm = _pair_up(torch, name, *args, **kw)
    _compare(torch, m, tm, shape)
    for attr in ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"):
        assert getattr(m, attr) == getattr(tm, attr)


UNPOOL_CASES = [
    (1, 3, {}, (2, 3, 9), None),
    (1, 4, {"stride": 2, "padding": 1}, (2, 2, 11), None),
    (2, 2, {}, (2, 3, 6, 8), None),
    (2, (3, 2), {"stride": (2, 2), "padding": (1, 0)}, (1, 2, 7, 6), None),
    (2, 3, {"stride": 2}, (2, 2, 8, 9), [8, 9]),  # output_size resolves the size that stride 2 leaves ambiguous
    (2, 2, {}, (3, 7, 5), [7, 5]),  # unbatched; output_size resolves the odd sizes
    (3, 2, {}, (1, 2, 4, 6, 4), None),
    (3, (2, 3, 2), {"stride": (2, 2, 1)}, (1, 1, 5, 7, 4), [5, 7, 4]),
]


@pytest.mark.torch
@pytest.mark.parametrize("case", UNPOOL_CASES, ids=[f"{c[0]}d-{i}" for i, c in enumerate(UNPOOL_CASES)])
def test_max_unpool_matches_torch(torch: Any, case: tuple[Any, ...]) -> None:
    n, k, kw, shape, output_size = case
    pool, tpool = _pair_up(torch, f"MaxPool{n}d", k, return_indices=True, **kw)
    unpool, tunpool = _pair_up(torch, f"MaxUnpool{n}d", k, **kw)
    for attr in ("kernel_size", "stride", "padding"):
        assert getattr(unpool, attr) == getattr(tunpool, attr)
    x0 = np.random.default_rng(1).standard_normal(shape)
    y, idx = pool(ax.tensor(x0))
    ty, tidx = tpool(torch.tensor(x0))
    np.testing.assert_array_equal(y.numpy(), ty.numpy())
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    v0 = y.numpy()
    v, tv = ax.tensor(v0, requires_grad=True), torch.tensor(v0, requires_grad=True)
    out, tout = unpool(v, idx, output_size=output_size), tunpool(tv, tidx, output_size=output_size)
    assert out.shape == tuple(tout.shape)
    np.testing.assert_array_equal(out.detach().numpy(), tout.detach().numpy())
    g0 = np.random.default_rng(2).standard_normal(tuple(tout.shape))
    out.backward(ax.tensor(g0))
    tout.backward(torch.tensor(g0))
    np.testing.assert_array_equal(v.grad.numpy(), tv.grad.numpy())


# ----- average pooling -------------------------------------------------------------------------------------
AVG_CASES = [
    ("AvgPool1d", (3,), {}, (2, 3, 10)),
    ("AvgPool1d", (4,), {"stride": 3, "padding": 2, "ceil_mode": True, "count_include_pad": False}, (2, 2, 12)),
    ("AvgPool1d", ([3],), {"stride": [2], "padding": 1}, (3, 9)),
    ("AvgPool2d", (2,), {}, (2, 3, 6, 7)),
    ("AvgPool2d", ((3, 2),), {"stride": (2, 1), "padding": (1, 1), "count_include_pad": False}, (2, 2, 7, 6)),
    ("AvgPool2d", (3,), {"stride": 2, "padding": 1, "ceil_mode": True}, (1, 2, 8, 9)),
    ("AvgPool2d", (3,), {"stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}, (2, 8, 9)),
    ("AvgPool2d", (2,), {"padding": 1, "divisor_override": 3}, (2, 2, 5, 5)),
    ("AvgPool3d", (2,), {}, (1, 2, 4, 5, 4)),
    ("AvgPool3d", ((3, 2, 2),), {"stride": 2, "padding": (1, 0, 1), "ceil_mode": True, "count_include_pad": False},
     (2, 1, 5, 6, 5)),
    ("AvgPool3d", (2,), {"stride": 1, "divisor_override": 5}, (2, 3, 4, 3)),
]


@pytest.mark.torch
@pytest.mark.parametrize("case", AVG_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(AVG_CASES)])
def test_avg_pool_matches_torch(torch: Any, case: tuple[Any, ...]) -> None:
    name, args, kw, shape = case
    m, tm = _pair_up(torch, name, *args, **kw)
    _compare(torch, m, tm, shape)
    for attr in ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"):
        assert getattr(m, attr) == getattr(tm, attr)
    if name != "AvgPool1d":
        assert m.divisor_override == tm.divisor_override


# ----- adaptive pooling --------------------------------------------------------------------------------------
ADAPTIVE_CASES = [
    (1, 4, (2, 3, 10)),
    (1, 1, (3, 7)),
    (1, 7, (2, 2, 5)),  # output larger than the input: overlapping windows
    (2, (3, 4), (2, 3, 7, 9)),
    (2, 1, (2, 3, 5, 6)),  # global pooling
    (2, (None, 3), (2, 2, 5, 7)),  # None keeps the input size
    (2, 5, (3, 10, 8)),
    (3, (2, 3, 2), (1, 2, 5, 6, 4)),
    (3, (None, 2, 1), (2, 3, 4, 5)),
]


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["Avg", "Max", "MaxIdx"])
@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=[f"{c[0]}d-{i}" for i, c in enumerate(ADAPTIVE_CASES)])
def test_adaptive_pool_matches_torch(torch: Any, case: tuple[Any, ...], kind: str) -> None:
    n, size, shape = case
    if kind == "Avg":
        m, tm = _pair_up(torch, f"AdaptiveAvgPool{n}d", size)
    else:
        m, tm = _pair_up(torch, f"AdaptiveMaxPool{n}d", size, return_indices=kind == "MaxIdx")
        assert m.return_indices == tm.return_indices
    assert m.output_size == tm.output_size
    _compare(torch, m, tm, shape)


# ----- reprs and errors --------------------------------------------------------------------------------------
@pytest.mark.torch
def test_reprs_match_torch(torch: Any) -> None:
    configs: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("MaxPool1d", (3,), {}), ("MaxPool2d", ((3, 2),), {"stride": 1, "padding": (1, 0), "ceil_mode": True}),
        ("MaxPool3d", (2,), {"dilation": 2, "return_indices": True}), ("MaxUnpool1d", (2,), {}),
        ("MaxUnpool2d", ((2, 3),), {"stride": 1}), ("MaxUnpool3d", (2,), {"padding": 1}),
        ("AvgPool1d", (3,), {"ceil_mode": True}), ("AvgPool2d", (3,), {"stride": (1, 2), "divisor_override": 2}),
        ("AvgPool3d", ((1, 2, 3),), {"padding": 0}), ("AdaptiveAvgPool1d", (5,), {}),
        ("AdaptiveAvgPool2d", ((None, 7),), {}), ("AdaptiveAvgPool3d", (1,), {}),
        ("AdaptiveMaxPool1d", (3,), {"return_indices": True}), ("AdaptiveMaxPool2d", ((2, 2),), {}),
        ("AdaptiveMaxPool3d", ([1, 2, 3],), {}),
    ]
    for name, args, kw in configs:
        _pair_up(torch, name, *args, **kw)


def test_pool_errors_are_clear() -> None:
    with pytest.raises(ShapeError, match="max_pool2d"):
        P.MaxPool2d(2)(ax.zeros(5, 5))
    with pytest.raises(ValueError, match="padding"):
        P.AvgPool2d(2, padding=2)(ax.zeros(1, 1, 6, 6))
    with pytest.raises(ShapeError, match="indices"):
        P.MaxUnpool2d(2)(ax.zeros(1, 1, 2, 2), ax.zeros((1, 1, 3, 3), dtype=ax.int64))
    with pytest.raises(ShapeError, match="output_size"):
        P.AdaptiveAvgPool2d((1, 2, 3))(ax.zeros(1, 1, 4, 4))


def test_pool_modules_compose_in_a_network() -> None:
    """MaxPool with indices feeding MaxUnpool: the gradient reaches the input only at each window's maximum."""
    pool, unpool = P.MaxPool2d(2, return_indices=True), P.MaxUnpool2d(2)
    x = ax.randn(2, 3, 4, 6, requires_grad=True)
    y, idx = pool(x)
    back = unpool(y, idx)
    assert back.shape == x.shape
    back.sum().backward()
    mask = (back.detach() != 0).numpy()
    np.testing.assert_array_equal(x.grad.numpy(), mask.astype(np.float32))
    assert mask.sum() == y.numel()
    assert P.AdaptiveAvgPool2d(1)(x).shape == (2, 3, 1, 1)
