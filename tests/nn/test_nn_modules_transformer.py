"""MultiheadAttention and the Transformer family vs torch.nn: parameter names and order, reprs, default
initialization; outputs, attention weights and gradients (inputs and every parameter) in float64, with masks,
kdim/vdim, add_bias_kv, add_zero_attn, batch_first, norm_first, activations, train (dropout 0) and eval mode."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from module_parity import cpu_vs_cuda

import axonml as ax
from axonml.errors import ShapeError
from axonml.nn.functional.activation import gelu
from axonml.nn.modules.activation import GELU
from axonml.nn.modules.activation_attention import MultiheadAttention
from axonml.nn.modules.normalization import LayerNorm
from axonml.nn.modules.transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    _detect_is_causal_mask,
)

# PyTorch's own deprecation notes (bool padding masks next to float attention masks; nested tensors)
pytestmark = [pytest.mark.filterwarnings("ignore:Support for mismatched:UserWarning"),
              pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning")]

TOL = {"rtol": 1e-9, "atol": 1e-11}
E, H = 8, 2


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def _np(t: Any) -> np.ndarray:
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def _flat(out: Any) -> list[Any]:
    if isinstance(out, tuple | list):
        return [y for o in out for y in _flat(o)]
    return [out]


def _copy(m: Any, tm: Any) -> None:
    """Same state-dict keys in the same order, and PyTorch's values loaded into ours."""
    assert list(m.state_dict()) == list(tm.state_dict())
    assert [(n, p.shape) for n, p in m.named_parameters()] == [(n, tuple(p.shape)) for n, p in tm.named_parameters()]
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})


def _run_both(m: Any, tm: Any, args: list[Any], torch: Any, kwargs: dict[str, Any] | None = None) -> None:
    """Call both on the same inputs (float arrays require grad; bool arrays are masks), compare every output,
    then the gradients of the float inputs and of every parameter."""
    kwargs = kwargs or {}

    def mine(a: Any) -> Any:
        return a if not isinstance(a, np.ndarray) else ax.tensor(a, requires_grad=a.dtype.kind == "f")

    def theirs(a: Any) -> Any:
        return a if not isinstance(a, np.ndarray) else torch.tensor(a, requires_grad=a.dtype.kind == "f")

    xs, txs = [mine(a) for a in args], [theirs(a) for a in args]
    kw = {k: mine(v) for k, v in kwargs.items()}
    tkw = {k: theirs(v) for k, v in kwargs.items()}
    outs, touts = _flat(m(*xs, **kw)), _flat(tm(*txs, **tkw))
    rng = np.random.default_rng(7)
    loss, tloss = 0.0, 0.0
    for o, to in zip(outs, touts, strict=True):
        if to is None:
            assert o is None
            continue
        assert o.shape == tuple(to.shape)
        np.testing.assert_allclose(_np(o), _np(to), **TOL)
        g = rng.standard_normal(o.shape)
        loss = loss + (o * ax.tensor(g)).sum()
        tloss = tloss + (to * torch.tensor(g)).sum()
    loss.backward()
    tloss.backward()
    for x, tx in zip([*xs, *kw.values()], [*txs, *tkw.values()], strict=True):
        if isinstance(x, ax.Tensor) and x.requires_grad:
            if tx.grad is None:  # an input the result does not depend on (a mask ignored under is_causal)
                assert x.grad is None or not _np(x.grad).any()
                continue
            np.testing.assert_allclose(_np(x.grad), _np(tx.grad), **TOL)
    for (n, p), (_, tp) in zip(m.named_parameters(), tm.named_parameters(), strict=True):
        np.testing.assert_allclose(_np(p.grad), _np(tp.grad), **TOL, err_msg=n)


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _causal(n: int) -> np.ndarray:
    return np.triu(np.full((n, n), -np.inf), 1)


# ----- MultiheadAttention ------------------------------------------------------------------------------
MHA_CASES = {
    "plain": ({}, {}),
    "nobias": ({"bias": False}, {}),
    "kdim-vdim": ({"kdim": 3, "vdim": 5}, {}),
    "bias-kv": ({"add_bias_kv": True}, {"attn_mask": "bool2d"}),
    "zero-attn": ({"add_zero_attn": True}, {"key_padding_mask": "bool"}),
    "all-extras": ({"add_bias_kv": True, "add_zero_attn": True, "kdim": 3, "vdim": 5},
                   {"key_padding_mask": "bool", "attn_mask": "bool2d"}),
    "float-masks": ({}, {"attn_mask": "float3d", "key_padding_mask": "float"}),
    "per-head": ({}, {"average_attn_weights": False, "attn_mask": "bool3d"}),
    "no-weights": ({}, {"need_weights": False, "key_padding_mask": "bool"}),
    "causal": ({}, {"attn_mask": "causal", "is_causal": True, "need_weights": False}),
}


def _mask(kind: str, n: int, length: int, source: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    if kind == "causal":
        return _causal(length)
    if kind == "bool":  # (N, S), True = padding; the first key always stays visible
        m = rng.random((n, source)) < 0.4
        m[:, 0] = False
        return m
    if kind == "float":
        return rng.standard_normal((n, source))
    if kind == "bool2d":
        m = rng.random((length, source)) < 0.3
        m[:, 0] = False
        return m
    if kind == "bool3d":
        m = rng.random((n * H, length, source)) < 0.3
        m[..., 0] = False
        return m
    return rng.standard_normal((n * H, length, source))  # float3d


@pytest.mark.torch
@pytest.mark.parametrize("case", list(MHA_CASES))
@pytest.mark.parametrize("batch_first", [False, True])
def test_mha_matches_torch(torch: Any, case: str, batch_first: bool) -> None:
    ctor, call = MHA_CASES[case]
    tm = torch.nn.MultiheadAttention(E, H, batch_first=batch_first, **ctor).double()
    m = MultiheadAttention(E, H, batch_first=batch_first, **ctor, dtype=ax.float64)
    assert repr(m) == repr(tm)
    _copy(m, tm)
    n, length, source = 3, 4, 5
    kdim, vdim = ctor.get("kdim", E), ctor.get("vdim", E)
    lay = (lambda s, f: (n, s, f)) if batch_first else (lambda s, f: (s, n, f))
    q = _x(*lay(length, E), seed=1)
    k = _x(*lay(source if case != "causal" else length, kdim), seed=2)
    v = _x(*lay(source if case != "causal" else length, vdim), seed=4)
    kwargs = {key: (_mask(val, n, length, source if case != "causal" else length) if isinstance(val, str) else val)
              for key, val in call.items()}
    _run_both(m, tm, [q, k, v], torch, kwargs)


@pytest.mark.torch
@pytest.mark.parametrize("self_attention", [True, False])
def test_mha_unbatched_and_eval(torch: Any, self_attention: bool) -> None:
    tm = torch.nn.MultiheadAttention(E, H, dropout=0.3, add_bias_kv=True).double().eval()
    m = MultiheadAttention(E, H, dropout=0.3, add_bias_kv=True, dtype=ax.float64).eval()
    _copy(m, tm)
    q = _x(4, E, seed=5)
    kv = q if self_attention else _x(6, E, seed=6)
    mask = np.zeros((4, kv.shape[0]), bool)
    mask[1, 2] = True
    _run_both(m, tm, [q, kv, kv], torch, {"attn_mask": mask, "key_padding_mask": np.eye(1, kv.shape[0], 1, bool)[0]})


def test_mha_default_init_and_layout() -> None:
    ax.manual_seed(0)
    m = MultiheadAttention(64, 4, add_bias_kv=True)
    assert [n for n, _ in m.named_parameters()] == ["in_proj_weight", "in_proj_bias", "bias_k", "bias_v",
                                                    "out_proj.weight", "out_proj.bias"]
    assert m.q_proj_weight is None and m.head_dim == 16 and m._qkv_same_embed_dim
    bound = np.sqrt(6 / (64 + 192))  # xavier_uniform_ over the packed (3E, E) weight
    w = _np(m.in_proj_weight)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert not _np(m.in_proj_bias).any() and not _np(m.out_proj.bias).any()
    assert type(m.out_proj).__name__ == "NonDynamicallyQuantizableLinear"
    plain = MultiheadAttention(8, 2, kdim=3, vdim=5, bias=False)
    assert plain.bias_k is None and plain.in_proj_weight is None and plain.in_proj_bias is None
    assert list(plain.state_dict()) == ["q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight"]
    assert plain.k_proj_weight.shape == (8, 3) and plain.v_proj_weight.shape == (8, 5)
    with pytest.raises(ValueError, match="divisible"):
        MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="is_causal"):
        MultiheadAttention(8, 2)(ax.randn(3, 1, 8), ax.randn(3, 1, 8), ax.randn(3, 1, 8), is_causal=True)
    with pytest.raises(ShapeError):
        MultiheadAttention(8, 2)(ax.randn(3, 1, 6), ax.randn(3, 1, 6), ax.randn(3, 1, 6))


# ----- transformer layers ------------------------------------------------------------------------------
def _layer_pair(cls: Any, torch: Any, **kw: Any) -> tuple[Any, Any]:
    tkw = dict(kw)
    if "activation" in kw and not isinstance(kw["activation"], str):  # the matching callable on each side
        tkw["activation"] = torch.nn.GELU() if isinstance(kw["activation"], GELU) else torch.nn.functional.gelu
    tm = getattr(torch.nn, cls.__name__)(E, H, dim_feedforward=12, dropout=0.0, **tkw).double()
    m = cls(E, H, dim_feedforward=12, dropout=0.0, **kw, dtype=ax.float64)
    assert repr(m) == repr(tm)
    _copy(m, tm)
    return m, tm


ENC_CASES = {
    "post-relu": {},
    "pre-gelu": {"norm_first": True, "activation": "gelu"},
    "batch-first-gelu-module": {"batch_first": True, "activation": GELU()},
    "nobias-fn": {"bias": False, "activation": gelu, "layer_norm_eps": 1e-3},
    "pre-batch-first": {"norm_first": True, "batch_first": True},
}


@pytest.mark.torch
@pytest.mark.parametrize("case", list(ENC_CASES))
@pytest.mark.parametrize("masks", ["none", "causal", "padding", "both"])
def test_encoder_layer_matches_torch(torch: Any, case: str, masks: str) -> None:
    kw = ENC_CASES[case]
    m, tm = _layer_pair(TransformerEncoderLayer, torch, **kw)
    n, s = 2, 5
    src = _x(*((n, s, E) if kw.get("batch_first") else (s, n, E)), seed=1)
    call: dict[str, Any] = {}
    if masks in ("causal", "both"):
        call["src_mask"] = _causal(s)
        call["is_causal"] = masks == "causal"
    if masks in ("padding", "both"):
        call["src_key_padding_mask"] = np.array([[False] * 4 + [True], [False] * 5])
    _run_both(m, tm, [src], torch, call)


@pytest.mark.torch
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_decoder_layer_matches_torch(torch: Any, norm_first: bool, batch_first: bool) -> None:
    m, tm = _layer_pair(TransformerDecoderLayer, torch, norm_first=norm_first, batch_first=batch_first,
                        activation="gelu")
    n, t, s = 2, 4, 6
    lay = (lambda length: (n, length, E)) if batch_first else (lambda length: (length, n, E))
    tgt, memory = _x(*lay(t), seed=2), _x(*lay(s), seed=3)
    memory_mask = np.random.default_rng(4).random((t, s)) < 0.3
    memory_mask[:, 0] = False
    call = {"tgt_mask": _causal(t), "memory_mask": memory_mask, "tgt_is_causal": True,
            "tgt_key_padding_mask": np.array([[False, False, False, True], [False] * 4]),
            "memory_key_padding_mask": np.array([[False] * 6, [False] * 4 + [True] * 2])}
    _run_both(m, tm, [tgt, memory], torch, call)


@pytest.mark.torch
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_and_decoder_stacks_match_torch(torch: Any, norm_first: bool) -> None:
    layer, tlayer = _layer_pair(TransformerEncoderLayer, torch, norm_first=norm_first)
    tm = torch.nn.TransformerEncoder(tlayer, 2, torch.nn.LayerNorm(E).double(), enable_nested_tensor=False)
    m = TransformerEncoder(layer, 2, LayerNorm(E, dtype=ax.float64), enable_nested_tensor=False)
    assert repr(m) == repr(tm)
    assert m.layers[0] is not m.layers[1] and m.layers[0].linear1.weight is not layer.linear1.weight  # deep copies
    _copy(m, tm)
    src = _x(5, 2, E, seed=5)
    pad = np.array([[False] * 4 + [True], [False] * 5])
    # a causal float mask without the hint: detected as causal, as PyTorch does
    _run_both(m, tm, [src], torch, {"mask": _causal(5), "src_key_padding_mask": pad})
    dlayer, tdlayer = _layer_pair(TransformerDecoderLayer, torch, norm_first=norm_first, activation="gelu")
    td = torch.nn.TransformerDecoder(tdlayer, 2)
    d = TransformerDecoder(dlayer, 2)
    assert repr(d) == repr(td)
    _copy(d, td)
    bool_causal = np.triu(np.ones((4, 4), bool), 1)
    _run_both(d, td, [_x(4, 2, E, seed=6), src], torch, {"tgt_mask": bool_causal, "memory_key_padding_mask": pad})


@pytest.mark.torch
@pytest.mark.parametrize("batch_first,norm_first,unbatched", [(False, False, False), (True, True, False),
                                                              (False, True, True)])
def test_transformer_matches_torch(torch: Any, batch_first: bool, norm_first: bool, unbatched: bool) -> None:
    kw = {"d_model": E, "nhead": H, "num_encoder_layers": 2, "num_decoder_layers": 1, "dim_feedforward": 12,
          "dropout": 0.0, "batch_first": batch_first, "norm_first": norm_first}
    tm = torch.nn.Transformer(**kw).double()
    m = Transformer(**kw, dtype=ax.float64)
    assert repr(m) == repr(tm)
    _copy(m, tm)
    n, s, t = 2, 5, 4
    shape = (lambda length: (length, E)) if unbatched else (
        (lambda length: (n, length, E)) if batch_first else (lambda length: (length, n, E)))
    call: dict[str, Any] = {"tgt_mask": Transformer.generate_square_subsequent_mask(t, dtype=ax.float64)._data}
    if not unbatched:
        call["src_key_padding_mask"] = np.array([[False] * 4 + [True], [False] * 5])
        call["memory_key_padding_mask"] = call["src_key_padding_mask"]
    _run_both(m, tm, [_x(*shape(s), seed=7), _x(*shape(t), seed=8)], torch, call)


@pytest.mark.torch
def test_eval_mode_turns_dropout_off(torch: Any) -> None:
    kw = {"d_model": E, "nhead": H, "num_encoder_layers": 1, "num_decoder_layers": 1, "dim_feedforward": 12,
          "dropout": 0.3}
    tm = torch.nn.Transformer(**kw).double().eval()
    m = Transformer(**kw, dtype=ax.float64).eval()
    _copy(m, tm)
    src, tgt = _x(5, 2, E, seed=9), _x(3, 2, E, seed=10)
    _run_both(m, tm, [src, tgt], torch)
    m.train()
    a, b = m(ax.tensor(src), ax.tensor(tgt)), m(ax.tensor(src), ax.tensor(tgt))
    assert not np.allclose(_np(a), _np(b))  # training: dropout is active


@pytest.mark.torch
def test_generate_square_subsequent_mask(torch: Any) -> None:
    mask = Transformer.generate_square_subsequent_mask(4)
    assert mask.dtype == ax.float32
    np.testing.assert_array_equal(_np(mask), _np(torch.nn.Transformer.generate_square_subsequent_mask(4)))
    assert Transformer.generate_square_subsequent_mask(2, dtype=ax.float64).dtype == ax.float64


def test_transformer_defaults_and_errors() -> None:
    ax.manual_seed(1)
    m = Transformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32)
    assert m.d_model == 16 and m.nhead == 2 and m.batch_first is False
    w = _np(m.encoder.layers[0].linear1.weight)  # xavier_uniform_ over every matrix
    bound = np.sqrt(6 / (16 + 32))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert not _np(m.encoder.layers[0].norm1.bias).any()
    layer = TransformerEncoderLayer(16, 2, 32)
    assert layer.activation_relu_or_gelu == 1 and layer.self_attn.dropout == 0.1
    assert TransformerEncoderLayer(16, 2, activation="gelu").activation_relu_or_gelu == 2
    assert TransformerEncoderLayer(16, 2, activation=lambda x: x).activation_relu_or_gelu == 0
    with pytest.raises(ValueError, match="relu/gelu"):
        TransformerEncoderLayer(16, 2, activation="tanh")
    with pytest.raises(ShapeError, match="batch number"):
        m(ax.randn(5, 2, 16), ax.randn(4, 3, 16))
    with pytest.raises(ShapeError, match="d_model"):
        m(ax.randn(5, 2, 16), ax.randn(4, 2, 8))
    encoder = TransformerEncoder(layer, 2, enable_nested_tensor=True)
    assert encoder.use_nested_tensor is False and encoder.num_layers == 2


def test_detect_is_causal_mask() -> None:
    causal = Transformer.generate_square_subsequent_mask(4)
    assert _detect_is_causal_mask(causal) and _detect_is_causal_mask(causal, size=4)
    assert _detect_is_causal_mask(ax.tensor(np.triu(np.ones((4, 4), bool), 1)))
    assert not _detect_is_causal_mask(causal, size=5)  # not the causal mask of that length
    assert not _detect_is_causal_mask(ax.tensor(np.triu(np.full((4, 4), -1e9), 1)))
    assert not _detect_is_causal_mask(causal, is_causal=False)  # an explicit hint wins
    assert _detect_is_causal_mask(None, is_causal=True) and not _detect_is_causal_mask(None)


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_attention_and_transformer_on_cuda_match_cpu() -> None:
    mha = MultiheadAttention(E, H, kdim=3, vdim=5, add_bias_kv=True, batch_first=True, dtype=ax.float64)
    pad = np.array([[False] * 5 + [True], [False] * 6])
    cpu_vs_cuda(mha, [_x(2, 4, E), _x(2, 6, 3, seed=1), _x(2, 6, 5, seed=2)], {"key_padding_mask": pad})
    model = Transformer(E, H, 1, 1, 12, dropout=0.0, norm_first=True, dtype=ax.float64)
    causal = Transformer.generate_square_subsequent_mask(4, device="cuda", dtype=ax.float64)
    assert causal.device.type == "cuda" and _detect_is_causal_mask(causal)
    cpu_vs_cuda(model, [_x(6, 2, E, seed=3), _x(4, 2, E, seed=4)], {"tgt_mask": _causal(4)})
