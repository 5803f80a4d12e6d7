"""The direct CPU convolutions (``_conv_cpu_direct``: batch-last compiled loops, no im2col) give PyTorch's
values: forward, input, weight and bias gradients, second derivatives, transposed convolutions, in
float64 and float32, with stride along the height, dilation, asymmetric padding, odd channel counts,
batch 1 and non-contiguous inputs; the rule picks them for LeNet's layers and not for ResNet's; the
packed input a forward keeps serves its weight gradient only when sound; without numba the layers
keep their NumPy paths.
"""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
from axonml.nn.functional.conv import conv2d, conv_transpose2d
from axonml.nn.prims import _conv_cpu, _conv_cpu_blas, _conv_cpu_direct, _conv_cpu_jit
from harness import HAS_TORCH
from torch_ref import assert_second_derivatives_match

needs_numba = pytest.mark.skipif(_conv_cpu_jit.kernels() is None, reason="numba is not installed")


def needs_torch(fn):
    """Marks a test that compares with PyTorch."""
    return pytest.mark.torch(pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")(fn))


def _count(monkeypatch, name):
    """Count the calls of ``_conv_cpu_direct.name``."""
    calls = [0]
    real = getattr(_conv_cpu_direct, name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(_conv_cpu_direct, name, counted)
    return calls


@pytest.fixture
def forced(monkeypatch):
    """The direct loops for every shape they can run (the rule's limits lifted)."""
    for name in ("_ROWS_MAX_CHANNELS", "_ROWS_MAX_REDUCTION", "_ROWS_MAX_BYTES", "_WEIGHT_MAX_CHANNELS",
                 "_WEIGHT_MAX_REDUCTION"):
        monkeypatch.setattr(_conv_cpu_direct, name, 1 << 40)
    monkeypatch.setattr(_conv_cpu_direct, "_MIN_ROW", 0)
    return {name: _count(monkeypatch, name) for name in ("forward", "weight", "transposed")}


@pytest.fixture(params=["threads", "one-thread"])
def split_mode(request, monkeypatch):
    """Every split forced over two threads (size threshold 0), or none."""
    if request.param == "threads":
        monkeypatch.setattr(_conv_cpu, "_MIN_SPLIT_BYTES", 0)
        monkeypatch.setattr(_conv_cpu_blas, "num_threads", lambda: 2)
    else:
        monkeypatch.setattr(_conv_cpu_blas, "num_threads", lambda: 1)
    return request.param


def _check(op, xs, ws, kw, dtype=np.float64, bias=True, make_x=None):
    """Values and all first-order gradients of ``op`` against PyTorch's."""
    import torch

    rng = np.random.default_rng(0)
    groups = kw.get("groups", 1)
    cout = ws[1] * groups if "transpose" in op else ws[0]
    x_np = rng.standard_normal(xs).astype(dtype)
    arrays = [x_np, rng.standard_normal(ws).astype(dtype)] + ([rng.standard_normal(cout).astype(dtype)] if bias else [])
    ours = [ax.tensor(a, requires_grad=True) for a in arrays]
    if make_x is not None:  # a non-contiguous input holding the same values
        ours[0] = make_x(x_np)
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    fn = conv2d if op == "conv2d" else conv_transpose2d
    y, ty = fn(*ours, **kw), getattr(torch.nn.functional, op)(*theirs, **kw)
    tol = 1e-10 if dtype == np.float64 else 2e-5
    ref = ty.detach().numpy()
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=tol, atol=tol * float(np.abs(ref).max()))
    g = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    (y * ax.tensor(g)).sum().backward()
    ty.backward(torch.tensor(g))
    leaves = ours[1:] if make_x is not None else ours
    for a, t in zip(leaves, theirs[len(ours) - len(leaves):]):
        want = t.grad.numpy()
        np.testing.assert_allclose(a.grad.numpy(), want, rtol=tol, atol=tol * float(np.abs(want).max()))


CASES = [
    ((3, 1, 12, 12), (6, 1, 5, 5), {"padding": 2}),  # LeNet's first layer, smaller
    ((2, 6, 9, 9), (16, 6, 5, 5), {}),  # LeNet's second
    ((2, 3, 9, 8), (5, 3, 3, 3), {"stride": (2, 1), "padding": 1}),  # stride along the height only
    ((2, 4, 9, 10), (3, 4, 3, 2), {"dilation": (2, 3), "padding": (2, 1)}),
    ((1, 2, 7, 6), (7, 2, 4, 4), {"padding": "same"}),  # batch 1; padding 1 before, 2 after
    ((2, 5, 6, 7), (1, 5, 1, 7), {"padding": (0, 3)}),  # one output channel, a 7-wide kernel
    ((3, 2, 5, 5), (4, 2, 1, 1), {}),  # 1x1
]


@needs_numba
@needs_torch
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize(("xs", "ws", "kw"), CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_direct_convolution_matches_torch(forced, split_mode, xs, ws, kw, dtype):
    _check("conv2d", xs, ws, kw, dtype)
    transposed = 1 if kw.get("stride", 1) == 1 else 0  # stride 2 along the height: col2im
    assert forced["transposed"][0] == transposed and forced["weight"][0] == 1
    assert forced["forward"][0] == 1 + transposed  # a transposed convolution runs as a forward


@needs_numba
@needs_torch
def test_direct_convolution_of_non_contiguous_input_and_no_bias(forced):
    def make_x(a):  # the same values through a transposed, sliced view
        return ax.tensor(np.ascontiguousarray(a.transpose(0, 1, 3, 2))).transpose(2, 3)[:, ::1]

    _check("conv2d", (2, 3, 7, 9), (4, 3, 3, 3), {"padding": 1}, bias=False, make_x=make_x)
    assert forced["forward"][0] == 1


@needs_numba
@needs_torch
def test_direct_gradients_of_a_sum_read_a_broadcast_gradient(forced):
    """``y.sum()`` sends a read-only, zero-stride gradient into the packing loops."""
    import torch

    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    ax_x, ax_w = ax.tensor(x, requires_grad=True), ax.tensor(w, requires_grad=True)
    conv2d(ax_x, ax_w, padding=1).sum().backward()
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    torch.nn.functional.conv2d(tx, tw, padding=1).sum().backward()
    np.testing.assert_allclose(ax_x.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ax_w.grad.numpy(), tw.grad.numpy(), rtol=1e-10, atol=1e-10)
    assert forced["weight"][0] == 1 and forced["transposed"][0] == 1


@needs_numba
@needs_torch
@pytest.mark.parametrize(("xs", "ws", "kw"), [
    ((2, 6, 5, 5), (6, 4, 3, 3), {"padding": 1}),
    ((2, 3, 4, 6), (3, 5, 5, 5), {}),
    ((2, 3, 5, 4), (3, 2, 3, 3), {"dilation": 2, "output_padding": 1}),
])
def test_direct_transposed_convolution_matches_torch(forced, xs, ws, kw):
    _check("conv_transpose2d", xs, ws, kw)
    assert forced["transposed"][0] >= 1


@needs_numba
@needs_torch
def test_direct_second_derivatives_match_torch(forced):
    import torch

    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((2, 3, 8, 7)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)]
    assert_second_derivatives_match(lambda *a: conv2d(*a, padding=1),
                                    lambda *a: torch.nn.functional.conv2d(*a, padding=1), arrays)
    assert forced["forward"][0] >= 2 and forced["weight"][0] >= 2 and forced["transposed"][0] >= 2


def test_the_rule_picks_lenet_and_not_resnet():
    jit = _conv_cpu_jit.kernels()

    def pays(xs, m, kernel, weight, dtype=np.float32, stride=(1, 1), pad=(0, 0), groups=1):
        x = np.zeros(xs, dtype)
        return _conv_cpu_direct.pays(x, m, kernel, np.dtype(dtype), stride, pad, groups, weight) is not None

    lenet = [((64, 1, 28, 28), 6, False), ((64, 1, 28, 28), 6, True), ((64, 6, 14, 14), 16, False),
             ((64, 6, 14, 14), 16, True), ((64, 16, 10, 10), 6, False)]  # the last: the input gradient
    assert all(pays(xs, m, (5, 5), w) for xs, m, w in lenet) == (jit is not None)
    assert pays((32, 3, 32, 32), 64, (3, 3), False) == (jit is not None)  # a stem: r = 27
    assert not pays((32, 64, 32, 32), 64, (3, 3), False) and not pays((32, 64, 32, 32), 64, (3, 3), True)
    assert not pays((1, 6, 14, 14), 16, (5, 5), False)  # batch 1, rows of 14: too short
    assert not pays((64, 6, 14, 14), 16, (5, 5), False, stride=(1, 2))
    assert not pays((64, 6, 14, 14), 16, (5, 5), False, groups=2)
    assert not pays((64, 6, 14, 14), 16, (5, 5), False, dtype=np.float16)
    assert not pays((0, 6, 14, 14), 16, (5, 5), False)
    assert _conv_cpu_direct.pays(np.zeros((64, 6, 14, 14), np.float32), 16, (5,), np.dtype(np.float32), (1,),
                                 (0,), 1, False) is None  # 1-D


@needs_torch
def test_without_numba_the_numpy_paths_run(monkeypatch):
    monkeypatch.setattr(_conv_cpu_jit, "ENABLED", False)
    monkeypatch.setattr(_conv_cpu_direct, "_MIN_ROW", 0)
    calls = _count(monkeypatch, "forward")
    _check("conv2d", (2, 6, 9, 9), (16, 6, 5, 5), {}, np.float32)
    assert calls[0] == 0


@needs_numba
def test_kept_packed_input_serves_the_weight_gradient_only_when_sound(forced, monkeypatch):
    """A forward keeps its packed input for the weight gradient: not without a graph, not under create_graph."""
    _conv_cpu_direct.PACKS.entries.clear()
    rng = np.random.default_rng(7)
    x = ax.tensor(rng.standard_normal((2, 3, 8, 8)))
    w = ax.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    with ax.no_grad():
        conv2d(x, w)
    assert _conv_cpu_direct.PACKS.entries == []
    real, hits = _conv_cpu_direct.PACKS.get, []
    monkeypatch.setattr(_conv_cpu_direct.PACKS, "get", lambda key, a: hits.append(real(key, a)) or hits[-1])
    y = conv2d(x, w, padding=1)
    assert len(_conv_cpu_direct.PACKS.entries) == 1
    (gw,) = ax.autograd.grad((y * y).sum(), [w], create_graph=True)
    (gw2,) = ax.autograd.grad((conv2d(x, w, padding=1) ** 2).sum(), [w])
    np.testing.assert_allclose(gw.detach().numpy(), gw2.numpy(), rtol=1e-12)
    assert [h is not None for h in hits[:1]] == [False] and hits[-1] is not None
    x.add_(1.0)  # an in-place change after the forward: autograd refuses the stale saved input
    y = conv2d(x, w, padding=1)
    x.mul_(2.0)
    with pytest.raises(RuntimeError):
        y.sum().backward()
