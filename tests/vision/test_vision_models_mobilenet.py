"""MobileNetV2 against the torchvision-structured PyTorch reference: same state-dict keys and shapes
for several widths, same outputs (eval and training) and gradients once the weights are copied."""

from __future__ import annotations

import numpy as np
import pytest

import axonml
import axonml.vision.models as M
from axonml.vision.models.mobilenet import _make_divisible

torch = pytest.importorskip("torch")
import test_vision_models_ref as R  # noqa: E402  (needs torch)
from test_vision_models_ref import one_torch_thread  # noqa: E402, F401  (an autouse fixture)

pytestmark = pytest.mark.torch


@pytest.mark.parametrize(("width_mult", "round_nearest"), [(1.0, 8), (0.35, 8), (0.5, 8), (1.4, 8), (0.75, 1)])
def test_state_dict_keys_and_shapes_equal_torchvision(width_mult: float, round_nearest: int) -> None:
    kw = {"width_mult": width_mult, "round_nearest": round_nearest, "num_classes": 10}
    model = M.mobilenet_v2(**kw)
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == list(
        R.meta_shapes("mobilenet_v2", **kw).items())


def test_layout() -> None:
    model = M.mobilenet_v2()
    keys = list(model.state_dict())
    assert keys[:6] == ["features.0.0.weight", "features.0.1.weight", "features.0.1.bias",
                        "features.0.1.running_mean", "features.0.1.running_var", "features.0.1.num_batches_tracked"]
    # features.1 has expand ratio 1 (no expansion conv): depthwise conv.0, projection conv.1 + BatchNorm conv.2
    assert "features.1.conv.0.0.weight" in keys and "features.1.conv.1.weight" in keys
    assert "features.1.conv.2.weight" in keys and "features.1.conv.3.weight" not in keys
    assert "features.2.conv.3.weight" in keys  # expansion, depthwise, projection, BatchNorm
    assert keys[-2:] == ["classifier.1.weight", "classifier.1.bias"]
    assert len(model.features) == 19 and model.last_channel == 1280
    blocks = list(model.features)[1:18]
    assert [b.use_res_connect for b in blocks].count(True) == 10
    assert isinstance(model.features[0][2], axonml.nn.ReLU6) and model.classifier[0].p == 0.2


def test_make_divisible() -> None:
    assert [_make_divisible(v, 8) for v in (32 * 0.35, 16 * 0.35, 24 * 1.4, 3.0, 1280 * 1.4)] == [16, 8, 32, 8, 1792]
    assert _make_divisible(10, 8) == 16  # never more than 10% below: 8 < 0.9 * 10, so one step up
    assert _make_divisible(7, 4, min_value=12) == 12


def _pair(seed: int = 0, **kw):
    torch.manual_seed(seed)
    ref = R.MobileNetV2(**kw).double()
    R.randomize_(ref, seed)
    with R.built_for_copy(axonml.float64):
        model = M.MobileNetV2(**kw)
    model.load_state_dict(R.to_numpy_state(ref))
    return ref, model


def test_eval_forward_matches_torch() -> None:
    ref, model = _pair(num_classes=10)
    ref.eval()
    model.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 40, 40))  # 40 -> 20 -> 10 -> 5 -> 3 -> 2
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    with axonml.no_grad():
        got = model(axonml.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)


def test_train_gradients_and_running_stats_match_torch() -> None:
    ref, model = _pair(seed=1, width_mult=0.35, num_classes=5, dropout=0.0)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((4, 3, 32, 32)), rng.integers(0, 5, 4)
    loss_t = torch.nn.functional.cross_entropy(ref(torch.from_numpy(x)), torch.from_numpy(y))
    loss_t.backward()
    loss = axonml.nn.functional.cross_entropy(model(axonml.tensor(x)), axonml.tensor(y))
    loss.backward()
    np.testing.assert_allclose(loss.item(), loss_t.item(), rtol=1e-10)
    params = dict(model.named_parameters())
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(params[name].grad.numpy(), p.grad.numpy(), rtol=1e-6, atol=1e-10,
                                   err_msg=name)
    ours = model.state_dict()
    for name, t in ref.state_dict().items():
        np.testing.assert_allclose(ours[name].numpy(), t.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_custom_setting_and_norm_layer() -> None:
    """A custom ``inverted_residual_setting`` and ``norm_layer`` (GroupNorm) build and run."""
    model = M.MobileNetV2(num_classes=4, inverted_residual_setting=[[1, 8, 1, 1], [2, 16, 2, 2]],
                          norm_layer=lambda c: axonml.nn.GroupNorm(4, c))
    assert len(model.features) == 5 and isinstance(model.features[1].conv[2], axonml.nn.GroupNorm)
    assert (model.features[1].conv[2].weight.detach().numpy() == 1).all()
    with axonml.no_grad():
        assert tuple(model(axonml.randn(2, 3, 32, 32)).shape) == (2, 4)
