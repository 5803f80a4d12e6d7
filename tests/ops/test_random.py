"""Random sampling: shapes, dtypes, statistics, seeding, generators, errors, in-place initializers."""

from __future__ import annotations

import numpy as np
import pytest

import axonml as ax
from axonml.errors import AutogradError, DeviceError, DTypeError, ShapeError
from harness import DEVICES

# Public random functions: not differentiable, so they are checked here instead of by the op harness.
NONDIFF_NAMES = [
    "rand", "randn", "randint", "randperm", "normal", "bernoulli", "multinomial",
    "rand_like", "randn_like", "randint_like", "manual_seed", "seed", "initial_seed",
    "get_rng_state", "set_rng_state", "Generator", "default_generator",
]
N = 200_000


@pytest.fixture(autouse=True)
def _restore_default_state():
    state = ax.get_rng_state()
    yield
    ax.set_rng_state(state)


def test_names_are_public() -> None:
    for name in NONDIFF_NAMES:
        assert name in ax.ops.__all__ and hasattr(ax, name), name
    for method in ("uniform_", "normal_", "bernoulli_", "random_", "exponential_", "log_normal_", "cauchy_",
                   "geometric_", "bernoulli", "multinomial"):
        assert hasattr(ax.Tensor, method), method


def _np(t: ax.Tensor) -> np.ndarray:
    return np.asarray(t.detach().cpu().numpy())


# ----- shapes and dtypes ---------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_shapes_dtypes_devices(device: str) -> None:
    assert ax.rand(2, 3, device=device).shape == (2, 3)
    assert ax.rand((2, 3), device=device).dtype is ax.float32
    assert ax.randn([4], dtype=ax.float64, device=device).dtype is ax.float64
    assert ax.rand(0, 3, device=device).shape == (0, 3)
    assert ax.randn(device=device).shape == ()
    r = ax.randint(3, 7, (5, 2), device=device)
    assert r.shape == (5, 2) and r.dtype is ax.int64 and str(r.device) == ax.device(device).__str__()
    assert ax.randint(10, (3,), dtype=ax.float32, device=device).dtype is ax.float32
    assert ax.randint(0, 5, size=(2,), dtype=ax.int32, device=device).dtype is ax.int32
    p = ax.randperm(10, device=device)
    assert sorted(_np(p).tolist()) == list(range(10)) and p.dtype is ax.int64
    assert ax.randperm(0, device=device).shape == (0,)
    x = ax.zeros(2, 3, dtype=ax.float64, device=device)
    assert ax.rand_like(x).dtype is ax.float64 and ax.randn_like(x).shape == (2, 3)
    assert ax.randint_like(x, 4).dtype is ax.float64
    assert ax.randint_like(ax.zeros(3, dtype=ax.int32, device=device), 2, 5).dtype is ax.int32
    t = ax.rand(3, requires_grad=True, device=device)
    assert t.requires_grad and t.is_leaf


@pytest.mark.parametrize("dtype", [ax.float16, ax.bfloat16])
def test_half_precision_uniform_stays_below_one(dtype) -> None:
    u = ax.rand(N, dtype=dtype)
    assert u.dtype is dtype
    v = _np(u.float())
    assert v.min() >= 0.0 and v.max() < 1.0
    assert abs(v.mean() - 0.5) < 0.01
    assert ax.randn(10, dtype=dtype).dtype is dtype


# ----- statistics ------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_statistics(device: str) -> None:
    ax.manual_seed(1)
    u = _np(ax.rand(N, dtype=ax.float64, device=device))
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 5e-3 and abs(u.var() - 1 / 12) < 2e-3
    z = _np(ax.randn(N, device=device))
    assert abs(z.mean()) < 1e-2 and abs(z.var() - 1) < 2e-2
    k = _np(ax.randint(-2, 3, (N,), device=device))
    assert k.min() == -2 and k.max() == 2
    np.testing.assert_allclose(np.bincount(k + 2) / N, 0.2, atol=5e-3)
    n = _np(ax.normal(3.0, 2.0, (N,), device=device))
    assert abs(n.mean() - 3) < 3e-2 and abs(n.std() - 2) < 3e-2
    mean = ax.tensor([0.0, 10.0], device=device).reshape(2, 1)
    std = ax.tensor([1.0, 0.5, 0.0], device=device)
    s = _np(ax.normal(mean, std))
    assert s.shape == (2, 3) and s[0, 2] == 0.0 and s[1, 2] == 10.0


@pytest.mark.parametrize("device", DEVICES)
def test_bernoulli(device: str) -> None:
    p = ax.tensor([0.0, 0.25, 0.9, 1.0], dtype=ax.float64, device=device)
    draws = _np(ax.bernoulli(p.expand(N // 4, 4).contiguous()))
    assert set(np.unique(draws)) <= {0.0, 1.0}
    np.testing.assert_allclose(draws.mean(0), [0.0, 0.25, 0.9, 1.0], atol=1e-2)
    assert draws[:, 0].max() == 0.0 and draws[:, 3].min() == 1.0
    assert ax.bernoulli(p).dtype is ax.float64
    assert abs(_np(ax.bernoulli(ax.zeros(N, device=device), 0.3)).mean() - 0.3) < 1e-2
    assert abs(_np(ax.zeros(N, device=device).bernoulli()).mean()) == 0.0


@pytest.mark.parametrize("device", DEVICES)
def test_multinomial(device: str) -> None:
    ax.manual_seed(2)
    w = ax.tensor([[1.0, 0.0, 3.0, 4.0], [0.0, 0.0, 1.0, 0.0]], device=device)
    draws = _np(ax.multinomial(w, 20_000, replacement=True))
    assert draws.shape == (2, 20_000) and draws.dtype == np.int64
    np.testing.assert_allclose(np.bincount(draws[0], minlength=4) / 20_000, [0.125, 0, 0.375, 0.5], atol=1.5e-2)
    assert (draws[1] == 2).all()
    one = ax.multinomial(ax.tensor([0.2, 0.8], device=device), 3, True)
    assert one.shape == (3,)
    # without replacement: distinct, never a zero weight, first draw follows the weights
    w2 = ax.tensor([1.0, 2.0, 0.0, 7.0], device=device)
    firsts = []
    for _ in range(2000):
        d = _np(ax.multinomial(w2, 3))
        assert len(set(d.tolist())) == 3 and 2 not in d
        firsts.append(d[0])
    np.testing.assert_allclose(np.bincount(firsts, minlength=4) / 2000, [0.1, 0.2, 0.0, 0.7], atol=3e-2)
    rows = _np(ax.multinomial(ax.ones(5, 6, device=device), 6))
    assert all(sorted(r) == list(range(6)) for r in rows.tolist())
    assert _np(w.multinomial(1)).shape == (2, 1)


# ----- seeding and generators ----------------------------------------------------------------------
def _draw_all(device: str = "cpu", generator: ax.Generator | None = None) -> list[np.ndarray]:
    kw = {"generator": generator, "device": device}
    x = ax.zeros(4, device=device)
    return [
        _np(ax.rand(3, **kw)), _np(ax.randn(3, **kw)), _np(ax.randint(0, 100, (3,), **kw)), _np(ax.randperm(5, **kw)),
        _np(ax.normal(0.0, 1.0, (2,), **kw)), _np(ax.bernoulli(ax.full((4,), 0.5, device=device), generator=generator)),
        _np(ax.multinomial(ax.ones(6, device=device), 3, generator=generator)),
        _np(x.uniform_(-1, 1, generator=generator)), _np(x.normal_(generator=generator)),
        _np(x.exponential_(generator=generator)), _np(x.random_(10, generator=generator)),
    ]


@pytest.mark.parametrize("device", DEVICES)
def test_manual_seed_reproduces(device: str) -> None:
    ax.manual_seed(123)
    a = _draw_all(device)
    ax.manual_seed(123)
    b = _draw_all(device)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = _draw_all(device)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    g1, g2 = ax.Generator(device).manual_seed(5), ax.Generator(device).manual_seed(5)
    for x, y in zip(_draw_all(device, g1), _draw_all(device, g2)):
        np.testing.assert_array_equal(x, y)


def test_generator_independent_of_default() -> None:
    ax.manual_seed(0)
    ref = _np(ax.rand(4))
    ax.manual_seed(0)
    g = ax.Generator().manual_seed(99)
    ax.rand(10, generator=g)
    ax.randn(3, generator=g)
    np.testing.assert_array_equal(_np(ax.rand(4)), ref)  # the default stream did not move
    g2 = ax.Generator().manual_seed(100)
    assert not np.array_equal(_np(ax.rand(4, generator=g.manual_seed(99))), _np(ax.rand(4, generator=g2)))


def test_state_roundtrip_and_seeds() -> None:
    g = ax.Generator()
    assert g.initial_seed() == ax.Generator().initial_seed()  # a fixed default seed, as PyTorch
    g.manual_seed(7)
    ax.rand(2, generator=g)
    state = g.get_state()
    assert state.dtype is ax.uint8 and state.shape == (16,)
    a = _np(ax.randn(5, generator=g))
    g.set_state(state)
    np.testing.assert_array_equal(_np(ax.randn(5, generator=g)), a)
    s = g.seed()
    assert isinstance(s, int) and g.initial_seed() == s
    assert ax.manual_seed(-1).initial_seed() == 2**64 - 1
    assert ax.initial_seed() == 2**64 - 1
    st = ax.get_rng_state()
    x = _np(ax.rand(3))
    ax.set_rng_state(st)
    np.testing.assert_array_equal(_np(ax.rand(3)), x)
    assert isinstance(ax.seed(), int)
    assert ax.default_generator is ax.manual_seed(3)


def test_seed_and_state_errors() -> None:
    with pytest.raises(TypeError):
        ax.manual_seed(1.5)
    with pytest.raises(ValueError):
        ax.manual_seed(2**64)
    with pytest.raises(ValueError):
        ax.Generator().set_state(ax.zeros(3, dtype=ax.uint8))
    with pytest.raises(TypeError):
        ax.rand(2, generator=np.random.default_rng())
    with pytest.raises(DeviceError):
        ax.rand(2, generator=ax.Generator("cpu"), device="cuda")


# ----- argument errors -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "err"),
    [
        (lambda: ax.rand(2, dtype=ax.int64), DTypeError),
        (lambda: ax.randn(-1), ValueError),
        (lambda: ax.randint(5, 5, (2,)), ValueError),
        (lambda: ax.randint(5, 2, (2,)), ValueError),
        (lambda: ax.randint(5), TypeError),
        (lambda: ax.randperm(-1), ValueError),
        (lambda: ax.normal(0.0, -1.0, (2,)), ValueError),
        (lambda: ax.normal(0.0, 1.0), TypeError),
        (lambda: ax.normal(ax.zeros(2), ax.tensor([1.0, -1.0])), ValueError),
        (lambda: ax.normal(ax.zeros(2), ax.ones(3)), ShapeError),
        (lambda: ax.bernoulli(ax.tensor([0.5, 1.5])), ValueError),
        (lambda: ax.bernoulli(ax.tensor([-0.1])), ValueError),
        (lambda: ax.bernoulli(ax.zeros(2), 2.0), ValueError),
        (lambda: ax.bernoulli(ax.tensor([1, 0])), DTypeError),
        (lambda: ax.multinomial(ax.tensor([0.5, -0.1]), 1), ValueError),
        (lambda: ax.multinomial(ax.tensor([0.0, 0.0]), 1, True), ValueError),
        (lambda: ax.multinomial(ax.tensor([1.0, float("nan")]), 1), ValueError),
        (lambda: ax.multinomial(ax.tensor([1.0, 1.0]), 3), ValueError),
        (lambda: ax.multinomial(ax.tensor([1.0, 0.0, 1.0]), 3), ValueError),
        (lambda: ax.multinomial(ax.tensor([1.0]), 0), ValueError),
        (lambda: ax.multinomial(ax.ones(2, 2, 2), 1), ShapeError),
        (lambda: ax.multinomial(ax.tensor([1, 2]), 1), DTypeError),
        (lambda: ax.zeros(2, dtype=ax.int64).uniform_(), DTypeError),
        (lambda: ax.zeros(2).uniform_(1, 0), ValueError),
        (lambda: ax.zeros(2).normal_(0, -1), ValueError),
        (lambda: ax.zeros(2).exponential_(0), ValueError),
        (lambda: ax.zeros(2).geometric_(1.5), ValueError),
        (lambda: ax.zeros(2).bernoulli_(1.2), ValueError),
    ],
)
def test_bad_arguments(call, err) -> None:
    with pytest.raises(err):
        call()


# ----- in-place initializers ----------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_inplace_initializers(device: str) -> None:
    ax.manual_seed(4)
    x = ax.zeros(N, dtype=ax.float64, device=device)
    v0 = x._version_count
    assert x.uniform_(-2, 4) is x and x._version_count == v0 + 1
    v = _np(x)
    assert v.min() >= -2 and v.max() < 4 and abs(v.mean() - 1) < 2e-2
    v = _np(x.normal_(5, 0.5))
    assert abs(v.mean() - 5) < 1e-2 and abs(v.std() - 0.5) < 1e-2
    v = _np(x.bernoulli_(0.3))
    assert set(np.unique(v)) <= {0.0, 1.0} and abs(v.mean() - 0.3) < 1e-2
    v = _np(x.bernoulli_(ax.full((N,), 0.8, dtype=ax.float64, device=device)))
    assert abs(v.mean() - 0.8) < 1e-2
    v = _np(x.exponential_(2.0))
    assert v.min() >= 0 and abs(v.mean() - 0.5) < 1e-2
    v = _np(x.log_normal_(0.0, 0.25))
    assert abs(np.log(v).mean()) < 1e-2 and abs(np.log(v).std() - 0.25) < 1e-2
    v = _np(x.cauchy_(1.0, 2.0))
    assert abs(np.median(v) - 1.0) < 5e-2
    v = _np(x.geometric_(0.25))
    assert v.min() >= 1 and abs(v.mean() - 4) < 0.1
    v = _np(x.random_(3, 6))
    assert set(np.unique(v)) == {3.0, 4.0, 5.0}
    v = _np(x.random_())
    assert v.min() >= 0 and v.max() <= 2**53 and (v == np.round(v)).all()
    i = ax.zeros(1000, dtype=ax.int8, device=device).random_()
    assert _np(i).min() >= 0 and i.dtype is ax.int8
    b = ax.zeros(1000, dtype=ax.int64, device=device).bernoulli_(0.5)
    assert set(np.unique(_np(b))) == {0, 1}


def test_inplace_under_autograd() -> None:
    w = ax.zeros(3, requires_grad=True)
    with pytest.raises(AutogradError):
        w.uniform_()
    with ax.no_grad():
        w.uniform_()  # what nn.init does
    assert w.requires_grad and w.is_leaf
    # a non-leaf overwritten by random values: its history gets a zero gradient, as in PyTorch
    x = ax.ones(3, requires_grad=True)
    y = x * 2
    y.normal_()
    (y * 3).sum().backward()
    assert x.grad is not None and x.grad.tolist() == [0.0, 0.0, 0.0]


def test_samples_carry_no_history() -> None:
    mean = ax.zeros(3, requires_grad=True)
    assert not ax.normal(mean, 1.0).requires_grad
    assert not ax.bernoulli(ax.full((3,), 0.5, requires_grad=True)).requires_grad
