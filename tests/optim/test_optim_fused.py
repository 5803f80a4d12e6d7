"""The fused optimizer updates: one CUDA kernel per parameter per step, the same bits as the NumPy path.

Each update rule exists as a NumPy ufunc chain and as the body of one fused CUDA
kernel (``axonml.backend.fused``). Without a GPU the kernel bodies are checked by
running them through NumPy (every ``+ - * /`` of a body rounds once, as the kernels
are compiled without FMA contraction): the optimizers, forced onto their fused
branch, must give the bits of the NumPy path over many steps and every option.
With a GPU (``gpu`` marker) the real kernels run and are compared with the CPU.
Also: the NumPy path's block-by-block execution of large parameters gives the
same bits as whole-array execution.
"""

from __future__ import annotations

import inspect
import itertools
import re
import types
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml import optim
from axonml.backend import CPU, fused, fused_multi
from axonml.optim import _helpers, adam, lamb, nadam, rmsprop, sgd

SHAPES: list[tuple[int, ...]] = [(7, 5), (13,), ()]
_rng = np.random.default_rng(2024)
INIT = [_rng.standard_normal(s) for s in SHAPES]
FROZEN = _rng.standard_normal((3,))
MODULES = [sgd, adam, nadam, rmsprop, lamb]


def _case(name: str, **kw: Any) -> tuple[str, dict[str, Any]]:
    return name, kw


def _configs() -> list[tuple[str, dict[str, Any]]]:
    """Every option combination that selects a different fused kernel (and both forms of lerp)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for mom, damp, nest, wd, mx in itertools.product([0, 0.9], [0, 0.3], [False, True], [0, 0.05], [False, True]):
        if not nest or (mom and not damp):
            out.append(_case("SGD", lr=0.05, momentum=mom, dampening=damp, nesterov=nest, weight_decay=wd, maximize=mx))
    for name, ams, wd, mx, b1 in itertools.product(["Adam", "AdamW"], [False, True], [0, 0.1], [False, True],
                                                   [0.9, 0.3]):
        out.append(_case(name, lr=0.03, betas=(b1, 0.99), amsgrad=ams, weight_decay=wd, maximize=mx))
    for wd, mx, b1 in itertools.product([0, 0.1], [False, True], [0.9, 0.3]):
        out.append(_case("Adamax", lr=0.03, betas=(b1, 0.99), weight_decay=wd, maximize=mx))
    for name, wd, dec, mx in itertools.product(["NAdam", "RAdam"], [0, 0.1], [False, True], [False, True]):
        out.append(_case(name, lr=0.03, betas=(0.9, 0.9), weight_decay=wd, decoupled_weight_decay=dec, maximize=mx))
    out += [_case("NAdam", lr=0.03, betas=(0.3, 0.99)), _case("RAdam", lr=0.03, betas=(0.3, 0.99))]
    for wd, mom, cen, mx, a in itertools.product([0, 0.1], [0, 0.5], [False, True], [False, True], [0.99, 0.3]):
        out.append(_case("RMSprop", lr=0.01, alpha=a, weight_decay=wd, momentum=mom, centered=cen, maximize=mx))
    for wd, dec, mx in itertools.product([0, 0.1], [0, 0.01], [False, True]):
        out.append(_case("Adagrad", lr=0.1, weight_decay=wd, lr_decay=dec, maximize=mx, initial_accumulator_value=0.1))
    for wd, mx in itertools.product([0, 0.1], [False, True]):
        out.append(_case("Adadelta", lr=0.5, rho=0.8, weight_decay=wd, maximize=mx))
    for wd, bc, mx, b1 in itertools.product([0, 0.01], [True, False], [False, True], [0.9, 0.3]):
        out.append(_case("LAMB", lr=0.03, betas=(b1, 0.99), weight_decay=wd, bias_correction=bc, maximize=mx))
    for wd, mx, b in itertools.product([0, 0.1], [False, True], [(0.9, 0.99), (0.3, 0.2)]):
        out.append(_case("Lion", lr=0.01, betas=b, weight_decay=wd, maximize=mx))
    return out


CONFIGS = _configs()
IDS = [name + "".join(f"-{k}={v}" for k, v in kw.items()) for name, kw in CONFIGS]


def _grad(i: int, x: np.ndarray, step: int) -> np.ndarray:
    """A deterministic nonlinear gradient of parameter ``i`` at ``x``."""
    return np.sin(3.0 * x + i) * 0.7 + 0.3 * x + 0.01 * step


def _run(name: str, kw: dict[str, Any], dtype: Any, device: str, steps: int) -> tuple[list[np.ndarray], Any]:
    """Train the SHAPES parameters (and a frozen one) for ``steps`` steps, with the learning rate changing every
    step as under a scheduler and a parameter skipped on some steps; the final values and the optimizer."""
    ps = [ax.tensor(x, dtype=dtype, device=device, requires_grad=True) for x in [*INIT, FROZEN]]
    opt = getattr(optim, name)(ps, **kw)
    for k in range(steps):
        for i, p in enumerate(ps[: len(SHAPES)]):
            if i == 1 and k % 5 == 3:
                p.grad = None
                continue
            g = _grad(i, p.detach().cpu().numpy().astype(np.float64), k)
            if g.ndim == 2:  # a transposed (non-contiguous) gradient array
                p.grad = ax.tensor(np.ascontiguousarray(g.T), dtype=dtype, device=device).T
            else:
                p.grad = ax.tensor(g, dtype=dtype, device=device)
        opt.step()
        for group in opt.param_groups:
            group["lr"] = group["lr"] * 0.97
    return [p.detach().cpu().numpy() for p in ps], opt


# ----- the kernel bodies, run through NumPy ---------------------------------------------------------------------------
_FUNCS = {"ax_sqrt": np.sqrt, "ax_abs": np.abs, "ax_max": np.maximum, "ax_sign": np.sign}
_FAKE_CUDA = types.SimpleNamespace(type="cuda")


def _names(params: str) -> list[str]:
    return [p.split()[-1] for p in params.split(",")]


def _emulate(self: fused.Kernel, *args: Any) -> None:
    """Run a kernel body on NumPy arrays: each C operation becomes one NumPy operation in the same order."""
    fused.Kernel.launches += 1
    ins, outs = _names(self.in_params), _names(self.out_params)
    assert len(args) == len(ins) + len(outs), self
    dtype = next(a.dtype for a in args if isinstance(a, np.ndarray))
    ns: dict[str, Any] = dict(_FUNCS)
    for name, a in zip(ins + outs, args):
        assert isinstance(a, np.ndarray | np.generic) and a.dtype == dtype, f"{self.name}: {name} is {a!r}"
        ns[name] = a.copy() if isinstance(a, np.ndarray) else a
    code = "\n".join(re.sub(r"^T\s+", "", s.strip()) for s in self.body.split(";") if s.strip())
    exec(code, ns)
    for name, a in zip(outs, args[len(ins):]):
        np.copyto(a, ns[name])


def _emulate_multi(self: fused_multi.MultiKernel, groups: list[tuple[Any, ...]], *scalars: Any) -> None:
    """A multi-array launch, emulated as the single-array kernel of the same body once per group."""
    reads = [a for a in self.arrays if a not in self.writes]
    single = fused.Kernel(self.name, ", ".join([*(f"T {a}" for a in reads), self.scalars]),
                          ", ".join(f"T {a}" for a in self.writes), self.body)
    for grp in groups:
        arrays = dict(zip(self.arrays, grp))
        _emulate(single, *(arrays[a] for a in reads), *scalars, *(arrays[a] for a in self.writes))


@pytest.fixture
def fused_on_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send the optimizers down their fused branch on the CPU, with the kernels run by :func:`_emulate`."""
    real = fused.fusable
    for mod in MODULES:
        monkeypatch.setattr(mod, "fusable", lambda dev, *arrays: real(_FAKE_CUDA, *arrays))  # type: ignore[arg-type]
    monkeypatch.setattr(fused.Kernel, "__call__", _emulate)
    monkeypatch.setattr(fused_multi.MultiKernel, "__call__", _emulate_multi)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CONFIGS, ids=IDS)
def test_kernel_bodies_give_the_bits_of_the_numpy_path(case: tuple[str, dict[str, Any]], dtype: str,
                                                       request: pytest.FixtureRequest) -> None:
    name, kw = case
    dt = getattr(ax, dtype)
    ref, _ = _run(name, kw, dt, "cpu", 12)
    request.getfixturevalue("fused_on_numpy")
    launches = fused.Kernel.launches
    got, _ = _run(name, kw, dt, "cpu", 12)
    assert fused.Kernel.launches > launches  # the fused branch ran
    for a, b in zip(got, ref):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_one_kernel_per_parameter_and_no_new_kernel_when_scalars_change(fused_on_numpy: None) -> None:
    ps = [ax.tensor(x, dtype=ax.float32, requires_grad=True) for x in INIT]
    opt = optim.Adam(ps, lr=0.01, amsgrad=True)
    for step in range(6):
        for p in ps:
            p.grad = ax.ones(p.shape)
        before, kernels = fused.Kernel.launches, len(fused._CACHE)
        opt.step()
        opt.param_groups[0]["lr"] *= 0.5  # a new learning rate and new bias corrections every step
        assert fused.Kernel.launches - before == len(ps)
        if step:
            assert len(fused._CACHE) == kernels


def _kernel_builders() -> list[Any]:
    return [f for mod in MODULES for n, f in vars(mod).items() if n.endswith("_kernel") and callable(f)]


def test_kernel_sources_use_only_declared_names_and_no_baked_in_numbers() -> None:
    """Every flag combination of every builder: the body names only its parameters, locals and the preamble's
    helpers, and holds no numeric literal (hyperparameters are arguments, so they never trigger a compile)."""
    helpers = {"ax_sqrt", "ax_abs", "ax_max", "ax_sign", "T"}
    builders = _kernel_builders()
    assert len(builders) == 10
    kernels = [lamb._AXPY]
    for build in builders:
        n_flags = len(inspect.signature(build).parameters)
        kernels += [build(*flags) for flags in itertools.product([False, True], repeat=n_flags)]
    for k in kernels:
        declared = set(_names(k.in_params)) | set(_names(k.out_params)) | helpers
        declared |= set(re.findall(r"\bT\s+([A-Za-z_]\w*)\s*=", k.body))
        used = set(re.findall(r"[A-Za-z_]\w*", k.body))
        assert used <= declared, (k, used - declared)
        assert not re.search(r"(?<![\w.])\d", k.body), k.body
        assert re.fullmatch(r"[A-Za-z_]\w*", k.name)


def test_fusable() -> None:
    a32, b32 = np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)
    assert not fused.fusable(CPU, a32, b32)  # only CUDA devices fuse
    assert fused.fusable(_FAKE_CUDA, a32, b32, None)  # type: ignore[arg-type]
    assert not fused.fusable(_FAKE_CUDA, a32, b32.astype(np.float64))  # type: ignore[arg-type]
    assert not fused.fusable(_FAKE_CUDA, a32, np.ones((3, 2), np.float32))  # type: ignore[arg-type]
    assert not fused.fusable(_FAKE_CUDA, a32.astype(np.float16))  # type: ignore[arg-type]
    k = fused.elementwise("axonml_test_k", "T x", "T y", "y = y + x;")
    assert fused.elementwise("axonml_test_k", "T x", "T y", "y = y + x;") is k  # cached
    assert "axonml_test_k" in repr(k)


def test_inputs_the_body_never_names_are_dropped_before_the_launch() -> None:
    k = fused.Kernel("axonml_test_drop", "T a, T unused, T b, T also_unused", "T y, T z", "y = a + b; z = y;")
    assert k.launch_in_params == "T a, T b"
    seen: list[tuple[Any, ...]] = []
    k._compiled = lambda *args: seen.append(args)  # stands in for the CuPy kernel
    before = fused.Kernel.launches
    k(1, 2, 3, 4, "y", "z")
    assert seen == [(1, 3, "y", "z")] and fused.Kernel.launches == before + 1
    full = fused.Kernel("axonml_test_full", "T a", "T y", "y = a;")
    full._compiled = lambda *args: seen.append(args)
    full(5, "y")
    assert seen[-1] == (5, "y") and full.launch_in_params == "T a"


# ----- the NumPy path in blocks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta",
                                  "LAMB", "Lion"])
def test_blocks_give_the_bits_of_whole_arrays(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kw = {"SGD": {"momentum": 0.9, "weight_decay": 0.1}, "RMSprop": {"momentum": 0.5, "centered": True},
          "Adam": {"amsgrad": True, "maximize": True}}.get(name, {})
    rng = np.random.default_rng(3)
    init = [rng.standard_normal((61, 37)), rng.standard_normal((40, 50))]
    results = []
    for block_bytes in (1 << 40, 1 << 9):  # whole arrays, then blocks of 128 float32 (a ragged last one)
        monkeypatch.setattr(_helpers, "BLOCK_BYTES", block_bytes)
        ps = [ax.tensor(x, dtype=ax.float32, requires_grad=True) for x in init]
        opt = getattr(optim, name)(ps, lr=0.01, **kw)
        for k in range(4):
            g0 = np.cos(ps[0].detach().numpy() + k)
            ps[0].grad = ax.tensor(g0)
            ps[1].grad = ax.tensor(np.ascontiguousarray(np.sin(ps[1].detach().numpy().T))).T  # non-contiguous
            opt.step()
        results.append([p.detach().numpy() for p in ps])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_run_arrays_goes_block_by_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_helpers, "BLOCK_BYTES", 64)  # 16 float32
    sizes: list[int] = []

    def chain(xp: Any, p: Any, g: Any, m: Any, t0: Any, scale: float) -> None:
        sizes.append(p.size)
        assert m is None and t0.shape == g.shape
        xp.multiply(g, scale, out=t0)
        p += t0

    p, g = np.zeros((5, 10), np.float32), np.arange(50, dtype=np.float32).reshape(5, 10)
    _helpers.run_arrays(chain, _helpers.Scratch(), CPU, (p, g, None), 1, 2.0)
    assert sizes == [16, 16, 16, 2]
    np.testing.assert_array_equal(p, 2 * g)
    sizes.clear()
    _helpers.run_arrays(chain, _helpers.Scratch(), CPU, (p, g.T.copy().T, None), 1, 1.0)  # F-order: whole arrays
    assert sizes == [50]
    np.testing.assert_array_equal(p, 3 * g)


def test_scratch_views_are_cached_and_distinct_per_slot() -> None:
    s = _helpers.Scratch()
    small, big = np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32)
    t0, t1 = s.take_n(CPU, small, 2)
    again = s.take_n(CPU, small, 2)
    assert again[0] is t0 and again[1] is t1 and s.take(CPU, small, 0) is t0
    assert not np.shares_memory(t0, t1) and t0.shape == (2, 3)
    u0, u1 = s.take_n(CPU, big, 2)  # grows both slots
    assert u0.shape == (4, 5) and not np.shares_memory(u0, u1)
    v0, v1 = s.take_n(CPU, small, 2)
    assert np.shares_memory(v0, u0) and np.shares_memory(v1, u1)  # views of the grown buffers
    assert s.take(CPU, small.astype(np.float64), 0).dtype == np.float64


# ----- on a GPU -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CONFIGS, ids=IDS)
@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_fused_cuda_matches_cpu(case: tuple[str, dict[str, Any]], dtype: str) -> None:
    """20 steps of each fused optimizer on CUDA against the CPU (the kernels round as NumPy: expected the same
    bits; LAMB's norms are reductions in another order, so its trust ratios may differ in the last bits)."""
    name, kw = case
    dt = getattr(ax, dtype)
    ref, _ = _run(name, kw, dt, "cpu", 20)
    got, opt = _run(name, kw, dt, "cuda", 20)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for a, b in zip(got, ref):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * 0.1)
    for st in opt.state.values():
        for k, v in st.items():
            if isinstance(v, ax.Tensor) and k not in ("step", "mu_product"):
                assert v.device == "cuda:0" and v.dtype is dt


@pytest.mark.parametrize("case", [c for c in CONFIGS if c[1].get("maximize") and c[1].get("weight_decay")],
                         ids=[i for i, c in zip(IDS, CONFIGS) if c[1].get("maximize") and c[1].get("weight_decay")])
@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_fused_launches_per_step_on_cuda(case: tuple[str, dict[str, Any]]) -> None:
    name, kw = case
    ps = [ax.tensor(x, dtype=ax.float32, device="cuda", requires_grad=True) for x in INIT]
    opt = getattr(optim, name)(ps, **kw)
    for step in range(3):
        for p in ps:
            p.grad = ax.ones(p.shape, device="cuda")
        before = fused.Kernel.launches
        opt.step()
        # LAMB: the moments and direction, then (after the norms) the update itself
        expected = len(ps) * (2 if name == "LAMB" else 1)
        if name == "SGD" and (step or not kw["momentum"]):  # all in one (the first fills the momentum buffers)
            expected = 1
        assert fused.Kernel.launches - before == expected


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_float16_on_cuda_takes_the_ufunc_path() -> None:
    before = fused.Kernel.launches
    got, _ = _run("Adam", {"lr": 0.01}, ax.float16, "cuda", 5)
    assert fused.Kernel.launches == before
    ref, _ = _run("Adam", {"lr": 0.01}, ax.float16, "cpu", 5)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), rtol=1e-2, atol=1e-2)
