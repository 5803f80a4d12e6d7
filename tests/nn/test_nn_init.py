"""nn.init: statistics of the random initializers, structure of the deterministic ones, gains and fans vs PyTorch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml import nn
from axonml.nn import init


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def _w(*shape: int, dtype: Any = ax.float32) -> nn.Parameter:
    return nn.Parameter(ax.empty(*shape, dtype=dtype))


def _a(t: ax.Tensor) -> np.ndarray:
    return t.detach().numpy().astype(np.float64)


GAIN_CASES = [
    ("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None), ("conv_transpose1d", None),
    ("conv_transpose2d", None), ("conv_transpose3d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
    ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 3), ("selu", None),
]


@pytest.mark.torch
@pytest.mark.parametrize("name,param", GAIN_CASES)
def test_calculate_gain_matches_torch(torch: Any, name: str, param: Any) -> None:
    assert init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param), rel=1e-12)


def test_calculate_gain_errors() -> None:
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="not a valid number"):
        init.calculate_gain("leaky_relu", True)  # type: ignore[arg-type]


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(3, 5), (8, 4, 3), (16, 3, 3, 3), (4, 2, 1, 2, 3), (0, 4)])
def test_fans_match_torch(torch: Any, shape: tuple[int, ...]) -> None:
    theirs = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init._calculate_fan_in_and_fan_out(ax.empty(*shape)) == theirs


def test_fan_errors() -> None:
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(ax.empty(5))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(_w(3, 3), mode="fan_avg")


def test_uniform_normal_constant() -> None:
    ax.manual_seed(0)  # a fixed sample: the result must not depend on which tests ran before
    w = _w(200, 100)
    assert init.uniform_(w, -2.0, 3.0) is w
    a = _a(w)
    assert a.min() >= -2.0 and a.max() < 3.0 and abs(a.mean() - 0.5) < 0.05
    assert abs(a.std() - 5 / math.sqrt(12)) < 0.03
    init.normal_(w, 1.5, 0.5)
    # 20,000 draws: the mean's standard error is 0.0035, the std's 0.0025 (bounds at ~5 and 4 of them)
    assert abs(_a(w).mean() - 1.5) < 0.0175 and abs(_a(w).std() - 0.5) < 0.01
    init.constant_(w, 0.25)
    assert np.all(_a(w) == 0.25)
    init.ones_(w)
    assert np.all(_a(w) == 1)
    init.zeros_(w)
    assert not _a(w).any()
    assert w.requires_grad and w.is_leaf and w.grad_fn is None  # filled without recording a graph


def test_generator_makes_draws_reproducible() -> None:
    fns = [
        lambda t, g: init.uniform_(t, generator=g), lambda t, g: init.normal_(t, generator=g),
        lambda t, g: init.trunc_normal_(t, generator=g), lambda t, g: init.xavier_uniform_(t, generator=g),
        lambda t, g: init.xavier_normal_(t, generator=g), lambda t, g: init.kaiming_uniform_(t, generator=g),
        lambda t, g: init.kaiming_normal_(t, generator=g), lambda t, g: init.orthogonal_(t, generator=g),
        lambda t, g: init.sparse_(t, 0.5, generator=g),
    ]
    for fn in fns:
        a = _a(fn(_w(6, 5), ax.Generator().manual_seed(7)))
        b = _a(fn(_w(6, 5), ax.Generator().manual_seed(7)))
        c = _a(fn(_w(6, 5), ax.Generator().manual_seed(8)))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


@pytest.mark.parametrize("mean,std,lo,hi", [(0.0, 1.0, -2.0, 2.0), (1.0, 0.5, 0.5, 3.0), (0.0, 0.02, -0.04, 0.04)])
def test_trunc_normal_statistics(mean: float, std: float, lo: float, hi: float) -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    w = _w(400, 250)
    init.trunc_normal_(w, mean, std, lo, hi)
    a = _a(w)
    assert a.min() >= lo and a.max() <= hi
    dist = scipy_stats.truncnorm((lo - mean) / std, (hi - mean) / std, loc=mean, scale=std)
    assert abs(a.mean() - dist.mean()) < 5 * dist.std() / math.sqrt(a.size)
    assert abs(a.std() - dist.std()) < 0.01 * dist.std()


def test_trunc_normal_warns_when_mean_is_far_outside() -> None:
    with pytest.warns(UserWarning, match="more than 2 std"):
        init.trunc_normal_(_w(3, 3), mean=10.0, std=1.0, a=-1.0, b=1.0)


@pytest.mark.parametrize("shape", [(300, 200), (64, 32, 3, 3)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_xavier_statistics(shape: tuple[int, ...], gain: float) -> None:
    fan_in, fan_out = init._calculate_fan_in_and_fan_out(ax.empty(*shape))
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    u = _a(init.xavier_uniform_(_w(*shape), gain=gain))
    assert np.abs(u).max() <= math.sqrt(3) * std and np.abs(u).max() > 0.98 * math.sqrt(3) * std
    assert abs(u.std() - std) < 0.02 * std
    n = _a(init.xavier_normal_(_w(*shape), gain=gain))
    assert abs(n.std() - std) < 0.02 * std and abs(n.mean()) < 0.02 * std


@pytest.mark.parametrize("a,mode,nonlinearity", [
    (0, "fan_in", "relu"), (0, "fan_out", "relu"), (math.sqrt(5), "fan_in", "leaky_relu"),
    (0.1, "fan_out", "leaky_relu"), (0, "fan_in", "tanh"), (0, "fan_in", "linear"),
])
def test_kaiming_statistics(a: float, mode: str, nonlinearity: str) -> None:
    shape = (128, 64, 3, 3)
    fan = 64 * 9 if mode == "fan_in" else 128 * 9
    std = init.calculate_gain(nonlinearity, a) / math.sqrt(fan)
    u = _a(init.kaiming_uniform_(_w(*shape), a=a, mode=mode, nonlinearity=nonlinearity))
    bound = math.sqrt(3) * std
    assert np.abs(u).max() <= bound and np.abs(u).max() > 0.99 * bound and abs(u.std() - std) < 0.02 * std
    n = _a(init.kaiming_normal_(_w(*shape), a=a, mode=mode, nonlinearity=nonlinearity))
    assert abs(n.std() - std) < 0.02 * std and abs(n.mean()) < 0.02 * std


def test_kaiming_on_zero_elements_warns_and_keeps_tensor() -> None:
    w = _w(0, 3)
    with pytest.warns(UserWarning, match="zero-element"):
        assert init.kaiming_uniform_(w) is w
    with pytest.warns(UserWarning, match="zero-element"):
        init.kaiming_normal_(w)


def test_eye_and_errors() -> None:
    for shape in [(3, 3), (2, 5), (5, 2)]:
        np.testing.assert_array_equal(_a(init.eye_(_w(*shape))), np.eye(*shape))
    with pytest.raises(ValueError, match="Only tensors with 2 dimensions"):
        init.eye_(_w(2, 2, 2))


@pytest.mark.parametrize("shape,groups", [((4, 4, 3), 1), ((6, 3, 3, 3), 2), ((4, 6, 3, 3), 1), ((2, 2, 3, 3, 3), 1),
                                          ((4, 2, 2, 4), 2)])
def test_dirac_structure(shape: tuple[int, ...], groups: int) -> None:
    w = _a(init.dirac_(_w(*shape), groups=groups))
    expected = np.zeros(shape)
    per = shape[0] // groups
    centre = tuple(s // 2 for s in shape[2:])
    for g in range(groups):
        for d in range(min(per, shape[1])):
            expected[(g * per + d, d, *centre)] = 1
    np.testing.assert_array_equal(w, expected)


@pytest.mark.torch
def test_dirac_matches_torch_and_keeps_a_conv_input(torch: Any) -> None:
    for shape, groups in [((6, 3, 3, 3), 2), ((4, 6, 5), 1), ((2, 2, 3, 3, 3), 1)]:
        t = torch.nn.init.dirac_(torch.empty(shape), groups=groups).numpy()
        np.testing.assert_array_equal(_a(init.dirac_(_w(*shape), groups=groups)), t)
    with pytest.raises(ValueError, match="3, 4, or 5 dimensions"):
        init.dirac_(_w(3, 3))
    with pytest.raises(ValueError, match="divisible by groups"):
        init.dirac_(_w(5, 2, 3), groups=2)


@pytest.mark.parametrize("shape", [(5, 5), (3, 7), (7, 3), (4, 2, 3, 3)])
@pytest.mark.parametrize("dtype", [ax.float32, ax.float64])
def test_orthogonal_structure(shape: tuple[int, ...], dtype: Any) -> None:
    w = _a(init.orthogonal_(_w(*shape, dtype=dtype), gain=2.0)).reshape(shape[0], -1) / 2.0
    rows, cols = w.shape
    tol = 1e-5 if dtype == ax.float32 else 1e-12
    if rows <= cols:
        np.testing.assert_allclose(w @ w.T, np.eye(rows), atol=tol)
    else:
        np.testing.assert_allclose(w.T @ w, np.eye(cols), atol=tol)


def test_orthogonal_errors_and_empty() -> None:
    with pytest.raises(ValueError, match="2 or more dimensions"):
        init.orthogonal_(_w(4))
    w = _w(0, 3)
    assert init.orthogonal_(w) is w


def test_orthogonal_is_haar_distributed_not_biased() -> None:
    # the sign fix makes Q uniform: the mean of many draws of one entry is ~0 (without it, the diagonal is biased)
    gen = ax.Generator().manual_seed(0)
    diag = [float(init.orthogonal_(_w(3, 3), generator=gen)[0, 0]) for _ in range(400)]
    assert abs(np.mean(diag)) < 0.1


def test_sparse_structure() -> None:
    w = _a(init.sparse_(_w(40, 30), sparsity=0.25, std=0.5))
    zeros_per_col = (w == 0).sum(axis=0)
    assert np.all(zeros_per_col == 10)  # ceil(0.25 * 40) rows in every column
    nz = w[w != 0]
    assert abs(nz.std() - 0.5) < 0.05
    assert len({tuple(np.nonzero(w[:, j] == 0)[0]) for j in range(30)}) > 1  # columns draw their own rows
    with pytest.raises(ValueError, match="Only tensors with 2 dimensions"):
        init.sparse_(_w(2, 2, 2), 0.1)
    np.testing.assert_array_equal(_a(init.sparse_(_w(4, 3), sparsity=1.0)), np.zeros((4, 3)))


def test_initializers_work_in_float16_and_on_plain_tensors() -> None:
    w = ax.empty(64, 32, dtype=ax.float16)
    for fn in (init.kaiming_uniform_, init.xavier_normal_, init.orthogonal_, init.trunc_normal_):
        out = fn(w)
        assert out is w and w.dtype == ax.float16 and np.isfinite(_a(w)).all()
    with pytest.raises(TypeError, match="expected a Tensor"):
        init.normal_(np.zeros(3))  # type: ignore[arg-type]


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_initializers_on_cuda() -> None:
    gen = ax.Generator("cuda").manual_seed(3)
    w = nn.Parameter(ax.empty(64, 48, device="cuda"))
    for fn in (init.xavier_uniform_, init.kaiming_normal_, init.trunc_normal_, init.orthogonal_):
        assert fn(w, generator=gen) is w and w.device.type == "cuda"
    q = w.detach().cpu().numpy().astype(np.float64)
    np.testing.assert_allclose(q.T @ q, np.eye(48), atol=1e-5)  # orthogonal_ ran last
    init.sparse_(w, 0.5, generator=gen)
    assert np.all((w.detach().cpu().numpy() == 0).sum(axis=0) == 32)
    init.dirac_(c := nn.Parameter(ax.empty(4, 4, 3, 3, device="cuda")))
    assert float(c.detach().sum()) == 4.0
    init.eye_(e := nn.Parameter(ax.empty(3, 3, device="cuda")))
    np.testing.assert_array_equal(e.detach().cpu().numpy(), np.eye(3))
    with pytest.raises(ax.errors.DeviceError):
        init.normal_(w, generator=ax.Generator("cpu"))
