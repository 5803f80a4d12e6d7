"""scaled_dot_product_attention and multi_head_attention_forward: harness checks, and
comparisons with torch.nn.MultiheadAttention over its options (values and gradients)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import axonml as ax
import torch_ref as tr
from axonml.errors import DTypeError, ShapeError
from axonml.nn.functional.attention import multi_head_attention_forward, scaled_dot_product_attention
from harness import OpSpec, op_tests


def TF():
    return tr.torch().nn.functional


# ----- NumPy references ------------------------------------------------------------------------------
def _softmax(s):
    m = s.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(s - m)
    z = e.sum(-1, keepdims=True)
    return e / np.where(z == 0, 1.0, z)


def ref_sdpa(q, k, v, mask=None, scale=None, causal=False):
    s = q @ np.swapaxes(k, -1, -2) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if causal:
        s = s + np.triu(np.full(s.shape[-2:], -np.inf), 1)
    if mask is not None:
        s = s + mask
    return _softmax(s) @ v


MASK = np.array([[True, False, True, True], [True, True, False, True], [False, True, True, True]])


def _bool_mask(x):
    return ax.tensor(MASK, device=x.device)


def _gqa(q, k, v):
    return scaled_dot_product_attention(q, k, v, enable_gqa=True)


def _gqa_ref(q, k, v):
    return ref_sdpa(q, np.repeat(k, 2, axis=-3), np.repeat(v, 2, axis=-3))


E, H = 4, 2


def _mha(x, w_in, b_in, w_out, b_out):
    return multi_head_attention_forward(x, x, x, E, H, w_in, b_in, None, None, False, 0.0, w_out, b_out)


def _mha_torch(x, w_in, b_in, w_out, b_out):
    return TF().multi_head_attention_forward(x, x, x, E, H, w_in, b_in, None, None, False, 0.0, w_out, b_out)


def ref_mha(x, w_in, b_in, w_out, b_out):
    qkv = x @ w_in.T + b_in  # (L, N, 3E)
    L, N = x.shape[:2]
    heads = [qkv[..., i * E:(i + 1) * E].reshape(L, N, H, E // H).transpose(1, 2, 0, 3) for i in range(3)]
    p = _softmax(heads[0] @ np.swapaxes(heads[1], -1, -2) / math.sqrt(E // H))  # (N, H, L, L)
    o = (p @ heads[2]).transpose(2, 0, 1, 3).reshape(L, N, E)
    return o @ w_out.T + b_out, p.mean(1)


QKV = ((2, 3, 4), (2, 5, 4), (2, 5, 3))
SPECS = [
    OpSpec("scaled_dot_product_attention", scaled_dot_product_attention, ref_sdpa, (QKV, ((3, 2), (3, 2), (3, 2))),
           torch_fn=lambda q, k, v: TF().scaled_dot_product_attention(q, k, v)),
    OpSpec("sdpa_causal", lambda q, k, v: scaled_dot_product_attention(q, k, v, is_causal=True),
           lambda q, k, v: ref_sdpa(q, k, v, causal=True), (((1, 2, 3, 2), (1, 2, 3, 2), (1, 2, 3, 2)),),
           torch_fn=lambda q, k, v: TF().scaled_dot_product_attention(q, k, v, is_causal=True)),
    # a float mask gets a gradient too; it broadcasts over the batch
    OpSpec("sdpa_float_mask", lambda q, k, v, m: scaled_dot_product_attention(q, k, v, m, scale=0.7),
           lambda q, k, v, m: ref_sdpa(q, k, v, m, 0.7), (((2, 3, 2), (2, 4, 2), (2, 4, 2), (3, 4)),),
           torch_fn=lambda q, k, v, m: TF().scaled_dot_product_attention(q, k, v, m, scale=0.7)),
    OpSpec("sdpa_bool_mask", lambda q, k, v: scaled_dot_product_attention(q, k, v, _bool_mask(q)),
           lambda q, k, v: ref_sdpa(q, k, v, np.where(MASK, 0.0, -np.inf)), (((2, 3, 2), (2, 4, 2), (2, 4, 3)),),
           torch_fn=lambda q, k, v: TF().scaled_dot_product_attention(q, k, v, tr.torch().tensor(MASK))),
    OpSpec("sdpa_gqa", _gqa, _gqa_ref, (((1, 4, 2, 2), (1, 2, 3, 2), (1, 2, 3, 2)),),
           torch_fn=lambda q, k, v: TF().scaled_dot_product_attention(q, k, v, enable_gqa=True)),
    OpSpec("multi_head_attention_forward", _mha, ref_mha, (((3, 2, 4), (12, 4), (12,), (4, 4), (4,)),),
           domain=(-1.0, 1.0), gradgrad=False, torch_fn=_mha_torch),
]
globals().update(op_tests(SPECS))


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _close(a, t, tol=1e-10):
    assert a is not None and t is not None
    np.testing.assert_allclose(a.detach().numpy(), t.detach().numpy(), atol=tol, rtol=tol)


# ----- scaled_dot_product_attention: semantics -----------------------------------------------------------
@pytest.mark.torch
def test_sdpa_fully_masked_rows_give_zeros_like_torch(torch):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 3, 2)) for _ in range(3))
    mask = np.ones((3, 3), bool)
    mask[1] = False
    ins = [ax.tensor(a, requires_grad=True) for a in (q, k, v)]
    tins = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    out = scaled_dot_product_attention(*ins, ax.tensor(mask))
    tout = TF().scaled_dot_product_attention(*tins, torch.tensor(mask))
    _close(out, tout)
    assert np.all(out.detach().numpy()[0, 1] == 0)
    out.sum().backward()
    tout.sum().backward()
    for a, t in zip(ins, tins):
        _close(a.grad, t.grad)


def test_sdpa_is_numerically_stable_for_large_scores():
    q = ax.full((1, 2, 2), 300.0, dtype=ax.float32)
    out = scaled_dot_product_attention(q, q, ax.ones(1, 2, 2))
    assert np.isfinite(out.numpy()).all()


def test_sdpa_dropout_uses_generator_and_keeps_expectation():
    rng = np.random.default_rng(1)
    q, k, v = (ax.tensor(rng.standard_normal((2, 8, 4))) for _ in range(3))
    a = scaled_dot_product_attention(q, k, v, dropout_p=0.5, generator=ax.Generator().manual_seed(3))
    b = scaled_dot_product_attention(q, k, v, dropout_p=0.5, generator=ax.Generator().manual_seed(3))
    c = scaled_dot_product_attention(q, k, v, dropout_p=0.5, generator=ax.Generator().manual_seed(4))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())
    # all dropped: zeros; the mean over many draws approaches the undropped output
    assert np.all(scaled_dot_product_attention(q, k, v, dropout_p=1.0).numpy() == 0)
    gen = ax.Generator().manual_seed(0)
    mean = sum(scaled_dot_product_attention(q, k, v, dropout_p=0.3, generator=gen).numpy() for _ in range(300)) / 300
    np.testing.assert_allclose(mean, scaled_dot_product_attention(q, k, v).numpy(), atol=0.15)


def test_sdpa_errors():
    q = ax.randn(2, 3, 4)
    with pytest.raises(ValueError, match="not both"):
        scaled_dot_product_attention(q, q, q, ax.ones(3, 3, dtype=ax.bool), is_causal=True)
    with pytest.raises(ShapeError, match="do not match"):
        scaled_dot_product_attention(q, ax.randn(2, 3, 5), q)
    with pytest.raises(DTypeError, match="one dtype"):
        scaled_dot_product_attention(q, q.double(), q)
    with pytest.raises(ShapeError, match="broadcast"):
        scaled_dot_product_attention(q, q, q, ax.zeros(3, 2))
    with pytest.raises(DTypeError, match="bool or floating"):
        scaled_dot_product_attention(q, q, q, ax.zeros(3, 3, dtype=ax.int64))
    with pytest.raises(ShapeError, match="grouped"):
        scaled_dot_product_attention(ax.randn(1, 3, 2, 4), ax.randn(1, 2, 2, 4), ax.randn(1, 2, 2, 4), enable_gqa=True)


# ----- multi_head_attention_forward against torch.nn.MultiheadAttention ------------------------------------
MHA_CASES = [
    {},
    {"need_weights": False},
    {"add_bias_kv": True, "kpm": "bool", "mask": "float"},
    {"add_zero_attn": True, "kpm": "float", "mask": "bool"},
    {"kdim": 3, "vdim": 5, "mask": "bool3d", "average_attn_weights": False},
    {"bias": False, "mask": "causal", "is_causal": True, "need_weights": False},
    {"mask": "causal", "is_causal": True, "kpm": "bool"},
    {"self_attn": True, "add_bias_kv": True, "add_zero_attn": True, "mask": "float3d", "need_weights": False},
    {"unbatched": True, "mask": "bool"},
    {"kpm": "bool", "mask": "float", "need_weights": False},
    {"self_attn": True},  # the packed projection (one GEMM for q, k and v)
    {"self_attn": True, "bias": False, "kpm": "bool", "mask": "float", "need_weights": False},
    {"self_attn": True, "unbatched": True, "mask": "bool"},
]


def _masks(torch, case, rng, n, heads, length, source):
    attn = None
    kind = case.get("mask")
    if kind == "float":
        attn = rng.standard_normal((length, source))
    elif kind == "bool":
        attn = rng.random((length, source)) > 0.7
    elif kind == "bool3d":
        attn = rng.random((n * heads, length, source)) > 0.7
    elif kind == "float3d":
        attn = rng.standard_normal((n * heads, length, source))
    elif kind == "causal":
        attn = np.triu(np.ones((length, source), bool), 1)
    kpm = None
    if case.get("kpm") == "bool":
        kpm = rng.random((n, source)) > 0.7
        kpm[:, 0] = False
    elif case.get("kpm") == "float":
        kpm = rng.standard_normal((n, source))
    if case.get("unbatched") and kpm is not None:
        kpm = kpm[0]
    return attn, kpm


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
@pytest.mark.parametrize("case", MHA_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_mha_matches_torch_module(torch, case):
    rng = np.random.default_rng(5)
    e, heads, length, n = 6, 2, 3, 2
    source = length if case.get("self_attn") else 4
    kdim, vdim = case.get("kdim", e), case.get("vdim", e)
    mha = torch.nn.MultiheadAttention(e, heads, bias=case.get("bias", True), add_bias_kv=case.get("add_bias_kv", False),
                                      add_zero_attn=case.get("add_zero_attn", False), kdim=kdim, vdim=vdim,
                                      dtype=torch.float64)
    q = rng.standard_normal((length, n, e))
    k = q if case.get("self_attn") else rng.standard_normal((source, n, kdim))
    v = q if case.get("self_attn") else rng.standard_normal((source, n, vdim))
    if case.get("unbatched"):
        q, k, v = q[:, 0], k[:, 0], v[:, 0]
    attn, kpm = _masks(torch, case, rng, n, heads, length, source)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    if case.get("self_attn"):
        tk = tv = tq
    kw = {"need_weights": case.get("need_weights", True),
          "average_attn_weights": case.get("average_attn_weights", True), "is_causal": case.get("is_causal", False)}
    tkw = dict(kw, attn_mask=None if attn is None else torch.tensor(attn),
               key_padding_mask=None if kpm is None else torch.tensor(kpm))
    tout, tw = mha(tq, tk, tv, **tkw)
    params = {name: ax.tensor(p.detach().numpy(), requires_grad=True) for name, p in mha.named_parameters()}
    aq = ax.tensor(q, requires_grad=True)
    ak = aq if case.get("self_attn") else ax.tensor(k, requires_grad=True)
    av = aq if case.get("self_attn") else ax.tensor(v, requires_grad=True)
    separate = kdim != e or vdim != e
    out, w = multi_head_attention_forward(
        aq, ak, av, e, heads, params.get("in_proj_weight"), params.get("in_proj_bias"), params.get("bias_k"),
        params.get("bias_v"), case.get("add_zero_attn", False), 0.0, params["out_proj.weight"],
        params.get("out_proj.bias"), training=True, key_padding_mask=None if kpm is None else ax.tensor(kpm),
        attn_mask=None if attn is None else ax.tensor(attn), use_separate_proj_weight=separate,
        q_proj_weight=params.get("q_proj_weight"), k_proj_weight=params.get("k_proj_weight"),
        v_proj_weight=params.get("v_proj_weight"), **kw)
    _close(out, tout)
    assert (w is None) == (tw is None)
    if w is not None:
        _close(w, tw)
    g = rng.standard_normal(out.shape)
    loss = (out * ax.tensor(g)).sum() + (0 if w is None else (w * w).sum())
    tloss = (tout * torch.tensor(g)).sum() + (0 if tw is None else (tw * tw).sum())
    loss.backward()
    tloss.backward()
    for name, p in mha.named_parameters():
        _close(params[name].grad, p.grad)
    _close(aq.grad, tq.grad)
    if not case.get("self_attn"):
        _close(ak.grad, tk.grad)
        _close(av.grad, tv.grad)


@pytest.mark.parametrize("self_attn", [True, False])
def test_mha_batch_first_storage_matches_sequence_first(self_attn):
    # a (L, N, E) view of (N, L, E) storage (a batch_first module's input) is projected in its own row order
    rng = np.random.default_rng(8)
    e, heads, length, n = 8, 2, 5, 3
    w_in, b_in = ax.tensor(rng.standard_normal((3 * e, e)), requires_grad=True), ax.tensor(rng.standard_normal(3 * e))
    w_out, b_out = ax.tensor(rng.standard_normal((e, e)), requires_grad=True), ax.tensor(rng.standard_normal(e))
    data = [rng.standard_normal((n, length, e)) for _ in range(1 if self_attn else 3)]
    results = []
    for batch_major in (True, False):
        leaves = [ax.tensor(d if batch_major else d.transpose(1, 0, 2).copy(), requires_grad=True) for d in data]
        qkv = [t.transpose(0, 1) if batch_major else t for t in leaves]
        q, k, v = (qkv * 3) if self_attn else qkv
        out, _ = multi_head_attention_forward(q, k, v, e, heads, w_in, b_in, None, None, False, 0.0, w_out, b_out,
                                              need_weights=False)
        assert out.shape == (length, n, e)
        (out * out).sum().backward()
        grads = [t.grad.numpy() if batch_major else t.grad.numpy().transpose(1, 0, 2) for t in leaves]
        results.append((out.detach().numpy(), grads, w_in.grad.numpy().copy(), w_out.grad.numpy().copy()))
        w_in.grad = w_out.grad = None
    (o1, g1, wi1, wo1), (o2, g2, wi2, wo2) = results
    np.testing.assert_allclose(o1, o2, rtol=1e-10, atol=1e-12)
    for a, b in zip([*g1, wi1, wo1], [*g2, wi2, wo2], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)


def test_sdpa_softmax_with_and_without_the_row_shift():
    # scores within +-60 skip the max subtraction; larger ones take it: both give the float64 softmax
    rng = np.random.default_rng(9)
    for scale in (1.0, 100.0):
        q, k = rng.standard_normal((2, 3, 5, 4)) * scale, rng.standard_normal((2, 3, 6, 4))
        out = scaled_dot_product_attention(ax.tensor(q, dtype=ax.float32), ax.tensor(k, dtype=ax.float32),
                                           ax.tensor(np.eye(6)[None, None].repeat(2, 0).repeat(3, 1),
                                                     dtype=ax.float32))
        s = q @ k.swapaxes(-1, -2) / 2.0
        ref = np.exp(s - s.max(-1, keepdims=True))
        np.testing.assert_allclose(out.numpy()[..., :6], ref / ref.sum(-1, keepdims=True), rtol=2e-5, atol=1e-7)


def test_mha_static_kv_and_dropout_generator():
    rng = np.random.default_rng(6)
    e, heads, n, length, source = 4, 2, 2, 3, 5
    w_in, w_out = ax.tensor(rng.standard_normal((3 * e, e))), ax.tensor(rng.standard_normal((e, e)))
    q = ax.tensor(rng.standard_normal((length, n, e)))
    kv = ax.tensor(rng.standard_normal((source, n, e)))
    sk = ax.tensor(rng.standard_normal((n * heads, source, e // heads)))
    sv = ax.tensor(rng.standard_normal((n * heads, source, e // heads)))
    out, w = multi_head_attention_forward(q, kv, kv, e, heads, w_in, None, None, None, False, 0.0, w_out, None,
                                          static_k=sk, static_v=sv, average_attn_weights=False)
    qh = (q.numpy() @ w_in.numpy()[:e].T).reshape(length, n * heads, e // heads).transpose(1, 0, 2)
    p = _softmax(qh @ sk.numpy().transpose(0, 2, 1) / math.sqrt(e // heads))
    np.testing.assert_allclose(w.numpy(), p.reshape(n, heads, length, source), atol=1e-12)
    o = (p @ sv.numpy()).transpose(1, 0, 2).reshape(length, n, e) @ w_out.numpy().T
    np.testing.assert_allclose(out.numpy(), o, atol=1e-12)

    def run(seed, training=True):
        return multi_head_attention_forward(q, kv, kv, e, heads, w_in, None, None, None, False, 0.5, w_out, None,
                                            training=training, generator=ax.Generator().manual_seed(seed))[0].numpy()

    np.testing.assert_array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))
    np.testing.assert_array_equal(run(1, training=False), run(2, training=False))


def test_mha_errors():
    x = ax.randn(3, 2, 4)
    w_in, w_out = ax.randn(12, 4), ax.randn(4, 4)
    args = (w_in, None, None, None, False, 0.0, w_out, None)
    with pytest.raises(ShapeError, match="divisible"):
        multi_head_attention_forward(x, x, x, 4, 3, *args)
    with pytest.raises(ShapeError, match="embedding dimension"):
        multi_head_attention_forward(x, x, x, 5, 2, *args)
    with pytest.raises(ShapeError, match="attn_mask"):
        multi_head_attention_forward(x, x, x, 4, 2, *args, attn_mask=ax.zeros(3, 2))
    with pytest.raises(ShapeError, match="key_padding_mask"):
        multi_head_attention_forward(x, x, x, 4, 2, *args, key_padding_mask=ax.zeros(2, 2, dtype=ax.bool))
    with pytest.raises(ValueError, match="is_causal"):
        multi_head_attention_forward(x, x, x, 4, 2, *args, is_causal=True)
    with pytest.raises(ShapeError, match="2-d"):
        multi_head_attention_forward(ax.randn(4), x, x, 4, 2, *args)
