"""Check analytical gradients against finite differences, as ``torch.autograd.gradcheck``.

``gradcheck(f, inputs)`` builds, for every output and every input that
requires grad, the Jacobian twice: from backward passes (one per output
element) and from central differences ``(f(x + eps) - f(x - eps)) / (2 eps)``
(one pair of forward calls per input element), and compares them
elementwise: ``|analytical - numerical| <= atol + rtol * |numerical|``.
``gradgradcheck`` does the same for the gradient function, which checks
second derivatives. Use float64 inputs: float32 has too few digits for the
finite differences.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.dtypes import is_float_np
from ..core.engine import grad
from ..core.forward_ad import dual_level, make_dual, unpack_dual
from ..core.grad_mode import enable_grad, no_grad
from ..core.tensor import Tensor
from ..errors import AutogradError

__all__ = ["GradcheckError", "gradcheck", "gradgradcheck"]


class GradcheckError(AutogradError):
    """Analytical and numerical derivatives disagree (or a gradient has the wrong shape or dtype)."""


def _as_tuple(x: Any) -> tuple[Any, ...]:
    return tuple(x) if isinstance(x, tuple | list) else (x,)


def _float_outputs(out: Any) -> list[Tensor]:
    return [o for o in _as_tuple(out) if isinstance(o, Tensor) and is_float_np(o._data.dtype)]


def _host64(t: Tensor) -> np.ndarray:
    return np.asarray(t._host(), dtype=np.float64).reshape(-1)


def _copy(x: Any, k: int = -1, delta: float = 0.0) -> Any:
    """A fresh leaf copy of ``x`` (element ``k``, in C order, moved by ``delta``) that requires grad as ``x`` does.

    The copy keeps requiring grad so that a function computing gradients
    inside (``gradgradcheck``'s) still works while being differentiated numerically.
    """
    if not isinstance(x, Tensor):
        return x
    arr = x._device.xp.array(x._data, copy=True)
    if k >= 0:
        flat = arr.reshape(-1)
        flat[k] = flat[k] + delta
    t = Tensor._make(arr, x._device)
    t._requires_grad = x._requires_grad
    return t


def _numerical(func: Callable[..., Any], inputs: tuple[Any, ...], diff_idx: list[int], eps: float,
               n_out: int) -> list[list[np.ndarray]]:
    """num[i][j]: (numel of output i, numel of input diff_idx[j]) by central differences."""
    outs = _float_outputs(func(*(_copy(x) for x in inputs)))
    jac = [[np.zeros((outs[i]._data.size, inputs[j]._data.size)) for j in diff_idx] for i in range(n_out)]
    for jj, j in enumerate(diff_idx):
        for k in range(inputs[j]._data.size):
            values = []
            for delta in (eps, -eps):
                args = [_copy(x, k if m == j else -1, delta) for m, x in enumerate(inputs)]
                values.append([_host64(o) for o in _float_outputs(func(*args))])
            for i in range(n_out):
                jac[i][jj][:, k] = (values[0][i] - values[1][i]) / (2 * eps)
    return jac


def _analytical(outputs: list[Tensor], inputs: tuple[Any, ...], diff_idx: list[int]) -> list[list[np.ndarray]]:
    """ana[i][j] from one backward per output element; checks each gradient's shape and dtype."""
    diff_inputs = [inputs[j] for j in diff_idx]
    jac = [[np.zeros((o._data.size, x._data.size)) for x in diff_inputs] for o in outputs]
    for i, out in enumerate(outputs):
        if not out._requires_grad:
            continue
        xp = out._device.xp
        for r in range(out._data.size):
            onehot = xp.zeros(out._data.size, dtype=out._data.dtype)
            onehot[r] = 1
            go = Tensor._make(onehot.reshape(out.shape), out._device)
            grads = grad([out], diff_inputs, [go], retain_graph=True, allow_unused=True)
            for jj, (g, x) in enumerate(zip(grads, diff_inputs)):
                if g is None:
                    continue
                if g.shape != x.shape:
                    raise GradcheckError(
                        f"gradient for input {diff_idx[jj]} has shape {g.shape}, expected {x.shape}"
                    )
                if g._data.dtype != x._data.dtype:
                    raise GradcheckError(
                        f"gradient for input {diff_idx[jj]} has dtype {g.dtype}, expected {x.dtype}"
                    )
                jac[i][jj][r, :] = _host64(g)
    return jac


def _forward_mode(func: Callable[..., Any], inputs: tuple[Any, ...], diff_idx: list[int],
                  n_out: int) -> list[list[np.ndarray]]:
    """fwd[i][j] from one forward-mode pass per input element (column)."""
    base = [x.detach() if isinstance(x, Tensor) else x for x in inputs]
    jac: list[list[np.ndarray]] = []
    for jj, j in enumerate(diff_idx):
        x = inputs[j]
        for k in range(x._data.size):
            xp = x._device.xp
            basis = xp.zeros(x._data.size, dtype=x._data.dtype)
            basis[k] = 1
            with no_grad(), dual_level():
                args = list(base)
                args[j] = make_dual(base[j], Tensor._make(basis.reshape(x.shape), x._device))
                outs = _float_outputs(func(*args))
                if not jac:
                    jac = [[np.zeros((o._data.size, inputs[m]._data.size)) for m in diff_idx] for o in outs]
                for i, o in enumerate(outs[:n_out]):
                    t = unpack_dual(o).tangent
                    if t is not None:
                        jac[i][jj][:, k] = _host64(t)
    return jac


def _compare(kind: str, got: list[list[np.ndarray]], num: list[list[np.ndarray]], diff_idx: list[int],
             atol: float, rtol: float) -> str | None:
    for i, row in enumerate(num):
        for jj, n in enumerate(row):
            a = got[i][jj] if got else np.zeros_like(n)
            bad = ~(np.abs(a - n) <= atol + rtol * np.abs(n))
            if bad.any():
                diff = np.abs(a - n)
                diff[~bad] = 0
                r, c = np.unravel_index(int(np.nanargmax(np.where(np.isnan(diff), np.inf, diff))), diff.shape)
                with np.printoptions(precision=6, threshold=200, linewidth=120):
                    return (
                        f"{kind} Jacobian mismatch for output {i} with respect to input {diff_idx[jj]}: "
                        f"max |{kind} - numerical| = {np.max(np.where(bad, np.abs(a - n), 0)):.6g} at output "
                        f"element {r}, input element {c} ({kind} {a[r, c]:.6g}, numerical {n[r, c]:.6g}); "
                        f"tolerance atol={atol:g}, rtol={rtol:g}\nnumerical:\n{n}\n{kind}:\n{a}"
                    )
    return None


def gradcheck(func: Callable[..., Any], inputs: Any, *, eps: float = 1e-6, atol: float = 1e-5,
              rtol: float = 1e-3, raise_exception: bool = True, nondet_tol: float = 0.0,
              check_backward_ad: bool = True, check_forward_ad: bool = False) -> bool:
    """Whether ``func``'s gradients match finite differences at ``inputs``.

    Inputs that are Tensors with ``requires_grad=True`` are checked (use
    float64). On a mismatch, raises :class:`GradcheckError` naming the output,
    the input and the largest difference, or returns False with
    ``raise_exception=False``. ``check_forward_ad`` also checks forward-mode
    tangents; ``nondet_tol`` bounds the difference between two backward runs.
    """
    tupled = _as_tuple(inputs)
    diff_idx = [j for j, x in enumerate(tupled) if isinstance(x, Tensor) and x._requires_grad]
    if not diff_idx:
        raise ValueError("gradcheck expects at least one input tensor to require gradient")
    for j in diff_idx:
        if tupled[j]._data.dtype != np.float64:
            warnings.warn(
                f"input {j} requires grad and is not float64 ({tupled[j].dtype}): gradcheck will likely fail",
                stacklevel=2,
            )

    def fail(msg: str) -> bool:
        if raise_exception:
            raise GradcheckError(msg)
        return False

    with enable_grad():
        return _gradcheck(func, tupled, diff_idx, fail, eps, atol, rtol, nondet_tol, check_backward_ad,
                          check_forward_ad)


def _gradcheck(func: Callable[..., Any], tupled: tuple[Any, ...], diff_idx: list[int], fail: Callable[[str], bool],
               eps: float, atol: float, rtol: float, nondet_tol: float, check_backward_ad: bool,
               check_forward_ad: bool) -> bool:
    outputs = _float_outputs(func(*tupled))
    try:
        num = _numerical(func, tupled, diff_idx, eps, len(outputs))
        for i, out in enumerate(outputs):
            if not out._requires_grad:  # a constant output must have a zero numerical derivative
                for jj, n in enumerate(num[i]):
                    if not np.allclose(n, 0.0, rtol=rtol, atol=atol):
                        return fail(f"output {i} does not require grad, but its numerical derivative with "
                                    f"respect to input {diff_idx[jj]} is not zero (max {np.abs(n).max():.6g})")
        if check_backward_ad:
            ana = _analytical(outputs, tupled, diff_idx)
            msg = _compare("analytical", ana, num, diff_idx, atol, rtol)
            if msg:
                return fail(msg)
            again = _analytical(_float_outputs(func(*tupled)), tupled, diff_idx)
            for i, row in enumerate(ana):
                for jj, a in enumerate(row):
                    if a.size and np.abs(a - again[i][jj]).max() > nondet_tol:
                        return fail(
                            f"backward is not deterministic: two runs differ by {np.abs(a - again[i][jj]).max():.6g} "
                            f"for output {i}, input {diff_idx[jj]} (nondet_tol={nondet_tol:g})"
                        )
        if check_forward_ad:
            fwd = _forward_mode(func, tupled, diff_idx, len(outputs))
            msg = _compare("forward-mode", fwd, num, diff_idx, atol, rtol)
            if msg:
                return fail(msg)
    except GradcheckError as e:
        return fail(str(e))
    return True


def gradgradcheck(func: Callable[..., Any], inputs: Any, grad_outputs: Any = None, *, eps: float = 1e-6,
                  atol: float = 1e-5, rtol: float = 1e-3, raise_exception: bool = True,
                  nondet_tol: float = 0.0, seed: int = 0) -> bool:
    """Whether the second derivatives of ``func`` match finite differences of its gradient.

    Runs :func:`gradcheck` on ``(inputs, grad_outputs) -> grad(func(inputs),
    inputs, grad_outputs, create_graph=True)``. Without ``grad_outputs``,
    random ones (seeded by ``seed``) that require grad are used, so the
    derivative with respect to them is checked too.
    """
    tupled = _as_tuple(inputs)
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        outs = [o for o in _float_outputs(func(*tupled)) if o._requires_grad]
        gos: tuple[Any, ...] = tuple(
            Tensor._make(o._device.xp.asarray(rng.standard_normal(o.shape).astype(o._data.dtype)), o._device)
            .requires_grad_(True)
            for o in outs
        )
    else:
        gos = _as_tuple(grad_outputs)
    n_go = len(gos)
    diff_idx = [j for j, x in enumerate(tupled) if isinstance(x, Tensor) and x._requires_grad]

    def grad_func(*args: Any) -> tuple[Tensor, ...]:
        ins, go = args[: len(args) - n_go], args[len(args) - n_go:]
        outs = [o for o in _float_outputs(func(*ins)) if o._requires_grad]
        diff_ins = [ins[j] for j in diff_idx]
        if not outs or not any(isinstance(x, Tensor) and x._requires_grad for x in diff_ins):
            return ()
        gs = grad(outs, diff_ins, list(go), create_graph=True, allow_unused=True)
        return tuple(g for g in gs if g is not None)

    return gradcheck(grad_func, tupled + gos, eps=eps, atol=atol, rtol=rtol, raise_exception=raise_exception,
                     nondet_tol=nondet_tol)
