"""embedding and embedding_bag: harness checks of the plain lookup and bag reductions, and
comparisons with PyTorch for padding_idx, max_norm, scale_grad_by_freq, offsets and modes."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
import torch_ref as tr
from axonml.errors import DTypeError, IndexingError, ShapeError
from axonml.nn.functional.sparse import embedding, embedding_bag
from harness import OpSpec, op_tests

IDX = np.array([[0, 2, 2], [4, 1, 0]])
FLAT = np.array([3, 0, 3, 1, 4, 4, 2])
OFFSETS = np.array([0, 2, 2, 5])  # the second bag is empty


def TF():
    return tr.torch().nn.functional


def _idx(w, a):
    return ax.tensor(a, device=w.device)


def ref_bags(w, mode, weights=None):
    rows = w[FLAT] * (1 if weights is None else weights[:, None])
    ends = [*list(OFFSETS[1:]), len(FLAT)]
    out = []
    for s, e in zip(OFFSETS, ends):
        seg = rows[s:e]
        if not len(seg):
            out.append(np.zeros(w.shape[1]))
        else:
            out.append({"sum": seg.sum(0), "mean": seg.mean(0), "max": seg.max(0)}[mode])
    return np.stack(out)


def _bag(mode):
    return lambda w: embedding_bag(_idx(w, FLAT), w, _idx(w, OFFSETS), mode=mode)


def _bag_torch(mode):
    return lambda w: TF().embedding_bag(tr.torch().tensor(FLAT), w, tr.torch().tensor(OFFSETS), mode=mode)


SPECS = [
    OpSpec("embedding", lambda w: embedding(_idx(w, IDX), w), lambda w: w[IDX], (((5, 3),),),
           torch_fn=lambda w: TF().embedding(tr.torch().tensor(IDX), w)),
    OpSpec("embedding_bag", _bag("mean"), lambda w: ref_bags(w, "mean"), (((5, 3),),), torch_fn=_bag_torch("mean")),
    OpSpec("embedding_bag_sum_weighted",
           lambda w, p: embedding_bag(_idx(w, FLAT), w, _idx(w, OFFSETS), mode="sum", per_sample_weights=p),
           lambda w, p: ref_bags(w, "sum", p), (((5, 3), (7,)),),
           torch_fn=lambda w, p: TF().embedding_bag(tr.torch().tensor(FLAT), w, tr.torch().tensor(OFFSETS), mode="sum",
                                                    per_sample_weights=p)),
    OpSpec("embedding_bag_max", _bag("max"), lambda w: ref_bags(w, "max"), (((5, 3),),), gradgrad=False,
           torch_fn=_bag_torch("max")),
]
globals().update(op_tests(SPECS))


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _close(a, t, tol=1e-12):
    np.testing.assert_allclose(a.detach().numpy(), t.detach().numpy(), atol=tol, rtol=tol)


EMB_CASES = [
    {"padding_idx": 2},
    {"padding_idx": -1},
    {"scale_grad_by_freq": True},
    {"max_norm": 1.0},
    {"max_norm": 0.7, "norm_type": 1.0, "padding_idx": 0, "scale_grad_by_freq": True},
]


@pytest.mark.torch
@pytest.mark.parametrize("kw", EMB_CASES, ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()))
@pytest.mark.parametrize("index_dtype", ["int64", "int32"])
def test_embedding_matches_torch(torch, kw, index_dtype):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 4))
    idx = rng.integers(0, 6, (3, 5)).astype(index_dtype)
    aw, tw = ax.tensor(w, requires_grad=True), torch.tensor(w, requires_grad=True)
    out = embedding(ax.tensor(idx), aw, **kw)
    tout = TF().embedding(torch.tensor(idx), tw, **kw)
    _close(out, tout)
    _close(aw, tw)  # max_norm renormalizes the used rows in place, as PyTorch
    g = rng.standard_normal(out.shape)
    out.backward(ax.tensor(g))
    tout.backward(torch.tensor(g))
    _close(aw.grad, tw.grad)


BAG_CASES = [
    {"mode": "sum"}, {"mode": "mean"}, {"mode": "max"},
    {"mode": "mean", "include_last_offset": True}, {"mode": "max", "include_last_offset": True},
    {"mode": "sum", "padding_idx": 1}, {"mode": "mean", "padding_idx": 1}, {"mode": "max", "padding_idx": 1},
    {"mode": "sum", "weighted": True}, {"mode": "sum", "weighted": True, "padding_idx": 4},
    {"mode": "mean", "two_d": True}, {"mode": "max", "two_d": True, "padding_idx": 0},
    {"mode": "mean", "max_norm": 1.0},
]


@pytest.mark.torch
@pytest.mark.parametrize("kw", BAG_CASES, ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()))
def test_embedding_bag_matches_torch(torch, kw):
    kw = dict(kw)
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 3))
    two_d, weighted = kw.pop("two_d", False), kw.pop("weighted", False)
    if two_d:
        inp, offsets = rng.integers(0, 6, (4, 3)), None
    else:
        inp = rng.integers(0, 6, 11)
        offsets = np.array([0, 3, 3, 8, 11]) if kw.get("include_last_offset") else np.array([0, 3, 3, 8])
    psw = rng.standard_normal(inp.shape) if weighted else None
    aw, tw = ax.tensor(w, requires_grad=True), torch.tensor(w, requires_grad=True)
    ap = None if psw is None else ax.tensor(psw, requires_grad=True)
    tp = None if psw is None else torch.tensor(psw, requires_grad=True)
    offs = None if offsets is None else ax.tensor(offsets)
    out = embedding_bag(ax.tensor(inp), aw, offs, per_sample_weights=ap, **kw)
    tout = TF().embedding_bag(torch.tensor(inp), tw, None if offsets is None else torch.tensor(offsets),
                              per_sample_weights=tp, **kw)
    _close(out, tout)
    g = rng.standard_normal(out.shape)
    out.backward(ax.tensor(g))
    tout.backward(torch.tensor(g))
    _close(aw.grad, tw.grad)
    if ap is not None:
        _close(ap.grad, tp.grad)


@pytest.mark.torch
def test_embedding_bag_scale_grad_by_freq_divides_by_each_rows_count(torch):
    # as F.embedding(scale_grad_by_freq=True) followed by the bag means; PyTorch 2.13's embedding_bag
    # divides some rows by another row's count (e.g. [1, 1, 2]: row 2's gradient is halved)
    rng = np.random.default_rng(2)
    w, inp, offsets = rng.standard_normal((5, 2)), np.array([1, 1, 2, 4, 1, 2]), np.array([0, 2, 3])
    aw, tw = ax.tensor(w, requires_grad=True), torch.tensor(w, requires_grad=True)
    out = embedding_bag(ax.tensor(inp), aw, ax.tensor(offsets), mode="mean", scale_grad_by_freq=True)
    rows = TF().embedding(torch.tensor(inp), tw, scale_grad_by_freq=True)
    tout = torch.stack([rows[0:2].mean(0), rows[2:3].mean(0), rows[3:].mean(0)])
    _close(out, tout)
    g = rng.standard_normal(out.shape)
    out.backward(ax.tensor(g))
    tout.backward(torch.tensor(g))
    _close(aw.grad, tw.grad)


def test_embedding_padding_row_gets_no_gradient_and_max_norm_needs_no_grad_history():
    w = ax.randn(4, 2, requires_grad=True)
    out = embedding(ax.tensor([0, 1, 1, 3]), w, padding_idx=1)
    out.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [[1, 1], [0, 0], [0, 0], [1, 1]])
    leaf = ax.full((3, 2), 10.0, requires_grad=True)
    embedding(ax.tensor([2]), leaf, max_norm=1.0)  # renorm of a leaf that requires grad: done without history
    np.testing.assert_allclose(np.linalg.norm(leaf.detach().numpy()[2]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(leaf.detach().numpy()[0], [10.0, 10.0])


def test_errors():
    w = ax.randn(4, 2)
    with pytest.raises(IndexingError, match="out of range"):
        embedding(ax.tensor([0, 4]), w)
    with pytest.raises(IndexingError, match="out of range"):
        embedding(ax.tensor([-1]), w)
    with pytest.raises(DTypeError, match="integer"):
        embedding(ax.tensor([0.0]), w)
    with pytest.raises(IndexingError, match="padding_idx"):
        embedding(ax.tensor([0]), w, padding_idx=4)
    with pytest.raises(ShapeError, match="2-d"):
        embedding(ax.tensor([0]), ax.randn(4))
    with pytest.raises(ValueError, match="sparse"):
        embedding(ax.tensor([0]), w, sparse=True)
    with pytest.raises(ValueError, match="needs offsets"):
        embedding_bag(ax.tensor([0, 1]), w)
    with pytest.raises(ValueError, match="offsets must be None"):
        embedding_bag(ax.tensor([[0, 1]]), w, ax.tensor([0]))
    with pytest.raises(ValueError, match=r"offsets\[0\]"):
        embedding_bag(ax.tensor([0, 1]), w, ax.tensor([1]))
    with pytest.raises(ValueError, match="mode='sum'"):
        embedding_bag(ax.tensor([[0, 1]]), w, per_sample_weights=ax.ones(1, 2))
    with pytest.raises(ValueError, match="mode must be"):
        embedding_bag(ax.tensor([[0, 1]]), w, mode="min")
