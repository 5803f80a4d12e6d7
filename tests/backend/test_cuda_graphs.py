"""CUDA graphs: a captured training step replays like the eager one; what cannot be captured says so."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import axonml as ax
import axonml.nn as nn
import axonml.nn.functional as F
from axonml.errors import DeviceError, GraphCaptureError
from graph_steps import eager_step, replayed_losses

NONDIFF_NAMES: list[str] = []

needs_gpu = pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")


@pytest.mark.skipif(ax.cuda.is_available(), reason="checks the error without CUDA")
def test_capture_without_cuda_is_a_clear_error() -> None:
    g = ax.cuda.CUDAGraph()
    with pytest.raises(DeviceError, match="CUDA graphs need CUDA"):
        g.capture_begin()
    with pytest.raises(GraphCaptureError, match="holds no capture"):
        g.replay()
    assert not ax.cuda.is_current_stream_capturing()


_SHAPES = [
    ((7, 5), (5, 3)), ((5,), (5, 3)), ((7, 5), (5,)), ((4, 7, 5), (5, 3)), ((7, 5), (4, 5, 3)),
    ((2, 3, 7, 5), (2, 3, 5, 4)), ((2, 1, 7, 5), (1, 3, 5, 4)), ((0, 5), (5, 3)), ((7, 0), (0, 3)), ((5,), (5,)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("shapes", _SHAPES)
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.gpu
@needs_gpu
def test_capture_blas_matmul_matches_cupy(shapes: tuple[tuple[int, ...], ...], dtype: str, transposed: bool) -> None:
    import cupy as cp

    from axonml.backend._cublas import Blas

    rng = np.random.default_rng(0)
    sa, sb = shapes
    a = cp.asarray(rng.standard_normal(sa).astype(dtype))
    b = cp.asarray(rng.standard_normal(sb).astype(dtype))
    if transposed and a.ndim >= 2:  # a transposed view (op T in cuBLAS, no copy)
        a = cp.ascontiguousarray(cp.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    if transposed and b.ndim >= 2:
        b = cp.ascontiguousarray(cp.swapaxes(b, -1, -2)).swapaxes(-1, -2)
    blas = Blas(cp)
    blas.bind(cp.cuda.get_current_stream().ptr)
    got = blas.matmul(a, b)
    want = cp.matmul(a, b)
    assert got.shape == want.shape and got.dtype == want.dtype
    tol = 2e-3 if dtype == "float16" else 1e-6
    np.testing.assert_allclose(cp.asnumpy(got).astype(np.float64), cp.asnumpy(want).astype(np.float64),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shapes", _SHAPES)
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.gpu
@needs_gpu
def test_eager_matmul_calls_cublas_itself(shapes: tuple[tuple[int, ...], ...], dtype: str, transposed: bool,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a capture, float32/float64 products of every shape skip CuPy's matmul (its host time) and equal
    NumPy's float64 product."""
    import cupy as cp

    from axonml.backend import matmul

    rng = np.random.default_rng(1)
    a64, b64 = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    a, b = cp.asarray(a64.astype(dtype)), cp.asarray(b64.astype(dtype))
    if transposed and a.ndim >= 2:
        a = cp.ascontiguousarray(cp.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    if transposed and b.ndim >= 2:
        b = cp.ascontiguousarray(cp.swapaxes(b, -1, -2)).swapaxes(-1, -2)

    def refused(*_: Any, **__: Any) -> None:
        raise AssertionError("CuPy's matmul was called")

    monkeypatch.setattr(cp, "matmul", refused)
    got = matmul(cp, a, b)
    want = np.matmul(a64, b64)
    assert got.shape == want.shape and got.dtype == np.dtype(dtype)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(cp.asnumpy(got), want, rtol=tol, atol=tol)


@pytest.mark.gpu
@needs_gpu
def test_capture_blas_matmul_writes_into_out() -> None:
    import cupy as cp

    from axonml.backend._cublas import Blas

    blas = Blas(cp)
    blas.bind(cp.cuda.get_current_stream().ptr)
    a, b = cp.random.rand(6, 5, dtype=cp.float32), cp.random.rand(5, 7, dtype=cp.float32)
    for out in (cp.empty((6, 7), cp.float32), cp.empty((7, 6), cp.float32).T):  # contiguous, then a strided view
        got = blas.matmul(a, b, out)
        assert got is out
        np.testing.assert_allclose(cp.asnumpy(out), cp.asnumpy(a @ b), rtol=1e-6)


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 3),
    ).cuda()


def _batches(n: int) -> list[tuple[ax.Tensor, ax.Tensor]]:
    rng = np.random.default_rng(1)
    return [(ax.tensor(rng.standard_normal((8, 1, 8, 8)).astype(np.float32), device="cuda"),
             ax.tensor(rng.integers(0, 3, 8), device="cuda")) for _ in range(n)]


def _eager_step(model: nn.Module, opt: ax.optim.Optimizer, x: ax.Tensor, y: ax.Tensor) -> ax.Tensor:
    return eager_step(model, opt, F.cross_entropy, x, y)


@pytest.mark.gpu
@needs_gpu
def test_captured_training_step_replays_the_eager_steps() -> None:
    batches = _batches(8)
    ax.manual_seed(0)
    eager = _model()
    ax.manual_seed(0)
    graphed = _model()
    opt_e = ax.optim.SGD(eager.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    opt_g = ax.optim.SGD(graphed.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    eager_losses = [float(_eager_step(eager, opt_e, x, y).item()) for x, y in batches]
    losses = replayed_losses(graphed, opt_g, F.cross_entropy, batches)
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-5, atol=1e-6)
    for (name, pe), pg in zip(eager.named_parameters(), graphed.parameters()):
        np.testing.assert_allclose(pg.detach().cpu().numpy(), pe.detach().cpu().numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    bn_e, bn_g = eager[1], graphed[1]
    np.testing.assert_allclose(bn_g.running_mean.cpu().numpy(), bn_e.running_mean.cpu().numpy(), rtol=1e-5, atol=1e-6)
    assert int(bn_g.num_batches_tracked.item()) == len(batches)


@pytest.mark.gpu
@needs_gpu
def test_dropout_draws_fresh_masks_on_every_replay() -> None:
    x = ax.ones(64, 1024, device="cuda")
    F.dropout(x, 0.5)  # warm-up
    g = ax.cuda.CUDAGraph()
    with ax.cuda.graph(g):
        y = F.dropout(x, 0.5)
        z = ax.randn(4096, device="cuda")
    masks, normals = [], []
    for _ in range(3):
        g.replay()
        masks.append(y.cpu().numpy().copy())
        normals.append(z.cpu().numpy().copy())
    for m in masks:
        assert set(np.unique(m)) <= {0.0, 2.0}
        assert abs((m == 0).mean() - 0.5) < 0.02
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])
    for n in normals:
        assert abs(n.mean()) < 0.1 and abs(n.std() - 1) < 0.05
    assert not np.array_equal(normals[0], normals[1])


@pytest.mark.gpu
@needs_gpu
def test_a_host_sync_inside_capture_is_a_clear_error_and_eager_work_goes_on() -> None:
    x = ax.randn(16, device="cuda")
    g = ax.cuda.CUDAGraph()
    with pytest.raises(GraphCaptureError, match="nothing may wait for the GPU"), ax.cuda.graph(g):
        (x * 2).sum().item()
    assert not ax.cuda.is_current_stream_capturing()
    with pytest.raises(GraphCaptureError, match="holds no capture"):
        g.replay()
    np.testing.assert_allclose((x * 2).sum().item(), 2 * x.cpu().numpy().sum(), rtol=1e-5)
    with pytest.raises(GraphCaptureError, match="permutation"), ax.cuda.graph(ax.cuda.CUDAGraph()):
        ax.randperm(10, device="cuda")


@pytest.mark.gpu
@needs_gpu
def test_optimizers_that_cannot_be_captured_say_why() -> None:
    model = _model()
    (x, y), = _batches(1)
    adam = ax.optim.Adam(model.parameters(), lr=1e-3)
    _eager_step(model, adam, x, y)
    refused = pytest.raises(GraphCaptureError, match=r"Adam\.step cannot be captured")
    with refused, ax.cuda.graph(ax.cuda.CUDAGraph()):
        F.cross_entropy(model(x), y).backward()
        adam.step()
    sgd = ax.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # no eager step yet: no momentum buffers
    model.zero_grad()
    with pytest.raises(GraphCaptureError, match="run a few eager steps"), ax.cuda.graph(ax.cuda.CUDAGraph()):
        F.cross_entropy(model(x), y).backward()
        sgd.step()


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("make", [
    lambda ps: ax.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=1e-4),
    lambda ps: ax.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
    lambda ps: ax.optim.Lion(ps, lr=1e-3, weight_decay=0.1),
], ids=["sgd", "sgd-nesterov", "lion"])
@pytest.mark.parametrize("schedule", ["step", "lambda"])
def test_schedulers_change_the_learning_rate_of_replays(make: Any, schedule: str) -> None:
    # the captured step reads lr from the device: a scheduler stepping between replays works as in eager mode
    batches = _batches(9)
    runs = []
    for graphed in (False, True):
        ax.manual_seed(0)
        model = _model()
        opt = make(list(model.parameters()))
        sched = (ax.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5) if schedule == "step"
                 else ax.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 / (1 + k)))
        if graphed:
            losses = replayed_losses(model, opt, F.cross_entropy, batches, after_step=sched.step)
        else:
            losses = []
            for x, y in batches:
                losses.append(float(_eager_step(model, opt, x, y).item()))
                sched.step()
        runs.append((losses, [p.detach().cpu().numpy() for p in model.parameters()], opt.param_groups[0]["lr"]))
    (le, pe, lr_e), (lg, pg, lr_g) = runs
    assert lr_e == lr_g < 0.5 * opt.defaults["lr"]  # the schedule really moved
    np.testing.assert_allclose(lg, le, rtol=1e-5, atol=1e-6)
    for a, b in zip(pg, pe):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@needs_gpu
def test_a_changed_momentum_stops_the_replay() -> None:
    model = _model()
    (x, y), = _batches(1)
    opt = ax.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _eager_step(model, opt, x, y)
    g = ax.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with ax.cuda.graph(g):
        F.cross_entropy(model(x), y).backward()
        opt.step()
    g.replay()
    opt.param_groups[0]["lr"] = 0.01  # read from the device: replays follow it
    g.replay()
    opt.param_groups[0]["momentum"] = 0.5  # frozen into the graph
    with pytest.raises(GraphCaptureError, match="hyperparameters changed"):
        g.replay()
    with pytest.raises(GraphCaptureError, match="call reset"):
        g.capture_begin()
    g.reset()
    with ax.cuda.graph(g):
        pass
    g.replay()


@pytest.mark.gpu
@needs_gpu
def test_forward_backward_captured_with_an_eager_adam_step() -> None:
    batches = _batches(5)
    ax.manual_seed(0)
    eager = _model()
    ax.manual_seed(0)
    graphed = _model()
    opt_e, opt_g = ax.optim.Adam(eager.parameters(), lr=1e-2), ax.optim.Adam(graphed.parameters(), lr=1e-2)
    for x, y in batches:
        _eager_step(eager, opt_e, x, y)
    _eager_step(graphed, opt_g, *batches[0])
    static_x, static_y = batches[0][0].clone(), batches[0][1].clone()
    g = ax.cuda.CUDAGraph()
    opt_g.zero_grad(set_to_none=True)
    with ax.cuda.graph(g):
        F.cross_entropy(graphed(static_x), static_y).backward()
    for x, y in batches[1:]:
        static_x.copy_(x)
        static_y.copy_(y)
        g.replay()  # the gradients are rewritten in place
        opt_g.step()  # Adam's step count lives on the host: stepped eagerly
    for pe, pg in zip(eager.parameters(), graphed.parameters()):
        np.testing.assert_allclose(pg.detach().cpu().numpy(), pe.detach().cpu().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@needs_gpu
def test_a_bfloat16_autocast_step_can_be_captured() -> None:
    (x, y), = _batches(1)
    model = _model()
    opt = ax.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step() -> ax.Tensor:
        with ax.autocast("cuda", dtype=ax.bfloat16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    opt.zero_grad()
    step()
    g = ax.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with ax.cuda.graph(g):
        loss = step()
    first = None
    for _ in range(20):
        g.replay()
        first = float(loss.item()) if first is None else first
    assert float(loss.item()) < first  # training on one batch: the loss falls


@pytest.mark.gpu
@needs_gpu
def test_host_scalars_are_refilled_before_every_replay() -> None:
    # numbers the host computes (a learning rate) reach the captured kernels through memory no graph node writes
    value = [2.0]
    out = ax.zeros(3, device="cuda")
    g = ax.cuda.CUDAGraph()
    with pytest.raises(GraphCaptureError, match="while this graph is capturing"):
        g.host_scalars(lambda: (1.0,), np.float32)
    with ax.cuda.graph(g):
        tmp = ax.ones(3, device="cuda") * 7.0  # a temporary whose block the graph reuses
        del tmp
        hp = g.host_scalars(lambda: (value[0],), np.float32)
        out._data[...] = hp[0]
    for v in (2.0, -3.5, 0.25):
        value[0] = v
        g.replay()
        np.testing.assert_array_equal(out.cpu().numpy(), np.full(3, v, np.float32))
