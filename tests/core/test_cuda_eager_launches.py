"""CUDA eager paths that save launches: each against the plain path or the CPU, value for value."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import axonml as ax

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")]


def test_fresh_cuda_gradient_becomes_grad_without_copy(gradient_copies: list[tuple[int, ...]]) -> None:
    w = ax.ones(3, 4, device="cuda", requires_grad=True)
    x = ax.tensor(np.arange(8.0, dtype=np.float32).reshape(2, 4), device="cuda")
    ax.nn.functional.linear(x, w).sum().backward()
    assert gradient_copies == []
    np.testing.assert_allclose(w.grad.cpu().numpy(), np.tile(x.cpu().numpy().sum(0), (3, 1)))


def test_cuda_gradient_held_elsewhere_is_copied() -> None:
    kept = []
    w = ax.ones(3, 4, device="cuda", requires_grad=True)
    w.register_hook(lambda g: kept.append(g))
    ax.nn.functional.linear(ax.ones(2, 4, device="cuda"), w).sum().backward()
    with ax.no_grad():
        w.grad.mul_(10)
    np.testing.assert_allclose(kept[0].cpu().numpy(), np.full((3, 4), 2.0))
    a, b = ax.ones(2, device="cuda", requires_grad=True), ax.ones(2, device="cuda", requires_grad=True)
    (a + b).sum().backward()  # one gradient array reaches both leaves
    with ax.no_grad():
        a.grad.mul_(10)
    np.testing.assert_allclose(b.grad.cpu().numpy(), [1.0, 1.0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_batch_norm_running_statistics_match_the_cpu_bits(dtype: str, momentum: float) -> None:
    # the fused update does the CPU's operations in the same order: equal bits, not just close
    rng = np.random.default_rng(0)
    mods = {d: ax.nn.BatchNorm2d(5, momentum=momentum, dtype=getattr(ax, dtype), device=d) for d in ("cpu", "cuda")}
    for _ in range(3):
        x = rng.standard_normal((4, 5, 3, 3)).astype(dtype)
        for d, m in mods.items():
            m(ax.tensor(x, device=d))
    for name in ("running_mean", "running_var"):
        cpu = getattr(mods["cpu"], name).numpy()
        gpu = getattr(mods["cuda"], name).cpu().numpy()
        # the batch statistics themselves come from different reductions: equal to rounding
        np.testing.assert_allclose(gpu, cpu, rtol=1e-6 if dtype == "float32" else 1e-13)
    m = mods["cuda"]
    before = m.running_mean._version[0]
    m(ax.tensor(rng.standard_normal((4, 5, 3, 3)).astype(dtype), device="cuda"))
    assert m.running_mean._version[0] > before  # an in-place write, seen by autograd's checks


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_in_kernel_update_equals_the_tensor_op_update(momentum: float | None) -> None:
    # the statistics launch updates the running statistics and num_batches_tracked itself; the tensor ops
    # (the CPU's, and CUDA's when a buffer has another dtype) must give the same bits
    from axonml.nn.functional import normalization as N
    from axonml.nn.prims.norm import BatchNorm

    rng = np.random.default_rng(1)
    m = ax.nn.BatchNorm2d(7, momentum=momentum, device="cuda")
    start = [rng.random(7).astype(np.float32) for _ in range(2)]
    m.running_mean.copy_(ax.tensor(start[0], device="cuda"))
    m.running_var.copy_(ax.tensor(start[1], device="cuda"))
    mean_t, var_t = (ax.tensor(s, device="cuda") for s in start)
    for step in range(1, 4):
        x = ax.tensor(rng.standard_normal((4, 7, 3, 3)).astype(np.float32), device="cuda")
        y = m(x)
        stats: list = []
        y2 = BatchNorm.apply(x, m.weight, m.bias, m.eps, stats, None)  # statistics only, no update
        N._running_updates(mean_t, var_t, stats[0], stats[1], 4 * 9, 1.0 / step if momentum is None else momentum)
        assert np.array_equal(y.detach().cpu().numpy(), y2.detach().cpu().numpy())
        assert np.array_equal(m.running_mean.cpu().numpy(), mean_t.cpu().numpy())
        assert np.array_equal(m.running_var.cpu().numpy(), var_t.cpu().numpy())
        assert int(m.num_batches_tracked.item()) == step
    m.eval()
    m(x)
    assert int(m.num_batches_tracked.item()) == 3  # evaluation counts nothing


def test_batch_norm_buffers_of_another_dtype_take_the_tensor_ops() -> None:
    # float64 running statistics beside a float32 input: the kernel writes float32, so the update runs as tensor ops
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)
    mods = {}
    for d in ("cpu", "cuda"):
        m = ax.nn.BatchNorm1d(3, device=d)
        m.running_mean, m.running_var = (b.to(ax.float64) for b in (m.running_mean, m.running_var))
        m(ax.tensor(x, device=d))
        mods[d] = m
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        cpu, gpu = getattr(mods["cpu"], name), getattr(mods["cuda"], name)
        assert gpu.dtype == cpu.dtype
        np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), rtol=1e-6)
    assert int(mods["cuda"].num_batches_tracked.item()) == 1


@pytest.mark.parametrize("dtype", [ax.float32, ax.float64])
def test_eager_cuda_random_draws(dtype: ax.dtype) -> None:
    ax.manual_seed(3)
    u1, n1 = ax.rand(200_000, device="cuda", dtype=dtype), ax.randn(200_000, device="cuda", dtype=dtype)
    ax.manual_seed(3)
    u2, n2 = ax.rand(200_000, device="cuda", dtype=dtype), ax.randn(200_000, device="cuda", dtype=dtype)
    u, n = u1.cpu().numpy(), n1.cpu().numpy()
    assert np.array_equal(u, u2.cpu().numpy()) and np.array_equal(n, n2.cpu().numpy())  # same seed, same numbers
    assert not np.array_equal(u, ax.rand(200_000, device="cuda", dtype=dtype).cpu().numpy())  # fresh each call
    assert u.min() >= 0 and u.max() < 1
    se = 1 / np.sqrt(len(u))  # bounds in standard errors: a wrong distribution fails them by far
    assert abs(u.mean() - 0.5) < 5 * se * np.sqrt(1 / 12) and abs(u.var() - 1 / 12) < 5 * se * 0.075
    assert abs(n.mean()) < 5 * se and abs(n.std() - 1) < 5 * se
    assert np.histogram(u, 10, (0, 1))[0].min() > 0.09 * len(u)


def test_dropout_on_cuda_keeps_the_expected_share() -> None:
    ax.manual_seed(0)
    x = ax.ones(100_000, device="cuda")
    y = ax.nn.functional.dropout(x, 0.25, training=True).cpu().numpy()
    kept = (y != 0).mean()
    assert abs(kept - 0.75) < 5 * np.sqrt(0.75 * 0.25 / len(y))
    np.testing.assert_allclose(y[y != 0], 1 / 0.75, rtol=1e-6)


def test_bias_gradient_ones_are_reused_and_correct() -> None:
    from axonml.nn.prims import _fastpath

    cp = pytest.importorskip("cupy")
    rng = np.random.default_rng(2)
    for rows in (5, 5, 9):
        a = rng.standard_normal((rows, 4)).astype(np.float32)
        np.testing.assert_allclose(_fastpath.col_sum(cp, cp.asarray(a)).get(), a.sum(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_fastpath.row_sum(cp, cp.asarray(a.T)).get(), a.sum(0), rtol=1e-5, atol=1e-6)
    one = _fastpath._ones(cp, 5, cp.empty(1, cp.float32))
    assert one is _fastpath._ones(cp, 5, cp.empty(1, cp.float32))
    assert float(one.sum()) == 5.0


@pytest.mark.parametrize("kw", [{"momentum": 0.9}, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
                                {"momentum": 0.0, "maximize": True}, {"momentum": 0.5, "dampening": 0.2}])
def test_sgd_updates_all_parameters_in_one_launch_with_the_per_parameter_bits(
        kw: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from axonml.backend import fused_multi

    rng = np.random.default_rng(4)
    shapes = [(64, 3, 3, 3), (64,), (10, 300), (1,), ()]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]

    def train(per_parameter: bool) -> tuple[list[np.ndarray], int]:
        calls = []
        real = fused_multi.MultiKernel.__call__
        monkeypatch.setattr(fused_multi.MultiKernel, "__call__", lambda self, *a: calls.append(1) or real(self, *a))
        ps = [ax.tensor(x, device="cuda", requires_grad=True) for x in init]
        opt = ax.optim.SGD(ps, lr=0.1, foreach=not per_parameter, **kw)  # foreach=False: a kernel per parameter
        for step in range(5):
            for i, p in enumerate(ps):  # fresh gradient arrays every step: the address table must follow them
                p.grad = ax.tensor(np.sin(init[i] * (step + 1)).astype(np.float32), device="cuda")
            opt.step()
            opt.param_groups[0]["lr"] *= 0.9
        monkeypatch.undo()
        return [p.detach().cpu().numpy() for p in ps], len(calls)

    fused, launches = train(False)
    plain, none = train(True)
    # one launch a step, but for the first with momentum (it fills the buffers, one kernel per parameter)
    assert launches == (4 if kw["momentum"] else 5) and none == 0
    for a, b in zip(fused, plain):
        assert np.array_equal(a, b)


def test_sgd_over_more_parameters_than_one_launch_takes() -> None:
    # the addresses travel in the kernel's 4 KB of parameters: 300 parameters take three launches a step
    from axonml.backend import fused, fused_multi

    rng = np.random.default_rng(5)
    init = [rng.standard_normal(int(n)).astype(np.float32) for n in rng.integers(1, 40, 300)]
    per_launch = fused_multi.capacity(3)  # (g, p, buf)
    assert per_launch < 300 <= 3 * per_launch

    def train(foreach: bool) -> tuple[list[np.ndarray], int]:
        ps = [ax.tensor(x, device="cuda", requires_grad=True) for x in init]
        opt = ax.optim.SGD(ps, lr=0.1, momentum=0.9, foreach=foreach)
        launches = 0
        for step in range(3):
            for i, p in enumerate(ps):
                p.grad = ax.tensor(np.cos(init[i] * (step + 1)).astype(np.float32), device="cuda")
            before = fused.Kernel.launches
            opt.step()
            launches = fused.Kernel.launches - before
        return [p.detach().cpu().numpy() for p in ps], launches

    (multi, launches), (plain, per_param) = train(True), train(False)
    assert launches == 3 and per_param == 300
    for a, b in zip(multi, plain, strict=True):
        assert np.array_equal(a, b)
