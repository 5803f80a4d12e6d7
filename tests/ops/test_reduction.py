"""Composed reductions through the generic harness, plus ties, empty inputs, dtypes and errors."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
import torch_ref as tr
from axonml.errors import DTypeError, IndexingError
from harness import HAS_TORCH, OpSpec, op_tests

T = tr.torch
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")


def _zeros_in(rng, shape):
    """Random values with exact zeros: two in row 0 and one in row 1 (prod/cumprod gradients)."""
    x = rng.uniform(0.5, 1.5, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    flat = x.reshape(shape[0], -1) if x.ndim else x
    if x.size and x.ndim >= 2:
        flat[0, 0] = flat[0, -1] = 0.0
        if shape[0] > 1:
            flat[1, 1] = 0.0
    return x


def _some_zeros(rng, shape):
    x = rng.uniform(-2, 2, size=shape)
    x[rng.uniform(size=shape) < 0.3] = 0.0
    if x.ndim == 2 and x.shape[0] > 1:
        x[1] = 0.0  # a row with only zeros
    return x


def _np_extreme(fn, argfn):
    def ref(x, dim, keepdim=False):
        i = argfn(x, axis=dim)
        return fn(x, axis=dim, keepdims=keepdim), np.expand_dims(i, dim) if keepdim else i

    return ref


def _np_argext(argfn):
    def ref(x, dim=None, keepdim=False):
        if dim is None:
            i = argfn(x)
            return np.asarray(i).reshape((1,) * x.ndim) if keepdim else np.asarray(i)
        i = argfn(x, axis=dim)
        return np.expand_dims(i, dim) if keepdim else i

    return ref


def _np_lse(x, dim, keepdim=False):
    m = np.max(x, axis=dim, keepdims=True, initial=-np.inf)
    m = np.where(np.isinf(m), 0.0, m)
    out = np.log(np.sum(np.exp(x - m), axis=dim, keepdims=True)) + m
    return out if keepdim else np.squeeze(out, axis=dim)


def _np_var(x, dim=None, keepdim=False, correction=1, unbiased=None):
    if unbiased is not None:
        correction = int(unbiased)
    return np.var(x, axis=dim, keepdims=keepdim, ddof=correction)


def _np_std(x, **kw):
    return np.sqrt(_np_var(x, **kw))


def _np_cumprod(x, dim):
    return np.cumprod(x, axis=dim)


def _np_prod(x, dim=None, keepdim=False):
    return np.prod(x, axis=dim, keepdims=keepdim)


def _np_mean(x, dim=None, keepdim=False):
    return np.mean(x, axis=dim, keepdims=keepdim)


def _np_truth(fn):
    return lambda x, dim=None, keepdim=False: fn(x != 0, axis=dim, keepdims=keepdim)


def _m(name: str):
    """``x.<name>(**kw)``: the same call works on axonml and torch tensors."""
    return lambda *xs, **kw: getattr(xs[0], name)(*xs[1:], **kw)


def _t(name: str):
    return tr.fn(name)


S2, S3, EMPTY = ((3, 4),), ((2, 3, 4),), ((2, 0, 3),)
SPECS = [
    OpSpec("sum", ax.sum, lambda x, dim=None, keepdim=False: np.sum(x, axis=dim, keepdims=keepdim),
           (S2, EMPTY, ((),)), torch_fn=_t("sum")),
    OpSpec("sum_dims", _m("sum"), lambda x, dim, keepdim: np.sum(x, axis=dim, keepdims=keepdim), (S3, EMPTY),
           kwargs={"dim": (0, 1), "keepdim": True}, torch_fn=_m("sum")),
    OpSpec("amax", ax.amax, lambda x, dim=None, keepdim=False: np.max(x, axis=dim, keepdims=keepdim), (S2, S3),
           kwargs={"dim": 1}, gradgrad=False, torch_fn=_t("amax")),
    OpSpec("amin", _m("amin"), lambda x, dim=None, keepdim=False: np.min(x, axis=dim, keepdims=keepdim), (S3,),
           kwargs={"dim": (0, 2), "keepdim": True}, gradgrad=False, torch_fn=_m("amin")),
    OpSpec("mean", ax.mean, _np_mean, (S2, ((),)), torch_fn=_t("mean")),
    OpSpec("mean_dim", _m("mean"), _np_mean, (S2, EMPTY), kwargs={"dim": -1, "keepdim": True}, torch_fn=_m("mean")),
    OpSpec("mean_dims", ax.mean, _np_mean, (S3,), kwargs={"dim": (0, 2)}, torch_fn=_t("mean")),
    OpSpec("var", ax.var, _np_var, (S2,), torch_fn=_t("var")),
    OpSpec("var_dim", _m("var"), _np_var, (S3, EMPTY), kwargs={"dim": -1, "correction": 0, "keepdim": True},
           torch_fn=_m("var")),
    OpSpec("var_unbiased", ax.var, _np_var, (S3,), kwargs={"dim": (0, 1), "unbiased": False}, torch_fn=_t("var")),
    OpSpec("std", ax.std, _np_std, (S2,), torch_fn=_t("std")),
    OpSpec("std_dim", _m("std"), _np_std, (S3,), kwargs={"dim": (0, 1), "correction": 2}, torch_fn=_m("std")),
    OpSpec("var_mean", ax.var_mean, lambda x, dim: (_np_var(x, dim=dim), np.mean(x, axis=dim)), (S3,),
           kwargs={"dim": 1}, torch_fn=_t("var_mean")),
    OpSpec("std_mean", ax.std_mean, lambda x, dim, keepdim: (_np_std(x, dim=dim, keepdim=keepdim),
                                                               np.mean(x, axis=dim, keepdims=keepdim)),
           (S3,), kwargs={"dim": (0, 2), "keepdim": True}, torch_fn=_t("std_mean")),
    OpSpec("prod", ax.prod, _np_prod, (S2, ((3, 5),), ((),)), domain=(0.5, 1.5), torch_fn=_t("prod")),
    OpSpec("prod_dim", _m("prod"), _np_prod, (((3, 5),), EMPTY), kwargs={"dim": 1, "keepdim": True},
           torch_fn=_m("prod")),
    OpSpec("prod_zeros", ax.prod, _np_prod, (((3, 5),), ((4, 2),)), input_maker=_zeros_in, torch_fn=_t("prod")),
    OpSpec("prod_zeros_dim", ax.prod, _np_prod, (((3, 7),),), kwargs={"dim": 1}, input_maker=_zeros_in,
           torch_fn=_t("prod")),
    OpSpec("cumsum", ax.cumsum, lambda x, dim: np.cumsum(x, axis=dim), (S2, EMPTY), kwargs={"dim": 1},
           torch_fn=_t("cumsum")),
    OpSpec("cumsum_scalar", _m("cumsum"), lambda x, dim: x.copy(), (((),),), kwargs={"dim": 0}, torch_fn=_m("cumsum")),
    OpSpec("cumprod", ax.cumprod, _np_cumprod, (((3, 5),), EMPTY), kwargs={"dim": 1}, domain=(0.5, 1.5),
           torch_fn=_t("cumprod")),
    OpSpec("cumprod_zeros", _m("cumprod"), _np_cumprod, (((3, 6),),), kwargs={"dim": 1}, input_maker=_zeros_in,
           torch_fn=_m("cumprod")),
    OpSpec("cumprod_dim0", ax.cumprod, _np_cumprod, (((5, 2),),), kwargs={"dim": 0}, input_maker=_zeros_in,
           torch_fn=_t("cumprod")),
    OpSpec("max", ax.max, np.max, (S2, ((),)), gradgrad=False, torch_fn=_t("max")),
    OpSpec("max_dim", ax.max, _np_extreme(np.max, np.argmax), (S2, ((3, 0),)), kwargs={"dim": 0}, gradgrad=False,
           torch_fn=_t("max")),
    OpSpec("max_keepdim", _m("max"), _np_extreme(np.max, np.argmax), (S3,), kwargs={"dim": 1, "keepdim": True},
           gradgrad=False, torch_fn=_m("max")),
    OpSpec("max_binary", ax.max, np.maximum, (((3, 4), (4,)),), gradgrad=False, torch_fn=_t("max")),
    OpSpec("min", ax.min, np.min, (S2,), gradgrad=False, torch_fn=_t("min")),
    OpSpec("min_dim", _m("min"), _np_extreme(np.min, np.argmin), (S3,), kwargs={"dim": -1}, gradgrad=False,
           torch_fn=_m("min")),
    OpSpec("min_binary", ax.min, np.minimum, (((2, 1, 3), (4, 1)),), gradgrad=False, torch_fn=_t("min")),
    OpSpec("argmax", ax.argmax, _np_argext(np.argmax), (S2, S3), grad=False, torch_fn=_t("argmax")),
    OpSpec("argmax_dim", _m("argmax"), _np_argext(np.argmax), (S3,), kwargs={"dim": 1, "keepdim": True},
           grad=False, torch_fn=_m("argmax")),
    OpSpec("argmax_flat_keepdim", ax.argmax, _np_argext(np.argmax), (S3,), kwargs={"keepdim": True}, grad=False,
           torch_fn=_t("argmax")),
    OpSpec("argmin", ax.argmin, _np_argext(np.argmin), (S2,), grad=False, torch_fn=_t("argmin")),
    OpSpec("argmin_dim", ax.argmin, _np_argext(np.argmin), (S3,), kwargs={"dim": -1}, grad=False,
           torch_fn=_t("argmin")),
    OpSpec("aminmax", ax.aminmax, lambda x: (np.min(x), np.max(x)), (S2,), gradgrad=False, torch_fn=_t("aminmax")),
    OpSpec("aminmax_dim", ax.aminmax, lambda x, dim, keepdim: (np.min(x, dim, keepdims=keepdim),
                                                              np.max(x, dim, keepdims=keepdim)),
           (S3,), kwargs={"dim": 1, "keepdim": True}, gradgrad=False, torch_fn=_t("aminmax")),
    OpSpec("logsumexp", ax.logsumexp, _np_lse, (S2, ((3, 0),)), kwargs={"dim": 1}, torch_fn=_t("logsumexp")),
    OpSpec("logsumexp_dims", _m("logsumexp"), _np_lse, (S3,), kwargs={"dim": (0, 2), "keepdim": True},
           domain=(-30.0, 30.0), torch_fn=_m("logsumexp")),
    OpSpec("all", ax.all, _np_truth(np.all), (S2, EMPTY), grad=False, input_maker=_some_zeros, torch_fn=_t("all")),
    OpSpec("all_dim", _m("all"), _np_truth(np.all), (S2, EMPTY), kwargs={"dim": 1}, grad=False,
           input_maker=_some_zeros, torch_fn=_m("all")),
    OpSpec("any", ax.any, _np_truth(np.any), (S2, EMPTY), grad=False, input_maker=_some_zeros, torch_fn=_t("any")),
    OpSpec("any_dim", _m("any"), _np_truth(np.any), (S2, EMPTY), kwargs={"dim": 1, "keepdim": True}, grad=False,
           input_maker=_some_zeros, torch_fn=_m("any")),
    OpSpec("count_nonzero", ax.count_nonzero, lambda x, dim=None: np.count_nonzero(x, axis=dim), (S2, EMPTY),
           grad=False, input_maker=_some_zeros, torch_fn=_t("count_nonzero")),
    OpSpec("count_nonzero_dim", ax.count_nonzero, lambda x, dim=None: np.count_nonzero(x, axis=dim), (S3,),
           kwargs={"dim": (0, 2)}, grad=False, input_maker=_some_zeros, torch_fn=_t("count_nonzero")),
]

globals().update(op_tests(SPECS))


# ----- ties ------------------------------------------------------------------------------------
def test_max_with_dim_sends_the_gradient_to_the_first_index_at_ties():
    x = ax.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 1.0]], requires_grad=True)
    r = x.max(dim=1)
    assert r.indices.tolist() == [1, 0] and r[1].tolist() == [1, 0]
    r.values.sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]


def test_full_max_and_min_split_the_gradient_at_ties():
    x = ax.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 1.0]], requires_grad=True)
    (x.max() + x.min()).backward()
    assert x.grad.tolist() == [[0.5, 0.5, 0.5], [0.0, 0.0, 0.5]]


def test_argmax_argmin_pick_the_first_tie_and_nan():
    x = ax.tensor([[1.0, 3.0, 3.0], [0.0, 0.0, 1.0]])
    assert ax.argmax(x).item() == 1 and ax.argmin(x).item() == 3
    assert x.argmax(1).tolist() == [1, 2] and x.argmin(dim=1).tolist() == [0, 0]
    y = ax.tensor([[1.0, float("nan"), 5.0]])
    v, i = y.max(1)
    assert np.isnan(v.item()) and i.item() == 1 and y.argmin(1).item() == 1


def test_result_types_are_named_tuples():
    x = ax.tensor([[4.0, 1.0], [2.0, 3.0]])
    r = ax.min(x, 0, True)
    assert type(r).__name__ == "min" and r.values.shape == (1, 2) and r.indices.dtype is ax.int64
    mm = x.aminmax(dim=0)
    assert mm.min.tolist() == [2.0, 1.0] and mm.max.tolist() == [4.0, 3.0]


# ----- zeros in products -------------------------------------------------------------------------
@needs_torch
@pytest.mark.parametrize("dim", [None, 0, 1])
def test_prod_gradient_with_zeros_matches_torch(dim):
    data = np.array([[2.0, 0.0, 3.0, -1.5], [0.0, 0.0, 1.0, 4.0], [1.0, 2.0, 3.0, 0.5]])
    x = ax.tensor(data, requires_grad=True)
    tx = T().tensor(data, requires_grad=True)
    (ax.prod(x) if dim is None else ax.prod(x, dim)).sum().backward()
    (T().prod(tx) if dim is None else T().prod(tx, dim)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy())


@needs_torch
def test_cumprod_gradient_with_zeros_matches_torch():
    data = np.array([[2.0, 0.0, 3.0, 0.0, 5.0], [0.0, 1.5, 2.0, -1.0, 3.0]])
    w = np.arange(10.0).reshape(2, 5) - 3
    x = ax.tensor(data, requires_grad=True)
    tx = T().tensor(data, requires_grad=True)
    (x.cumprod(1) * ax.tensor(w)).sum().backward()
    (tx.cumprod(1) * T().tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy())


def test_prod_second_derivative_with_a_zero():
    # d2/dx0 dx1 of x0*x1*x2 at x = (0, 2, 3) is x2 = 3
    x = ax.tensor([0.0, 2.0, 3.0], requires_grad=True)
    (g,) = ax.autograd.grad(ax.prod(x), [x], create_graph=True)
    assert g.tolist() == [6.0, 0.0, 0.0]
    (h,) = ax.autograd.grad(g[0], [x])
    assert h.tolist() == [0.0, 3.0, 2.0]


# ----- logsumexp stability --------------------------------------------------------------------------
def test_logsumexp_is_stable_and_handles_infinite_rows():
    x = ax.tensor([[1000.0, 1000.0], [-1000.0, -1000.0], [-float("inf"), -float("inf")], [float("inf"), 0.0]])
    out = ax.logsumexp(x, 1).tolist()
    np.testing.assert_allclose(out[:2], [1000.0 + np.log(2), -1000.0 + np.log(2)])
    assert out[2] == -float("inf") and out[3] == float("inf")
    assert ax.logsumexp(ax.zeros(2, 0), 1).tolist() == [-float("inf")] * 2


def test_logsumexp_of_integers_is_float():
    out = ax.logsumexp(ax.tensor([1, 2]), 0)
    assert out.dtype is ax.float32
    np.testing.assert_allclose(out.item(), np.log(np.e + np.e**2), rtol=1e-6)


# ----- empty inputs ------------------------------------------------------------------------------
def test_empty_reductions():
    e = ax.zeros(2, 0)
    assert ax.sum(ax.zeros(0)).item() == 0.0 and ax.prod(ax.zeros(0)).item() == 1.0
    assert ax.prod(e, 1).tolist() == [1.0, 1.0]
    assert np.isnan(ax.mean(ax.zeros(0)).item()) and np.isnan(ax.var(ax.zeros(0)).item())
    assert ax.all(e).item() is True and ax.any(e).item() is False
    assert ax.all(e, 1).tolist() == [True, True] and ax.count_nonzero(e).item() == 0
    assert ax.cumsum(e, 1).shape == (2, 0) and ax.cumprod(e, 0).shape == (2, 0)
    v, i = ax.max(e, 0)  # reducing a nonempty dim of an empty tensor is fine
    assert v.shape == (0,) and i.shape == (0,)


@pytest.mark.parametrize("call", [
    lambda e: ax.max(e, 1), lambda e: e.min(dim=1), lambda e: ax.max(e), lambda e: ax.argmax(e),
    lambda e: ax.argmin(e, 1), lambda e: ax.aminmax(e), lambda e: e.aminmax(dim=1),
])
def test_extremes_over_an_empty_dim_raise(call):
    with pytest.raises(IndexingError, match=r"empty|non-zero size"):
        call(ax.zeros(2, 0))


# ----- dtypes ------------------------------------------------------------------------------------
def test_integer_and_bool_dtype_rules():
    i32 = ax.tensor([[1, 2], [3, 4]], dtype=ax.int32)
    assert ax.sum(i32).dtype is ax.int64 and ax.sum(ax.tensor([True, True, False])).item() == 2
    assert ax.prod(i32).dtype is ax.int64 and ax.prod(i32).item() == 24
    assert ax.prod(ax.tensor([True, True])).dtype is ax.int64
    assert ax.prod(i32, 1, dtype=ax.float32).tolist() == [2.0, 12.0]
    assert ax.cumsum(i32, 0).dtype is ax.int64 and ax.cumsum(i32, 0).tolist() == [[1, 2], [4, 6]]
    assert ax.cumprod(ax.tensor([True, True, False]), 0).tolist() == [1, 1, 0]
    assert ax.cumsum(i32, 1, dtype=ax.float64).dtype is ax.float64
    assert ax.max(i32).dtype is ax.int32 and ax.max(i32, 1).values.tolist() == [2, 4]
    assert ax.mean(i32, dtype=ax.float32).item() == 2.5
    assert ax.all(ax.tensor([1, 2], dtype=ax.uint8)).dtype is ax.uint8
    assert ax.any(ax.tensor([0.0, float("nan")])).item() is True


def test_large_integer_products_are_exact():
    x = ax.tensor([3**10, 3**10, 3**10], dtype=ax.int64)
    assert ax.prod(x).item() == 3**30 and ax.cumprod(x, 0).tolist() == [3**10, 3**20, 3**30]


@pytest.mark.parametrize("op", [ax.mean, ax.var, ax.std, ax.var_mean])
def test_mean_and_var_of_integers_raise(op):
    with pytest.raises(DTypeError, match="floating point"):
        op(ax.tensor([1, 2, 3]))


def test_half_precision_accumulates_in_float32():
    x = ax.ones(5000, dtype=ax.float16) * 0.1
    m = x.mean()
    assert m.dtype is ax.float16 and abs(m.item() - 0.0999755859375) < 1e-4
    assert x.var().dtype is ax.float16 and x.var().item() == 0.0
    assert ax.logsumexp(ax.zeros(3, dtype=ax.float16), 0).dtype is ax.float16


# ----- var / std arguments -------------------------------------------------------------------------
@needs_torch
def test_var_std_argument_forms_match_torch():
    data = np.random.default_rng(0).normal(size=(3, 4))
    x, tx = ax.tensor(data), T().tensor(data)
    for args, kw in [((), {}), ((True,), {}), ((False,), {}), ((1,), {}), ((1, False, True), {}),
                     ((), {"dim": 0, "correction": 0}), ((), {"dim": (0, 1), "correction": 2, "keepdim": True})]:
        for name in ("var", "std"):
            ours = getattr(x, name)(*args, **kw)
            theirs = getattr(tx, name)(*args, **kw)
            np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12, err_msg=f"{name}{args}{kw}")


def test_var_rejects_both_unbiased_and_correction_and_handles_no_dof():
    x = ax.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="either"):
        ax.var(x, 0, True, correction=1)
    assert np.isnan(ax.var(ax.tensor([3.0])).item())
    assert ax.var(x, correction=5).item() == float("inf")


# ----- methods, scalars, in-place -----------------------------------------------------------------------
def test_tensor_methods_and_scalars():
    x = ax.tensor([[1.0, 5.0], [3.0, 2.0]])
    assert x.mean(dim=1, keepdim=True).shape == (2, 1) and x.var(correction=0).item() == 2.1875
    assert x.max(dim=1).values.tolist() == [5.0, 3.0] and x.min(0)[0].tolist() == [1.0, 2.0]
    assert x.max(ax.tensor([2.0, 2.0])).tolist() == [[2.0, 5.0], [3.0, 2.0]]
    s = ax.tensor(3.0)
    assert ax.max(s, 0).values.item() == 3.0 and ax.max(s, -1).indices.item() == 0
    assert ax.argmax(s).item() == 0 and ax.cumsum(s, 0).item() == 3.0 and ax.cumprod(s, -1).item() == 3.0
    assert ax.prod(s).item() == 3.0 and ax.mean(s, 0).item() == 3.0 and ax.logsumexp(s, 0).item() == 3.0
    with pytest.raises(IndexingError):
        ax.cumsum(s, 1)
    with pytest.raises(IndexingError):
        x.sum(dim=2)


def test_inplace_scans():
    x = ax.tensor([[1.0, 2.0, 3.0]])
    v = x._version_count() if callable(getattr(x, "_version_count", None)) else None
    assert x.cumsum_(1) is x and x.tolist() == [[1.0, 3.0, 6.0]]
    assert x.cumprod_(1).tolist() == [[1.0, 3.0, 18.0]]
    if v is not None:
        assert x._version_count() > v
    y = ax.tensor([1.0, 2.0], requires_grad=True)
    z = y * 1.0
    z.cumsum_(0)
    z.sum().backward()
    assert y.grad.tolist() == [2.0, 1.0]


def test_cumsum_backward_is_a_reversed_cumsum():
    x = ax.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    (x.cumsum(1) * ax.tensor([1.0, 10.0, 100.0])).sum().backward()
    assert x.grad.tolist() == [[111.0, 110.0, 100.0]]


# ----- norm (lives in linalg_ops; checked here for torch.norm's edge cases) ------------------------------
@pytest.mark.parametrize("p", [2, "fro", 3])
def test_norm_gradient_at_zero_is_zero(p):
    x = ax.zeros(3, requires_grad=True)
    ax.norm(x, p).backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0]


@needs_torch
@pytest.mark.parametrize("p", [2, "fro", 1, float("inf"), -float("inf"), 0, 3, 0.5])
def test_norm_matches_torch(p):
    data = np.random.default_rng(1).normal(size=(3, 4))
    data[0, 0] = 0.0
    got = ax.norm(ax.tensor(data), p, dim=1, keepdim=True).numpy()
    np.testing.assert_allclose(got, T().norm(T().tensor(data), p, dim=1, keepdim=True).numpy(), rtol=1e-12)
    np.testing.assert_allclose(ax.tensor(data).norm(p).item(), T().tensor(data).norm(p).item(), rtol=1e-12)
