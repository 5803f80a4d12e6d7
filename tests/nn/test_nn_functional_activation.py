"""nn.functional activations, softmax family, normalize, dropout and pad: harness + PyTorch values and gradients."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from scipy.special import erf

import axonml as ax
import axonml.nn.functional as F
from axonml.errors import AutogradError, DTypeError, ShapeError
from harness import HAS_TORCH, OpSpec, op_tests

needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")


def TF():
    import torch.nn.functional

    return torch.nn.functional


def _tf(name, **fixed):
    """``torch.nn.functional.<name>`` called with the spec's arguments (and ``fixed`` ones)."""
    return lambda *a, **kw: getattr(TF(), name)(*a, **fixed, **kw)


UNARY = (((3, 4),), ((2, 0, 3),), ((),), ((2, 3, 5),))
WIDE = (-4.0, 4.0)


def _np_softmax(x, dim):
    e = np.exp(x - np.max(x, axis=dim, keepdims=True, initial=-np.inf))
    return e / e.sum(axis=dim, keepdims=True)


def _softplus(x, beta=1.0, threshold=20.0):
    return np.where(beta * x > threshold, x, np.log1p(np.exp(np.minimum(beta * x, threshold))) / beta)


def _prelu(x, w):
    wv = w.reshape((-1,) + (1,) * (x.ndim - 2)) if w.size > 1 else w.reshape(())
    return np.where(x > 0, x, wv * x)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _np_normalize(x, p, dim):
    n = np.sum(np.abs(x) ** p, axis=dim, keepdims=True) ** (1 / p)
    return x / np.maximum(n, 1e-12)


def _np_pad(x, pad, mode="constant", value=0.0):
    pairs = [(x.ndim - 1 - i, pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)]
    for d, lo, hi in pairs:  # crop negative amounts first
        sl = [slice(None)] * x.ndim
        sl[d] = slice(max(-lo, 0), x.shape[d] - max(-hi, 0))
        x = x[tuple(sl)]
    width = [(0, 0)] * x.ndim
    for d, lo, hi in pairs:
        width[d] = (max(lo, 0), max(hi, 0))
    np_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    kw = {"constant_values": value} if mode == "constant" else {}
    return np.pad(x, width, mode=np_mode, **kw)


def _elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


SELU_A, SELU_S = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946

SPECS = [
    OpSpec("relu", F.relu, lambda x: np.maximum(x, 0), UNARY, torch_fn=_tf("relu")),
    OpSpec("relu6", F.relu6, lambda x: np.clip(x, 0, 6), UNARY, domain=(-3.0, 8.0), torch_fn=_tf("relu6")),
    OpSpec("leaky_relu", F.leaky_relu, lambda x, negative_slope: np.where(x > 0, x, x * negative_slope), UNARY,
           kwargs={"negative_slope": 0.2}, torch_fn=_tf("leaky_relu")),
    OpSpec("prelu", F.prelu, _prelu, (((2, 3, 4), (3,)), ((5, 3), (1,)), ((2, 3), (3,)), ((4,), (1,))),
           torch_fn=_tf("prelu")),
    OpSpec("elu", F.elu, _elu, UNARY, domain=WIDE, torch_fn=_tf("elu")),
    OpSpec("elu_alpha", F.elu, _elu, UNARY[:1], kwargs={"alpha": 0.5}, domain=WIDE, torch_fn=_tf("elu")),
    OpSpec("selu", F.selu, lambda x: SELU_S * _elu(x, SELU_A), UNARY, domain=WIDE, torch_fn=_tf("selu")),
    OpSpec("celu", F.celu, lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0) / alpha)), UNARY,
           kwargs={"alpha": 1.5}, domain=WIDE, torch_fn=_tf("celu")),
    OpSpec("gelu", F.gelu, lambda x: 0.5 * x * (1 + erf(x / math.sqrt(2))), UNARY, domain=WIDE,
           torch_fn=_tf("gelu")),
    OpSpec("gelu_tanh", F.gelu, lambda x, approximate: _gelu_tanh(x), UNARY, kwargs={"approximate": "tanh"},
           domain=WIDE, torch_fn=_tf("gelu")),
    OpSpec("silu", F.silu, lambda x: x / (1 + np.exp(-x)), UNARY, domain=WIDE, torch_fn=_tf("silu")),
    OpSpec("mish", F.mish, lambda x: x * np.tanh(_softplus(x)), UNARY, domain=WIDE, torch_fn=_tf("mish")),
    OpSpec("softplus", F.softplus, _softplus, UNARY, domain=(-30.0, 30.0), torch_fn=_tf("softplus")),
    OpSpec("softplus_beta", F.softplus, _softplus, UNARY[:2], kwargs={"beta": 2.0, "threshold": 3.0},
           domain=WIDE, torch_fn=_tf("softplus")),
    OpSpec("softsign", F.softsign, lambda x: x / (1 + np.abs(x)), UNARY, domain=WIDE, torch_fn=_tf("softsign")),
    OpSpec("hardtanh", F.hardtanh, lambda x, min_val, max_val: np.clip(x, min_val, max_val), UNARY,
           kwargs={"min_val": -0.5, "max_val": 1.5}, torch_fn=_tf("hardtanh")),
    OpSpec("hardsigmoid", F.hardsigmoid, lambda x: np.clip(x + 3, 0, 6) / 6, UNARY, domain=(-5.0, 5.0),
           torch_fn=_tf("hardsigmoid")),
    OpSpec("hardswish", F.hardswish, lambda x: x * np.clip(x + 3, 0, 6) / 6, UNARY, domain=(-5.0, 5.0),
           torch_fn=_tf("hardswish")),
    OpSpec("sigmoid", F.sigmoid, lambda x: 1 / (1 + np.exp(-x)), UNARY, domain=WIDE, torch_fn=_tf("sigmoid")),
    OpSpec("tanh", F.tanh, np.tanh, UNARY, domain=WIDE, torch_fn=_tf("tanh")),
    OpSpec("logsigmoid", F.logsigmoid, lambda x: -np.logaddexp(0, -x), UNARY, domain=(-40.0, 40.0),
           torch_fn=_tf("logsigmoid")),
    OpSpec("softmax", F.softmax, _np_softmax, (((3, 4),), ((2, 0),), ((2, 3, 4),)), kwargs={"dim": 1},
           torch_fn=_tf("softmax")),
    OpSpec("log_softmax", F.log_softmax, lambda x, dim: np.log(_np_softmax(x, dim)), (((3, 4),), ((2, 3, 4),)),
           kwargs={"dim": -1}, torch_fn=_tf("log_softmax")),
    OpSpec("softmin", F.softmin, lambda x, dim: _np_softmax(-x, dim), (((3, 4),), ((2, 3, 4),)),
           kwargs={"dim": 0}, torch_fn=_tf("softmin")),
    OpSpec("threshold", F.threshold, lambda x, threshold, value: np.where(x > threshold, x, value), UNARY,
           kwargs={"threshold": 0.3, "value": -1.5}, torch_fn=_tf("threshold")),
    OpSpec("glu", F.glu, lambda x, dim: np.split(x, 2, dim)[0] / (1 + np.exp(-np.split(x, 2, dim)[1])),
           (((3, 4),), ((2, 6, 3),)), kwargs={"dim": 1}, torch_fn=_tf("glu")),
    OpSpec("glu_last", F.glu, lambda x: np.split(x, 2, -1)[0] / (1 + np.exp(-np.split(x, 2, -1)[1])),
           (((3, 4),), ((0, 2),)), torch_fn=_tf("glu")),
    OpSpec("tanhshrink", F.tanhshrink, lambda x: x - np.tanh(x), UNARY, torch_fn=_tf("tanhshrink")),
    OpSpec("softshrink", F.softshrink, lambda x, lambd: np.where(x > lambd, x - lambd,
                                                                  np.where(x < -lambd, x + lambd, 0.0)),
           UNARY, kwargs={"lambd": 0.7}, torch_fn=_tf("softshrink")),
    OpSpec("hardshrink", F.hardshrink, lambda x: np.where(np.abs(x) > 0.5, x, 0.0), UNARY,
           torch_fn=_tf("hardshrink")),
    OpSpec("normalize", F.normalize, lambda x: _np_normalize(x, 2, 1), (((3, 4),), ((2, 3, 5),)),
           torch_fn=_tf("normalize")),
    OpSpec("normalize_p1_dim0", F.normalize, lambda x, p, dim: _np_normalize(x, p, dim), (((3, 4),),),
           kwargs={"p": 1.0, "dim": 0}, torch_fn=_tf("normalize")),
    OpSpec("normalize_p3", F.normalize, lambda x, p, dim: _np_normalize(x, p, dim), (((3, 4),),),
           kwargs={"p": 3.0, "dim": -1}, torch_fn=_tf("normalize")),
]

# padding: (input shape, pad, mode, value); each as its own spec (the arguments differ)
PAD_CASES = [
    ((2, 3, 4), (1, 2), "constant", 0.0),
    ((2, 3, 4), (1, 0, 2, 1), "constant", 1.5),
    ((2, 3, 4), (-1, 2, 1, -1), "constant", 0.0),
    ((3, 4), (1, 1, 0, 0), "constant", -2.0),
    ((2, 3, 5), (2, 3), "reflect", None),
    ((1, 2, 4, 5), (1, 2, 3, 0), "reflect", None),
    ((2, 3, 4), (2, 3), "replicate", None),
    ((1, 2, 3, 4), (2, 1, 1, 2), "replicate", None),
    ((1, 1, 2, 3, 4), (1, 1, 1, 0, 0, 2), "replicate", None),
    ((2, 3, 4), (2, 3), "circular", None),
    ((1, 2, 3, 4), (1, 4, 3, 1), "circular", None),
    ((1, 2, 5), (-1, 2), "circular", None),
]


def _pad_spec(i, shape, pad, mode, value):
    kw = {"mode": mode} if value is None else {"mode": mode, "value": value}
    return OpSpec("pad" if i == 0 else f"pad_{i}_{mode}", lambda x, **k: F.pad(x, pad, **k),
                  lambda x, **k: _np_pad(x, pad, k["mode"], k.get("value") or 0.0), ((shape,),), kwargs=kw,
                  torch_fn=lambda x, **k: TF().pad(x, pad, **k))


SPECS += [_pad_spec(i, *c) for i, c in enumerate(PAD_CASES)]


def _mask(shape, p, seed=0):
    return (ax.rand(shape, generator=ax.Generator().manual_seed(seed)).numpy() >= p).astype(np.float64)


def _gen():
    return ax.Generator().manual_seed(0)


ALPHA_P = 0.3
_AP = -SELU_A * SELU_S


def _np_alpha_dropout(x, shape):
    a = 1 / math.sqrt((_AP * _AP * ALPHA_P + 1) * (1 - ALPHA_P))
    m = _mask(shape, ALPHA_P)
    return x * m * a - (m - 1) * _AP * a - _AP * a * ALPHA_P


# random ops: a fresh generator with one seed on every call, so the mask is the same every time. The
# reference draws its mask from a CPU generator, so these specs run on the CPU; test_dropout_cuda checks CUDA.
SPECS += [
    OpSpec("dropout", lambda x: F.dropout(x, 0.4, generator=_gen()),
           lambda x: x * _mask(x.shape, 0.4) / 0.6, (((5, 6),), ((0, 3),), ((),)), cuda=False),
    OpSpec("dropout1d", lambda x: F.dropout1d(x, 0.5, generator=_gen()),
           lambda x: x * _mask((*x.shape[:2], 1), 0.5) * 2, (((3, 4, 5),),), cuda=False),
    OpSpec("dropout2d", lambda x: F.dropout2d(x, 0.5, generator=_gen()),
           lambda x: x * _mask((*x.shape[:2], 1, 1), 0.5) * 2, (((3, 4, 2, 3),),), cuda=False),
    OpSpec("dropout3d", lambda x: F.dropout3d(x, 0.5, generator=_gen()),
           lambda x: x * _mask((*x.shape[:2], 1, 1, 1), 0.5) * 2, (((2, 4, 2, 1, 3),),), cuda=False),
    OpSpec("alpha_dropout", lambda x: F.alpha_dropout(x, ALPHA_P, True, generator=_gen()),
           lambda x: _np_alpha_dropout(x, x.shape), (((5, 6),),), cuda=False),
    OpSpec("feature_alpha_dropout", lambda x: F.feature_alpha_dropout(x, ALPHA_P, True, generator=_gen()),
           lambda x: _np_alpha_dropout(x, (*x.shape[:2], 1)), (((3, 4, 5),),), cuda=False),
]

globals().update(op_tests(SPECS))

# functions tested by plain tests below instead of the harness
NONDIFF_NAMES = ["one_hot"]
INPLACE = ["relu_", "hardtanh_", "leaky_relu_", "elu_", "selu_", "celu_", "threshold_"]


def test_every_function_is_tested():
    names = {s.name for s in SPECS} | set(NONDIFF_NAMES) | set(INPLACE)
    missing = sorted(n for n in F.activation.__all__ if n not in names)
    assert not missing, f"activation functions without a test: {missing}"


# ----- PyTorch parity of values and gradients (float64) ---------------------------------------------
# PyTorch's hardsigmoid backward multiplies by a float32 1/6 even in float64
TORCH_GRAD_RTOL = {"hardsigmoid": 1e-7}


def check_torch_grad(spec, shapes):
    import torch

    arrays = spec.make_inputs(shapes)
    idx = list(spec.grad_inputs) if spec.grad_inputs is not None else [
        i for i, a in enumerate(arrays) if a.dtype.kind == "f"]
    ours = [ax.tensor(a, requires_grad=i in idx) for i, a in enumerate(arrays)]
    theirs = [torch.tensor(a, requires_grad=i in idx) for i, a in enumerate(arrays)]
    out = spec.fn(*ours, **spec.kwargs)
    tout = spec.torch_fn(*theirs, **spec.kwargs)
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-9, atol=1e-12,
                               err_msg=f"{spec.name}: float64 value vs torch")
    w = np.random.default_rng(7).uniform(0.5, 1.5, size=tuple(tout.shape))
    grads = ax.autograd.grad((out * ax.tensor(w)).sum(), [ours[i] for i in idx], allow_unused=True) if idx else []
    tgrads = torch.autograd.grad((tout * torch.tensor(w)).sum(), [theirs[i] for i in idx], allow_unused=True)
    for i, g, tg in zip(idx, grads, tgrads):
        expected = np.zeros_like(arrays[i]) if tg is None else tg.numpy()
        got = np.zeros_like(arrays[i]) if g is None else g.numpy()
        rtol = TORCH_GRAD_RTOL.get(spec.name, 1e-8)
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-10, err_msg=f"{spec.name}: grad {i} vs torch")


TORCH_CASES = [pytest.param(s, sh, id=f"{s.name}-{i}") for s in SPECS if s.torch_fn is not None
               for i, sh in enumerate(s.shapes)]


@pytest.mark.torch
@needs_torch
@pytest.mark.parametrize(("spec", "shapes"), TORCH_CASES)
def test_torch_values_and_gradients(spec, shapes):
    check_torch_grad(spec, shapes)


@needs_torch
def test_kinks_and_extremes_match_torch():
    import torch

    # the kinks (0, +-0.5, +-1, +-3, 6, the softplus threshold 20) and the tails; the gradient at each
    # kink is PyTorch's one-sided choice. atol: elu's gradient comes from expm1's output (exp(-50) - 1 + 1
    # is 0 in float64, PyTorch computes exp(-50) = 2e-22 directly); the sigmoid primitive loses relative
    # precision in its far negative tail
    pts = [-1e4, -50.0, -20.0, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 6.0, 20.0, 21.0, 50.0, 1e4]
    for name, kw in [("relu", {}), ("leaky_relu", {}), ("elu", {}), ("selu", {}), ("celu", {}), ("gelu", {}),
                     ("silu", {}), ("mish", {}), ("softplus", {}), ("logsigmoid", {}), ("softsign", {}),
                     ("hardswish", {}), ("hardsigmoid", {}), ("relu6", {}), ("hardtanh", {}), ("tanhshrink", {}),
                     ("softshrink", {}), ("hardshrink", {}), ("gelu", {"approximate": "tanh"}), ("sigmoid", {}),
                     ("tanh", {}), ("threshold", {"threshold": 1.0, "value": -2.0})]:
        x = ax.tensor(pts, dtype=ax.float64, requires_grad=True)
        tx = torch.tensor(pts, dtype=torch.float64, requires_grad=True)
        y, ty = getattr(F, name)(x, **kw), getattr(TF(), name)(tx, **kw)
        y.sum().backward()
        ty.sum().backward()
        # sigmoid(-20) is 0.5 * (1 + tanh(-10)) there; PyTorch's hardsigmoid gradient uses a float32 1/6
        rtol = 1e-7 if name in ("sigmoid", "silu", "hardsigmoid") else 1e-12
        np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=rtol, atol=1e-16, err_msg=name)
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=rtol, atol=1e-16, err_msg=name)
        nan = getattr(F, name)(ax.tensor([math.nan], dtype=ax.float64), **kw).item()
        assert math.isnan(nan) == math.isnan(getattr(TF(), name)(torch.tensor([math.nan]), **kw).item()), name


# ----- in-place forms -------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "kw"), [("relu", {}), ("relu6", {}), ("leaky_relu", {"negative_slope": 0.1}),
                                          ("elu", {}), ("selu", {}), ("celu", {}), ("silu", {}), ("mish", {}),
                                          ("hardtanh", {}), ("hardsigmoid", {}), ("hardswish", {}),
                                          ("threshold", {"threshold": 0.1, "value": 2.0})])
def test_inplace_writes_input_and_keeps_gradient(name, kw):
    data = np.random.default_rng(0).uniform(-4, 4, size=(3, 4))
    expected = getattr(F, name)(ax.tensor(data), **kw)
    x = ax.tensor(data)
    out = getattr(F, name)(x, inplace=True, **kw)
    assert out is x and np.allclose(x.numpy(), expected.numpy())
    # through a non-leaf: the gradient equals the out-of-place one
    leaf = ax.tensor(data, requires_grad=True)
    h = leaf * 1.0
    getattr(F, name)(h, inplace=True, **kw).sum().backward()
    ref = ax.tensor(data, requires_grad=True)
    getattr(F, name)(ref, **kw).sum().backward()
    np.testing.assert_allclose(leaf.grad.numpy(), ref.grad.numpy())
    with pytest.raises(AutogradError, match="leaf"):
        getattr(F, name)(ax.tensor(data, requires_grad=True), inplace=True, **kw)


def test_underscore_aliases():
    for name, args in [("relu_", ()), ("hardtanh_", (-0.5, 0.5)), ("leaky_relu_", (0.3,)), ("elu_", ()),
                       ("selu_", ()), ("celu_", (2.0,)), ("threshold_", (0.2, -1.0))]:
        data = np.linspace(-2, 2, 7)
        x = ax.tensor(data)
        assert getattr(F, name)(x, *args) is x
        np.testing.assert_allclose(x.numpy(), getattr(F, name[:-1])(ax.tensor(data), *args).numpy())


# ----- dtypes, errors, legacy -----------------------------------------------------------------------
def test_dtypes_are_kept():
    for d in (ax.float16, ax.float32, ax.float64):
        x = ax.tensor([-1.0, 0.5, 2.0], dtype=d)
        for name in ("relu", "gelu", "silu", "elu", "softplus", "logsigmoid", "hardswish", "mish"):
            assert getattr(F, name)(x).dtype is d, (name, d)
    assert F.relu(ax.tensor([-1, 2])).tolist() == [0, 2]  # integers stay integers, as torch.relu


def test_errors():
    with pytest.raises(DTypeError, match="gelu"):
        F.gelu(ax.tensor([1, 2]))
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(ax.zeros(2), approximate="fast")
    with pytest.raises(ShapeError, match="even"):
        F.glu(ax.zeros(2, 3), dim=1)
    with pytest.raises(ShapeError, match="0-d"):
        F.glu(ax.zeros(()))
    with pytest.raises(ShapeError, match=r"prelu.*\(4,\)"):
        F.prelu(ax.zeros(2, 3), ax.zeros(4))
    with pytest.raises(ValueError, match="min_val"):
        F.hardtanh(ax.zeros(2), 1.0, -1.0)
    with pytest.raises(ValueError, match="alpha"):
        F.celu(ax.zeros(2), 0.0)
    with pytest.raises(ValueError, match="lambd"):
        F.softshrink(ax.zeros(2), -1.0)


def test_softmax_implicit_dim_warns_like_torch():
    x = ax.tensor(np.arange(6.0).reshape(2, 3))
    with pytest.warns(UserWarning, match="Implicit dimension"):
        out = F.softmax(x)
    np.testing.assert_allclose(out.numpy(), _np_softmax(np.arange(6.0).reshape(2, 3), 1))  # dim 1 for 2-D
    with pytest.warns(UserWarning):
        assert F.log_softmax(ax.zeros(3)).shape == (3,)
    with pytest.warns(UserWarning):
        np.testing.assert_allclose(F.softmin(ax.zeros(2, 2, 2)).numpy(), 0.5)  # dim 0 for 3-D
    assert F.softmax(ax.tensor([1, 2]), 0, dtype=ax.float64).dtype is ax.float64


def test_normalize_zero_rows_and_out():
    x = ax.tensor([[0.0, 0.0], [3.0, 4.0]], requires_grad=True)
    y = F.normalize(x)
    np.testing.assert_allclose(y.detach().numpy(), [[0.0, 0.0], [0.6, 0.8]], rtol=1e-6)
    y.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()
    out = ax.zeros(2, 2)
    assert F.normalize(ax.tensor([[3.0, 4.0], [1.0, 0.0]]), dim=1, out=out) is out
    np.testing.assert_allclose(out.numpy(), [[0.6, 0.8], [1.0, 0.0]], rtol=1e-6)


def test_one_hot_is_reexported():
    assert F.one_hot is ax.one_hot
    assert F.one_hot(ax.tensor([0, 2]), 3).tolist() == [[1, 0, 0], [0, 0, 1]]


# ----- dropout --------------------------------------------------------------------------------------
def test_dropout_eval_and_edge_probabilities():
    x = ax.randn(4, 5)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    assert F.alpha_dropout(x, 0.5) is x  # alpha dropout defaults to training=False, as PyTorch
    assert F.dropout(x, 1.0).tolist() == [[0.0] * 5] * 4
    assert F.dropout1d(ax.randn(2, 3, 4), 1.0).abs().sum().item() == 0.0
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            F.dropout(x, bad)


def test_dropout_statistics_and_reproducibility():
    x = ax.ones(200, 500)
    y = F.dropout(x, 0.3).numpy()
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    ax.manual_seed(5)
    a = F.dropout(x, 0.3).numpy()
    ax.manual_seed(5)
    np.testing.assert_array_equal(a, F.dropout(x, 0.3).numpy())
    g1 = F.dropout(x, 0.3, generator=ax.Generator().manual_seed(1)).numpy()
    g2 = F.dropout(x, 0.3, generator=ax.Generator().manual_seed(1)).numpy()
    np.testing.assert_array_equal(g1, g2)
    # the same seed gives the same mask in float32 and float64
    g3 = F.dropout(x.double(), 0.3, generator=ax.Generator().manual_seed(1)).numpy()
    np.testing.assert_array_equal(g1 != 0, g3 != 0)


def test_channel_dropout_zeroes_whole_channels():
    x = ax.ones(8, 16, 5, 6)
    y = F.dropout2d(x, 0.5).numpy()
    per_channel = y.reshape(8, 16, -1)
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1))
    assert 0.3 < (per_channel[..., 0] == 0).mean() < 0.7
    u = F.dropout1d(ax.ones(16, 7), 0.5).numpy()  # unbatched (C, L)
    assert np.all((u == 0).all(-1) | (u == 2.0).all(-1))
    v = F.dropout3d(ax.ones(4, 2, 3, 3), 0.5).numpy()  # unbatched (C, D, H, W)
    assert np.all((v.reshape(4, -1) == 0).all(-1) | (v.reshape(4, -1) == 2.0).all(-1))
    with pytest.raises(ShapeError, match="dropout1d"):
        F.dropout1d(ax.ones(2, 3, 4, 5))
    with pytest.warns(UserWarning, match="3D input"):
        w = F.dropout2d(ax.ones(4, 8, 5), 0.5).numpy()  # read as (N, C, L), as PyTorch
    assert np.all((w == 0).all(-1) | (w == 2.0).all(-1))


def test_alpha_dropout_keeps_mean_and_variance():
    x = ax.randn(400, 500, generator=ax.Generator().manual_seed(3), dtype=ax.float64)
    for fn in (F.alpha_dropout, F.feature_alpha_dropout):
        y = fn(x, 0.2, True).numpy()
        assert abs(y.mean()) < 0.02 and abs(y.std() - 1.0) < 0.02, fn.__name__


def test_dropout_inplace_and_gradient():
    x = ax.ones(3, 4)
    assert F.dropout(x, 0.5, inplace=True, generator=_gen()) is x
    np.testing.assert_array_equal(x.numpy(), _mask((3, 4), 0.5) * 2)
    leaf = ax.ones(3, 4, requires_grad=True)
    F.dropout(leaf, 0.5, generator=_gen()).sum().backward()
    np.testing.assert_array_equal(leaf.grad.numpy(), _mask((3, 4), 0.5) * 2)
    u = ax.ones(4, 6)
    assert F.dropout1d(u, 0.5, inplace=True) is u


# ----- padding --------------------------------------------------------------------------------------
def test_pad_errors_and_defaults():
    x = ax.zeros(2, 3)
    with pytest.raises(ShapeError, match="divisible by 2"):
        F.pad(x, (1,))
    with pytest.raises(ShapeError, match="dimensions"):
        F.pad(x, (1, 1, 1, 1, 1, 1))
    with pytest.raises(ShapeError, match="smaller than"):
        F.pad(x, (3, 0), mode="reflect")
    with pytest.raises(ShapeError, match="more than once"):
        F.pad(x, (4, 0), mode="circular")
    with pytest.raises(ShapeError, match="negative size"):
        F.pad(x, (-2, -2))
    with pytest.raises(ValueError, match="mode"):
        F.pad(x, (1, 1), mode="mirror")
    with pytest.raises(ValueError, match="value"):
        F.pad(x, (1, 1), mode="reflect", value=2.0)
    y = F.pad(ax.tensor([1, 2], dtype=ax.int32), (1, 1), value=7)
    assert y.dtype is ax.int32 and y.tolist() == [7, 1, 2, 7]
    z = ax.ones(2)
    assert F.pad(z, (0, 0)) is not z and F.pad(z, (0, 0)).tolist() == [1.0, 1.0]


@needs_torch
def test_pad_big_reflect_matches_torch():
    import torch

    data = np.random.default_rng(0).normal(size=(2, 3, 6, 7))
    for mode, pad in [("reflect", (5, 6, 5, 0)), ("replicate", (9, 1, 0, 7)), ("circular", (7, 7, 6, 0))]:
        ours = F.pad(ax.tensor(data), pad, mode=mode).numpy()
        np.testing.assert_array_equal(ours, TF().pad(torch.tensor(data), pad, mode=mode).numpy())


def test_warnings_are_not_raised_for_plain_calls():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.softmax(ax.zeros(2, 3), dim=1)
        F.dropout2d(ax.ones(2, 3, 4, 4), 0.5)


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize(("name", "shape"), [("dropout", (400, 500)), ("dropout1d", (64, 32, 7)),
                                             ("dropout2d", (64, 32, 3, 4))])
def test_dropout_cuda(name: str, shape: tuple[int, ...]) -> None:
    """On CUDA: kept values scaled by 1/(1-p), the kept share near 1-p, a feature mask constant over the
    spatial dims, one seed giving one mask, and the gradient being that same mask."""
    p = 0.3
    fn = getattr(F, name)
    x = ax.ones(shape, device="cuda", requires_grad=True)
    y = fn(x, p, generator=ax.Generator("cuda").manual_seed(5))
    got = y.detach().cpu().numpy()
    assert set(np.unique(got).tolist()) <= {0.0, float(np.float32(1 / (1 - p)))}
    assert abs((got > 0).mean() - (1 - p)) < 0.03
    if name != "dropout":  # one draw per (sample, channel)
        flat = got.reshape(*shape[:2], -1)
        assert (flat == flat[..., :1]).all()
    again = fn(x, p, generator=ax.Generator("cuda").manual_seed(5)).detach().cpu().numpy()
    assert np.array_equal(again, got)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.cpu().numpy(), got)


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("dtype", [ax.float32, ax.float64])
def test_dropout_cuda_fused_equals_mask_times_input(dtype: Any) -> None:
    """CUDA dropout draws its mask and multiplies in one launch: the same mask as ``_keep`` from the same seed,
    the same product bits, the mask as gradient, and a differentiable gradient under create_graph."""
    from axonml.nn.functional.activation import _keep

    p = 0.25
    rng = np.random.default_rng(0)
    x = ax.tensor(rng.standard_normal((37, 53)), dtype=dtype, device="cuda", requires_grad=True)
    y = F.dropout(x, p, generator=ax.Generator("cuda").manual_seed(11))
    assert type(y.grad_fn).__name__ == "DropoutMask"
    mask = _keep(x, tuple(x.shape), p, 1.0 / (1.0 - p), ax.Generator("cuda").manual_seed(11))
    np.testing.assert_array_equal(y.detach().cpu().numpy(), (x.detach()._data * mask).get())
    (g,) = ax.autograd.grad((y * y).sum(), [x], create_graph=True)
    np.testing.assert_allclose(g.detach().cpu().numpy(), (2 * x.detach()._data * mask * mask).get(), rtol=1e-6)
    (gg,) = ax.autograd.grad(g.sum(), [x])
    np.testing.assert_allclose(gg.cpu().numpy(), (2 * mask * mask).get(), rtol=1e-6)
