"""Ops whose CUDA arithmetic moved from CuPy's ufuncs to raw launches (a linear layer's bias, MSE's difference and
gradient, dropout's gradient): the same bits as the CuPy expressions they replace, and the CPU's values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import axonml as ax
import axonml.nn.functional as F

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_bias_add_equals_cupys(dtype: Any) -> None:
    import cupy as cp

    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((2, 7, 5), (3, 5), (3,)))
    got = F.linear(ax.tensor(x, device="cuda"), ax.tensor(w, device="cuda"), ax.tensor(b, device="cuda"))
    want = F.linear(ax.tensor(x, device="cuda"), ax.tensor(w, device="cuda"))._data + cp.asarray(b)
    np.testing.assert_array_equal(got.cpu().numpy(), cp.asnumpy(want))
    np.testing.assert_allclose(got.cpu().numpy(), x @ w.T + b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_difference_and_gradient_match_the_cpu(reduction: str) -> None:
    rng = np.random.default_rng(1)
    a, t = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    results = []
    for device in ("cpu", "cuda"):
        x = ax.tensor(a, device=device, requires_grad=True)
        loss = F.mse_loss(x, ax.tensor(t, device=device), reduction=reduction)
        (loss * 3.0).backward()
        results.append((loss.item(), x.grad.cpu().numpy()))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-12)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-12, atol=1e-14)
    scale = 1 / a.size if reduction == "mean" else 1.0
    np.testing.assert_allclose(results[1][1], 3.0 * 2 * scale * (a - t), rtol=1e-12)


def test_mse_gradient_rounds_as_the_cupy_expression() -> None:
    import cupy as cp

    rng = np.random.default_rng(2)
    a, t = (rng.standard_normal((64, 33)).astype(np.float32) for _ in range(2))
    x = ax.tensor(a, device="cuda", requires_grad=True)
    F.mse_loss(x, ax.tensor(t, device="cuda")).backward()
    d = cp.asarray(a) - cp.asarray(t)
    want = d * (cp.ones((), cp.float32) * np.float32(2.0 / a.size))
    np.testing.assert_array_equal(x.grad.cpu().numpy(), cp.asnumpy(want))


def test_dropout_gradient_is_the_gradient_times_the_mask() -> None:
    ax.manual_seed(3)
    x = ax.tensor(np.random.default_rng(3).standard_normal((8, 50)).astype(np.float32), device="cuda",
                  requires_grad=True)
    y = F.dropout(x, 0.3, training=True)
    g = np.random.default_rng(4).standard_normal((8, 50)).astype(np.float32)
    mask = y.grad_fn.mask.get()  # read before the backward releases it
    y.backward(ax.tensor(g, device="cuda"))
    assert set(np.unique(mask)) <= {np.float32(0), np.float32(1 / 0.7)}
    np.testing.assert_array_equal(x.grad.cpu().numpy(), g * mask)
