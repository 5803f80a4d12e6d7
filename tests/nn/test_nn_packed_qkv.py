"""Self-attention's packed in-projection (``nn/prims/qkv.py``): one GEMM for q, k and v.

Oracles: the composed path (three GEMMs on row blocks of the weight), which the same call takes
when key and value are other tensor objects, PyTorch's MultiheadAttention, and the CPU for CUDA.
"""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
from axonml.nn import MultiheadAttention
from axonml.nn.functional.attention import multi_head_attention_forward
from axonml.nn.prims.qkv import PackedQKV

E, HEADS, L, N = 8, 2, 5, 3


def _nodes(t: ax.Tensor) -> set[str]:
    """The names of the autograd nodes behind ``t``."""
    seen, todo, names = set(), [t.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        names.add(type(node).__name__)
        todo.extend(e[0] for e in node.next_edges if e is not None)
    return names


def _weights(rng: np.random.Generator, bias: bool, device: str = "cpu") -> list[ax.Tensor | None]:
    shapes = [(3 * E, E), (3 * E,), (E, E), (E,)]
    ws = [ax.tensor(rng.standard_normal(s), device=device, requires_grad=True) for s in shapes]
    return ws if bias else [ws[0], None, ws[2], None]


def _attend(x: ax.Tensor, ws: list[ax.Tensor | None], packed: bool, **kw: object) -> ax.Tensor:
    """Self-attention of x; ``packed=False`` passes key and value as other tensor objects (the composed path)."""
    k = x if packed else x.view_as(x)
    v = x if packed else x.view_as(x)
    w_in, b_in, w_out, b_out = ws
    return multi_head_attention_forward(x, k, v, E, HEADS, w_in, b_in, None, None, False, 0.0, w_out, b_out,
                                        need_weights=False, **kw)[0]


def _input(rng: np.random.Generator, batch_major: bool, device: str = "cpu") -> tuple[ax.Tensor, ax.Tensor]:
    """(leaf, (L, N, E) input): the input is a transposed view of an (N, L, E) leaf when batch_major."""
    if batch_major:
        leaf = ax.tensor(rng.standard_normal((N, L, E)), device=device, requires_grad=True)
        return leaf, leaf.transpose(0, 1)
    leaf = ax.tensor(rng.standard_normal((L, N, E)), device=device, requires_grad=True)
    return leaf, leaf


@pytest.mark.parametrize("batch_major", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_packed_matches_the_composed_path(batch_major: bool, bias: bool) -> None:
    rng = np.random.default_rng(0)
    ws = _weights(rng, bias)
    mask = ax.tensor(rng.standard_normal((L, L)))
    kpm = ax.tensor(rng.random((N, L)) > 0.7)
    g = rng.standard_normal((L, N, E))
    results = []
    for packed in (True, False):
        leaf, x = _input(np.random.default_rng(1), batch_major)
        out = _attend(x, ws, packed, attn_mask=mask, key_padding_mask=kpm)
        assert ("PackedQKV" in _nodes(out)) == packed
        (out * ax.tensor(g)).sum().backward()
        grads = [leaf.grad.numpy()] + [w.grad.numpy().copy() for w in ws if w is not None]
        for w in ws:
            if w is not None:
                w.grad = None
        results.append((out.detach().numpy(), grads))
    (o1, g1), (o2, g2) = results
    np.testing.assert_allclose(o1, o2, rtol=1e-12, atol=1e-12)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-11)


def test_packed_second_derivatives_match_the_composed_path() -> None:
    rng = np.random.default_rng(2)
    ws = _weights(rng, True)
    results = []
    for packed in (True, False):
        leaf, x = _input(np.random.default_rng(3), True)
        inputs = [leaf, ws[0], ws[1]]
        out = _attend(x, ws, packed)
        grads = ax.autograd.grad((out * out * out).sum(), inputs, create_graph=True)
        second = ax.autograd.grad(sum((g * g).sum() for g in grads), inputs)
        results.append([s.numpy() for s in second])
    for a, b in zip(*results, strict=True):  # the k-bias block is zero up to cancellation: atol by scale
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * np.abs(b).max())


def test_only_gradients_that_are_needed() -> None:
    rng = np.random.default_rng(4)
    ws = _weights(rng, True)
    ws[0].requires_grad_(False)
    leaf, x = _input(rng, False)
    leaf.requires_grad_(False)
    _attend(x, ws, True).sum().backward()
    assert ws[0].grad is None and leaf.grad is None and ws[1].grad is not None


@pytest.mark.torch
@pytest.mark.parametrize("batch_first", [True, False])
def test_self_attention_module_matches_torch(batch_first: bool) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    t_mha = torch.nn.MultiheadAttention(E, HEADS, batch_first=batch_first, dtype=torch.float64)
    mha = MultiheadAttention(E, HEADS, batch_first=batch_first, dtype=ax.float64)
    mha.load_state_dict({k: ax.tensor(v.detach().numpy()) for k, v in t_mha.state_dict().items()})
    x = rng.standard_normal((N, L, E) if batch_first else (L, N, E))
    ax_x, t_x = ax.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out = mha(ax_x, ax_x, ax_x, need_weights=False)[0]
    t_out = t_mha(t_x, t_x, t_x, need_weights=False)[0]
    assert "PackedQKV" in _nodes(out)
    g = rng.standard_normal(out.shape)
    (out * ax.tensor(g)).sum().backward()
    (t_out * torch.tensor(g)).sum().backward()
    params = dict(mha.named_parameters())
    pairs = [(out, t_out), (ax_x.grad, t_x.grad), *((params[k].grad, p.grad) for k, p in t_mha.named_parameters())]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-10, atol=1e-10)


def test_packed_outputs_are_contiguous_heads() -> None:
    rng = np.random.default_rng(7)
    _, x = _input(rng, True)
    w, b = _weights(rng, True)[:2]
    q, k, v = PackedQKV.apply(x, w, b, HEADS)
    y = x.detach().numpy() @ w.detach().numpy().T + b.detach().numpy()
    ref = y.reshape(L, N, 3, HEADS, E // HEADS).transpose(2, 1, 3, 0, 4)
    for i, t in enumerate((q, k, v)):
        assert t.shape == (N, HEADS, L, E // HEADS) and t.is_contiguous()
        np.testing.assert_allclose(t.detach().numpy(), ref[i], rtol=1e-12, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("batch_major", [False, True])
def test_packed_on_cuda_matches_cpu(batch_major: bool) -> None:
    results = []
    for device in ("cpu", "cuda"):
        rng = np.random.default_rng(9)
        ws = _weights(rng, True, device)
        leaf, x = _input(rng, batch_major, device)
        out = _attend(x, ws, True)
        assert "PackedQKV" in _nodes(out)
        (out * out).sum().backward()
        results.append([out.detach().cpu().numpy(), leaf.grad.cpu().numpy()]
                       + [w.grad.cpu().numpy() for w in ws if w is not None])
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
