"""The generic op harness: every op is checked the same way.

A test module lists its ops as ``OpSpec`` entries in a module-level ``SPECS``
list and calls ``op_tests(SPECS)`` to get the tests:

- forward against a NumPy float64 reference, in float32 and float64;
- gradients against central finite differences (float64);
- second derivatives against finite differences of the gradient (smooth ops);
- forward-mode tangents against the reverse-mode gradient (ops with jvp rules);
- the same forward against PyTorch when it is installed;
- everything on CUDA too when a GPU is present (marked ``gpu``).

``tests/test_registry.py`` fails when a public op has no OpSpec anywhere.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import axonml as ax

HAS_TORCH = importlib.util.find_spec("torch") is not None


def cuda_ok() -> bool:
    return ax.cuda.is_available()


DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not cuda_ok(), reason="no CUDA GPU")]),
]


@dataclass
class OpSpec:
    """One op under test.

    ``fn(*tensors, **kwargs)`` is the axonml call, ``ref(*arrays, **kwargs)`` the
    NumPy float64 reference. ``shapes`` lists input-shape tuples, one per case
    (broadcasting and empty shapes belong here). ``domain`` bounds the random
    inputs (keep smooth ops away from their singularities). ``torch_fn`` is
    the PyTorch call for parity (``None`` skips it).
    """

    name: str
    fn: Callable[..., Any]
    ref: Callable[..., Any]
    shapes: Sequence[tuple[tuple[int, ...], ...]] = (((3, 4),),)
    kwargs: dict[str, Any] = field(default_factory=dict)
    domain: tuple[float, float] = (-2.0, 2.0)
    grad: bool = True  # differentiable in its float inputs
    gradgrad: bool = True  # twice differentiable (smooth)
    jvp: bool = True  # has forward-mode rules
    torch_fn: Callable[..., Any] | None = None
    input_maker: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray] | None = None
    grad_inputs: tuple[int, ...] | None = None  # which inputs get gradients (default: all float ones)
    atol: float = 1e-5
    rtol: float = 1e-4
    cuda: bool = True  # False: the reference holds on the CPU only (say where the CUDA path is tested)

    def make_inputs(self, shapes: tuple[tuple[int, ...], ...], seed: int = 0) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        lo, hi = self.domain
        out = []
        for s in shapes:
            if self.input_maker is not None:
                out.append(np.asarray(self.input_maker(rng, s)))
            else:
                out.append(rng.uniform(lo, hi, size=s))
        return out


def _to_ax(arrays: list[np.ndarray], dtype: Any, device: str, requires_grad: bool) -> list[ax.Tensor]:
    out = []
    for a in arrays:
        if a.dtype.kind == "f":
            t = ax.tensor(a.astype(dtype.np), device=device)
            if requires_grad:
                t.requires_grad_(True)
        else:
            t = ax.tensor(a, device=device)
        out.append(t)
    return out


def _np(t: Any) -> np.ndarray:
    if isinstance(t, ax.Tensor):
        return np.asarray(t.detach().cpu().numpy(), dtype=np.float64 if t.is_floating_point() else None)
    return np.asarray(t)


def _diff_indices(spec: OpSpec, arrays: list[np.ndarray]) -> list[int]:
    if spec.grad_inputs is not None:
        return list(spec.grad_inputs)
    return [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]


def check_forward(spec: OpSpec, shapes: Any, dtype: Any, device: str) -> None:
    arrays = spec.make_inputs(shapes)
    expected = spec.ref(*arrays, **spec.kwargs)
    got = spec.fn(*_to_ax(arrays, dtype, device, False), **spec.kwargs)
    tol = (spec.atol, spec.rtol) if dtype is ax.float64 else (max(spec.atol, 1e-4) * 10, max(spec.rtol, 1e-3) * 10)
    _compare(got, expected, tol, spec.name)


def _compare(got: Any, expected: Any, tol: tuple[float, float], name: str) -> None:
    if isinstance(expected, tuple | list):
        assert isinstance(got, tuple | list), f"{name}: expected a tuple result"
        assert len(got) == len(expected), f"{name}: {len(got)} results, expected {len(expected)}"
        for g, e in zip(got, expected):
            _compare(g, e, tol, name)
        return
    g = _np(got)
    e = np.asarray(expected)
    assert g.shape == e.shape, f"{name}: shape {g.shape}, expected {e.shape}"
    if e.dtype.kind == "f":
        np.testing.assert_allclose(g, e, atol=tol[0], rtol=tol[1], err_msg=name, equal_nan=True)
    else:
        np.testing.assert_array_equal(g, e, err_msg=name)


def _scalarize(out: Any, weights: list[np.ndarray] | None) -> Any:
    outs = list(out) if isinstance(out, tuple | list) else [out]
    total = None
    for i, o in enumerate(outs):
        if not isinstance(o, ax.Tensor) or not o.is_floating_point():
            continue
        w = weights[i] if weights is not None else None
        term = (o * ax.tensor(w, dtype=o.dtype, device=o.device)).sum() if w is not None else o.sum()
        total = term if total is None else total + term
    return total


def _weights_for(spec: OpSpec, arrays: list[np.ndarray]) -> list[np.ndarray]:
    out = spec.fn(*_to_ax(arrays, ax.float64, "cpu", False), **spec.kwargs)
    outs = list(out) if isinstance(out, tuple | list) else [out]
    rng = np.random.default_rng(1)
    return [rng.uniform(0.5, 1.5, size=tuple(o.shape)) if isinstance(o, ax.Tensor) else None for o in outs]


def numeric_grad(
    f: Callable[[list[np.ndarray]], float], arrays: list[np.ndarray], i: int, eps: float = 1e-6
) -> np.ndarray:
    """Central finite differences of scalar ``f`` with respect to ``arrays[i]``."""
    base = arrays[i]
    g = np.zeros_like(base)
    flat = base.reshape(-1)
    gflat = g.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        hi = f(arrays)
        flat[k] = old - eps
        lo = f(arrays)
        flat[k] = old
        gflat[k] = (hi - lo) / (2 * eps)
    return g


def _setup(spec: OpSpec, shapes: Any) -> tuple[list[np.ndarray], list[int], list[np.ndarray]]:
    """The inputs, the indices of those differentiated, and random weights for the outputs."""
    arrays = spec.make_inputs(shapes)
    return arrays, _diff_indices(spec, arrays), _weights_for(spec, arrays)


def _directions(arrays: list[np.ndarray], idx: list[int], seed: int) -> dict[int, np.ndarray]:
    """A random direction (tangent, or vector of a product) for each differentiated input."""
    rng = np.random.default_rng(seed)
    return {i: rng.uniform(-1, 1, size=arrays[i].shape) for i in idx}


def _reverse(spec: OpSpec, arrays: list[np.ndarray], idx: list[int], weights: list[np.ndarray], device: str,
             create_graph: bool = False) -> tuple[list[ax.Tensor], tuple[ax.Tensor | None, ...]]:
    """(the float64 inputs, the gradients of the weighted output sum with respect to those in ``idx``)."""
    ts = _to_ax(arrays, ax.float64, device, False)
    for i in idx:
        ts[i].requires_grad_(True)
    s = _scalarize(spec.fn(*ts, **spec.kwargs), weights)
    return ts, ax.autograd.grad(s, [ts[i] for i in idx], create_graph=create_graph, allow_unused=True)


def check_grad(spec: OpSpec, shapes: Any, device: str) -> None:
    arrays, idx, weights = _setup(spec, shapes)

    def value(arrs: list[np.ndarray]) -> float:
        with ax.no_grad():
            s = _scalarize(spec.fn(*_to_ax(arrs, ax.float64, device, False), **spec.kwargs), weights)
        return float(s.item())

    _, grads = _reverse(spec, arrays, idx, weights, device)
    for i, g in zip(idx, grads):
        expected = numeric_grad(value, [a.copy() for a in arrays], i)
        got = np.zeros_like(expected) if g is None else _np(g)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-4, err_msg=f"{spec.name}: grad of input {i}")


def check_gradgrad(spec: OpSpec, shapes: Any, device: str) -> None:
    """d/dx of <grad f(x), v> against finite differences of the first-order gradient."""
    arrays, idx, weights = _setup(spec, shapes)
    vs = _directions(arrays, idx, 2)

    def first(arrs: list[np.ndarray]) -> float:
        _, gs = _reverse(spec, arrs, idx, weights, device)
        return float(sum((_np(g) * vs[i]).sum() for i, g in zip(idx, gs) if g is not None))

    ts, gs = _reverse(spec, arrays, idx, weights, device, create_graph=True)
    inner = None
    for i, g in zip(idx, gs):
        if g is None or not g.requires_grad:
            continue
        term = (g * ax.tensor(vs[i], device=device)).sum()
        inner = term if inner is None else inner + term
    if inner is None:
        return  # the gradient does not depend on the inputs: the second derivative is zero
    ggs = ax.autograd.grad(inner, [ts[i] for i in idx], allow_unused=True)
    for i, gg in zip(idx, ggs):
        expected = numeric_grad(first, [a.copy() for a in arrays], i, eps=1e-5)
        got = np.zeros_like(expected) if gg is None else _np(gg)
        np.testing.assert_allclose(
            got, expected, atol=1e-4, rtol=1e-3, err_msg=f"{spec.name}: 2nd derivative, input {i}"
        )


def check_jvp(spec: OpSpec, shapes: Any, device: str) -> None:
    """Forward-mode J @ t against reverse-mode: <J t, w> == <t, J^T w>."""
    from axonml.autograd import forward_ad as fwd

    arrays, idx, weights = _setup(spec, shapes)
    tangents = _directions(arrays, idx, 3)
    _, grads = _reverse(spec, arrays, idx, weights, device)
    expected = sum(float((_np(g) * tangents[i]).sum()) for i, g in zip(idx, grads) if g is not None)
    with fwd.dual_level():
        duals = _to_ax(arrays, ax.float64, device, False)
        for i in idx:
            duals[i] = fwd.make_dual(duals[i], ax.tensor(tangents[i], device=device))
        out = spec.fn(*duals, **spec.kwargs)
        outs = list(out) if isinstance(out, tuple | list) else [out]
        got = 0.0
        for o, w in zip(outs, weights):
            if not isinstance(o, ax.Tensor) or not o.is_floating_point():
                continue
            t = fwd.unpack_dual(o).tangent
            if t is not None:
                got += float((_np(t) * w).sum())
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=1e-5, err_msg=f"{spec.name}: jvp")


def check_torch(spec: OpSpec, shapes: Any) -> None:
    import torch

    arrays = spec.make_inputs(shapes)
    ours = spec.fn(*_to_ax(arrays, ax.float32, "cpu", False), **spec.kwargs)
    torch_inputs = [torch.from_numpy(a.astype(np.float32) if a.dtype.kind == "f" else a) for a in arrays]
    theirs = spec.torch_fn(*torch_inputs, **spec.kwargs)  # type: ignore[misc]
    if isinstance(theirs, torch.Tensor):
        theirs = theirs.numpy()
    elif isinstance(theirs, tuple | list):
        theirs = type(theirs)(t.numpy() if isinstance(t, torch.Tensor) else t for t in theirs)
    _compare(ours, theirs, (1e-4, 1e-4), spec.name + " vs torch")
    if isinstance(ours, ax.Tensor) and isinstance(theirs, np.ndarray):
        assert ours.dtype.name == str(theirs.dtype), f"{spec.name}: dtype {ours.dtype} vs torch {theirs.dtype}"


def _cases(specs: Sequence[OpSpec], pred: Callable[[OpSpec], bool] = lambda s: True) -> list[Any]:
    return [
        pytest.param(s, shapes, id=f"{s.name}-{'x'.join('_'.join(map(str, sh)) or 's' for sh in shapes)}")
        for s in specs
        if pred(s)
        for shapes in s.shapes
    ]


def _cpu_only(spec: OpSpec, device: str) -> None:
    if device != "cpu" and not spec.cuda:
        pytest.skip(f"{spec.name}: its reference holds on the CPU only")


def op_tests(specs: Sequence[OpSpec]) -> dict[str, Any]:
    """The standard test functions for ``specs``; assign them into the test module's globals."""

    @pytest.mark.parametrize("device", DEVICES)
    @pytest.mark.parametrize("dtype", [ax.float32, ax.float64], ids=["f32", "f64"])
    @pytest.mark.parametrize(("spec", "shapes"), _cases(specs))
    def test_forward(spec: OpSpec, shapes: Any, dtype: Any, device: str) -> None:
        _cpu_only(spec, device)
        check_forward(spec, shapes, dtype, device)

    @pytest.mark.parametrize("device", DEVICES)
    @pytest.mark.parametrize(("spec", "shapes"), _cases(specs, lambda s: s.grad))
    def test_grad(spec: OpSpec, shapes: Any, device: str) -> None:
        _cpu_only(spec, device)
        check_grad(spec, shapes, device)

    @pytest.mark.parametrize("device", DEVICES)
    @pytest.mark.parametrize(("spec", "shapes"), _cases(specs, lambda s: s.grad and s.gradgrad))
    def test_gradgrad(spec: OpSpec, shapes: Any, device: str) -> None:
        _cpu_only(spec, device)
        check_gradgrad(spec, shapes, device)

    @pytest.mark.parametrize("device", DEVICES)
    @pytest.mark.parametrize(("spec", "shapes"), _cases(specs, lambda s: s.grad and s.jvp))
    def test_jvp(spec: OpSpec, shapes: Any, device: str) -> None:
        _cpu_only(spec, device)
        check_jvp(spec, shapes, device)

    @pytest.mark.torch
    @pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
    @pytest.mark.parametrize(("spec", "shapes"), _cases(specs, lambda s: s.torch_fn is not None))
    def test_torch_parity(spec: OpSpec, shapes: Any) -> None:
        check_torch(spec, shapes)

    return {
        "test_forward": test_forward,
        "test_grad": test_grad,
        "test_gradgrad": test_gradgrad,
        "test_jvp": test_jvp,
        "test_torch_parity": test_torch_parity,
    }


# ----- user Functions with hand-written derivatives, for the autograd tests ------------------------
# A user Function has no batched rule, so it also exercises the engine's fallbacks; tests
# subclass these to give one derivative a deliberate mistake.
class Cube(ax.autograd.Function):
    """``x**3`` with correct backward and forward-mode rules."""

    @staticmethod
    def forward(ctx: Any, x: ax.Tensor) -> ax.Tensor:
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx: Any, g: ax.Tensor) -> ax.Tensor:
        (x,) = ctx.saved_tensors
        return 3 * g * x * x

    @staticmethod
    def jvp(ctx: Any, t: ax.Tensor) -> ax.Tensor:
        (x,) = ctx.saved_tensors
        return 3 * t * x * x


class Square(ax.autograd.Function):
    """``x * x`` with a correct backward (no forward-mode rule)."""

    @staticmethod
    def forward(ctx: Any, x: ax.Tensor) -> ax.Tensor:
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx: Any, g: ax.Tensor) -> ax.Tensor:
        (x,) = ctx.saved_tensors
        return 2 * g * x
