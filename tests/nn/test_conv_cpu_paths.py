"""The CPU fast paths of convolution, batch norm and max pooling give the values of the plain paths.

Each path is forced on small shapes (its thresholds patched down, its thread splits forced with
a size threshold of 0) and compared with PyTorch in float64, and with the path switched off
(the direct loops, tested in test_conv_cpu_direct.py, are off here so that these paths run):
the shift GEMMs, Winograd (forward, flipped transposed, weight gradient), the flipped transposed
convolution, the compiled col2im, batch norm's and 2x2 max pooling's compiled loops, and the
NumPy fallbacks used without numba or without NumPy's OpenBLAS.
"""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
from axonml.nn.functional.conv import conv2d, conv_transpose2d
from axonml.nn.prims import _conv_cpu, _conv_cpu_blas, _conv_cpu_direct, _conv_cpu_jit
from axonml.nn.prims import conv as conv_prims
from harness import HAS_TORCH


def needs_torch(fn):
    """Marks a test that compares with PyTorch."""
    return pytest.mark.torch(pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")(fn))


needs_numba = pytest.mark.skipif(_conv_cpu_jit.kernels() is None, reason="numba is not installed")


@pytest.fixture(autouse=True)
def _no_direct_loops(monkeypatch):
    """The im2col, shift, Winograd and col2im paths, not the direct loops that small layers would take."""
    monkeypatch.setattr(_conv_cpu_direct, "pays", lambda *args, **kwargs: None)


@pytest.fixture(params=["threads", "one-thread"])
def split_mode(request, monkeypatch):
    """Every split forced (size thresholds 0, two threads), or none."""
    if request.param == "threads":
        monkeypatch.setattr(_conv_cpu, "_MIN_SPLIT_BYTES", 0)
        monkeypatch.setattr(_conv_cpu, "_MIN_REDUCE_SPLIT_BYTES", 0)
        monkeypatch.setattr(_conv_cpu_blas, "num_threads", lambda: 2)
    else:
        monkeypatch.setattr(_conv_cpu_blas, "num_threads", lambda: 1)
    return request.param


def _check_conv(op, xs, ws, kw, bias=False, dtype=np.float64, rtol=1e-10):
    """Values and all gradients of ``op`` against PyTorch's."""
    import torch

    rng = np.random.default_rng(0)
    cout = ws[1] * kw.get("groups", 1) if "transpose" in op else ws[0]
    arrays = [rng.standard_normal(xs), rng.standard_normal(ws)] + ([rng.standard_normal(cout)] if bias else [])
    arrays = [a.astype(dtype) for a in arrays]
    ours = [ax.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    fn = conv2d if op == "conv2d" else conv_transpose2d
    y, ty = fn(*ours, **kw), getattr(torch.nn.functional, op)(*theirs, **kw)
    scale = float(np.abs(ty.detach().numpy()).max())
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=rtol, atol=rtol * scale)
    g = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    (y * ax.tensor(g)).sum().backward()
    ty.backward(torch.tensor(g))
    for a, t in zip(ours, theirs):
        ref = t.grad.numpy()
        np.testing.assert_allclose(a.grad.numpy(), ref, rtol=rtol, atol=rtol * float(np.abs(ref).max()))


def _count(monkeypatch, module, name):
    """Count the calls of ``module.name``."""
    calls = [0]
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


# ----- convolution paths -------------------------------------------------------------------------
@pytest.mark.parametrize(("xs", "ws", "kw", "bias"), [
    ((2, 32, 12, 12), (40, 32, 3, 3), {"padding": 1}, True),
    ((2, 33, 9, 10), (32, 33, 3, 3), {"padding": (1, 2)}, False),
    ((1, 32, 11, 11), (8, 32, 5, 5), {"padding": 2, "dilation": 1}, False),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@needs_torch
def test_shift_gemms_match_torch(monkeypatch, split_mode, xs, ws, kw, bias, dtype):
    """Stride-1 layers on the padded grid without im2col: forward, weight and (flipped) input gradients."""
    monkeypatch.setattr(conv_prims, "_WINOGRAD_MIN_CHANNELS", 10**9)
    monkeypatch.setattr(conv_prims, "_WINOGRAD_MIN_CHANNELS_WEIGHT", 10**9)
    monkeypatch.setattr(conv_prims, "_SHIFT_MAX_RATIO", 100.0)
    monkeypatch.setattr(conv_prims, "_grid_pays", lambda ratio, cog: True)
    calls = _count(monkeypatch, _conv_cpu, "shift_conv")
    weight_calls = _count(monkeypatch, _conv_cpu, "shift_weight")
    _check_conv("conv2d", xs, ws, kw, bias, dtype, 1e-10 if dtype == np.float64 else 2e-4)
    blas = _conv_cpu_blas.available(dtype)  # the shift GEMMs need NumPy's OpenBLAS (else: im2col)
    assert calls[0] == (0 if not blas else 2 if ws[0] >= 32 else 1)  # forward, flipped input gradient if wide
    assert weight_calls[0] == (1 if blas else 0)


@needs_numba
@pytest.mark.parametrize(("xs", "ws", "kw", "bias"), [
    ((2, 6, 9, 7), (5, 6, 3, 3), {"padding": 1}, True),  # odd sizes: partial 2x2 tiles
    ((3, 4, 8, 8), (4, 4, 3, 3), {"padding": 0}, False),
    ((2, 5, 6, 5), (7, 5, 3, 3), {"padding": 2}, False),
    ((2, 4, 5, 6), (3, 4, 3, 3), {"padding": (1, 0)}, True),
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@needs_torch
def test_winograd_matches_torch(monkeypatch, split_mode, xs, ws, kw, bias, dtype):
    from axonml.nn.prims import _conv_cpu_winograd

    monkeypatch.setattr(conv_prims, "_WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv_prims, "_WINOGRAD_MIN_CHANNELS_WEIGHT", 1)
    monkeypatch.setattr(conv_prims, "_SHIFT_MIN_CHANNELS", 10**9)
    calls = _count(monkeypatch, _conv_cpu_winograd, "winograd")
    weight_calls = _count(monkeypatch, _conv_cpu_winograd, "winograd_weight")
    _check_conv("conv2d", xs, ws, kw, bias, dtype, 1e-10 if dtype == np.float64 else 2e-4)
    assert calls[0] >= 1 and weight_calls[0] == 1  # the input gradient may go through col2im (padding 0)


@pytest.mark.parametrize(("xs", "ws", "kw"), [
    ((2, 4, 5, 6), (4, 3, 3, 3), {"padding": 1}),
    ((2, 4, 5, 5), (4, 2, 3, 2), {"padding": (1, 0), "groups": 2, "dilation": (2, 1)}),
    ((1, 3, 4, 4), (3, 2, 2, 2), {}),
])
@needs_torch
def test_flipped_transposed_convolution_matches_torch(monkeypatch, xs, ws, kw):
    """A stride-1 transposed convolution runs as a convolution with the flipped kernel."""
    calls = _count(monkeypatch, _conv_cpu, "flip_transposed")
    _check_conv("conv_transpose2d", xs, ws, kw, bias=True)
    assert calls[0] >= 1


@pytest.mark.parametrize("numba", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize(("xs", "ws", "kw"), [
    ((2, 3, 9, 8), (4, 3, 3, 3), {"stride": 2, "padding": 1}),
    ((2, 4, 7, 7), (6, 2, 3, 2), {"stride": (2, 1), "padding": (0, 1), "dilation": (1, 2), "groups": 2}),
    ((2, 6, 14, 14), (16, 6, 5, 5), {}),  # LeNet's second layer: col2im, not the flipped convolution
])
@needs_torch
def test_col2im_paths_match_torch(monkeypatch, split_mode, numba, xs, ws, kw):
    monkeypatch.setattr(_conv_cpu_jit, "ENABLED", numba and _conv_cpu_jit.ENABLED)
    _check_conv("conv2d", xs, ws, kw, bias=True)


@needs_torch
def test_numpy_paths_without_direct_blas_or_numba(monkeypatch):
    """Without NumPy's OpenBLAS found and without numba the layers keep working (plain im2col paths)."""
    monkeypatch.setattr(_conv_cpu_blas, "ENABLED", False)
    monkeypatch.setattr(_conv_cpu_jit, "ENABLED", False)
    assert not _conv_cpu_blas.available(np.float32) and _conv_cpu_jit.kernels() is None
    monkeypatch.setattr(conv_prims, "_WINOGRAD_MIN_CHANNELS", 1)
    for xs, ws, kw in [((2, 32, 20, 20), (8, 32, 3, 3), {"padding": 1}), ((2, 4, 9, 7), (5, 4, 3, 3), {"padding": 1})]:
        _check_conv("conv2d", xs, ws, kw, bias=True)


# ----- BLAS, threads -----------------------------------------------------------------------------
@pytest.mark.skipif(not _conv_cpu_blas.available(np.float32), reason="NumPy's OpenBLAS was not found")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_gemm_on_windows_and_transposes(dtype):
    rng = np.random.default_rng(3)
    long = rng.standard_normal((5, 40)).astype(dtype)
    a = rng.standard_normal((4, 5)).astype(dtype)
    c = rng.standard_normal((4, 30)).astype(dtype)
    want = a @ long[:, 7:37] + 2.0 * c
    c2 = 2.0 * c
    _conv_cpu_blas.gemm(a, long[:, 7:37], c2, beta=1.0)  # a window of longer rows, accumulated
    np.testing.assert_allclose(c2, want, rtol=1e-5)
    out = np.empty((30, 4), dtype)
    _conv_cpu_blas.gemm(long[:, 7:37].T, a.T, out)  # both operands transposed views
    np.testing.assert_allclose(out, (a @ long[:, 7:37]).T, rtol=1e-5)
    odd = rng.standard_normal((4, 10)).astype(dtype)[:, ::2]  # no unit stride: copied first
    res = np.empty((5, 5), dtype)
    _conv_cpu_blas.gemm(long[:, :4], odd, res)
    np.testing.assert_allclose(res, long[:, :4] @ odd, rtol=1e-5)
    empty = np.ones((4, 3), dtype)
    _conv_cpu_blas.gemm(np.zeros((4, 0), dtype), np.zeros((0, 3), dtype), empty, beta=0.5)
    np.testing.assert_array_equal(empty, 0.5)


def test_single_threaded_nests_and_restores():
    before = _conv_cpu_blas.num_threads()
    with _conv_cpu_blas.single_threaded():
        with _conv_cpu_blas.single_threaded():
            assert _conv_cpu_blas.num_threads() == before  # the count the splits use is the one from before
        assert _conv_cpu_blas.num_threads() == before
    state = _conv_cpu_blas._state()
    if state["threads"] is not None:
        assert min(int(state["threads"]()), _conv_cpu_blas._CPUS) == before


def test_split_and_reduce_split_cover_the_range(monkeypatch):
    monkeypatch.setattr(_conv_cpu_blas, "num_threads", lambda: 3)
    seen = np.zeros(10, int)
    _conv_cpu.split(10, 1 << 30, lambda lo, hi: seen.__setitem__(slice(lo, hi), seen[lo:hi] + 1))
    np.testing.assert_array_equal(seen, 1)
    data = np.arange(20.0)
    out = np.zeros(1)
    _conv_cpu.reduce_split(20, 1 << 30, out, lambda lo, hi, dst: dst.__setitem__(0, data[lo:hi].sum()))
    assert out[0] == data.sum()
    with pytest.raises(ZeroDivisionError):  # a failing part fails the call
        _conv_cpu.split(4, 1 << 30, lambda lo, hi: 1 / 0)


def test_numba_is_not_imported_by_import_axonml():
    import subprocess
    import sys

    code = "import sys, axonml, axonml.nn; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_forward_columns_are_kept_for_the_weight_gradient_only_when_sound(monkeypatch):
    """A small layer's forward columns serve its weight gradient; not without a graph, nor under create_graph."""
    monkeypatch.setattr(conv_prims, "_grid_pays", lambda ratio, cog: False)
    _conv_cpu.COLUMNS.entries.clear()
    rng = np.random.default_rng(7)
    x = ax.tensor(rng.standard_normal((2, 3, 8, 8)))
    w = ax.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    with ax.no_grad():
        conv2d(x, w)
    assert _conv_cpu.COLUMNS.entries == []  # no graph: nothing kept
    real, hits = _conv_cpu.COLUMNS.get, []
    monkeypatch.setattr(_conv_cpu.COLUMNS, "get", lambda plan, a: hits.append(real(plan, a)) or hits[-1])
    y = conv2d(x, w, padding=1)
    assert len(_conv_cpu.COLUMNS.entries) == 1
    (gw,) = ax.autograd.grad((y * y).sum(), [w], create_graph=True)  # create_graph: recomputed, not reused
    (gw2,) = ax.autograd.grad((conv2d(x, w, padding=1) ** 2).sum(), [w])
    np.testing.assert_allclose(gw.detach().numpy(), gw2.numpy(), rtol=1e-12)
    assert [h is not None for h in hits] == [False, True]  # create_graph: recomputed; first order: reused
    monkeypatch.setattr(_conv_cpu.COLUMNS, "max_bytes", 0)
    (gw3,) = ax.autograd.grad((conv2d(x, w, padding=1) ** 2).sum(), [w])
    np.testing.assert_allclose(gw3.numpy(), gw2.numpy(), rtol=1e-12)


def test_a_backward_lays_the_output_gradient_out_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # the input and the weight gradients of one convolution share the (Co, M) matrix of its output gradient
    from axonml.nn.prims import _conv_plan

    made = []
    real = _conv_plan._Plan._gmat
    monkeypatch.setattr(_conv_plan._Plan, "_gmat", lambda self, xp, g: made.append(g.shape) or real(self, xp, g))
    rng = np.random.default_rng(3)
    x = ax.tensor(rng.standard_normal((2, 16, 9, 9)), requires_grad=True)
    w = ax.tensor(rng.standard_normal((8, 16, 3, 3)), requires_grad=True)
    y = ax.nn.functional.conv2d(x, w, stride=2, padding=1)
    gy = rng.standard_normal(y.shape)
    y.backward(ax.tensor(gy))
    assert made == [(2, 8, 5, 5)]
    if HAS_TORCH:
        import torch

        tx = torch.tensor(x.detach().numpy(), requires_grad=True)
        tw = torch.tensor(w.detach().numpy(), requires_grad=True)
        torch.nn.functional.conv2d(tx, tw, stride=2, padding=1).backward(torch.tensor(gy))
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-10, atol=1e-10)
