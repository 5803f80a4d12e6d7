"""Normalization layers vs torch.nn: state-dict keys, dtypes, default values and reprs; outputs, running
statistics and gradients (inputs and every parameter) in float64, in training and in eval mode."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
from module_parity import cpu_vs_cuda

import axonml as ax
from axonml.nn.modules.normalization import (
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
    LayerNorm,
    LocalResponseNorm,
    RMSNorm,
)

TOL = {"rtol": 1e-9, "atol": 1e-10}


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def _np(t: Any) -> np.ndarray:
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def _same_state(m: Any, tm: Any) -> None:
    """Equal state-dict keys (in order), shapes, dtypes and values."""
    sd, tsd = m.state_dict(), tm.state_dict()
    assert list(sd) == list(tsd)
    for k in sd:
        a, b = _np(sd[k]), _np(tsd[k])
        assert a.shape == b.shape and a.dtype == b.dtype, k
        np.testing.assert_allclose(a, b, **TOL, err_msg=k)


def _load(m: Any, tm: Any) -> None:
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})


def _step(m: Any, tm: Any, x0: np.ndarray, torch: Any, seed: int) -> None:
    """One forward and backward of both; outputs, input gradients and parameter gradients must agree."""
    x, tx = ax.tensor(x0, requires_grad=True), torch.tensor(x0, requires_grad=True)
    y, ty = m(x), tm(tx)
    np.testing.assert_allclose(_np(y), _np(ty), **TOL)
    g = np.random.default_rng(seed).standard_normal(y.shape)
    (y * ax.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(_np(x.grad), _np(tx.grad), **TOL)
    for (n, p), (tn, tp) in zip(m.named_parameters(), tm.named_parameters(), strict=True):
        assert n == tn
        np.testing.assert_allclose(_np(p.grad), _np(tp.grad), **TOL, err_msg=n)
    m.zero_grad()
    tm.zero_grad()


BN = [(BatchNorm1d, (6, 3)), (BatchNorm1d, (4, 3, 5)), (BatchNorm2d, (3, 3, 4, 2)), (BatchNorm3d, (2, 3, 2, 3, 2))]


@pytest.mark.torch
@pytest.mark.parametrize("cls,shape", BN, ids=["1d-2d", "1d-3d", "2d", "3d"])
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("affine,bias,track", [(True, True, True), (False, True, True), (True, False, True),
                                               (True, True, False)], ids=["affine", "plain", "nobias", "untracked"])
def test_batchnorm_train_eval_matches_torch(torch: Any, cls: Any, shape: tuple[int, ...], momentum: Any,
                                            affine: bool, bias: bool, track: bool) -> None:
    kw = {"momentum": momentum, "affine": affine, "track_running_stats": track, "bias": bias}
    tm = getattr(torch.nn, cls.__name__)(3, **kw).double()
    m = cls(3, **kw, dtype=ax.float64)
    assert repr(m) == repr(tm)
    _same_state(m, tm)
    if affine:  # non-default affine parameters, so that their gradients are meaningful
        with torch.no_grad():
            for p in tm.parameters():
                p.add_(torch.randn(p.shape, dtype=torch.float64) * 0.3)
        _load(m, tm)
    rng = np.random.default_rng(0)
    for step in range(3):  # the running statistics and the batch count after several steps equal PyTorch's
        _step(m, tm, rng.standard_normal(shape) * 2 + 1, torch, step)
        _same_state(m, tm)
    m.eval()
    tm.eval()
    _step(m, tm, rng.standard_normal(shape), torch, 9)
    _same_state(m, tm)  # eval leaves the statistics alone


@pytest.mark.torch
def test_batchnorm_cumulative_average_and_counter(torch: Any) -> None:
    m = BatchNorm1d(2, momentum=None, dtype=ax.float64)
    xs = [np.random.default_rng(i).standard_normal((5, 2)) for i in range(4)]
    for x in xs:
        m(ax.tensor(x))
    assert m.num_batches_tracked.item() == 4 and m.num_batches_tracked.dtype == ax.int64
    # momentum=None: the running mean is the plain average of the batch means
    np.testing.assert_allclose(_np(m.running_mean), np.mean([x.mean(0) for x in xs], 0), **TOL)
    np.testing.assert_allclose(_np(m.running_var), np.mean([x.var(0, ddof=1) for x in xs], 0), **TOL)
    m.reset_running_stats()
    assert m.num_batches_tracked.item() == 0 and list(_np(m.running_var)) == [1.0, 1.0]
    m.double()
    assert m.num_batches_tracked.dtype == ax.int64  # conversions leave the integer counter alone
    m.eval()
    x = ax.tensor(xs[0])
    np.testing.assert_allclose(_np(m(x)), xs[0] / np.sqrt(1 + 1e-5), **TOL)


@pytest.mark.torch
def test_batchnorm_loads_old_checkpoints_without_counter(torch: Any) -> None:
    tm = torch.nn.BatchNorm2d(3)
    tm(torch.randn(4, 3, 2, 2))
    sd = OrderedDict((k, v.numpy()) for k, v in tm.state_dict().items() if k != "num_batches_tracked")
    m = BatchNorm2d(3)
    m.num_batches_tracked.fill_(7)
    m.load_state_dict(sd)  # no version metadata: a pre-counter checkpoint, the counter is kept
    assert m.num_batches_tracked.item() == 7
    np.testing.assert_allclose(_np(m.running_mean), _np(tm.running_mean), rtol=1e-6)
    sd._metadata = OrderedDict([("", {"version": 2})])  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="num_batches_tracked"):
        m.load_state_dict(sd)
    assert m.state_dict()._metadata[""]["version"] == 2


@pytest.mark.torch
def test_batchnorm_state_dict_loads_into_torch(torch: Any) -> None:
    m = BatchNorm2d(3, momentum=None)
    for i in range(3):
        m(ax.tensor(np.random.default_rng(i).standard_normal((4, 3, 2, 2)).astype(np.float32)))
    tm = torch.nn.BatchNorm2d(3, momentum=None)
    tm.load_state_dict({k: torch.from_numpy(_np(v).copy()) for k, v in m.state_dict().items()})
    assert tm.num_batches_tracked.item() == 3 and tm.num_batches_tracked.dtype == torch.int64
    x = np.random.default_rng(9).standard_normal((2, 3, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(_np(m.eval()(ax.tensor(x))), _np(tm.eval()(torch.tensor(x))), rtol=1e-5, atol=1e-6)


@pytest.mark.torch
@pytest.mark.parametrize("cls,shape", [(InstanceNorm1d, (3, 4, 5)), (InstanceNorm2d, (2, 4, 3, 3)),
                                       (InstanceNorm3d, (2, 4, 2, 3, 2)), (InstanceNorm1d, (4, 5)),
                                       (InstanceNorm2d, (4, 3, 3))],
                         ids=["1d", "2d", "3d", "1d-unbatched", "2d-unbatched"])
@pytest.mark.parametrize("affine,track", [(False, False), (True, False), (True, True), (False, True)])
def test_instancenorm_matches_torch(torch: Any, cls: Any, shape: tuple[int, ...], affine: bool,
                                    track: bool) -> None:
    tm = getattr(torch.nn, cls.__name__)(4, affine=affine, track_running_stats=track).double()
    m = cls(4, affine=affine, track_running_stats=track, dtype=ax.float64)
    assert repr(m) == repr(tm)
    _same_state(m, tm)
    if affine:
        with torch.no_grad():
            for p in tm.parameters():
                p.add_(torch.randn(p.shape, dtype=torch.float64) * 0.3)
        _load(m, tm)
    rng = np.random.default_rng(1)
    for step in range(2):
        _step(m, tm, rng.standard_normal(shape) * 3 - 1, torch, step)
        _same_state(m, tm)
    m.eval()
    tm.eval()
    _step(m, tm, rng.standard_normal(shape), torch, 5)  # with tracking: the running statistics normalize


def test_instancenorm_defaults_and_errors() -> None:
    m = InstanceNorm2d(3)
    assert m.affine is False and m.track_running_stats is False and list(m.state_dict()) == []
    assert m.weight is None and m.running_mean is None
    with pytest.raises(ValueError, match="expected 3D or 4D input"):
        m(ax.randn(2, 3, 4, 4, 1))
    with pytest.raises(ValueError, match="num_features"):
        InstanceNorm1d(3, affine=True)(ax.randn(2, 4, 5))
    with pytest.warns(UserWarning, match="num_features"):
        InstanceNorm1d(3)(ax.randn(2, 4, 5))


def test_batchnorm_errors() -> None:
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        BatchNorm1d(3)(ax.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="expected 4D input"):
        BatchNorm2d(3)(ax.randn(2, 3, 4))
    with pytest.raises(ValueError, match="expected 5D input"):
        BatchNorm3d(3)(ax.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm1d(3)(ax.randn(1, 3))
    m = BatchNorm1d(3).eval()
    assert m(ax.randn(1, 3)).shape == (1, 3)  # eval mode uses the running statistics: one sample is fine


@pytest.mark.torch
@pytest.mark.parametrize("shape,norm_shape,affine,bias", [((4, 5), 5, True, True), ((2, 3, 4), [3, 4], True, True),
                                                          ((2, 3, 4), (4,), True, False), ((3, 4), 4, False, True)])
def test_layernorm_matches_torch(torch: Any, shape: tuple[int, ...], norm_shape: Any, affine: bool,
                                 bias: bool) -> None:
    tm = torch.nn.LayerNorm(norm_shape, eps=1e-4, elementwise_affine=affine, bias=bias).double()
    m = LayerNorm(norm_shape, eps=1e-4, elementwise_affine=affine, bias=bias, dtype=ax.float64)
    assert repr(m) == repr(tm) and m.normalized_shape == tm.normalized_shape
    _same_state(m, tm)
    with torch.no_grad():
        for p in tm.parameters():
            p.add_(torch.randn(p.shape, dtype=torch.float64))
    _load(m, tm)
    _step(m, tm, np.random.default_rng(2).standard_normal(shape), torch, 0)


@pytest.mark.torch
@pytest.mark.parametrize("groups,channels,shape,affine,bias", [(2, 4, (3, 4, 5), True, True),
                                                               (1, 3, (2, 3), True, False),
                                                               (3, 3, (2, 3, 2, 2), False, True)])
def test_groupnorm_matches_torch(torch: Any, groups: int, channels: int, shape: tuple[int, ...], affine: bool,
                                 bias: bool) -> None:
    tm = torch.nn.GroupNorm(groups, channels, affine=affine, bias=bias).double()
    m = GroupNorm(groups, channels, affine=affine, bias=bias, dtype=ax.float64)
    assert repr(m) == repr(tm)
    _same_state(m, tm)
    with torch.no_grad():
        for p in tm.parameters():
            p.add_(torch.randn(p.shape, dtype=torch.float64))
    _load(m, tm)
    _step(m, tm, np.random.default_rng(3).standard_normal(shape), torch, 1)
    with pytest.raises(ValueError, match="divisible"):
        GroupNorm(3, 4)


@pytest.mark.torch
@pytest.mark.parametrize("norm_shape,eps,affine", [(4, None, True), ([3, 4], 1e-3, True), (4, 1e-6, False)])
def test_rmsnorm_matches_torch(torch: Any, norm_shape: Any, eps: Any, affine: bool) -> None:
    tm = torch.nn.RMSNorm(norm_shape, eps=eps, elementwise_affine=affine).double()
    m = RMSNorm(norm_shape, eps=eps, elementwise_affine=affine, dtype=ax.float64)
    assert repr(m) == repr(tm)
    _same_state(m, tm)
    with torch.no_grad():
        for p in tm.parameters():
            p.add_(torch.randn(p.shape, dtype=torch.float64))
    _load(m, tm)
    _step(m, tm, np.random.default_rng(4).standard_normal((2, 3, 4)), torch, 2)


@pytest.mark.torch
@pytest.mark.parametrize("size,shape", [(3, (2, 5, 4)), (2, (2, 4, 3, 3))])
def test_local_response_norm_matches_torch(torch: Any, size: int, shape: tuple[int, ...]) -> None:
    tm = torch.nn.LocalResponseNorm(size, alpha=0.1, beta=0.6, k=2.0)
    m = LocalResponseNorm(size, alpha=0.1, beta=0.6, k=2.0)
    assert repr(m) == repr(tm) and list(m.state_dict()) == []
    _step(m, tm, np.random.default_rng(5).standard_normal(shape), torch, 3)


def test_norm_layers_default_dtype_and_float32_forward() -> None:
    for m in (BatchNorm2d(3), LayerNorm(4), GroupNorm(1, 3), RMSNorm(4), InstanceNorm1d(3, affine=True)):
        for _, p in m.named_parameters():
            assert p.dtype == ax.float32 and p.requires_grad
    m = BatchNorm2d(3)
    assert m.running_mean.dtype == ax.float32 and m.num_batches_tracked.dtype == ax.int64
    y = m(ax.randn(4, 3, 2, 2))
    assert y.dtype == ax.float32 and m.num_batches_tracked.item() == 1


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_norm_layers_on_cuda_match_cpu() -> None:
    rng = np.random.default_rng(0)
    bn = BatchNorm1d(3, momentum=None, dtype=ax.float64)
    for _ in range(2):  # each call copies the CPU module's current statistics, then both take a step
        cpu_vs_cuda(bn, [rng.standard_normal((5, 3, 4))])
    cpu_vs_cuda(bn.eval(), [rng.standard_normal((5, 3, 4))])
    assert BatchNorm2d(3, device="cuda").num_batches_tracked.device.type == "cuda"
    for m, shape in ((InstanceNorm1d(3, affine=True, track_running_stats=True, dtype=ax.float64), (2, 3, 5)),
                     (LayerNorm([3, 4], dtype=ax.float64), (2, 3, 4)), (GroupNorm(2, 4, dtype=ax.float64), (2, 4, 3)),
                     (RMSNorm(4, dtype=ax.float64), (3, 4)), (LocalResponseNorm(2), (2, 4, 3))):
        cpu_vs_cuda(m, [rng.standard_normal(shape)])
