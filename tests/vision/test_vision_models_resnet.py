"""ResNet / ResNeXt / Wide ResNet against the torchvision-structured PyTorch reference: same state-dict
keys, order and shapes; weights copied through the state dict give the same outputs, gradients and
BatchNorm statistics."""

from __future__ import annotations

import numpy as np
import pytest

import axonml
import axonml.vision.models as M

torch = pytest.importorskip("torch")
import test_vision_models_ref as R  # noqa: E402  (needs torch)
from test_vision_models_ref import one_torch_thread  # noqa: E402, F401  (an autouse fixture)

pytestmark = pytest.mark.torch


def _state_layout(model) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("name", sorted(R.RESNETS))
def test_state_dict_keys_and_shapes_equal_torchvision(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    R.no_random_init(monkeypatch)
    model = M.get_model(name)
    assert _state_layout(model) == list(R.meta_shapes(name).items())
    assert model.state_dict()["bn1.num_batches_tracked"].dtype == axonml.int64


def test_cifar_stem_and_num_classes_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    R.no_random_init(monkeypatch)
    model = M.resnet50(num_classes=10, cifar_stem=True)
    assert _state_layout(model) == list(R.meta_shapes("resnet50", num_classes=10, cifar_stem=True).items())


def _pair(name_or_cfg, dtype=torch.float64, seed: int = 0, **kw):
    """(reference, axonml model) with the reference's randomized weights copied into axonml's."""
    torch.manual_seed(seed)
    with R.built_for_copy(axonml.float64 if dtype == torch.float64 else axonml.float32):
        if isinstance(name_or_cfg, str):
            ref, model = R.build(name_or_cfg, **kw), M.get_model(name_or_cfg, **kw)
        else:
            (ref_block, ax_block), layers = name_or_cfg
            ref, model = R.ResNet(ref_block, layers, **kw), M.ResNet(ax_block, layers, **kw)
    ref = ref.to(dtype)
    R.randomize_(ref, seed)
    model.load_state_dict(R.to_numpy_state(ref))
    return ref, model


BASIC, BOTTLE = (R.BasicBlock, M.BasicBlock), (R.Bottleneck, M.Bottleneck)


@pytest.mark.parametrize(("cfg", "kw", "size"), [
    ("resnet18", {}, 64),
    ("resnet50", {"num_classes": 10}, 64),
    ((BOTTLE, [1, 2, 1, 1]), {"groups": 4, "width_per_group": 16, "num_classes": 7}, 48),  # ResNeXt blocks
    ((BOTTLE, [1, 1, 2, 1]), {"replace_stride_with_dilation": [False, True, True], "num_classes": 5}, 40),
    ((BASIC, [1, 1, 1, 1]), {"cifar_stem": True, "num_classes": 3}, 16),
], ids=["resnet18", "resnet50", "resnext", "dilated", "cifar"])
def test_eval_forward_matches_torch(cfg, kw, size: int) -> None:
    ref, model = _pair(cfg, **kw)
    ref.eval()
    model.eval()
    x = np.random.default_rng(1).standard_normal((2, 3, size, size))
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    with axonml.no_grad():
        got = model(axonml.tensor(x)).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)


def test_train_forward_backward_and_running_stats_match_torch() -> None:
    """Training mode in float64: batch statistics, the loss's gradients for every parameter and the updated
    running statistics agree with PyTorch's."""
    ref, model = _pair((BASIC, [1, 1, 1, 1]), cifar_stem=True, num_classes=4, seed=3)
    ref.train()
    model.train()
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((4, 3, 16, 16)), rng.integers(0, 4, 4)
    loss_t = torch.nn.functional.cross_entropy(ref(torch.from_numpy(x)), torch.from_numpy(y))
    loss_t.backward()
    loss = axonml.nn.functional.cross_entropy(model(axonml.tensor(x)), axonml.tensor(y))
    loss.backward()
    np.testing.assert_allclose(loss.item(), loss_t.item(), rtol=1e-11)
    params = dict(model.named_parameters())
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(params[name].grad.numpy(), p.grad.numpy(), rtol=1e-7, atol=1e-11,
                                   err_msg=name)
    ours = model.state_dict()
    for name, t in ref.state_dict().items():
        np.testing.assert_allclose(ours[name].numpy(), t.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_float32_resnet18_matches_torch() -> None:
    """The default dtype: float32 outputs agree to float32 accuracy."""
    ref, model = _pair("resnet18", dtype=torch.float32, num_classes=10)
    ref.eval()
    model.eval()
    x = np.random.default_rng(4).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    with axonml.no_grad():
        got = model(axonml.tensor(x))
    assert got.dtype == axonml.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5)
