"""Embedding and EmbeddingBag vs torch.nn: keys, reprs, default initialization, from_pretrained, outputs and
weight gradients in float64 (padding_idx, max_norm, scale_grad_by_freq, bag modes, offsets, weights)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from module_parity import cpu_vs_cuda

import axonml as ax
from axonml.errors import IndexingError, ShapeError
from axonml.nn.modules.sparse import Embedding, EmbeddingBag

TOL = {"rtol": 1e-10, "atol": 1e-12}


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def _np(t: Any) -> np.ndarray:
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def _load(m: Any, tm: Any) -> None:
    assert list(m.state_dict()) == list(tm.state_dict()) == ["weight"]
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})


def _grads_match(m: Any, tm: Any, y: Any, ty: Any, torch: Any) -> None:
    np.testing.assert_allclose(_np(y), _np(ty), **TOL)
    g = np.random.default_rng(0).standard_normal(tuple(ty.shape))
    (y * ax.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(_np(m.weight.grad), _np(tm.weight.grad), **TOL)
    np.testing.assert_allclose(_np(m.weight), _np(tm.weight), **TOL)  # max_norm renormalizes both alike


def test_embedding_default_init_and_padding_row() -> None:
    ax.manual_seed(0)
    m = Embedding(400, 50, padding_idx=-3)
    assert m.padding_idx == 397 and m.weight.shape == (400, 50) and m.weight.requires_grad
    w = _np(m.weight)
    assert not w[397].any()
    others = np.delete(w, 397, 0)
    assert abs(others.mean()) < 0.02 and abs(others.std() - 1.0) < 0.02  # N(0, 1)
    with pytest.raises(IndexingError, match="padding_idx"):
        Embedding(5, 2, padding_idx=5)
    with pytest.raises(ValueError, match="sparse"):
        Embedding(5, 2, sparse=True)
    with pytest.raises(ValueError, match="sparse"):
        EmbeddingBag(5, 2, sparse=True)


@pytest.mark.torch
@pytest.mark.parametrize("kw", [{}, {"padding_idx": 2}, {"padding_idx": -1, "scale_grad_by_freq": True},
                                {"max_norm": 1.0}, {"max_norm": 1.5, "norm_type": 1.0, "padding_idx": 0}],
                         ids=["plain", "padding", "neg-padding-freq", "max-norm", "max-norm-l1"])
@pytest.mark.parametrize("shape", [(7,), (3, 4)], ids=["1d", "2d"])
def test_embedding_matches_torch(torch: Any, kw: dict[str, Any], shape: tuple[int, ...]) -> None:
    tm = torch.nn.Embedding(6, 4, **kw).double()
    m = Embedding(6, 4, **kw, dtype=ax.float64)
    assert repr(m) == repr(tm)
    if "padding_idx" in kw:
        assert not _np(m.weight)[m.padding_idx].any()
    with torch.no_grad():
        tm.weight.mul_(2.0)  # rows longer than max_norm, so that the renormalization happens
    _load(m, tm)
    idx = np.random.default_rng(1).integers(0, 6, shape)
    idx.flat[0] = idx.flat[1]  # a repeated index, for scale_grad_by_freq
    y, ty = m(ax.tensor(idx)), tm(torch.tensor(idx))
    assert y.shape == tuple(ty.shape)
    _grads_match(m, tm, y, ty, torch)


@pytest.mark.torch
def test_embedding_from_pretrained(torch: Any) -> None:
    w0 = np.random.default_rng(2).standard_normal((5, 3))
    table = ax.tensor(w0)
    m = Embedding.from_pretrained(table, padding_idx=1)
    tm = torch.nn.Embedding.from_pretrained(torch.tensor(w0), padding_idx=1)
    assert repr(m) == repr(tm) and not m.weight.requires_grad
    np.testing.assert_array_equal(_np(m.weight), w0)  # the padding row is kept as given
    table[0, 0] = 100.0
    assert m.weight[0, 0].item() == 100.0  # shares memory with the given table
    trainable = Embedding.from_pretrained(ax.tensor(w0), freeze=False)
    assert trainable.weight.requires_grad
    trainable(ax.tensor([0, 0, 2])).sum().backward()
    np.testing.assert_array_equal(_np(trainable.weight.grad)[:, 0], [2.0, 0.0, 1.0, 0.0, 0.0])
    with pytest.raises(ShapeError, match="2-dimensional"):
        Embedding.from_pretrained(ax.zeros(3))
    with pytest.raises(ShapeError, match="_weight"):
        Embedding(4, 3, _weight=ax.zeros(3, 3))


@pytest.mark.torch
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("layout", ["2d", "offsets", "last-offset", "padding"])
def test_embedding_bag_matches_torch(torch: Any, mode: str, layout: str) -> None:
    kw: dict[str, Any] = {"mode": mode}
    if layout == "last-offset":
        kw["include_last_offset"] = True
    if layout == "padding":
        kw["padding_idx"] = 3
    tm = torch.nn.EmbeddingBag(8, 5, **kw).double()
    m = EmbeddingBag(8, 5, **kw, dtype=ax.float64)
    assert repr(m) == repr(tm)
    _load(m, tm)
    rng = np.random.default_rng(3)
    if layout == "2d":
        args = [rng.integers(0, 8, (4, 3))]
    else:
        idx = rng.integers(0, 8, 10)
        idx[:3] = 3  # padding entries (left out of the sums, means and counts)
        offsets = np.array([0, 3, 3, 7] + ([10] if layout == "last-offset" else []))  # bag 1 is empty
        args = [idx, offsets]
    y = m(*[ax.tensor(a) for a in args])
    ty = tm(*[torch.tensor(a) for a in args])
    _grads_match(m, tm, y, ty, torch)


@pytest.mark.torch
def test_embedding_bag_per_sample_weights_and_from_pretrained(torch: Any) -> None:
    w0 = np.random.default_rng(4).standard_normal((6, 3))
    m = EmbeddingBag.from_pretrained(ax.tensor(w0), freeze=False, mode="sum")
    tm = torch.nn.EmbeddingBag.from_pretrained(torch.tensor(w0), freeze=False, mode="sum")
    assert repr(m) == repr(tm) and m.weight.requires_grad
    idx, offsets = np.array([1, 2, 4, 4, 5]), np.array([0, 2])
    psw = np.random.default_rng(5).standard_normal(5)
    x, tx = ax.tensor(psw, requires_grad=True), torch.tensor(psw, requires_grad=True)
    y = m(ax.tensor(idx), ax.tensor(offsets), per_sample_weights=x)
    ty = tm(torch.tensor(idx), torch.tensor(offsets), per_sample_weights=tx)
    _grads_match(m, tm, y, ty, torch)
    np.testing.assert_allclose(_np(x.grad), _np(tx.grad), **TOL)
    frozen = EmbeddingBag.from_pretrained(ax.tensor(w0))
    assert not frozen.weight.requires_grad and frozen.mode == "mean"
    with pytest.raises(ValueError, match="mode"):
        EmbeddingBag(3, 2, mode="median")


def test_embedding_errors() -> None:
    m = Embedding(4, 2)
    with pytest.raises(IndexingError, match="out of range"):
        m(ax.tensor([0, 4]))
    with pytest.raises(TypeError):
        m(ax.tensor([0.0, 1.0]))


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_embeddings_on_cuda_match_cpu() -> None:
    idx = np.array([[0, 2, 5], [5, 1, 1]])
    cpu_vs_cuda(Embedding(6, 4, padding_idx=1, max_norm=1.0, dtype=ax.float64), [idx])
    for mode in ("sum", "mean", "max"):
        cpu_vs_cuda(EmbeddingBag(6, 4, mode=mode, padding_idx=2, dtype=ax.float64),
                     [np.array([2, 0, 3, 3, 5, 1]), np.array([0, 2, 2, 5])])
    assert Embedding(3, 2, device="cuda").weight.device.type == "cuda"
