"""Matrix products, einsum, norms and axonml.linalg through the harness, plus their error cases."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
import torch_ref as tr
from axonml.errors import AutogradError, DTypeError, ShapeError
from harness import DEVICES, HAS_TORCH, OpSpec, op_tests

INF = float("inf")


def well_conditioned(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform entries; square matrices get a dominant positive diagonal (invertible, det > 0)."""
    a = rng.uniform(-1, 1, size=shape)
    if len(shape) >= 2 and shape[-1] == shape[-2]:
        n = shape[-1]
        a = 0.5 * a + n * np.eye(n)
    return a


def _spd(a: np.ndarray) -> np.ndarray:
    return a @ np.swapaxes(a, -1, -2) + a.shape[-1] * np.eye(a.shape[-1])


def _ax_spd(a: ax.Tensor) -> ax.Tensor:
    return a @ a.mT + ax.eye(a.shape[-1], dtype=a.dtype, device=a.device) * a.shape[-1]


def _t_spd(a):
    torch = tr.torch()
    return a @ a.mT + torch.eye(a.shape[-1], dtype=a.dtype) * a.shape[-1]


def _solve_ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    vector = b.ndim == 1 or (b.ndim == a.ndim - 1 and b.shape == a.shape[:-1])
    return np.linalg.solve(a, b[..., None])[..., 0] if vector else np.linalg.solve(a, b)


def _ein(eq: str, name: str, shapes: tuple, ref=None, **kw) -> OpSpec:
    return OpSpec(
        name, lambda *ts: ax.einsum(eq, *ts), ref or (lambda *a: np.einsum(eq, *a)), shapes,
        torch_fn=lambda *ts: tr.torch().einsum(eq, *ts), **kw,
    )


def _vnorm(name: str, ord, dim=None, keepdim=False, shapes=(((3, 4),), ((2, 0),)), **kw) -> OpSpec:  # noqa: A002
    def ref(x: np.ndarray) -> np.ndarray:
        axes = tuple(range(x.ndim)) if dim is None else ((dim,) if isinstance(dim, int) else dim)
        a = np.abs(x)
        if ord == INF:
            r = a.max(axis=axes, keepdims=keepdim)
        elif ord == 0:
            r = (a != 0).sum(axis=axes, keepdims=keepdim).astype(x.dtype)
        else:
            r = (a**ord).sum(axis=axes, keepdims=keepdim) ** (1 / ord)
        return r

    return OpSpec(
        name, lambda x: ax.linalg.vector_norm(x, ord, dim, keepdim), ref, shapes,
        torch_fn=lambda x: tr.torch().linalg.vector_norm(x, ord, dim, keepdim), **kw,
    )


def _mnorm(name: str, ord, dim=(-2, -1), keepdim=False, shapes=(((3, 4),), ((2, 3, 3),)), **kw) -> OpSpec:  # noqa: A002
    def ref(x: np.ndarray) -> np.ndarray:
        moved = np.moveaxis(x, dim, (-2, -1))
        r = np.linalg.norm(moved, ord=ord, axis=(-2, -1))
        if keepdim:
            for d in sorted(i % x.ndim for i in dim):
                r = np.expand_dims(r, d)
        return r

    return OpSpec(
        name, lambda x: ax.linalg.matrix_norm(x, ord, dim, keepdim), ref, shapes,
        torch_fn=lambda x: tr.torch().linalg.matrix_norm(x, ord, dim, keepdim), **kw,
    )


SQUARE = (((3, 3),), ((2, 4, 4),), ((1, 1),), ((0, 0),))
WC = {"input_maker": well_conditioned}

SPECS = [
    OpSpec("mm", ax.mm, np.matmul, (((3, 4), (4, 5)), ((0, 4), (4, 2)), ((3, 0), (0, 2))), torch_fn=tr.fn("mm")),
    OpSpec("bmm", ax.bmm, np.matmul, (((2, 3, 4), (2, 4, 5)), ((0, 3, 4), (0, 4, 2))), torch_fn=tr.fn("bmm")),
    OpSpec("mv", ax.mv, np.matmul, (((3, 4), (4,)), ((0, 4), (4,))), torch_fn=tr.fn("mv")),
    OpSpec("dot", ax.dot, np.dot, (((5,), (5,)), ((0,), (0,))), torch_fn=tr.fn("dot")),
    OpSpec("outer", ax.outer, np.outer, (((3,), (4,)), ((0,), (2,))), torch_fn=tr.fn("outer")),
    OpSpec("inner", ax.inner, np.inner, (((2, 3), (4, 3)), ((3,), (3,)), ((), (2, 3)), ((2, 0), (3, 0))),
           torch_fn=tr.fn("inner")),
    OpSpec("linalg.matmul", ax.linalg.matmul, np.matmul, (((2, 3, 4), (4,)),), torch_fn=lambda a, b: a @ b),
    _ein("ij,jk->ik", "einsum", (((3, 4), (4, 5)), ((0, 4), (4, 2)))),
    _ein("ij,jk", "einsum_implicit", (((3, 4), (4, 5)),)),
    _ein("bij,bjk->bik", "einsum_batched", (((2, 3, 4), (2, 4, 5)),)),
    _ein("bhqd,bhkd->bhqk", "einsum_attention", (((2, 2, 3, 4), (2, 2, 5, 4)),)),
    _ein("ii->i", "einsum_diagonal", (((3, 3),),)),
    _ein("ii", "einsum_trace", (((3, 3),),)),
    _ein("iji->j", "einsum_diag3", (((2, 3, 2),),)),
    _ein("aab,bc->ac", "einsum_diag_contract", (((2, 2, 3), (3, 4)),)),
    _ein("...ij,...jk", "einsum_ellipsis", (((5, 1, 2, 3), (4, 3, 2)),),
         ref=lambda a, b: np.matmul(a, b)),
    _ein("...i,...i->...", "einsum_ellipsis_dot", (((2, 3), (3,)),)),
    _ein("i,j->ij", "einsum_outer", (((2,), (3,)),)),
    _ein("ij,ij->", "einsum_full", (((2, 3), (2, 3)), ((0, 3), (0, 3)))),
    _ein("ij,jk,kl->il", "einsum_chain", (((2, 3), (3, 4), (4, 5)),)),
    _ein("i,ij,j", "einsum_bilinear", (((3,), (3, 4), (4,)),)),
    _ein("ab,cd->", "einsum_sums", (((2, 3), (4, 5)),)),
    _ein("i,i", "einsum_size1_broadcast", (((1,), (3,)),), ref=lambda a, b: (a * b).sum()),
    _ein("ij,jk", "einsum_size1_contract", (((2, 1), (3, 4)),), ref=lambda a, b: a @ b.sum(0, keepdims=True)),
    _ein("Ba,aB->B", "einsum_upper", (((2, 3), (3, 2)),)),
    OpSpec("det", ax.det, np.linalg.det, SQUARE, torch_fn=tr.fn("det"), **WC),
    OpSpec("linalg.det", ax.linalg.det, np.linalg.det, SQUARE[:2], torch_fn=lambda a: tr.torch().linalg.det(a), **WC),
    OpSpec("inverse", ax.inverse, np.linalg.inv, SQUARE, torch_fn=tr.fn("inverse"), **WC),
    OpSpec("linalg.inv", ax.linalg.inv, np.linalg.inv, SQUARE[:2], torch_fn=lambda a: tr.torch().linalg.inv(a), **WC),
    OpSpec("logdet", ax.logdet, lambda a: np.log(np.linalg.det(a)), SQUARE, torch_fn=tr.fn("logdet"), **WC),
    OpSpec("slogdet", ax.slogdet, lambda a: tuple(np.linalg.slogdet(a)), SQUARE, torch_fn=tr.fn("slogdet"), **WC),
    OpSpec("linalg.solve", ax.linalg.solve, _solve_ref,
           (((3, 3), (3, 2)), ((2, 3, 3), (3,)), ((2, 3, 3), (2, 3)), ((3, 3), (2, 3, 4)), ((1, 3, 3), (2, 3, 1)),
            ((0, 0), (0, 2))),
           torch_fn=lambda a, b: tr.torch().linalg.solve(a, b), **WC),
    OpSpec("linalg.solve_right", lambda a, b: ax.linalg.solve(a, b, left=False),
           lambda a, b: np.swapaxes(np.linalg.solve(np.swapaxes(a, -1, -2), np.swapaxes(b, -1, -2)), -1, -2),
           (((3, 3), (2, 3)),), torch_fn=lambda a, b: tr.torch().linalg.solve(a, b, left=False), **WC),
    OpSpec("linalg.cholesky", lambda a: ax.linalg.cholesky(_ax_spd(a)), lambda a: np.linalg.cholesky(_spd(a)),
           (((3, 3),), ((2, 4, 4),), ((0, 0),)), torch_fn=lambda a: tr.torch().linalg.cholesky(_t_spd(a))),
    OpSpec("linalg.cholesky_upper", lambda a: ax.linalg.cholesky(_ax_spd(a), upper=True),
           lambda a: np.swapaxes(np.linalg.cholesky(_spd(a)), -1, -2), (((3, 3),),),
           torch_fn=lambda a: tr.torch().linalg.cholesky(_t_spd(a), upper=True)),
    OpSpec("linalg.cholesky_sym", lambda a: ax.linalg.cholesky((a + a.mT) * 0.5),
           lambda a: np.linalg.cholesky((a + np.swapaxes(a, -1, -2)) / 2), (((3, 3),), ((2, 4, 4),)), **WC),
    OpSpec("linalg.svdvals", ax.linalg.svdvals, lambda a: np.linalg.svd(a, compute_uv=False),
           (((3, 4),), ((2, 4, 3),), ((0, 3),)), gradgrad=False,
           torch_fn=lambda a: tr.torch().linalg.svdvals(a)),
    _vnorm("linalg.vector_norm", 2),
    _vnorm("linalg.vector_norm_dim", 2, dim=1, keepdim=True),
    _vnorm("linalg.vector_norm_1", 1, dim=(0,), gradgrad=False),
    _vnorm("linalg.vector_norm_3", 3),
    _vnorm("linalg.vector_norm_half", 0.5, domain=(0.3, 2.0), shapes=(((3, 4),),)),
    _vnorm("linalg.vector_norm_inf", INF, dim=1, gradgrad=False, shapes=(((3, 4),),)),
    _vnorm("linalg.vector_norm_0", 0, dim=1, grad=False),
    _mnorm("linalg.matrix_norm", "fro"),
    _mnorm("linalg.matrix_norm_nuc", "nuc", gradgrad=False),
    _mnorm("linalg.matrix_norm_2", 2, dim=(0, 2), keepdim=True, shapes=(((3, 2, 4),),), gradgrad=False),
    _mnorm("linalg.matrix_norm_neg2", -2, gradgrad=False),
    _mnorm("linalg.matrix_norm_1", 1, gradgrad=False),
    _mnorm("linalg.matrix_norm_inf", INF, dim=(1, 0), gradgrad=False, shapes=(((3, 4),),)),
    _mnorm("linalg.matrix_norm_neg1", -1, keepdim=True, gradgrad=False),
    OpSpec("linalg.norm", ax.linalg.norm, lambda x: np.sqrt((x**2).sum()), (((2, 3, 4),), ((0,),)),
           torch_fn=lambda x: tr.torch().linalg.norm(x)),
    OpSpec("linalg.norm_matrix", lambda x: ax.linalg.norm(x, "fro", (0, 1)),
           lambda x: np.linalg.norm(x, "fro", (0, 1)), (((3, 4, 2),),),
           torch_fn=lambda x: tr.torch().linalg.norm(x, "fro", (0, 1))),
    OpSpec("linalg.norm_ord_2d", lambda x: ax.linalg.norm(x, INF), lambda x: np.linalg.norm(x, INF),
           (((3, 4),),), gradgrad=False, torch_fn=lambda x: tr.torch().linalg.norm(x, INF)),
    OpSpec("norm", ax.norm, lambda x: np.sqrt((x**2).sum()), (((3, 4),), ((),)), torch_fn=tr.fn("norm")),
    OpSpec("norm_p_dim", lambda x: x.norm(3, dim=1, keepdim=True),
           lambda x: (np.abs(x) ** 3).sum(1, keepdims=True) ** (1 / 3), (((3, 4),),),
           torch_fn=lambda x: x.norm(3, dim=1, keepdim=True)),
    OpSpec("norm_nuc", lambda x: ax.norm(x, "nuc"), lambda x: np.linalg.norm(x, "nuc"), (((3, 4),),),
           gradgrad=False, torch_fn=lambda x: tr.torch().norm(x, "nuc")),
]

globals().update(op_tests(SPECS))


def _t(a, **kw) -> ax.Tensor:
    return ax.tensor(np.asarray(a, dtype=np.float64), **kw)


# ----- shape and dtype errors ------------------------------------------------------------
@pytest.mark.parametrize(
    ("fn", "shapes"),
    [
        (ax.mm, ((3,), (3, 2))), (ax.mm, ((2, 3), (2, 3))), (ax.mm, ((2, 2, 3), (3, 2))),
        (ax.bmm, ((2, 3), (3, 2))), (ax.bmm, ((2, 2, 3), (3, 3, 2))), (ax.bmm, ((2, 2, 3), (2, 4, 2))),
        (ax.mv, ((2, 3), (2,))), (ax.mv, ((3,), (3,))),
        (ax.dot, ((3,), (4,))), (ax.dot, ((2, 3), (2, 3))),
        (ax.outer, ((2, 3), (3,))), (ax.inner, ((2, 3), (2, 4))),
        (ax.linalg.inv, ((2, 3),)), (ax.linalg.det, ((3,),)), (ax.linalg.solve, ((3, 3), (4, 2))),
        (ax.linalg.solve, ((2, 3, 3), (3, 3, 1))), (ax.linalg.cholesky, ((3, 2),)), (ax.linalg.svdvals, ((3,),)),
        (lambda x: ax.linalg.matrix_norm(x), ((3,),)), (lambda x: ax.linalg.norm(x, 2), ((2, 2, 2),)),
        (lambda x: ax.linalg.matrix_norm(x, dim=(1, 1)), ((3, 3),)),
    ],
)
def test_shape_errors(fn, shapes) -> None:
    with pytest.raises(ShapeError):
        fn(*[ax.ones(*s, dtype=ax.float64) for s in shapes])


def test_integer_inputs_rejected_by_linalg() -> None:
    m = ax.tensor([[2, 1], [1, 2]])
    for fn in (ax.linalg.inv, ax.linalg.det, ax.linalg.cholesky, ax.linalg.vector_norm, ax.linalg.svdvals):
        with pytest.raises(DTypeError):
            fn(m)
    with pytest.raises(ValueError):
        ax.linalg.vector_norm(_t([1.0]), "fro")
    with pytest.raises(ValueError):
        ax.linalg.matrix_norm(_t(np.eye(2)), 3)


def test_integer_products_keep_dtype() -> None:
    a = ax.tensor([[1, 2], [3, 4]], dtype=ax.int32)
    assert ax.mm(a, a).tolist() == [[7, 10], [15, 22]]
    out = ax.einsum("ij,jk->ik", a, a)
    assert out.dtype is ax.int32 and out.tolist() == [[7, 10], [15, 22]]
    assert ax.einsum("ii", a).item() == 5


# ----- einsum semantics --------------------------------------------------------------------
def test_einsum_forms() -> None:
    a, b = _t(np.arange(6).reshape(2, 3)), _t(np.arange(12).reshape(3, 4))
    ref = a.numpy() @ b.numpy()
    np.testing.assert_allclose(ax.einsum("ij,jk->ik", [a, b]).numpy(), ref)
    np.testing.assert_allclose(ax.einsum(" i j , j k -> i k ", a, b).numpy(), ref)
    np.testing.assert_allclose(ax.einsum("ij->ji", a).numpy(), a.numpy().T)
    same = ax.einsum("ij->ij", a)
    assert same is not a and np.shares_memory(same.numpy(), a.numpy())
    assert ax.einsum("...ij->ij", _t(np.ones((2, 3, 4)))).shape == (3, 4)  # ellipsis dims missing from output sum
    assert ax.einsum("ij...", _t(np.ones((2, 3, 4)))).shape == (4, 2, 3)  # implicit: ellipsis first


@pytest.mark.parametrize(
    ("eq", "shapes", "err"),
    [
        ("ij,jk", ((2, 3),), ValueError), ("ij", ((2, 3, 4),), ShapeError), ("ijk", ((2, 3),), ShapeError),
        ("ij,jk", ((2, 3), (4, 5)), ShapeError), ("i1", ((2, 3),), ValueError), ("ij->k", ((2, 3),), ValueError),
        ("ij->ii", ((2, 3),), ValueError), ("ii", ((2, 3),), ShapeError), ("i.j", ((2, 3),), ValueError),
    ],
)
def test_einsum_errors(eq, shapes, err) -> None:
    with pytest.raises(err):
        ax.einsum(eq, *[ax.ones(*s) for s in shapes])


def test_einsum_second_order_with_shared_index() -> None:
    # d2/dx2 of sum_i (x_i * sum_j A_ij x_j) = A + A^T
    a = _t(np.arange(9.0).reshape(3, 3))
    x = _t([1.0, -2.0, 0.5], requires_grad=True)
    y = ax.einsum("i,ij,j->", x, a, x)
    (g,) = ax.autograd.grad(y, [x], create_graph=True)
    rows = [ax.autograd.grad(g[i], [x], retain_graph=True)[0].numpy() for i in range(3)]
    np.testing.assert_allclose(np.stack(rows), a.numpy() + a.numpy().T)


# ----- determinants, inverse, Cholesky -----------------------------------------------------
SINGULAR = [[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]]


def test_det_gradient_at_singular_matrix_matches_torch() -> None:
    x = _t(SINGULAR, requires_grad=True)
    ax.linalg.det(x).backward()
    expected = np.array([[4.0, 4.0, -4.0], [-2.0, -2.0, 2.0], [0.0, 0.0, 0.0]])  # adj(A)^T
    np.testing.assert_allclose(x.grad.numpy(), expected, atol=1e-12)
    with pytest.raises(ax.linalg.LinAlgError):  # documented: 2nd derivative needs an invertible matrix
        (g,) = ax.autograd.grad(ax.linalg.det(x), [x], create_graph=True)
        ax.autograd.grad(g.sum(), [x])


@pytest.mark.parametrize("device", DEVICES)
def test_singular_and_indefinite_raise(device: str) -> None:
    exact = _t([[1.0, 2.0], [2.0, 4.0]], device=device)  # LU meets an exactly zero pivot in any order
    with pytest.raises(ax.linalg.LinAlgError):
        ax.linalg.inv(exact)
    with pytest.raises(ax.linalg.LinAlgError):
        ax.linalg.solve(exact, _t([1.0, 2.0], device=device))
    with pytest.raises(ax.linalg.LinAlgError):
        ax.linalg.cholesky(_t([[1.0, 2.0], [2.0, 1.0]], device=device))
    assert isinstance(ax.linalg.LinAlgError("x"), RuntimeError)
    assert ax.linalg.det(exact).item() == 0.0
    sign, logabs = ax.linalg.slogdet(exact)
    assert sign.item() == 0.0 and logabs.item() == -INF
    assert np.isnan(ax.logdet(_t([[-1.0, 0.0], [0.0, 2.0]], device=device)).item())


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_cholesky_gradient_is_symmetric_like_torch() -> None:
    import torch

    rng = np.random.default_rng(0)
    a = _spd(rng.standard_normal((4, 4)))
    w = rng.standard_normal((4, 4))
    x = _t(a, requires_grad=True)
    (ax.linalg.cholesky(x) * _t(w)).sum().backward()
    xt = torch.tensor(a, requires_grad=True)
    (torch.linalg.cholesky(xt) * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(x.grad.numpy(), x.grad.numpy().T, atol=1e-12)


def test_half_precision_is_computed_in_float32() -> None:
    a = ax.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=ax.float16)
    inv = ax.linalg.inv(a)
    assert inv.dtype is ax.float16
    np.testing.assert_allclose(inv.numpy().astype(np.float64), np.linalg.inv(a.numpy().astype(np.float64)), rtol=1e-3)
    assert ax.linalg.det(a.to(ax.bfloat16)).dtype is ax.bfloat16


def test_svdvals_is_first_order_only() -> None:
    x = _t([[3.0, 1.0], [1.0, 2.0], [0.0, 1.0]], requires_grad=True)
    (g,) = ax.autograd.grad(ax.linalg.svdvals(x).sum(), [x], create_graph=True)
    with pytest.raises(AutogradError):
        ax.autograd.grad(g.sum(), [x])


def test_norm_gradient_at_zero_is_zero() -> None:
    for ord_ in (2, 3):
        x = ax.zeros(4, dtype=ax.float64, requires_grad=True)
        ax.linalg.vector_norm(x, ord_).backward()
        assert x.grad.tolist() == [0.0] * 4
    x = ax.zeros(2, 2, dtype=ax.float64, requires_grad=True)
    x.norm().backward()
    assert not np.isnan(x.grad.numpy()).any()


def test_norm_dtype_argument() -> None:
    x = ax.tensor([3.0, 4.0])
    out = ax.linalg.vector_norm(x, dtype=ax.float64)
    assert out.dtype is ax.float64 and out.item() == 5.0
