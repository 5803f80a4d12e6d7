"""nn.utils.checkpoint / checkpoint_sequential: same values and gradients, far less memory."""

from __future__ import annotations

import gc
import tracemalloc
import warnings
from collections import namedtuple
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml import nn
from axonml.errors import AutogradError
from axonml.nn.functional import dropout
from axonml.nn.utils import checkpoint, checkpoint_sequential

F64 = ax.float64


def _mlp(depth: int, width: int, seed: int = 0) -> list[Any]:
    """Linear/tanh layers as a list of callables (float64)."""
    ax.manual_seed(seed)
    layers: list[Any] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width, dtype=F64), ax.tanh]
    return layers


def _params(fns: list[Any]) -> list[Any]:
    return [p for f in fns if isinstance(f, nn.Module) for p in f.parameters()]


def _run(fns: list[Any], x: Any) -> Any:
    for f in fns:
        x = f(x)
    return x


def _grads(ts: list[Any]) -> list[np.ndarray]:
    out = [t.grad.numpy().copy() for t in ts]
    for t in ts:
        t.grad = None
    return out


def _same(a: list[np.ndarray], b: list[np.ndarray], tol: float = 1e-12) -> None:
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=tol, atol=tol)


# ----- gradients equal to the plain run --------------------------------------------------------------
@pytest.mark.parametrize("segments", [1, 2, 3, 10])
@pytest.mark.parametrize("reentrant", [False, True])
def test_checkpoint_sequential_gradients_match_plain_run(segments: int, reentrant: bool) -> None:
    fns = _mlp(5, 6)
    x = ax.randn(4, 6, dtype=F64, requires_grad=True)
    ps = [x, *_params(fns)]
    ref = _run(fns, x).square().sum()
    ref.backward()
    want = _grads(ps)
    loss = checkpoint_sequential(fns, segments, x, use_reentrant=reentrant).square().sum()
    assert loss.item() == ref.item()
    loss.backward()
    _same(_grads(ps), want)


def test_checkpoint_sequential_of_a_sequential() -> None:
    seq = nn.Sequential(*[nn.Linear(5, 5, dtype=F64) for _ in range(4)])
    x = ax.randn(2, 5, dtype=F64, requires_grad=True)
    ps = [x, *seq.parameters()]
    seq(x).sin().sum().backward()
    want = _grads(ps)
    checkpoint_sequential(seq, 2, x).sin().sum().backward()
    _same(_grads(ps), want)


def test_checkpoint_autograd_grad_reaches_parameters_in_the_main_pass() -> None:
    fns = _mlp(3, 5)
    mod = nn.Sequential(*[f for f in fns if isinstance(f, nn.Module)])
    x = ax.randn(3, 5, dtype=F64, requires_grad=True)
    ps = [x, *mod.parameters()]
    want = ax.autograd.grad(mod(x).exp().sum(), ps)
    got = ax.autograd.grad(checkpoint(mod, x).exp().sum(), ps)
    _same([g.numpy() for g in got], [g.numpy() for g in want])
    assert all(p.grad is None for p in ps)  # grad() accumulates nothing, also through the checkpoint


def test_parameter_hooks_run_once_with_the_total_gradient() -> None:
    lin = nn.Linear(4, 4, dtype=F64)
    x = ax.randn(2, 4, dtype=F64, requires_grad=True)
    seen: list[np.ndarray] = []
    lin.weight.register_hook(lambda g: seen.append(g.numpy().copy()))
    # the weight is used inside the checkpoint and once more outside it
    (checkpoint(lin, x).sum() + (lin.weight * 3).sum()).backward()
    got = lin.weight.grad.numpy().copy()
    lin.weight.grad = None
    (lin(x).sum() + (lin.weight * 3).sum()).backward()
    assert len(seen) == 2  # one call per backward, each with the whole gradient
    _same([seen[0], got], [seen[1], lin.weight.grad.numpy()])


def test_closure_tensors_non_tensor_args_kwargs_and_structured_outputs() -> None:
    w = ax.randn(4, 4, dtype=F64, requires_grad=True)
    hl = ax.randn(4, dtype=F64, requires_grad=True)
    h = hl * 2  # a non-leaf read through the closure
    x = ax.randn(3, 4, dtype=F64, requires_grad=True)
    c = ax.randn(3, 4, dtype=F64)  # needs no gradient
    Out = namedtuple("Out", ["a", "b"])

    def fn(x: Any, scale: float, pair: tuple[Any, Any], *, shift: Any, tag: str) -> Any:
        y = (x @ w + h) * scale + pair[0] * pair[1] + shift
        return {"y": y.tanh(), "n": Out(y.sum(dim=1), tag), "k": y.argmax(dim=1), "v": 7}

    ref = fn(x, 0.5, (x, c), shift=c, tag="t")
    (ref["y"].sum() + ref["n"].a.square().sum()).backward(retain_graph=True)  # h's graph is used again
    want = _grads([x, w, hl])
    got = checkpoint(fn, x, 0.5, (x, c), shift=c, tag="t")
    assert set(got) == {"y", "n", "k", "v"} and got["v"] == 7 and got["n"].b == "t"
    assert isinstance(got["n"], Out) and not got["k"].requires_grad
    np.testing.assert_array_equal(got["k"].numpy(), ref["k"].numpy())
    (got["y"].sum() + got["n"].a.square().sum()).backward()
    _same(_grads([x, w, hl]), want)


def test_outputs_without_gradient_and_an_input_returned_as_is() -> None:
    x = ax.randn(3, dtype=F64, requires_grad=True)
    y = ax.randn(3, dtype=F64, requires_grad=True)
    a, _b, same = checkpoint(lambda u, v: (u.sin(), v.cos(), u), x, y)
    (a.sum() + same.sum() * 2).backward()  # _b gets no gradient
    np.testing.assert_allclose(x.grad.numpy(), np.cos(x.detach().numpy()) + 2, rtol=1e-14)
    assert y.grad is None


def test_dropout_masks_match_in_the_recompute() -> None:
    lin = nn.Linear(8, 8, dtype=F64)
    x = ax.randn(16, 8, dtype=F64, requires_grad=True)
    gen = ax.Generator().manual_seed(3)

    def fn(t: Any) -> Any:  # draws from the default generator and from an explicit one
        return dropout(dropout(lin(t), 0.5, True).tanh(), 0.3, True, generator=gen)

    state, gstate = ax.get_rng_state(), gen.get_state()
    ref = fn(x)
    ref.square().sum().backward()
    want = _grads([x, lin.weight, lin.bias])
    ax.set_rng_state(state)
    gen.set_state(gstate)
    out = checkpoint(fn, x)
    after = ax.get_rng_state().numpy().copy(), gen.get_state().numpy().copy()
    np.testing.assert_array_equal(out.detach().numpy(), ref.detach().numpy())
    out.square().sum().backward()
    _same(_grads([x, lin.weight, lin.bias]), want)
    # the recompute leaves the generators where the forward left them
    np.testing.assert_array_equal(ax.get_rng_state().numpy(), after[0])
    np.testing.assert_array_equal(gen.get_state().numpy(), after[1])


def test_without_preserve_rng_state_the_recompute_draws_new_masks() -> None:
    x = ax.ones(64, dtype=F64, requires_grad=True)
    out = checkpoint(lambda t: dropout(t, 0.5, True), x, preserve_rng_state=False)
    out.sum().backward()
    # the gradient is the recomputed mask: almost surely not the forward's
    assert not np.array_equal(x.grad.numpy() != 0, out.detach().numpy() != 0)


def test_nested_checkpoints() -> None:
    fns = _mlp(4, 5)
    x = ax.randn(3, 5, dtype=F64, requires_grad=True)
    ps = [x, *_params(fns)]
    _run(fns, x).sum().backward()
    want = _grads(ps)

    def outer(t: Any) -> Any:
        t = checkpoint(lambda u: _run(fns[:4], u), t)
        return checkpoint(_run, fns[4:], t)

    checkpoint(outer, x).sum().backward()
    _same(_grads(ps), want)


def test_second_derivatives_through_a_checkpoint() -> None:
    w = ax.randn(3, 3, dtype=F64, requires_grad=True)
    x = ax.randn(2, 3, dtype=F64, requires_grad=True)

    def f(t: Any) -> Any:
        return (t @ w).tanh().pow(3)

    def hess_row(run: Callable[[Any], Any]) -> list[np.ndarray]:
        gx, gw = ax.autograd.grad(run(x).sum(), [x, w], create_graph=True)
        return [g.numpy().copy() for g in ax.autograd.grad((gx.square().sum() + gw.sum()), [x, w])]

    _same(hess_row(lambda t: checkpoint(f, t)), hess_row(f))


def test_tensors_the_scan_cannot_see_still_get_gradients() -> None:
    class Holder:  # a plain object: not scanned
        pass

    hold = Holder()
    hold.w = ax.randn(4, dtype=F64, requires_grad=True)  # a leaf
    leaf = ax.randn(4, dtype=F64, requires_grad=True)
    hold.h = leaf.exp()  # a non-leaf
    x = ax.randn(4, dtype=F64, requires_grad=True)

    def fn(t: Any) -> Any:
        return (t * hold.w + hold.h).sin()

    (fn(x).sum() * hold.h.sum()).backward(retain_graph=True)
    want = _grads([x, hold.w, leaf])
    # h is read through an object the scan does not enter: its gradient is propagated from the checkpoint's backward
    (checkpoint(fn, x).sum() * hold.h.sum()).backward(retain_graph=True)
    _same(_grads([x, hold.w, leaf]), want)
    # when the main backward frees h's graph before reaching the checkpoint, the error says what to do
    hold.h = leaf.exp()
    with pytest.raises(AutogradError, match="pass that tensor to checkpoint as an argument"):
        (checkpoint(fn, x).sum() + hold.h.sum()).backward()


def test_runs_plainly_when_nothing_needs_a_gradient() -> None:
    lin = nn.Linear(3, 3, dtype=F64)
    x = ax.randn(2, 3, dtype=F64)
    with ax.no_grad():
        y = checkpoint(lin, x)
    assert y.grad_fn is None
    lin.requires_grad_(False)
    assert checkpoint(lin, x).grad_fn is None


def test_errors() -> None:
    x = ax.randn(3, dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match="keyword"):
        checkpoint(lambda t, k: t * k, x, k=2.0, use_reentrant=True)
    with pytest.raises(ValueError, match="segments"):
        checkpoint_sequential([ax.sin, ax.cos], 3, x)
    # an input modified in place before backward
    y = x * 1
    out = checkpoint(lambda t: t.sin(), y)
    with ax.no_grad():
        y.add_(1)
    with pytest.raises(AutogradError, match="in-place"):
        out.sum().backward()
    # a function that is not deterministic
    calls = []

    def shape_changes(t: Any) -> Any:
        calls.append(1)
        return t[: len(calls)].sin()

    with pytest.raises(AutogradError, match="recomputed"):
        checkpoint(shape_changes, x).sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checkpoint(lambda t: t * 2, x)


# ----- memory ------------------------------------------------------------------------------------------
def _memory(step: Callable[[Callable[[], None]], None]) -> tuple[int, int]:
    """(bytes held when ``step`` calls its mark, peak bytes during ``step``) above the start, by tracemalloc.

    NumPy reports its array buffers to tracemalloc, so this counts the activations themselves.
    """
    held = [0]
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]

        def mark() -> None:
            held[0] = tracemalloc.get_traced_memory()[0] - base

        step(mark)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return held[0], peak


def test_checkpoint_sequential_cuts_activation_memory_on_cpu() -> None:
    depth, width, batch, segments = 36, 128, 1024, 6
    fns = _mlp(depth, width, seed=1)
    ps = _params(fns)
    x = ax.randn(batch, width, dtype=F64)
    results = {}
    for name, run in [("plain", lambda t: _run(fns, t)),
                      ("checkpoint", lambda t: checkpoint_sequential(fns, segments, t))]:
        def step(mark: Callable[[], None], run: Callable[[Any], Any] = run) -> None:
            loss = run(x).square().mean()
            mark()
            loss.backward()

        held, peak = _memory(step)
        results[name] = (held, peak, _grads(ps))
    act = batch * width * 8  # one activation: 1 MiB
    print(f"\nCPU deep MLP ({depth} Linear+tanh, {batch}x{width} float64, {segments} segments): "
          f"held after forward {results['plain'][0] / 2**20:.1f} MiB -> {results['checkpoint'][0] / 2**20:.1f} MiB, "
          f"peak {results['plain'][1] / 2**20:.1f} MiB -> {results['checkpoint'][1] / 2**20:.1f} MiB")
    assert results["plain"][0] > depth * act * 0.9  # each layer keeps its tanh output (the next input)
    assert results["checkpoint"][0] < results["plain"][0] / 3
    assert results["checkpoint"][1] < results["plain"][1] / 2
    _same(results["checkpoint"][2], results["plain"][2])


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_checkpoint_sequential_cuts_peak_gpu_memory() -> None:
    depth, width, batch, segments = 32, 512, 4096, 6
    ax.manual_seed(0)
    layers: list[Any] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width, device="cuda"), ax.tanh]
    x = ax.randn(batch, width, device="cuda")
    peaks = {}
    for name, run in [("plain", lambda t: _run(layers, t)),
                      ("checkpoint", lambda t: checkpoint_sequential(layers, segments, t))]:
        for m in layers:
            if isinstance(m, nn.Module):
                m.zero_grad()
        gc.collect()
        ax.cuda.synchronize()
        ax.cuda.reset_peak_memory_stats()
        start = ax.cuda.memory_allocated()
        run(x).square().mean().backward()
        ax.cuda.synchronize()
        peaks[name] = ax.cuda.max_memory_allocated() - start
    print(f"\nGPU deep MLP ({depth} Linear+tanh, {batch}x{width} float32): peak "
          f"{peaks['plain'] / 2**20:.1f} MiB -> {peaks['checkpoint'] / 2**20:.1f} MiB")
    assert peaks["checkpoint"] < peaks["plain"] / 2
