"""The fused CUDA kernels of layer norm (``_layernorm_cuda.py``) and of the attention softmax
(``_attention_cuda.py``): values and gradients against NumPy float64 and against the CPU path,
over row lengths that do not fill a block, options, masks, and a Transformer layer's training."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest

import axonml as ax
import axonml.nn as nn
import axonml.nn.functional as F
from axonml.nn.prims import _attention_cuda, _layernorm_cuda
from axonml.nn.prims.attention import AttentionProbs
from axonml.nn.prims.norm import LayerNorm
from graph_steps import eager_step, replayed_losses

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")]

TOL = {"float32": {"rtol": 2e-4, "atol": 2e-5}, "float64": {"rtol": 1e-10, "atol": 1e-12}}


def _t(a: np.ndarray, device: str, grad: bool = True) -> ax.Tensor:
    return ax.tensor(a, device=device, requires_grad=grad)


def _np(t: ax.Tensor | None) -> Any:
    return None if t is None else t.detach().cpu().numpy().astype(np.float64)


def _close(got: Any, want: Any, dtype: str, scale: float = 1.0) -> None:
    tol = TOL[dtype]
    np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"] * scale)


def _spy(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    """Counts the calls of ``module.name`` (to show that the fused path, not the fallback, ran)."""
    calls: list[int] = []
    real = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


# ----- layer norm ---------------------------------------------------------------------------------------
def ref_layer_norm(x: np.ndarray, w: Any, b: Any, g: np.ndarray, n_dims: int, eps: float) -> tuple[Any, ...]:
    """(y, dx, dw, db) in float64 by the textbook formulas."""
    dims = tuple(range(x.ndim - n_dims, x.ndim))
    lead = tuple(range(x.ndim - n_dims))
    mu = x.mean(dims, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mu) ** 2).mean(dims, keepdims=True) + eps)
    xhat = (x - mu) * rstd
    y = xhat * (1.0 if w is None else w) + (0.0 if b is None else b)
    gy = g * (1.0 if w is None else w)
    dx = rstd * (gy - gy.mean(dims, keepdims=True) - xhat * (gy * xhat).mean(dims, keepdims=True))
    return y, dx, (g * xhat).sum(lead), g.sum(lead)


def _run_layer_norm(x: np.ndarray, w: Any, b: Any, g: np.ndarray, n_dims: int, eps: float, device: str,
                    need: tuple[bool, bool, bool] = (True, True, True)) -> tuple[Any, ...]:
    xt = _t(x, device, need[0])
    wt = None if w is None else _t(w, device, need[1])
    bt = None if b is None else _t(b, device, need[2])
    y = LayerNorm.apply(xt, wt, bt, n_dims, eps)
    if y.requires_grad:
        (y * ax.tensor(g.astype(x.dtype), device=device)).sum().backward()
    return _np(y), *(None if t is None else _np(t.grad) for t in (xt, wt, bt))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(5, 1), (7, 3), (4, 257), (3, 1000), (2, 4096), (3000, 3), (2, 3, 200)])
@pytest.mark.parametrize("affine", ["both", "weight", "bias", "none"])
def test_layer_norm_matches_float64_and_cpu(dtype: str, shape: tuple[int, ...], affine: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(shape[-1])
    d = shape[-1]
    x = (rng.standard_normal(shape) * 3 + 1.5).astype(dtype)
    w = rng.standard_normal(d).astype(dtype) if affine in ("both", "weight") else None
    b = rng.standard_normal(d).astype(dtype) if affine in ("both", "bias") else None
    g = rng.standard_normal(shape)
    fwd, bwd = _spy(monkeypatch, _layernorm_cuda, "forward"), _spy(monkeypatch, _layernorm_cuda, "backward")
    got = _run_layer_norm(x, w, b, g, 1, 1e-5, "cuda")
    assert fwd and bwd
    cpu = _run_layer_norm(x, w, b, g, 1, 1e-5, "cpu")
    want = ref_layer_norm(x.astype(np.float64), None if w is None else w.astype(np.float64),
                          None if b is None else b.astype(np.float64), g, 1, 1e-5)
    rows = x.size // d
    for i, (a, c, r) in enumerate(zip(got, cpu, (want[0], want[1], want[2], want[3]), strict=True)):
        if c is None:
            assert a is None
            continue
        assert a.shape == c.shape
        scale = 1.0 if i < 2 else math.sqrt(rows)  # parameter gradients sum over the rows
        _close(a, r, dtype, scale)
        _close(a, c, dtype, scale)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("need", [(False, True, True), (False, False, True), (True, False, False),
                                  (False, True, False)])
def test_layer_norm_gradients_asked_for_separately(dtype: str, need: tuple[bool, bool, bool]) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 5, 33)).astype(dtype)
    w, b = rng.standard_normal(33).astype(dtype), rng.standard_normal(33).astype(dtype)
    g = rng.standard_normal(x.shape)
    got = _run_layer_norm(x, w, b, g, 1, 1e-3, "cuda", need)
    want = ref_layer_norm(*(a.astype(np.float64) for a in (x, w, b)), g, 1, 1e-3)
    _close(got[0], want[0], dtype)
    for flag, a, r in zip(need, got[1:], want[1:], strict=True):
        if flag:
            _close(a, r, dtype, 10.0)
        else:
            assert a is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layer_norm_over_two_dims_and_strided_input(dtype: str) -> None:
    rng = np.random.default_rng(2)
    base = rng.standard_normal((4, 7, 6, 5)).astype(dtype)
    w, b = rng.standard_normal((6, 5)).astype(dtype), rng.standard_normal((6, 5)).astype(dtype)
    g = rng.standard_normal((7, 4, 6, 5))
    outs = {}
    for device in ("cuda", "cpu"):
        xt = _t(base, device)
        x_view = xt.transpose(0, 1)  # (7, 4, 6, 5), not contiguous
        wt, bt = _t(w, device), _t(b, device)
        y = F.layer_norm(x_view, (6, 5), wt, bt, eps=1e-5)
        (y * ax.tensor(g.astype(dtype), device=device)).sum().backward()
        outs[device] = (_np(y), _np(xt.grad), _np(wt.grad), _np(bt.grad))
    got, cpu = outs["cuda"], outs["cpu"]
    want = ref_layer_norm(np.swapaxes(base, 0, 1).astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                          g, 2, 1e-5)
    _close(got[0], want[0], dtype)
    _close(got[1], np.swapaxes(want[1], 0, 1), dtype)
    for a, c, r in zip(got[2:], cpu[2:], want[2:], strict=True):
        _close(a, r, dtype, 10.0)
        _close(a, c, dtype, 10.0)


def test_layer_norm_half_precision_and_double_backward_on_cuda() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 40)).astype(np.float16)
    w = rng.standard_normal(40).astype(np.float16)
    outs = {}
    for device in ("cuda", "cpu"):
        xt, wt = _t(x, device), _t(w, device)
        y = F.layer_norm(xt, (40,), wt)
        y.float().square().sum().backward()
        outs[device] = (y.dtype, _np(y), _np(xt.grad), _np(wt.grad))
    assert outs["cuda"][0] == outs["cpu"][0] == ax.float16
    for a, c in zip(outs["cuda"][1:], outs["cpu"][1:], strict=True):
        np.testing.assert_allclose(a, c, rtol=2e-2, atol=2e-2)
    # create_graph: the composed backward (Tensor ops) runs, so second derivatives match the CPU's
    x64, w64, b64 = rng.standard_normal((5, 17)), rng.standard_normal(17), rng.standard_normal(17)
    second = {}
    for device in ("cuda", "cpu"):
        xt, wt, bt = _t(x64, device), _t(w64, device), _t(b64, device)
        y = F.layer_norm(xt, (17,), wt, bt)
        (gx,) = ax.autograd.grad((y * y * y).sum(), [xt], create_graph=True)
        (gx * gx).sum().backward()
        second[device] = (_np(gx), _np(xt.grad), _np(wt.grad), _np(bt.grad))
    for a, c in zip(second["cuda"], second["cpu"], strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-10)


# ----- the attention softmax ----------------------------------------------------------------------------
def ref_probs(q: np.ndarray, k: np.ndarray, bias: Any, scale: float) -> np.ndarray:
    s = q @ np.swapaxes(k, -1, -2) * scale
    if bias is not None:
        s = s + bias
    m = s.max(-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(m), m, 0.0))
    z = e.sum(-1, keepdims=True)
    return e / np.where(z == 0, 1.0, z)


def _run_probs(q: np.ndarray, k: np.ndarray, bias: Any, scale: float, g: np.ndarray, device: str) -> tuple[Any, ...]:
    qt, kt = _t(q, device), _t(k, device)
    bt = None if bias is None else _t(bias, device)
    p = AttentionProbs.apply(qt, kt, bt, scale)
    (p * ax.tensor(g.astype(q.dtype), device=device)).sum().backward()
    return _np(p), _np(qt.grad), _np(kt.grad), None if bt is None else _np(bt.grad)


def _ref_probs_grads(q: np.ndarray, k: np.ndarray, bias: Any, scale: float, g: np.ndarray) -> tuple[Any, ...]:
    p = ref_probs(q, k, bias, scale)
    ds = p * (g - (g * p).sum(-1, keepdims=True))
    gb = None if bias is None else ds.reshape(-1, *bias.shape).sum(0)  # the (L, S) mask is broadcast over (N, H)
    return p, ds @ k * scale, np.swapaxes(ds, -1, -2) @ q * scale, gb


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lengths", [(4, 1), (5, 3), (3, 257), (2, 1000), (2, 4096), (300, 7)])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_probs_match_float64_and_cpu(dtype: str, lengths: tuple[int, int], masked: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    length, source = lengths
    rng = np.random.default_rng(length + source)
    q = rng.standard_normal((2, 3, length, 8)).astype(dtype)
    k = rng.standard_normal((2, 3, source, 8)).astype(dtype)
    g = rng.standard_normal((2, 3, length, source))
    bias = None
    if masked:  # a float mask with a gradient: -inf entries, and one row with every key masked
        bias = rng.standard_normal((length, source)).astype(dtype)
        bias[rng.random((length, source)) < 0.3] = -np.inf
        bias[0] = -np.inf
    fwd, bwd = _spy(monkeypatch, _attention_cuda, "softmax_"), _spy(monkeypatch, _attention_cuda, "softmax_backward")
    got = _run_probs(q, k, bias, 0.3, g, "cuda")
    assert fwd and bwd
    cpu = _run_probs(q, k, bias, 0.3, g, "cpu")
    want = _ref_probs_grads(q.astype(np.float64), k.astype(np.float64),
                            None if bias is None else bias.astype(np.float64), 0.3, g)
    for i, (a, c, r) in enumerate(zip(got, cpu, want, strict=True)):
        if c is None:
            assert a is None and r is None
            continue
        assert np.isfinite(a).all()
        scale = 1.0 if i == 0 else 10.0
        _close(a, r, dtype, scale)
        _close(a, c, dtype, scale)
    if masked:
        assert not got[0][:, :, 0].any() and not got[3][0].any()  # the fully masked row: zeros, no NaN


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sdpa_masks_and_causal_on_cuda_match_cpu(dtype: str) -> None:
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal((2, 2, n, 6)).astype(dtype) for n in (5, 7, 7))
    keep = rng.random((5, 7)) < 0.7
    keep[2] = False  # a query that may attend to nothing gives zeros
    for kwargs in ({}, {"attn_mask": keep}, {"is_causal": True}, {"scale": 0.7}):
        outs = {}
        for device in ("cuda", "cpu"):
            qt, kt, vt = _t(q, device), _t(k, device), _t(v, device)
            kw = {key: ax.tensor(val, device=device) if isinstance(val, np.ndarray) else val
                  for key, val in kwargs.items()}
            out = F.scaled_dot_product_attention(qt, kt, vt, **kw)
            (out * out).sum().backward()
            outs[device] = [_np(out), _np(qt.grad), _np(kt.grad), _np(vt.grad)]
        for a, c in zip(outs["cuda"], outs["cpu"], strict=True):
            assert np.isfinite(a).all()
            _close(a, c, dtype, 10.0)
        if "attn_mask" in kwargs:
            assert not outs["cuda"][0][:, :, 2].any() and not outs["cuda"][1][:, :, 2].any()


def test_nan_scores_stay_nan_as_on_the_cpu() -> None:
    q = np.ones((1, 2, 3))
    k = np.ones((1, 4, 3))
    bias = np.zeros((2, 4))
    bias[1, 2] = np.nan
    got = _np(AttentionProbs.apply(_t(q, "cuda", False), _t(k, "cuda", False), _t(bias, "cuda", False), 1.0))
    want = _np(AttentionProbs.apply(_t(q, "cpu", False), _t(k, "cpu", False), _t(bias, "cpu", False), 1.0))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[0, 0], want[0, 0], rtol=1e-12)


# ----- a Transformer layer trained on the GPU follows the CPU ------------------------------------------------
def _train(model: nn.Module, device: str, batches: list[tuple[np.ndarray, np.ndarray]], mask: Any) -> list[float]:
    opt = ax.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for x, y in batches:
        opt.zero_grad()
        kw = {} if mask is None else {"src_key_padding_mask": ax.tensor(mask, device=device)}
        out = model(ax.tensor(x, device=device), **kw)
        loss = F.mse_loss(out, ax.tensor(y, device=device))
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    return losses


@pytest.mark.parametrize("dtype,padded", [("float64", False), ("float64", True), ("float32", False)])
def test_transformer_encoder_layer_training_on_cuda_matches_cpu(dtype: str, padded: bool) -> None:
    rng = np.random.default_rng(5)
    ax.manual_seed(0)
    cpu = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, dropout=0.0, batch_first=True,
                                     dtype=getattr(ax, dtype))
    gpu = copy.deepcopy(cpu).to("cuda")
    batches = [(rng.standard_normal((3, 10, 32)).astype(dtype), rng.standard_normal((3, 10, 32)).astype(dtype))
               for _ in range(4)]
    mask = None
    if padded:
        mask = np.zeros((3, 10), bool)
        mask[1, 7:] = True
    got, want = _train(gpu, "cuda", batches, mask), _train(cpu, "cpu", batches, mask)
    tol = {"rtol": 1e-9, "atol": 1e-11} if dtype == "float64" else {"rtol": 1e-4, "atol": 1e-5}
    np.testing.assert_allclose(got, want, **tol)
    for (name, pc), (_, pg) in zip(cpu.named_parameters(), gpu.named_parameters(), strict=True):
        np.testing.assert_allclose(_np(pg), _np(pc), err_msg=name, **tol)


def test_captured_transformer_step_replays_the_eager_steps() -> None:
    rng = np.random.default_rng(6)
    batches = [(ax.tensor(rng.standard_normal((4, 16, 32)).astype(np.float32), device="cuda"),
                ax.tensor(rng.standard_normal((4, 16, 32)).astype(np.float32), device="cuda")) for _ in range(6)]
    ax.manual_seed(0)
    eager = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, dropout=0.0, batch_first=True).cuda()
    graphed = copy.deepcopy(eager)
    opts = [ax.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (eager, graphed)]

    eager_losses = [float(eager_step(eager, opts[0], F.mse_loss, x, y).item()) for x, y in batches]
    losses = replayed_losses(graphed, opts[1], F.mse_loss, batches)
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-5, atol=1e-6)
