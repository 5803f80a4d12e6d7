"""Loss modules vs torch.nn: reprs, attributes, weight buffers in state dicts, float64 values and gradients."""

from __future__ import annotations

import copy
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml.nn.modules import loss as L

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def torch() -> Any:
    return pytest.importorskip("torch")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _sign(shape: tuple[int, ...], seed: int) -> tuple[str, np.ndarray]:
    return "const", np.where(_rng(seed).random(shape) < 0.5, -1.0, 1.0)


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    z = x - x.max(axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis, keepdims=True))


# forward arguments as NumPy arrays (floats get gradients) or plain values, built per case
Inputs = Callable[[], list[Any]]


def _regression() -> list[Any]:
    return [_rng(1).standard_normal((4, 5)) * 2, _rng(2).standard_normal((4, 5)) * 2]


def _classes() -> list[Any]:
    return [_rng(3).standard_normal((6, 4)), np.array([0, 3, 1, -100, 2, 3])]


def _classes_2d() -> list[Any]:
    return [_rng(4).standard_normal((2, 3, 2, 2)), _rng(5).integers(0, 3, (2, 2, 2))]


def _class_probs() -> list[Any]:
    return [_rng(6).standard_normal((5, 3)), np.exp(_log_softmax(_rng(7).standard_normal((5, 3)), 1))]


def _log_probs() -> list[Any]:
    return [_log_softmax(_rng(8).standard_normal((6, 4)), 1), np.array([0, 3, 1, 2, -100, 3])]


def _probs() -> list[Any]:
    return [_rng(9).uniform(0.05, 0.95, (4, 3)), _rng(10).uniform(0, 1, (4, 3))]


def _logits() -> list[Any]:
    return [_rng(11).standard_normal((4, 3)) * 3, (_rng(12).random((4, 3)) < 0.5).astype(np.float64)]


def _kl() -> list[Any]:
    target = np.exp(_log_softmax(_rng(14).standard_normal((3, 4)), 1))
    return [_log_softmax(_rng(13).standard_normal((3, 4)), 1), target]


def _kl_log() -> list[Any]:
    return [_log_softmax(_rng(15).standard_normal((3, 4)), 1), _log_softmax(_rng(16).standard_normal((3, 4)), 1)]


def _pair_target() -> list[Any]:
    return [_rng(17).standard_normal((5, 4)), _rng(18).standard_normal((5, 4)), _sign((5,), 19)]


def _ranking() -> list[Any]:
    return [_rng(20).standard_normal(6), _rng(21).standard_normal(6), _sign((6,), 22)]


def _triplet() -> list[Any]:
    return [_rng(23).standard_normal((5, 3)), _rng(24).standard_normal((5, 3)), _rng(25).standard_normal((5, 3))]


def _hinge() -> list[Any]:
    return [_rng(26).standard_normal((3, 4)) * 2, _sign((3, 4), 27)]


def _poisson() -> list[Any]:
    return [_rng(28).standard_normal((3, 4)), _rng(29).poisson(2.0, (3, 4)).astype(np.float64)]


def _poisson_rates() -> list[Any]:
    # a constant target: PyTorch's gradient for it is NaN where target <= 1 with full=True
    return [_rng(30).uniform(0.5, 3, (3, 4)), ("const", _rng(31).poisson(2.0, (3, 4)).astype(np.float64))]


def _gaussian() -> list[Any]:
    return [_rng(32).standard_normal((4, 3)), _rng(33).standard_normal((4, 3)), _rng(34).uniform(0.5, 2, (4, 1))]


def _ctc() -> list[Any]:
    # PyTorch's CTC backward returns a gradient that is right only after a log_softmax (it adds
    # exp(log_probs), which log_softmax's backward cancels): compare gradients of the logits
    logits = ("log_softmax", _rng(35).standard_normal((7, 3, 5)))  # (T, N, C)
    targets = np.array([[1, 2, 2], [3, 4, 0], [1, 1, 0]])  # padded (N, S)
    return [logits, targets, ("const", np.array([7, 6, 5])), ("const", np.array([3, 2, 2]))]


def _w(*shape: int, seed: int = 40) -> np.ndarray:
    return _rng(seed).uniform(0.5, 2.0, shape)


# (case id, class name, constructor kwargs (arrays become tensors), inputs)
CASES: list[tuple[str, str, dict[str, Any], Inputs]] = [
    ("l1", "L1Loss", {}, _regression),
    ("l1-sum", "L1Loss", {"reduction": "sum"}, _regression),
    ("mse", "MSELoss", {}, _regression),
    ("mse-none", "MSELoss", {"reduction": "none"}, _regression),
    ("smoothl1", "SmoothL1Loss", {"beta": 0.5}, _regression),
    ("huber", "HuberLoss", {"delta": 1.5, "reduction": "sum"}, _regression),
    ("ce", "CrossEntropyLoss", {}, _classes),
    ("ce-weight", "CrossEntropyLoss", {"weight": _w(4), "label_smoothing": 0.1}, _classes),
    ("ce-2d", "CrossEntropyLoss", {"weight": _w(3), "reduction": "none", "ignore_index": 1}, _classes_2d),
    ("ce-probs", "CrossEntropyLoss", {"label_smoothing": 0.2}, _class_probs),
    ("nll", "NLLLoss", {}, _log_probs),
    ("nll-weight", "NLLLoss", {"weight": _w(4), "reduction": "sum"}, _log_probs),
    ("bce", "BCELoss", {}, _probs),
    ("bce-weight", "BCELoss", {"weight": _w(3), "reduction": "none"}, _probs),
    ("bcelogits", "BCEWithLogitsLoss", {}, _logits),
    ("bcelogits-weights", "BCEWithLogitsLoss", {"weight": _w(4, 3), "pos_weight": _w(3, seed=41)}, _logits),
    ("kl", "KLDivLoss", {"reduction": "batchmean"}, _kl),
    ("kl-logtarget", "KLDivLoss", {"reduction": "sum", "log_target": True}, _kl_log),
    ("cosine", "CosineEmbeddingLoss", {"margin": 0.2}, _pair_target),
    ("ranking", "MarginRankingLoss", {"margin": 0.5, "reduction": "sum"}, _ranking),
    ("triplet", "TripletMarginLoss", {}, _triplet),
    ("triplet-swap", "TripletMarginLoss", {"margin": 2.0, "p": 1.0, "swap": True}, _triplet),
    ("hinge", "HingeEmbeddingLoss", {"margin": 2.0}, _hinge),
    ("multilabel", "MultiLabelSoftMarginLoss", {"weight": _w(3)}, _logits),
    ("poisson", "PoissonNLLLoss", {}, _poisson),
    ("poisson-full", "PoissonNLLLoss", {"log_input": False, "full": True, "reduction": "none"}, _poisson_rates),
    ("gaussian", "GaussianNLLLoss", {}, _gaussian),
    ("gaussian-full", "GaussianNLLLoss", {"full": True, "eps": 1e-3, "reduction": "sum"}, _gaussian),
    ("ctc", "CTCLoss", {}, _ctc),
    ("ctc-sum", "CTCLoss", {"blank": 0, "reduction": "sum", "zero_infinity": True}, _ctc),
]


def _public(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


def _args(lib: Any, v: Any) -> tuple[Any, Any]:
    """(the leaf whose gradient is compared or None, the forward argument) in ``lib`` (axonml or torch).

    Float arrays are leaves that require grad; ("const", a) is a constant; ("log_softmax", a) is
    ``log_softmax(leaf, -1)``.
    """
    if isinstance(v, tuple):
        kind, a = v
        if kind == "const":
            return None, lib.tensor(a)
        leaf = lib.tensor(a, requires_grad=True)
        return leaf, leaf.log_softmax(-1)
    if isinstance(v, np.ndarray):
        t = lib.tensor(v, requires_grad=v.dtype.kind == "f")
        return (t if v.dtype.kind == "f" else None), t
    return None, v


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_loss_matches_torch(torch: Any, case: tuple[str, str, dict[str, Any], Inputs]) -> None:
    _, name, kwargs, inputs = case
    m = getattr(L, name)(**{k: ax.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()})
    tm = getattr(torch.nn, name)(**{k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()})
    assert repr(m) == repr(tm)
    assert _public(m) == _public(tm)
    assert list(m.state_dict()) == list(tm.state_dict())
    assert list(m._buffers) == list(tm._buffers)  # None placeholders included
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(m.state_dict()[k].numpy(), v.numpy())
    args = inputs()
    leaves, xs = zip(*(_args(ax, a) for a in args))
    tleaves, txs = zip(*(_args(torch, a) for a in args))
    y, ty = m(*xs), tm(*txs)
    assert y.shape == tuple(ty.shape) and y.dtype == ax.float64
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    g0 = _rng(99).standard_normal(tuple(ty.shape))
    (y * ax.tensor(g0)).sum().backward()
    (ty * torch.tensor(g0)).sum().backward()
    for x, tx in zip(leaves, tleaves):
        if x is not None:
            np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_weight_buffers_follow_the_module(torch: Any) -> None:
    w = ax.tensor([1.0, 2.0, 0.5])
    m = L.CrossEntropyLoss(weight=w)
    assert m.weight is not None and list(dict(m.named_buffers())) == ["weight"]
    w.mul_(2.0)  # the buffer shares memory with the tensor given, as in PyTorch
    assert m.weight.tolist() == [2.0, 4.0, 1.0]
    m.double()
    assert m.weight.dtype == ax.float64
    # state dicts go both ways
    tm = torch.nn.CrossEntropyLoss(weight=torch.ones(3, dtype=torch.float64))
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    assert tm.weight.tolist() == [2.0, 4.0, 1.0]
    m.load_state_dict({"weight": np.array([3.0, 3.0, 3.0])})
    assert m.weight.tolist() == [3.0] * 3
    # no weight: a None placeholder, out of the state dict, and loading one is an unexpected key
    b = L.BCEWithLogitsLoss(pos_weight=ax.ones(2))
    assert dict(b._buffers) == {"weight": None, "pos_weight": b.pos_weight} and list(b.state_dict()) == ["pos_weight"]
    res = L.NLLLoss().load_state_dict({"weight": np.ones(3)}, strict=False)
    assert res.unexpected_keys == ["weight"]
    c = pickle.loads(pickle.dumps(b))
    assert dict(c._buffers).keys() == {"weight", "pos_weight"} and c.weight is None and c.pos_weight.tolist() == [1, 1]
    assert copy.deepcopy(m).weight.tolist() == [3.0] * 3
    assert isinstance(L.NLLLoss(), L._WeightedLoss) and not isinstance(L.BCEWithLogitsLoss(), L._WeightedLoss)


def test_legacy_reduction_flags_match_torch(torch: Any) -> None:
    for flags in ({"size_average": False}, {"reduce": False}, {"size_average": True, "reduce": True}):
        for name in ("L1Loss", "NLLLoss", "KLDivLoss", "PoissonNLLLoss", "MarginRankingLoss"):
            with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated") as rec:
                m = getattr(L, name)(**flags)
            assert rec[0].filename == __file__  # the warning points at the caller
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert m.reduction == getattr(torch.nn, name)(**flags).reduction


def test_loss_errors() -> None:
    with pytest.raises(ValueError, match="margin"):
        L.TripletMarginLoss(margin=0.0)
    with pytest.raises(ValueError, match="reduction"):
        L.MSELoss(reduction="avg")(ax.zeros(2), ax.zeros(2))
    with pytest.raises(TypeError):
        L.GaussianNLLLoss(True)  # type: ignore[misc]  # keyword-only, as PyTorch's
    with pytest.raises(ValueError, match="target"):
        L.CrossEntropyLoss()(ax.zeros(3, 4), ax.tensor([0, 1]))
