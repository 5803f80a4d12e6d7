"""``axonml.autocast``: the per-op policy, scoping (nesting, threads, tasks, decorators), the cast
cache, gradients in the parameters' dtype, and parity with ``torch.autocast`` on the CPU."""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any

import numpy as np
import pytest

import axonml as ax
import axonml.nn.functional as F
from axonml.core import autocast as ac_mod

# public functions at axonml's top level, tested here by plain tests (tests/test_registry.py)
NONDIFF_NAMES = ["is_autocast_enabled", "get_autocast_dtype"]

BF16, F16, F32 = ax.bfloat16, ax.float16, ax.float32


def _rand(*shape: int, seed: int = 0, requires_grad: bool = False, dtype: Any = None) -> ax.Tensor:
    a = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    t = ax.tensor(a, requires_grad=requires_grad)
    return t if dtype is None else t.to(dtype).detach().requires_grad_(requires_grad)


# ----- the policy ------------------------------------------------------------------------------------
def test_matmul_runs_in_the_low_dtype_and_outside_nothing_changes() -> None:
    x, w = _rand(4, 8), _rand(8, 3, seed=1)
    assert (x @ w).dtype is F32
    with ax.autocast("cpu"):
        y = x @ w
        assert y.dtype is BF16
        assert ax.matmul(x, w).dtype is BF16 and ax.mm(x, w).dtype is BF16
        assert ax.bmm(x.unsqueeze(0), w.unsqueeze(0)).dtype is BF16
        assert ax.einsum("ij,jk->ik", x, w).dtype is BF16
    assert (x @ w).dtype is F32
    # the product of the bfloat16-rounded inputs, rounded to bfloat16
    ref = x.to(BF16).float().numpy() @ w.to(BF16).float().numpy()
    np.testing.assert_allclose(y.float().numpy(), ref, rtol=1e-2, atol=1e-2)


def test_float32_ops_upcast_low_precision_inputs() -> None:
    h = _rand(4, 5).to(BF16)  # what a matmul under autocast hands on
    target = ax.tensor([0, 1, 2, 3])
    with ax.autocast("cpu"):
        assert ax.softmax(h, dim=1).dtype is F32
        assert h.softmax(1).dtype is F32 and h.log_softmax(1).dtype is F32
        assert F.softmax(h, dim=1).dtype is F32 and F.log_softmax(h, dim=1).dtype is F32
        assert F.softmin(h, dim=1).dtype is F32 and F.softplus(h).dtype is F32
        assert F.normalize(h).dtype is F32
        assert F.layer_norm(h, (5,)).dtype is F32
        assert F.group_norm(h.reshape(4, 5, 1), 5).dtype is F32
        assert F.rms_norm(h, (5,)).dtype is F32
        assert F.batch_norm(h, None, None, training=True).dtype is F32
        assert F.cross_entropy(h, target).dtype is F32
        assert F.nll_loss(h, target).dtype is F32
        assert F.mse_loss(h, h * 2).dtype is F32 and F.l1_loss(h, h * 2).dtype is F32
        assert F.binary_cross_entropy_with_logits(h, h.sigmoid()).dtype is F32
        assert F.kl_div(h, h.abs(), reduction="batchmean").dtype is F32
        assert ax.prod(h, 1).dtype is F32 and ax.cumsum(h, 1).dtype is F32 and ax.cumprod(h, 1).dtype is F32
    assert ax.softmax(h, dim=1).dtype is BF16  # outside: the input's dtype


def test_lower_precision_layers() -> None:
    x = _rand(2, 3, 6)
    with ax.autocast("cpu"):
        assert F.linear(x, _rand(4, 6, seed=1), _rand(4, seed=2)).dtype is BF16
        assert F.conv1d(x, _rand(4, 3, 3, seed=3)).dtype is BF16
        assert F.conv2d(x.unsqueeze(0), _rand(2, 2, 2, 2, seed=4)).dtype is BF16
        assert F.conv_transpose1d(x, _rand(3, 2, 2, seed=5)).dtype is BF16
        assert F.prelu(x, _rand(3, seed=6)).dtype is BF16
        h = F.rnn_tanh_cell(_rand(2, 6), _rand(2, 4, seed=1), _rand(4, 6, seed=2), _rand(4, 4, seed=3))
        assert h.dtype is BF16
        hy, cy = F.lstm_cell(_rand(2, 6), (_rand(2, 4, seed=1), _rand(2, 4, seed=2)), _rand(16, 6, seed=3),
                             _rand(16, 4, seed=4))
        assert hy.dtype is BF16 and cy.dtype is BF16
        # ops that need one dtype take the widest of their inputs ("promote")
        assert F.bilinear(_rand(2, 3).to(BF16), _rand(2, 4), _rand(5, 3, 4)).dtype is F32


def test_float16_on_cpu_and_other_dtypes_untouched() -> None:
    x, w = _rand(3, 4), _rand(4, 2, seed=1)
    with ax.autocast("cpu", dtype=ax.float16):
        assert (x @ w).dtype is F16
        assert ax.get_autocast_dtype("cpu") is F16
        assert (x.double() @ w.double()).dtype is ax.float64  # float64 is never autocast
        assert (ax.tensor([[1, 2]]) @ ax.tensor([[3], [4]])).dtype is ax.int64
        assert (x + w.sum()).dtype is F32  # ops outside the lists run in their inputs' dtype
        assert ax.softmax(x.double(), 0).dtype is ax.float64


def test_nesting_enabled_false_and_dtype_queries() -> None:
    x, w = _rand(3, 4), _rand(4, 2, seed=1)
    assert not ax.is_autocast_enabled("cpu") and ax.get_autocast_dtype("cpu") is BF16
    assert ax.get_autocast_dtype("cuda") is F16
    with ax.autocast("cpu"):
        assert ax.is_autocast_enabled("cpu") and not ax.is_autocast_enabled("cuda")
        e = x @ w
        with ax.autocast("cpu", enabled=False):
            assert not ax.is_autocast_enabled("cpu")
            assert (x @ w).dtype is F32
            assert (e.float().T @ x).dtype is F32
        with ax.autocast("cpu", dtype=ax.float16):
            assert (x @ w).dtype is F16
        assert (x @ w).dtype is BF16 and ax.get_autocast_dtype("cpu") is BF16
    assert not ax.is_autocast_enabled("cpu")
    assert ax.amp.autocast is ax.autocast and ax.amp.is_autocast_available("cpu")
    assert not ax.amp.is_autocast_available("xla")


def test_one_instance_reentered_and_nested() -> None:
    x, w = _rand(3, 4), _rand(4, 2, seed=1)
    ctx = ax.autocast("cpu")
    with ctx:
        with ctx:
            assert (x @ w).dtype is BF16
        assert (x @ w).dtype is BF16
    assert (x @ w).dtype is F32


def test_decorator_forms() -> None:
    x, w = _rand(3, 4), _rand(4, 2, seed=1)

    @ax.autocast("cpu")
    def f() -> Any:
        return (x @ w).dtype

    def gen() -> Any:
        yield (x @ w).dtype
        yield (x @ w).dtype

    @ax.autocast("cpu")
    async def coro() -> Any:
        await asyncio.sleep(0)
        return (x @ w).dtype

    assert f() is BF16 and (x @ w).dtype is F32
    g = ax.autocast("cpu")(gen)()
    assert next(g) is BF16
    assert (x @ w).dtype is F32  # the region holds only while the generator runs
    assert next(g) is BF16
    assert asyncio.run(coro()) is BF16


def test_threads_and_tasks_are_isolated() -> None:
    x, w = _rand(3, 4), _rand(4, 2, seed=1)
    seen: dict[str, Any] = {}

    def other_thread() -> None:
        seen["thread"] = ((x @ w).dtype, ax.is_autocast_enabled("cpu"))

    with ax.autocast("cpu"):
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert seen["thread"] == (F32, False)  # a new thread starts with autocast off, as in PyTorch

    async def task(on: bool) -> Any:
        if on:
            with ax.autocast("cpu"):
                await asyncio.sleep(0.01)
                return (x @ w).dtype
        await asyncio.sleep(0)
        return (x @ w).dtype  # runs while the other task is inside its region

    async def main() -> Any:
        return await asyncio.gather(task(True), task(False))

    assert asyncio.run(main()) == [BF16, F32]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="device_type"):
        ax.autocast(ax.device("cpu"))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="unsupported"):
        ax.autocast("tpu")
    with pytest.warns(UserWarning, match="not supported"):
        ctx = ax.autocast("cpu", dtype=ax.float64)
    with ctx:
        assert not ax.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="policy"):
        ac_mod.autocast_op("fast")


def test_cuda_region_without_a_gpu_disables_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    if ax.cuda.is_available():
        pytest.skip("a GPU is present: the region is real (see the gpu test)")
    with pytest.warns(UserWarning, match="CUDA is not available"):
        ctx = ax.autocast("cuda")
    with ctx:
        assert not ax.is_autocast_enabled("cuda")
    # with CUDA reported present, a cuda region leaves CPU tensors alone
    monkeypatch.setattr(ac_mod, "_cuda_available", lambda: True)
    x, w = _rand(3, 4), _rand(4, 2, seed=1)
    with ax.autocast("cuda"):
        assert ax.is_autocast_enabled("cuda") and not ax.is_autocast_enabled("cpu")
        assert (x @ w).dtype is F32 and ax.softmax((x @ w).to(BF16), 1).dtype is BF16


# ----- gradients ---------------------------------------------------------------------------------------
def test_gradients_come_back_in_the_parameters_dtype() -> None:
    x = _rand(5, 6, requires_grad=True)
    w1, b1 = _rand(8, 6, seed=1, requires_grad=True), _rand(8, seed=2, requires_grad=True)
    w2 = _rand(3, 8, seed=3, requires_grad=True)
    target = ax.tensor([0, 1, 2, 0, 1])

    def loss_fn() -> ax.Tensor:
        return F.cross_entropy(F.linear(F.linear(x, w1, b1).relu(), w2), target)

    with ax.autocast("cpu"):
        loss = loss_fn()
    assert loss.dtype is F32
    loss.backward()
    low = [t.grad.numpy().copy() for t in (x, w1, b1, w2)]
    for t in (x, w1, b1, w2):
        assert t.grad.dtype is F32
        t.grad = None
    loss_fn().backward()
    for g, t in zip(low, (x, w1, b1, w2)):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=0.05, atol=0.02)


def test_second_derivative_through_autocast() -> None:
    x, w = _rand(3, 4, requires_grad=True), _rand(4, 2, seed=1, requires_grad=True)
    with ax.autocast("cpu"):
        y = ((x @ w).float() ** 2).sum()
    (gx,) = ax.autograd.grad(y, x, create_graph=True)
    assert gx.dtype is F32
    (ggw,) = ax.autograd.grad(gx.sum(), w)
    assert ggw.dtype is F32 and np.isfinite(ggw.numpy()).all()


# ----- the cast cache ----------------------------------------------------------------------------------
def _weight_cast(y: ax.Tensor) -> Any:
    """The node of the cast that fed ``y``'s second operand (a Matmul output)."""
    return y.grad_fn.next_edges[1][0]


def test_parameters_are_cast_once_per_region() -> None:
    x, w = _rand(3, 4), _rand(4, 2, seed=1, requires_grad=True)
    with ax.autocast("cpu"):
        y1, y2 = x @ w, (x * 2) @ w
        assert _weight_cast(y1) is _weight_cast(y2)
        (y1.float().sum() + y2.float().sum()).backward()
        with ax.no_grad():
            w.add_(1.0)  # a new version: the next use casts again
        y3 = x @ w
        assert _weight_cast(y3) is not _weight_cast(y1)
        with ax.no_grad():
            z = x @ w  # cached separately: a cast without graph is never reused with grad on
        assert z.grad_fn is None
        assert (x @ w).grad_fn is not None
    # both uses reached w through the one cast: d/dw sum(x @ w + 2x @ w) = 3 x.sum(0) per column
    np.testing.assert_allclose(w.grad.numpy(), np.repeat(3 * x.numpy().sum(0)[:, None], 2, 1), rtol=2e-2, atol=2e-2)
    assert not ac_mod.AUTOCAST.get()  # the region is over
    with ax.autocast("cpu", cache_enabled=False):
        assert _weight_cast(x @ w) is not _weight_cast(x @ w)
        assert not ax.amp.is_autocast_cache_enabled()


def test_cached_cast_survives_backward_inside_the_region() -> None:
    # gradient accumulation with forward and backward inside one region: the second backward
    # must not meet the cast node the first one freed
    x, w = _rand(3, 4), _rand(4, 2, seed=1, requires_grad=True)
    with ax.autocast("cpu"):
        (x @ w).float().sum().backward()
        first = w.grad.numpy().copy()
        (x @ w).float().sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 2 * first, rtol=1e-6)


def test_cache_is_cleared_when_the_outermost_region_exits() -> None:
    x, w = _rand(3, 4), _rand(4, 2, seed=1, requires_grad=True)
    with ax.autocast("cpu"):
        state = ac_mod.AUTOCAST.get()
        x @ w
        with ax.autocast("cpu", enabled=False):
            pass
        assert state is not None and len(state.cache) == 1
    assert len(state.cache) == 0


# ----- parity with torch.autocast (CPU, bfloat16) -----------------------------------------------------
@pytest.mark.torch
def test_matches_torch_autocast_on_cpu() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    xs, w1, b1, w2, tgt = (rng.standard_normal(s).astype(np.float32) for s in ((6, 5), (7, 5), (7,), (2, 7), (6, 2)))
    ours = [ax.tensor(a, requires_grad=True) for a in (w1, b1, w2)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (w1, b1, w2)]
    with ax.autocast("cpu"):
        h = F.linear(ax.tensor(xs), ours[0], ours[1]).relu()
        out = F.linear(h, ours[2])
        loss = F.mse_loss(out, ax.tensor(tgt))
    with torch.autocast("cpu"):
        th = torch.nn.functional.linear(torch.tensor(xs), theirs[0], theirs[1]).relu()
        tout = torch.nn.functional.linear(th, theirs[2])
        tloss = torch.nn.functional.mse_loss(tout, torch.tensor(tgt))
    assert str(h.dtype).split(".")[-1] == str(th.dtype).split(".")[-1] == "bfloat16"
    assert str(out.dtype).split(".")[-1] == str(tout.dtype).split(".")[-1] == "bfloat16"
    assert str(loss.dtype).split(".")[-1] == str(tloss.dtype).split(".")[-1] == "float32"
    np.testing.assert_allclose(out.float().detach().numpy(), tout.float().detach().numpy(), rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-2)
    loss.backward()
    tloss.backward()
    for a, b in zip(ours, theirs):
        assert a.grad.dtype is F32
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=3e-2, atol=3e-2)


# ----- CUDA (float16) ---------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_float16_policy_and_gradients() -> None:
    x = _rand(8, 16).to("cuda")
    w = _rand(4, 16, seed=1).to("cuda").detach().requires_grad_(True)
    cpu_w = _rand(16, 4, seed=2)
    with ax.autocast("cuda"):
        assert ax.is_autocast_enabled("cuda") and not ax.is_autocast_enabled("cpu")
        y = F.linear(x, w)
        assert y.dtype is F16 and y.device.type == "cuda"
        p = ax.softmax(y, dim=1)
        assert p.dtype is F32
        assert (_rand(2, 16) @ cpu_w).dtype is F32  # CPU tensors are not autocast by a cuda region
        loss = F.cross_entropy(y, ax.tensor([0, 1, 2, 3, 0, 1, 2, 3], device="cuda"))
    loss.backward()
    assert w.grad.dtype is F32 and w.grad.device.type == "cuda"
    ref_w = w.detach().cpu().requires_grad_(True)
    F.cross_entropy(F.linear(x.cpu(), ref_w), ax.tensor([0, 1, 2, 3, 0, 1, 2, 3])).backward()
    np.testing.assert_allclose(w.grad.cpu().numpy(), ref_w.grad.numpy(), rtol=2e-2, atol=2e-3)


def test_no_warning_outside_regions() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = _rand(2, 2)
        assert (x @ x).dtype is F32


def test_out_argument_is_written_not_cast() -> None:
    x = _rand(3, 4).to(BF16)
    out = ax.empty(3, 4, dtype=BF16)
    with ax.autocast("cpu"):
        r = F.normalize(x, dim=1, out=out)
        r2 = F.normalize(x, 2.0, 1, 1e-12, out)
    expected = F.normalize(x.float(), dim=1).to(BF16).float().numpy()
    np.testing.assert_allclose(out.float().numpy(), expected, rtol=1e-2)
    assert r.dtype is BF16 and r2.dtype is BF16  # out's dtype: the fp32 result was copied into it
