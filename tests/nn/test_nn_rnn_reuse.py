"""The recurrent scan's CPU memory reuse (``nn.prims.rnn.reused_empty``) and its feature-major LSTM path.

- A recycled array is handed out again only once nothing holds it: not while an array, a view,
  a Tensor or a saved graph node keeps it; small arrays are never cached.
- An LSTM run twice (training steps, sizes past the reuse threshold) gives the same outputs and
  gradients, and an output kept from the first run is not overwritten by the second.
- The feature-major CPU path and the N-major one (kept for arrays of other modules) agree.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

import axonml as ax
from axonml.nn.modules.rnn import LSTM
from axonml.nn.prims import rnn as rnn_prims
from axonml.nn.prims.rnn import reused_empty

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported:UserWarning")
BIG = (7 * (rnn_prims._REUSE_MIN_BYTES // 28 + 1),)  # float32 elements past the threshold


@pytest.fixture(autouse=True)
def _empty_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rnn_prims, "_REUSE", [])


def _base(a: np.ndarray) -> np.ndarray:
    return a if a.base is None else a.base


def _cached(*arrays: np.ndarray) -> bool:
    """Whether the cache holds exactly the base arrays of ``arrays``, in this order."""
    return len(rnn_prims._REUSE) == len(arrays) and all(r is _base(a) for r, a in zip(rnn_prims._REUSE, arrays))


def test_reuses_a_released_array_only() -> None:
    a = reused_empty(BIG, np.float32)
    assert a.shape == BIG and a.dtype == np.float32
    b = reused_empty(BIG, np.float32)
    assert not np.shares_memory(a, b)  # `a` is held here
    held = _base(a)
    del a
    c = reused_empty(BIG, np.float32)
    assert not np.shares_memory(c, b) and not np.shares_memory(c, held)  # the base array is still referenced
    del held
    gc.collect()
    d = reused_empty((BIG[0] // 7, 7), np.float32)  # same size, another shape: the freed array is recycled
    assert d.shape == (BIG[0] // 7, 7)
    assert len(rnn_prims._REUSE) == 3
    assert reused_empty(BIG, np.float64).dtype == np.float64  # a dtype of its own


def test_views_and_tensors_keep_an_array_taken() -> None:
    a = reused_empty(BIG, np.float32)
    view = a[1:5]
    t = ax.tensor(a[:0])  # a Tensor over a view of it
    del a
    b = reused_empty(BIG, np.float32)
    assert not np.shares_memory(b, view)
    del view, t
    gc.collect()
    c = reused_empty(BIG, np.float32)
    assert not np.shares_memory(c, b)
    assert len(rnn_prims._REUSE) == 2  # the first array came back


def test_small_arrays_are_not_cached() -> None:
    reused_empty((3, 4), np.float32)
    assert rnn_prims._REUSE == []


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rnn_prims, "_REUSE_MAX", 3)
    held = [reused_empty(BIG, np.float32) for _ in range(5)]  # all in use: later ones are not kept
    assert _cached(*held[:3])
    del held[0]
    gc.collect()
    again = reused_empty((2 * BIG[0],), np.float32)  # the free one makes room
    assert len(rnn_prims._REUSE) == 3 and rnn_prims._REUSE[-1] is _base(again)


def _step(m: LSTM, x: np.ndarray, hx: tuple[np.ndarray, np.ndarray]) -> tuple[ax.Tensor, list[np.ndarray]]:
    m.zero_grad()
    xt = ax.tensor(x, requires_grad=True)
    h0, c0 = (ax.tensor(a, requires_grad=True) for a in hx)
    out, (hn, cn) = m(xt, (h0, c0))
    ((out * 1.5).sum() + hn.sum() + (cn * cn).sum()).backward()
    grads = [xt.grad.numpy(), h0.grad.numpy(), c0.grad.numpy()] + [p.grad.numpy().copy() for p in m.parameters()]
    return out, grads


@pytest.mark.parametrize("kw", [{}, {"proj_size": 5, "bidirectional": True}], ids=["plain", "bi-proj"])
def test_repeated_steps_agree_and_kept_outputs_survive(kw: dict) -> None:
    ax.manual_seed(0)
    m = LSTM(8, 16, num_layers=2, **kw)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 64, 8)).astype(np.float32)  # the scan's arrays pass the reuse threshold
    states = 4 if kw else 2
    hx = (rng.standard_normal((states, 64, kw.get("proj_size", 16))).astype(np.float32),
          rng.standard_normal((states, 64, 16)).astype(np.float32))
    out1, g1 = _step(m, x, hx)
    kept = out1.detach().numpy().copy()
    out2, g2 = _step(m, x, hx)
    assert rnn_prims._REUSE  # the scan used the cache
    np.testing.assert_array_equal(out1.detach().numpy(), kept)  # the second step wrote elsewhere
    np.testing.assert_array_equal(out2.detach().numpy(), kept)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_array_equal(a, b)
    del out1, out2
    gc.collect()
    _, g3 = _step(m, x, hx)  # now from recycled arrays
    for a, b in zip(g1, g3, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kw", [{}, {"proj_size": 3, "bidirectional": True}, {"batch_first": True}],
                         ids=["plain", "bi-proj", "batch-first"])
def test_feature_major_path_matches_n_major(monkeypatch: pytest.MonkeyPatch, kw: dict) -> None:
    ax.manual_seed(1)
    m = LSTM(4, 6, num_layers=2, dtype=ax.float64, **kw)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 4) if kw.get("batch_first") else (5, 3, 4))
    states = 4 if kw.get("bidirectional") else 2
    hx = (rng.standard_normal((states, 3, kw.get("proj_size", 6))), rng.standard_normal((states, 3, 6)))
    out_fm, fm = _step(m, x, hx)
    monkeypatch.setattr(rnn_prims, "np", object())  # `xp is np` fails: the N-major array path (as for CuPy)
    out_nm, nm = _step(m, x, hx)
    np.testing.assert_allclose(out_fm.detach().numpy(), out_nm.detach().numpy(), rtol=1e-12, atol=1e-14)
    for a, b in zip(fm, nm, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_the_cache_holds_a_bounded_number_of_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rnn_prims, "_REUSE_MAX_BYTES", 3 * BIG[0] * 4)
    a, b = reused_empty(BIG, np.float32), reused_empty(BIG, np.float32)
    del a
    gc.collect()
    c = reused_empty((2 * BIG[0],), np.float32)  # the free array makes room first
    assert _cached(b, c)
    big = reused_empty((4 * BIG[0],), np.float32)  # past the bound, nothing free: not kept
    assert _cached(b, c) and big.shape == (4 * BIG[0],)
