"""VGG 11/13/16/19 with and without BatchNorm against the torchvision-structured PyTorch reference:
same state-dict keys and shapes, same outputs once the weights are copied, torchvision's initialization.
Each VGG holds ~133M parameters (0.5 GB in float32), so the real ones are built only a few times."""

from __future__ import annotations

import math

import numpy as np
import pytest

import axonml
import axonml.vision.models as M

torch = pytest.importorskip("torch")
import test_vision_models_ref as R  # noqa: E402  (needs torch)
from test_vision_models_ref import one_torch_thread  # noqa: E402, F401  (an autouse fixture)

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("name", sorted(R.VGGS))
def test_state_dict_keys_and_shapes_equal_torchvision(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    R.no_random_init(monkeypatch)
    model = M.get_model(name, num_classes=10)
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == list(
        R.meta_shapes(name, num_classes=10).items())


def test_forward_matches_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """VGG-11-BN on 32x32 inputs (the 1x1 map is spread to 7x7 by the adaptive pool), eval and training
    mode (dropout 0 so training is deterministic), float32. The variants differ only in ``features``,
    whose layout the key tests check."""
    name = "vgg11_bn"
    torch.manual_seed(0)
    ref = R.build(name, num_classes=10, dropout=0.0)
    R.randomize_(ref)
    R.no_random_init(monkeypatch)  # every weight comes from the reference
    model = M.get_model(name, num_classes=10, dropout=0.0)
    model.load_state_dict(R.to_numpy_state(ref))
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    for train in (False, True):
        ref.train(train)
        model.train(train)
        with torch.no_grad():
            want = ref(torch.from_numpy(x)).numpy()
        with axonml.no_grad():
            got = model(axonml.tensor(x)).numpy()
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale, err_msg=f"train={train}")


def test_torchvision_initialization(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kaiming-normal (fan_out) convolutions with zero bias, BatchNorm 1/0, Linear N(0, 0.01) with zero bias.

    To save seconds, Linear's own default initialization (which VGG overwrites) is skipped, and the
    draws for the 100M-element classifier weights are recorded (mean, std) instead of made."""
    monkeypatch.setattr(axonml.nn.Linear, "reset_parameters", lambda self: None)
    draws: dict[tuple[int, ...], tuple[float, float]] = {}
    normal = axonml.Tensor.normal_

    def spy(self, mean=0.0, std=1.0, **kw):
        if self.numel() > 1_000_000 and self.ndim == 2:
            draws[tuple(self.shape)] = (mean, std)
            return self
        return normal(self, mean, std, **kw)

    monkeypatch.setattr(axonml.Tensor, "normal_", spy)
    axonml.manual_seed(0)
    model = M.vgg11_bn(num_classes=10)
    conv = model.features[8]  # the 3rd conv: 128 -> 256 channels, fan_out = 256 * 9
    assert isinstance(conv, axonml.nn.Conv2d) and conv.out_channels == 256
    w = conv.weight.detach().numpy()
    assert abs(w.std() - math.sqrt(2 / (256 * 9))) < 0.02 * math.sqrt(2 / (256 * 9))
    assert (conv.bias.detach().numpy() == 0).all()
    bn = model.features[9]
    assert (bn.weight.detach().numpy() == 1).all() and (bn.bias.detach().numpy() == 0).all()
    assert draws == {(4096, 25088): (0, 0.01), (4096, 4096): (0, 0.01)}
    last = model.classifier[6]  # small enough to be drawn for real
    assert abs(last.weight.detach().numpy().std() - 0.01) < 2e-3
    for i in (0, 3, 6):
        assert (model.classifier[i].bias.detach().numpy() == 0).all()
    assert model.classifier[2].p == 0.5 and tuple(last.weight.shape) == (10, 4096)


def test_custom_features_and_no_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """VGG takes any ``features`` ending in 512 channels; ``init_weights=False`` keeps the layers' defaults."""
    monkeypatch.setattr(axonml.nn.Linear, "reset_parameters", lambda self: None)
    features = M.make_layers([16, "M", 512, "M"], batch_norm=True, in_channels=1)
    model = M.VGG(features, num_classes=3, init_weights=False, dropout=0.2)
    assert [type(m).__name__ for m in features] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Conv2d",
                                                    "BatchNorm2d", "ReLU", "MaxPool2d"]
    bound = 1 / math.sqrt(1 * 9)  # Conv2d's own default: kaiming-uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), ...)
    assert 0.9 * bound < float(features[0].weight.abs().max()) <= bound
    assert model.classifier[5].p == 0.2
    assert tuple(model.avgpool(model.features(axonml.randn(1, 1, 8, 8))).shape) == (1, 512, 7, 7)
