"""The recurrent scan's fused per-step kernels (nn/prims/_rnn_cuda.py) against its array path.

- On CUDA: LSTM (with and without proj_size), GRU and RNN (tanh, relu), one and two directions,
  two layers, batch_first, give the CPU model's outputs, final states and every input and
  parameter gradient (float64 to rtol 1e-10, float32 to rtol 1e-4; float16 against float32).
- Without a GPU the kernels' CUDA C++ source still runs: each kernel body is compiled for the
  CPU with g++ (same operation text, ``T``/``acc_t`` as float or double, raw arguments as
  pointers) and patched in as the fused path, so CI checks the kernels' indexing and formulas
  against the array path.
- The scan primitive itself (bias folding, reverse, projection) against autograd through its
  composed steps, on every device present.
"""

from __future__ import annotations

import copy
import ctypes
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml.nn.modules.rnn import GRU, LSTM, RNN
from axonml.nn.prims import _rnn_cuda
from axonml.nn.prims.rnn import RecurrentScan, composed_scan

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported:UserWarning")
CUDA = ax.cuda.is_available()
TOL = {np.float64: {"rtol": 1e-10, "atol": 1e-12}, np.float32: {"rtol": 1e-4, "atol": 1e-5}}
# (id, module class, constructor keywords): every cell kind, 2 layers, both directions, projection, batch_first
MODELS = [
    ("lstm", LSTM, {}),
    ("lstm-bi-proj-batch-first", LSTM, {"bidirectional": True, "proj_size": 2, "batch_first": True}),
    ("lstm-proj", LSTM, {"proj_size": 3}),
    ("gru", GRU, {"batch_first": True}),
    ("gru-bi", GRU, {"bidirectional": True}),
    ("rnn-tanh-bi", RNN, {"bidirectional": True, "batch_first": True}),
    ("rnn-relu", RNN, {"nonlinearity": "relu"}),
    ("rnn-relu-bi-nobias", RNN, {"nonlinearity": "relu", "bidirectional": True, "bias": False}),
]
FEAT, HIDDEN, STEPS, BATCH, LAYERS = 3, 5, 6, 4, 2


def _inputs(cls: Any, kw: dict[str, Any], seed: int) -> tuple[np.ndarray, Any]:
    """A random input and initial state (h0, or (h0, c0) for LSTM) for the model (cls, kw)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, STEPS, FEAT) if kw.get("batch_first") else (STEPS, BATCH, FEAT))
    states = LAYERS * (2 if kw.get("bidirectional") else 1)
    h0 = rng.standard_normal((states, BATCH, kw.get("proj_size") or HIDDEN)) * 0.5
    return x, ((h0, rng.standard_normal((states, BATCH, HIDDEN)) * 0.5) if cls is LSTM else h0)


def _flat(out: Any) -> list[Any]:
    return [y for o in out for y in _flat(o)] if isinstance(out, tuple | list) else [out]


def _run(m: Any, x: np.ndarray, hx: Any, device: str, dtype: Any) -> list[np.ndarray]:
    """Outputs (output, final states) and gradients (input, initial states, parameters) as float64 arrays.

    The loss weights every output by a fixed random array, so every gradient path is exercised.
    """
    def make(a: Any) -> Any:
        if isinstance(a, tuple):
            return tuple(make(b) for b in a)
        return ax.tensor(a.astype(dtype), device=device, requires_grad=True)

    xs = [make(x), make(hx)]
    outs = _flat(m(*xs))
    rng = np.random.default_rng(99)
    loss = None
    for o in outs:
        w = ax.tensor(rng.standard_normal(o.shape).astype(dtype), device=device)
        term = (o * w).sum()
        loss = term if loss is None else loss + term
    loss.backward()  # type: ignore[union-attr]
    grads = [t.grad for t in _flat(xs)] + [p.grad for p in m.parameters()]
    return [np.asarray(t.detach().cpu().numpy(), np.float64) for t in outs + grads]


def _assert_close(got: list[np.ndarray], want: list[np.ndarray], **tol: float) -> None:
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(a, b, err_msg=f"array {k}", **tol)


# ----- CUDA against CPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no CUDA GPU")
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name,cls,kw", MODELS, ids=[m[0] for m in MODELS])
def test_cuda_matches_cpu(name: str, cls: Any, kw: dict[str, Any], dtype: Any) -> None:
    ax.manual_seed(3)
    m = cls(FEAT, HIDDEN, LAYERS, dtype=ax.float64 if dtype is np.float64 else ax.float32, **kw)
    g = copy.deepcopy(m).to("cuda")
    x, hx = _inputs(cls, kw, 1)
    _assert_close(_run(g, x, hx, "cuda", dtype), _run(m, x, hx, "cpu", dtype), **TOL[dtype])
    built = {k for k, _ in _rnn_cuda.cached_kernels()}
    kind = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "tanh", "RNN_RELU": "relu"}[m.mode]
    assert {f"{kind}_fwd", f"{kind}_bwd"} <= built  # the fused path ran


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no CUDA GPU")
@pytest.mark.parametrize("name,cls,kw", [MODELS[1], MODELS[4], MODELS[5]], ids=["lstm", "gru", "rnn"])
def test_cuda_float16_follows_float32(name: str, cls: Any, kw: dict[str, Any]) -> None:
    ax.manual_seed(4)
    m = cls(FEAT, HIDDEN, LAYERS, dtype=ax.float32, **kw)
    half = copy.deepcopy(m).to("cuda").to(ax.float16)
    x, hx = _inputs(cls, kw, 2)
    _assert_close(_run(half, x, hx, "cuda", np.float16), _run(m, x, hx, "cpu", np.float32), rtol=3e-2, atol=3e-2)
    assert ("lstm_fwd" if cls is LSTM else "gru_fwd" if cls is GRU else "tanh_fwd", "float") in \
        _rnn_cuda.cached_kernels()


# ----- the kernels' source on the CPU ---------------------------------------------------------------------
def _params(spec: str) -> list[tuple[bool, str, str]]:
    """(raw?, type, name) of each parameter of an ElementwiseKernel parameter list."""
    out = []
    for p in spec.split(","):
        words = p.split()
        raw = words[0] == "raw"
        out.append((raw, *words[raw:]))
    return out  # type: ignore[return-value]


class _CpuKernel:
    """One kernel of ``_rnn_cuda._SOURCES`` as a g++-built loop over NumPy arrays, with CuPy's calling rules:
    ins then outs; non-raw arrays broadcast to one shape and indexed by the loop index ``i``; raw arrays
    addressed by their C-order flat index; int64 scalars by value."""

    def __init__(self, lib: Any, name: str, dtype: Any) -> None:
        ins, outs, _ = _rnn_cuda._SOURCES[name]
        self.nin, self.params, self.dtype = len(_params(ins)), _params(ins) + _params(outs), np.dtype(dtype)
        self.fn = getattr(lib, name)

    def __call__(self, *args: Any) -> None:
        assert len(args) == len(self.params)
        arrays = [a for (raw, t, _), a in zip(self.params, args, strict=True) if t == "T" and not raw]
        shape = np.broadcast_shapes(*[np.shape(a) for a in arrays])
        cargs: list[Any] = []
        keep = []
        for k, ((raw, t, name), a) in enumerate(zip(self.params, args, strict=True)):
            if t != "T":
                cargs.append(ctypes.c_longlong(int(a)))
                continue
            assert a.dtype == self.dtype, (name, a.dtype)
            if k >= self.nin:  # outputs are written in place: the scan passes contiguous ones of the loop's shape
                assert a.flags.c_contiguous and (raw or a.shape == shape), name
                buf = a
            else:
                buf = np.ascontiguousarray(a if raw else np.broadcast_to(a, shape))
            keep.append(buf)
            cargs.append(buf.ctypes.data_as(ctypes.c_void_p))
        cargs.append(ctypes.c_longlong(int(np.prod(shape))))
        self.fn(*cargs)


def _cpu_library(dtype: Any, folder: Path) -> Any:
    """Every kernel of ``_rnn_cuda`` compiled for the CPU in one shared library, arrays of ``dtype``."""
    ctype = "double" if dtype is np.float64 else "float"
    parts = ["#include <cmath>", "#include <cstddef>", "using std::tanh;", "#define __device__",
             "#define __forceinline__ inline", f"typedef {ctype} T;",
             _rnn_cuda._PREAMBLE.format(acc=ctype)]
    for name, (ins, outs, op) in _rnn_cuda._SOURCES.items():
        args, body = [], []
        for k, (raw, t, pname) in enumerate(_params(ins) + _params(outs)):
            if t != "T":
                args.append(f"long long {pname}")
            elif raw:
                args.append(f"T* {pname}")
            else:
                args.append(f"T* _raw_{pname}")
                body.append(f"{'const ' if k < len(_params(ins)) else ''}T &{pname} = _raw_{pname}[i];")
        parts.append(f'extern "C" void {name}({", ".join(args)}, long long n) {{\n'
                     f"for (ptrdiff_t i = 0; i < n; ++i) {{\n" + "\n".join(body) + f"\n{op}\n}}\n}}")
    src, lib = folder / f"rnn_{ctype}.cpp", folder / f"rnn_{ctype}.so"
    src.write_text("\n".join(parts))
    # no FMA contraction, so the float path rounds like NumPy's separate passes
    subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-ffp-contract=off", str(src), "-o", str(lib)], check=True)
    return ctypes.CDLL(str(lib))


@pytest.fixture(scope="module")
def cpu_kernels(tmp_path_factory: pytest.TempPathFactory) -> dict[Any, Any]:
    if shutil.which("g++") is None:
        pytest.skip("g++ is needed to run the kernels' source on the CPU")
    folder = tmp_path_factory.mktemp("rnn_kernels")
    return {dt: _cpu_library(dt, folder) for dt in (np.float32, np.float64)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name,cls,kw", MODELS, ids=[m[0] for m in MODELS])
def test_kernel_source_matches_array_path(cpu_kernels: dict[Any, Any], monkeypatch: pytest.MonkeyPatch, name: str,
                                          cls: Any, kw: dict[str, Any], dtype: Any) -> None:
    ax.manual_seed(5)
    m = cls(FEAT, HIDDEN, LAYERS, dtype=ax.float64 if dtype is np.float64 else ax.float32, **kw)
    x, hx = _inputs(cls, kw, 3)
    want = _run(m, x, hx, "cpu", dtype)
    m.zero_grad()
    calls: list[str] = []

    def kernel(xp: Any, kname: str, dt: Any) -> Any:
        calls.append(kname)
        return _CpuKernel(cpu_kernels[np.dtype(dt).type], kname, dt)

    monkeypatch.setattr(_rnn_cuda, "fusable", lambda xp, dt: True)
    monkeypatch.setattr(_rnn_cuda, "kernel", kernel)
    got = _run(m, x, hx, "cpu", dtype)
    _assert_close(got, want, **TOL[dtype])
    dirs = 2 if kw.get("bidirectional") else 1
    assert len(calls) == 2 * LAYERS * dirs * STEPS  # one fused kernel per step, forward and backward


# ----- the scan primitive against its composed steps ------------------------------------------------------
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="no CUDA GPU")])]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("mode,b_hh,proj", [("LSTM", True, False), ("LSTM", False, True), ("LSTM", True, True),
                                            ("GRU", True, False), ("GRU", False, False), ("RNN_TANH", True, False),
                                            ("RNN_RELU", True, False)])
def test_scan_matches_composed_steps(device: str, reverse: bool, mode: str, b_hh: bool, proj: bool) -> None:
    # b_hh alone (b_ih folded into xw by the caller) takes the scan's own bias paths
    rng = np.random.default_rng(6)
    gates = {"LSTM": 4, "GRU": 3}.get(mode, 1)
    h_out = 2 if proj else HIDDEN
    arrays = [rng.standard_normal((STEPS, BATCH, gates * HIDDEN)), rng.standard_normal((BATCH, h_out)) * 0.5,
              rng.standard_normal((BATCH, HIDDEN)) * 0.5 if mode == "LSTM" else None,
              rng.standard_normal((gates * HIDDEN, h_out)) * 0.4, rng.standard_normal(gates * HIDDEN) if b_hh else None,
              rng.standard_normal((h_out, HIDDEN)) * 0.5 if proj else None]

    def leaves() -> list[Any]:
        return [None if a is None else ax.tensor(a, device=device, requires_grad=True) for a in arrays]

    fused_in, composed_in = leaves(), leaves()
    packed = RecurrentScan.apply(*fused_in, mode, reverse)
    want = composed_scan(mode, *composed_in, reverse)
    np.testing.assert_allclose(packed.detach().cpu().numpy(), want.detach().cpu().numpy(), rtol=1e-11, atol=1e-12)
    w = rng.standard_normal(packed.shape)
    (packed * ax.tensor(w, device=device)).sum().backward()
    (want * ax.tensor(w, device=device)).sum().backward()
    for k, (a, b) in enumerate(zip(fused_in, composed_in, strict=True)):
        if a is not None:
            np.testing.assert_allclose(a.grad.cpu().numpy(), b.grad.cpu().numpy(), rtol=1e-10, atol=1e-12,
                                       err_msg=f"input {k}")


def test_fused_path_is_for_cuda_arrays_of_float_dtypes_only() -> None:
    assert not _rnn_cuda.fusable(np, np.float32)  # NumPy: the array path

    class FakeCupy:  # stands for an array module that has CuPy's kernel class
        ElementwiseKernel = object

    assert _rnn_cuda.fusable(FakeCupy, np.float16) and _rnn_cuda.fusable(FakeCupy, np.float64)
    assert not _rnn_cuda.fusable(FakeCupy, np.int64) and not _rnn_cuda.fusable(FakeCupy, np.complex64)


def test_kernels_are_built_once_per_accumulator_type(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[tuple[str, dict[str, Any]]] = []

    class RecordingCupy:  # records what would be handed to cupy.ElementwiseKernel
        @staticmethod
        def ElementwiseKernel(ins: str, outs: str, op: str, name: str, **kw: Any) -> object:
            built.append((name, kw))
            return object()

    monkeypatch.setattr(_rnn_cuda, "_KERNELS", {})
    monkeypatch.setattr(_rnn_cuda, "_BY_DTYPE", {})
    k16, k32, k64 = (_rnn_cuda.kernel(RecordingCupy, "lstm_fwd", np.dtype(t)) for t in (np.float16, np.float32,
                                                                                           np.float64))
    assert k16 is k32 and k64 is not k32  # half and single share the float-accumulator kernel
    assert _rnn_cuda.kernel(RecordingCupy, "lstm_fwd", np.dtype(np.float64)) is k64
    assert [name for name, _ in built] == ["axonml_rnn_lstm_fwd_float", "axonml_rnn_lstm_fwd_double"]
    kw = built[1][1]
    assert kw["no_return"] and kw["options"] == ("--fmad=false",) and "typedef double axf;" in kw["preamble"]
    assert _rnn_cuda.cached_kernels() == [("lstm_fwd", "double"), ("lstm_fwd", "float")]
