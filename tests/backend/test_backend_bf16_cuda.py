"""bfloat16 on CUDA where CuPy 14 lacks kernels: batched matmul (attention) and scatter-add (max-pool backward)."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
import axonml.nn.functional as F

NONDIFF_NAMES: list[str] = []

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")]


def _close_to_float32(got: ax.Tensor, want: ax.Tensor) -> None:
    assert got.dtype == ax.bfloat16
    np.testing.assert_allclose(got.detach().float().cpu().numpy(), want.detach().cpu().numpy(), rtol=3e-2, atol=3e-2)


def test_batched_matmul_and_its_gradient() -> None:
    a = ax.randn(3, 4, 8, 16, device="cuda")
    b = ax.randn(3, 4, 16, 5, device="cuda")
    ab, bb = a.bfloat16().requires_grad_(), b.bfloat16().requires_grad_()
    out = ab @ bb
    _close_to_float32(out, a @ b)
    out.float().sum().backward()
    _close_to_float32(ab.grad, ax.ones(3, 4, 8, 5, device="cuda") @ b.mT)


def test_attention_in_bfloat16() -> None:
    q, k, v = (ax.randn(2, 4, 16, 8, device="cuda") for _ in range(3))
    got = F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), is_causal=True)
    _close_to_float32(got, F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_max_pool_backward_in_bfloat16() -> None:
    x = ax.randn(2, 3, 8, 8, device="cuda")
    xb = x.bfloat16().requires_grad_()
    F.max_pool2d(xb, 3, 1).float().sum().backward()
    x.requires_grad_()
    F.max_pool2d(x.bfloat16().float(), 3, 1).sum().backward()  # same maxima, overlapping windows
    np.testing.assert_array_equal(xb.grad.float().cpu().numpy(), x.grad.cpu().numpy())


def test_transformer_layer_step_in_bfloat16_autocast() -> None:
    layer = ax.nn.TransformerEncoderLayer(32, 4, 64, 0.0, batch_first=True).to("cuda")
    x = ax.randn(2, 16, 32, device="cuda")
    with ax.autocast("cuda", dtype=ax.bfloat16):
        loss = F.mse_loss(layer(x), x)
    loss.backward()
    assert all(p.grad is not None and bool(p.grad.isfinite().all()) for p in layer.parameters())
