"""axonml.vision.models against torchvision itself, where torchvision is installed (skipped otherwise).

torchvision is no dependency of axonml: these tests run where it happens to be present (the GPU
machine's image has it) and check the claim of the package: a torchvision ``state_dict`` has
exactly the keys and shapes of the axonml model of the same name, loads as it is, and gives the
same outputs. (Everywhere else test_vision_models_ref.py's reimplementation stands in for it.)
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import axonml
import axonml.vision.models as M

if importlib.util.find_spec("torchvision") is None:  # checked first: importing torch alone takes seconds
    pytest.skip("torchvision is not installed", allow_module_level=True)
torch = pytest.importorskip("torch")
tvm = pytest.importorskip("torchvision.models")
from test_vision_models_ref import one_torch_thread  # noqa: E402, F401  (an autouse fixture)
from torchvision.models.vision_transformer import VisionTransformer  # noqa: E402

pytestmark = pytest.mark.torch

TORCHVISION_NAMES = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
    "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16",
    "vgg16_bn", "vgg19", "vgg19_bn", "vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14", "mobilenet_v2",
]


def _no_random_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """axonml's random initializers as no-ops: these models only get their shapes listed or weights copied in."""
    monkeypatch.setattr(axonml.Tensor, "uniform_", lambda self, *a, **k: self)
    monkeypatch.setattr(axonml.Tensor, "normal_", lambda self, *a, **k: self)
    monkeypatch.setattr(axonml.nn.init, "trunc_normal_", lambda t, *a, **k: t)


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_state_dict_layout_is_torchvisions(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with torch.device("meta"):
        ref = tvm.get_model(name, weights=None)
    _no_random_init(monkeypatch)
    model = M.get_model(name)
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in ref.state_dict().items()]
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters())


def _randomize(ref, seed: int = 0) -> None:
    """Random norm parameters, running statistics and biases (torchvision leaves them at 0/1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in ref.state_dict().items():
            if t.is_floating_point() and (t.ndim == 1 or name in ("class_token", "heads.head.weight")):
                t.copy_(torch.rand(t.shape, generator=g, dtype=t.dtype) * 0.5 + 0.5 if name.endswith("var")
                        else torch.randn(t.shape, generator=g, dtype=t.dtype) * 0.1 + (
                            1.0 if name.endswith("weight") and t.ndim == 1 else 0.0))


def _compare(ref, model, x: np.ndarray, train: bool = False) -> None:
    ref.train(train)
    model.train(train)
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    with axonml.no_grad():
        got = model(axonml.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11 * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize(("name", "kw", "size"), [("resnet18", {}, 64), ("resnet50", {}, 64),
                                                  ("resnext50_32x4d", {}, 64), ("mobilenet_v2", {"dropout": 0.0}, 40)])
def test_torchvision_weights_give_the_same_outputs(name: str, kw: dict, size: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """float64, eval and training mode (batch statistics; no dropout, so both are deterministic)."""
    torch.manual_seed(0)
    ref = tvm.get_model(name, weights=None, num_classes=10, **kw).double()
    _randomize(ref)
    _no_random_init(monkeypatch)
    before = axonml.get_default_dtype()
    axonml.set_default_dtype(axonml.float64)  # built in float64: nothing uninitialized gets cast
    try:
        model = M.get_model(name, num_classes=10, **kw)
    finally:
        axonml.set_default_dtype(before)
    model.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3, size, size))
    _compare(ref, model, x)
    _compare(ref, model, x, train=True)


def test_torchvision_vgg_and_vit_give_the_same_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(1)
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32))
    ref = tvm.vgg11_bn(weights=None, num_classes=10)
    _randomize(ref)
    with pytest.MonkeyPatch.context() as mp:
        _no_random_init(mp)
        model = M.vgg11_bn(num_classes=10)
    model.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    x32 = x.astype(np.float32)
    ref.eval()
    model.eval()
    with torch.no_grad():
        want = ref(torch.from_numpy(x32)).numpy()
    with axonml.no_grad():
        got = model(axonml.tensor(x32)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))
    del ref, model
    config = {"image_size": 32, "patch_size": 8, "num_layers": 2, "num_heads": 4, "hidden_dim": 48, "mlp_dim": 96,
              "num_classes": 10}
    for extra in ({}, {"representation_size": 20}):
        vit_ref = VisionTransformer(**config, **extra).double()
        _randomize(vit_ref)
        vit = M.VisionTransformer(**config, **extra).double()
        vit.load_state_dict({k: v.numpy() for k, v in vit_ref.state_dict().items()})
        _compare(vit_ref, vit, x)
        _compare(vit_ref, vit, x, train=True)  # dropout 0: training mode is deterministic


@pytest.mark.parametrize(("name", "dims"), [("vit_tiny", (192, 3, 768)), ("vit_small", (384, 6, 1536))])
def test_tiny_and_small_vit_match_torchvisions_class(name: str, dims: tuple[int, int, int],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision has no tiny/small builders: its VisionTransformer class with the same sizes."""
    hidden, heads, mlp = dims
    with torch.device("meta"):
        ref = VisionTransformer(224, 16, 12, heads, hidden, mlp)
    _no_random_init(monkeypatch)
    model = M.get_model(name)
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in ref.state_dict().items()]
