"""Conv1d/2d/3d and ConvTranspose1d/2d/3d modules against torch.nn: outputs and gradients of the input,
weight and bias in float64 over many configurations (every padding mode, 'same' with even kernels and
dilation, groups and depthwise, transposed with output_size), reprs, state_dict keys, default init."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml.errors import ShapeError
from axonml.nn.modules.conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")  # PyTorch's, on even kernels

CONV = {1: Conv1d, 2: Conv2d, 3: Conv3d}
CONVT = {1: ConvTranspose1d, 2: ConvTranspose2d, 3: ConvTranspose3d}


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def _pair_up(torch: Any, ours_cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """(ours, torch's) built with the same arguments in float64, ours holding torch's parameters."""
    tm = getattr(torch.nn, ours_cls.__name__)(*args, **kwargs, dtype=torch.float64)
    m = ours_cls(*args, **kwargs, dtype=ax.float64)
    assert list(m.state_dict()) == list(tm.state_dict())
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    assert repr(m) == repr(tm)
    return m, tm


def _compare(torch: Any, m: Any, tm: Any, shape: tuple[int, ...], seed: int = 0, **call: Any) -> None:
    """Forward and backward (with a random upstream gradient) of both modules on one random input."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(shape)
    x, tx = ax.tensor(x0, requires_grad=True), torch.tensor(x0, requires_grad=True)
    y, ty = m(x, **call), tm(tx, **call)
    assert y.shape == tuple(ty.shape) and y.dtype == ax.float64
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    g0 = rng.standard_normal(tuple(ty.shape))
    y.backward(ax.tensor(g0))
    ty.backward(torch.tensor(g0))
    pairs = [(x.grad, tx.grad), (m.weight.grad, tm.weight.grad)]
    if tm.bias is not None:
        pairs.append((m.bias.grad, tm.bias.grad))
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-9, atol=1e-9)


# ----- convolutions ---------------------------------------------------------------------------------------
# (n, in, out, kernel, kwargs, spatial size)
CONV_CASES = [
    (1, 3, 4, 3, {}, (9,)),
    (1, 2, 4, 4, {"stride": 2, "padding": 1, "dilation": 2}, (11,)),
    (1, 4, 4, 3, {"groups": 4, "bias": False}, (8,)),
    (1, 2, 3, 4, {"padding": "same"}, (7,)),
    (1, 2, 3, 2, {"padding": "same", "dilation": 3}, (8,)),
    (1, 2, 3, 5, {"padding": "valid"}, (8,)),
    (2, 3, 4, 3, {}, (6, 7)),
    (2, 3, 6, (2, 3), {"stride": (2, 1), "padding": (1, 2)}, (7, 6)),
    (2, 4, 6, 3, {"groups": 2, "dilation": (2, 1), "padding": 2}, (8, 7)),
    (2, 4, 8, 3, {"groups": 4, "padding": 1}, (6, 6)),  # depthwise with channel multiplier 2
    (2, 2, 3, (4, 2), {"padding": "same", "dilation": (1, 3)}, (7, 8)),
    (2, 2, 3, (2, 2), {"padding": "same", "dilation": 2}, (6, 5)),
    (2, 3, 2, 3, {"padding": "valid", "stride": 2, "bias": False}, (9, 8)),
    (3, 2, 3, 2, {"padding": 1}, (4, 5, 3)),
    (3, 2, 4, (3, 2, 2), {"stride": (1, 2, 1), "padding": "valid", "groups": 2}, (5, 6, 4)),
    (3, 2, 2, (2, 3, 2), {"padding": "same", "dilation": (2, 1, 1)}, (5, 4, 4)),
]
MODES = ["zeros", "reflect", "replicate", "circular"]


@pytest.mark.torch
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CONV_CASES, ids=[f"{c[0]}d-{i}" for i, c in enumerate(CONV_CASES)])
def test_conv_matches_torch(torch: Any, case: tuple[Any, ...], mode: str) -> None:
    n, cin, cout, k, kw, size = case
    m, tm = _pair_up(torch, CONV[n], (cin, cout, k), {**kw, "padding_mode": mode})
    _compare(torch, m, tm, (2, cin, *size))


@pytest.mark.torch
@pytest.mark.parametrize("mode", MODES)
def test_conv_unbatched_input_matches_torch(torch: Any, mode: str) -> None:
    for n, kw, size in [(1, {"padding": 2}, (7,)), (2, {"padding": "same"}, (5, 6)), (3, {"padding": 1}, (3, 4, 3))]:
        m, tm = _pair_up(torch, CONV[n], (2, 3, 2 if n == 2 else 3), {**kw, "padding_mode": mode})
        _compare(torch, m, tm, (2, *size), seed=n)


@pytest.mark.torch
def test_conv_reversed_padding_amounts_match_torch(torch: Any) -> None:
    for n, k, kw in [(1, 4, {"padding": "same", "dilation": 3}), (2, (4, 3), {"padding": "same", "dilation": (1, 2)}),
                     (2, 3, {"padding": (1, 2)}), (3, (2, 5, 4), {"padding": "same"}), (2, 3, {"padding": "valid"}),
                     (3, 3, {"padding": (0, 1, 2)})]:
        m, tm = CONV[n](1, 1, k, **kw), getattr(torch.nn, f"Conv{n}d")(1, 1, k, **kw)
        assert list(m._reversed_padding_repeated_twice) == list(tm._reversed_padding_repeated_twice)


@pytest.mark.torch
def test_conv_reprs_and_attributes_match_torch(torch: Any) -> None:
    configs: list[tuple[int, tuple[Any, ...], dict[str, Any]]] = [
        (1, (3, 6, 3), {}),
        (1, (4, 8, [5]), {"stride": [2], "padding": "valid", "bias": False}),
        (2, (3, 6, (3, 5)), {"stride": 2, "padding": (1, 2), "dilation": 2, "groups": 3, "padding_mode": "reflect"}),
        (2, (4, 4, 2), {"padding": "same", "padding_mode": "circular"}),
        (3, (2, 4, 3), {"padding": 1, "padding_mode": "replicate", "bias": False}),
    ]
    for n, args, kw in configs:
        m, tm = CONV[n](*args, **kw), getattr(torch.nn, f"Conv{n}d")(*args, **kw)
        assert repr(m) == repr(tm)
        for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "transposed",
                     "output_padding", "groups", "padding_mode"):
            assert getattr(m, attr) == getattr(tm, attr), attr
        assert list(m.state_dict()) == list(tm.state_dict())
        assert [(k, tuple(v.shape)) for k, v in m.state_dict().items()] == \
               [(k, tuple(v.shape)) for k, v in tm.state_dict().items()]
    tconfigs: list[tuple[int, tuple[Any, ...], dict[str, Any]]] = [
        (1, (3, 6, 3), {}),
        (2, (4, 6, (3, 2)), {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2, "dilation": (1, 2)}),
        (3, (2, 2, 2), {"bias": False, "output_padding": (0, 1, 0), "stride": 2}),
    ]
    for n, args, kw in tconfigs:
        m, tm = CONVT[n](*args, **kw), getattr(torch.nn, f"ConvTranspose{n}d")(*args, **kw)
        assert repr(m) == repr(tm) and list(m.state_dict()) == list(tm.state_dict())
        assert m.weight.shape == tuple(tm.weight.shape) and m.transposed


def _init_bounds(torch: Any, tm: Any) -> tuple[float, float]:
    """The weight and bias bounds that torch's reset_parameters uses (kaiming_uniform_(a=sqrt(5)))."""
    fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(tm.weight)
    gain = torch.nn.init.calculate_gain("leaky_relu", math.sqrt(5))
    return gain * math.sqrt(3.0 / fan_in), 1 / math.sqrt(fan_in)


@pytest.mark.torch
@pytest.mark.parametrize("cls_name, args, kw", [
    ("Conv1d", (16, 32, 5), {}),
    ("Conv2d", (8, 16, 3), {}),
    ("Conv2d", (32, 32, 3), {"groups": 32}),  # depthwise: fan_in 9
    ("Conv3d", (4, 8, (3, 2, 3)), {"groups": 2}),
    ("ConvTranspose1d", (8, 12, 4), {"groups": 4}),
    ("ConvTranspose2d", (16, 8, 3), {}),
    ("ConvTranspose3d", (4, 6, 2), {}),
])
def test_default_init_matches_torch_statistics(torch: Any, cls_name: str, args: tuple[Any, ...],
                                               kw: dict[str, Any]) -> None:
    ax.manual_seed(0)
    m = {**{c.__name__: c for c in CONV.values()}, **{c.__name__: c for c in CONVT.values()}}[cls_name](*args, **kw)
    tm = getattr(torch.nn, cls_name)(*args, **kw)
    wb, bb = _init_bounds(torch, tm)
    assert m.weight.dtype == ax.float32 and m.weight.requires_grad and m.bias.requires_grad
    w, b = m.weight.detach().numpy().copy(), m.bias.detach().numpy()
    tw = tm.weight.detach().numpy()
    assert np.abs(w).max() <= wb and np.abs(w).max() > 0.95 * wb
    assert abs(w.mean()) < 0.05 * wb
    assert abs(w.std() - wb / math.sqrt(3)) < 0.05 * wb  # U(-k, k) has std k / sqrt(3)
    assert abs(w.std() - tw.std()) < 0.1 * wb
    assert np.abs(b).max() <= bb and len(set(b.tolist())) == b.size
    # a second layer draws different values; the seed makes them reproducible
    ax.manual_seed(0)
    again = type(m)(*args, **kw)
    np.testing.assert_array_equal(again.weight.detach().numpy(), w)
    m.reset_parameters()
    assert not np.array_equal(m.weight.detach().numpy(), w)


# ----- transposed convolutions ---------------------------------------------------------------------------
CONVT_CASES = [
    (1, 3, 4, 3, {}, (6,)),
    (1, 4, 6, 4, {"stride": 3, "padding": 1, "output_padding": 2, "groups": 2}, (5,)),
    (1, 2, 2, 3, {"dilation": 2, "stride": 2, "output_padding": 1, "bias": False}, (5,)),
    (2, 3, 4, 3, {}, (4, 5)),
    (2, 4, 6, (3, 2), {"stride": (2, 3), "padding": (1, 0), "output_padding": (1, 2), "groups": 2}, (4, 3)),
    (2, 4, 4, 3, {"groups": 4, "stride": 2, "dilation": (2, 1), "padding": 1}, (3, 4)),  # depthwise
    (3, 2, 3, 2, {"stride": 2, "output_padding": (1, 0, 1)}, (2, 3, 2)),
    (3, 4, 2, (2, 3, 2), {"groups": 2, "padding": (0, 1, 1), "dilation": (1, 1, 2), "bias": False}, (3, 2, 3)),
]


@pytest.mark.torch
@pytest.mark.parametrize("case", CONVT_CASES, ids=[f"{c[0]}d-{i}" for i, c in enumerate(CONVT_CASES)])
def test_conv_transpose_matches_torch(torch: Any, case: tuple[Any, ...]) -> None:
    n, cin, cout, k, kw, size = case
    m, tm = _pair_up(torch, CONVT[n], (cin, cout, k), kw)
    _compare(torch, m, tm, (2, cin, *size))
    _compare(torch, m, tm, (cin, *size), seed=1)  # unbatched (fresh grads: the input differs, grads accumulate)


@pytest.mark.torch
@pytest.mark.parametrize("n", [1, 2, 3])
def test_conv_transpose_output_size_matches_torch(torch: Any, n: int) -> None:
    kw = {"stride": 3, "padding": 1, "dilation": 2} if n < 3 else {"stride": 2}
    m, tm = _pair_up(torch, CONVT[n], (2, 4, 3), kw)
    size = (3, 4, 2)[:n]
    base = [((s - 1) * kw["stride"] - 2 * kw.get("padding", 0) + kw.get("dilation", 1) * 2 + 1) for s in size]
    for extra in range(kw["stride"]):
        target = [b + extra for b in base]
        for out in (target, [2, 4, *target]):  # spatial sizes, or with the batch and channel dims
            m.zero_grad()
            tm.zero_grad()
            _compare(torch, m, tm, (2, 2, *size), seed=extra, output_size=out)
    m.zero_grad()
    tm.zero_grad()
    _compare(torch, m, tm, (2, *size), output_size=[4, *base])  # unbatched: (C, *S) also accepted
    x = ax.zeros((1, 2, *size), dtype=ax.float64)
    with pytest.raises(ValueError, match="valid sizes range"):
        m(x, output_size=[b + kw["stride"] for b in base])
    with pytest.raises(ValueError, match="valid sizes range"):
        m(x, output_size=[b - 1 for b in base])
    with pytest.raises(ValueError, match=f"output_size must have {n} or {n + 2} elements"):
        m(x, output_size=[*base, 1, 1, 1][: n + 1])


# ----- errors and use ---------------------------------------------------------------------------------------
@pytest.mark.torch
def test_constructor_errors_match_torch(torch: Any) -> None:
    bad: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("Conv2d", (3, 4, 3), {"groups": 2}),
        ("Conv2d", (4, 3, 3), {"groups": 2}),
        ("Conv2d", (4, 4, 3), {"groups": 0}),
        ("Conv2d", (4, 4, 3), {"padding": "full"}),
        ("Conv2d", (4, 4, 3), {"padding": "same", "stride": 2}),
        ("Conv1d", (4, 4, 3), {"padding_mode": "mirror"}),
        ("ConvTranspose2d", (4, 4, 3), {"padding_mode": "reflect"}),
    ]
    ours = {**{c.__name__: c for c in CONV.values()}, **{c.__name__: c for c in CONVT.values()}}
    for name, args, kw in bad:
        with pytest.raises(ValueError):
            getattr(torch.nn, name)(*args, **kw)
        with pytest.raises(ValueError):
            ours[name](*args, **kw)
    with pytest.raises(ValueError, match="kernel_size"):
        Conv2d(1, 1, (3, 3, 3))
    with pytest.raises(ValueError, match="padding"):
        ConvTranspose2d(1, 1, 3, padding="same")


def test_forward_errors_are_clear() -> None:
    m = Conv2d(3, 4, 3)
    with pytest.raises(ShapeError, match="expects input with 3 channels"):
        m(ax.zeros(1, 2, 5, 5))
    with pytest.raises(ShapeError, match="4-D"):
        m(ax.zeros(5, 5))
    with pytest.raises(ShapeError, match="reflect padding"):
        Conv1d(1, 1, 5, padding=3, padding_mode="reflect")(ax.zeros(1, 1, 3))


def test_conv_forward_with_a_derived_weight_and_training() -> None:
    """Subclasses may call ``_conv_forward`` with a transformed weight (weight standardization)."""

    class WSConv(Conv2d):
        def forward(self, input: ax.Tensor) -> ax.Tensor:  # noqa: A002
            w = self.weight
            w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
            return self._conv_forward(input, w, self.bias)

    ax.manual_seed(1)
    m = WSConv(2, 3, 3, padding=1, padding_mode="reflect", dtype=ax.float64)
    x = ax.randn(2, 2, 5, 5, dtype=ax.float64)
    target = ax.randn(2, 3, 5, 5, dtype=ax.float64)
    losses = []
    for _ in range(5):
        loss = ((m(x) - target) ** 2).mean()
        losses.append(loss.item())
        m.zero_grad()
        loss.backward()
        with ax.no_grad():
            for p in m.parameters():
                p.sub_(0.2 * p.grad)
    assert losses[-1] < losses[0]


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_conv_modules_on_cuda_match_cpu() -> None:
    for cpu in (Conv2d(4, 6, 3, padding="same", groups=2, padding_mode="circular"),
                ConvTranspose2d(4, 6, 3, stride=2, groups=2), Conv1d(3, 2, 4, padding="same", padding_mode="reflect")):
        gpu = type(cpu)(cpu.in_channels, cpu.out_channels, cpu.kernel_size, device="cuda", groups=cpu.groups,
                        stride=cpu.stride, padding=cpu.padding, padding_mode=cpu.padding_mode)
        assert gpu.weight.device.type == "cuda"
        gpu.load_state_dict(cpu.state_dict())
        x0 = np.random.default_rng(0).standard_normal((2, cpu.in_channels, *(6,) * len(cpu.kernel_size)))
        xc, xg = ax.tensor(x0.astype(np.float32)), ax.tensor(x0.astype(np.float32), device="cuda")
        yc, yg = cpu(xc), gpu(xg)
        np.testing.assert_allclose(yg.detach().cpu().numpy(), yc.detach().numpy(), rtol=1e-4, atol=1e-4)
        yc.sum().backward()
        yg.sum().backward()
        np.testing.assert_allclose(gpu.weight.grad.cpu().numpy(), cpu.weight.grad.numpy(), rtol=1e-4, atol=1e-3)
