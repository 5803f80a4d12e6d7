"""Vision Transformers against the torchvision-structured PyTorch reference: same state-dict keys and
shapes for every size, same outputs and gradients on small configurations (image 32, patch 8)."""

from __future__ import annotations

import numpy as np
import pytest

import axonml
import axonml.vision.models as M

torch = pytest.importorskip("torch")
import test_vision_models_ref as R  # noqa: E402  (needs torch)
from test_vision_models_ref import one_torch_thread  # noqa: E402, F401  (an autouse fixture)

pytestmark = pytest.mark.torch

SMALL = {"image_size": 32, "patch_size": 8, "num_layers": 2, "num_heads": 4, "hidden_dim": 48, "mlp_dim": 96,
         "num_classes": 10}


@pytest.mark.parametrize("name", sorted(R.VITS))
def test_state_dict_keys_and_shapes_equal_torchvision(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    R.no_random_init(monkeypatch)
    model = M.get_model(name)
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == list(R.meta_shapes(name).items())


def test_key_names_are_torchvisions() -> None:
    keys = list(M.VisionTransformer(**{**SMALL, "num_layers": 1}).state_dict())
    assert keys == [
        "class_token", "conv_proj.weight", "conv_proj.bias", "encoder.pos_embedding",
        "encoder.layers.encoder_layer_0.ln_1.weight", "encoder.layers.encoder_layer_0.ln_1.bias",
        "encoder.layers.encoder_layer_0.self_attention.in_proj_weight",
        "encoder.layers.encoder_layer_0.self_attention.in_proj_bias",
        "encoder.layers.encoder_layer_0.self_attention.out_proj.weight",
        "encoder.layers.encoder_layer_0.self_attention.out_proj.bias",
        "encoder.layers.encoder_layer_0.ln_2.weight", "encoder.layers.encoder_layer_0.ln_2.bias",
        "encoder.layers.encoder_layer_0.mlp.0.weight", "encoder.layers.encoder_layer_0.mlp.0.bias",
        "encoder.layers.encoder_layer_0.mlp.3.weight", "encoder.layers.encoder_layer_0.mlp.3.bias",
        "encoder.ln.weight", "encoder.ln.bias", "heads.head.weight", "heads.head.bias"]


def _pair(seed: int = 0, stem: list[tuple[int, int, int]] | None = None, **kw):
    """(reference, axonml model) in float64, the reference's randomized weights copied into axonml's."""
    torch.manual_seed(seed)
    config = {**SMALL, **kw}
    ref = R.VisionTransformer(**config, conv_stem_configs=stem).double()
    R.randomize_(ref, seed)
    stem_ax = None if stem is None else [M.ConvStemConfig(*s) for s in stem]
    with R.built_for_copy(axonml.float64):
        model = M.VisionTransformer(**config, conv_stem_configs=stem_ax)
    model.load_state_dict(R.to_numpy_state(ref))
    return ref, model


@pytest.mark.parametrize("kw", [{}, {"representation_size": 20}, {"stem": [(8, 3, 2), (16, 3, 2), (16, 3, 2)]}],
                         ids=["plain", "pre_logits", "conv_stem"])
def test_eval_forward_matches_torch(kw) -> None:
    ref, model = _pair(**kw)
    ref.eval()
    model.eval()
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32))
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    with axonml.no_grad():
        got = model(axonml.tensor(x)).numpy()
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)


def test_gradients_match_torch() -> None:
    """Training mode without dropout: the loss and every parameter's gradient agree in float64."""
    ref, model = _pair(seed=1, num_layers=1)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2, 3, 32, 32)), rng.integers(0, 10, 2)
    loss_t = torch.nn.functional.cross_entropy(ref(torch.from_numpy(x)), torch.from_numpy(y))
    loss_t.backward()
    loss = axonml.nn.functional.cross_entropy(model(axonml.tensor(x)), axonml.tensor(y))
    loss.backward()
    np.testing.assert_allclose(loss.item(), loss_t.item(), rtol=1e-11)
    params = dict(model.named_parameters())
    assert set(params) == {n for n, _ in ref.named_parameters()}
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(params[name].grad.numpy(), p.grad.numpy(), rtol=1e-7, atol=1e-12,
                                   err_msg=name)


def test_dropout_is_active_in_training_only() -> None:
    model = M.VisionTransformer(**{**SMALL, "dropout": 0.5, "attention_dropout": 0.5})
    with axonml.no_grad():
        for p in model.heads.parameters():
            p.normal_()
    x = axonml.randn(2, 3, 32, 32)
    with axonml.no_grad():
        model.eval()
        assert np.array_equal(model(x).numpy(), model(x).numpy())
        model.train()
        assert not np.array_equal(model(x).numpy(), model(x).numpy())
    assert model.encoder.layers.encoder_layer_1.self_attention.dropout == 0.5


def test_registry_overrides_for_small_images() -> None:
    """``vit_tiny(image_size=32, patch_size=4, num_classes=10)``: 64 patches + the class token."""
    model = M.vit_tiny(image_size=32, patch_size=4, num_classes=10)
    assert model.seq_length == 65 and tuple(model.encoder.pos_embedding.shape) == (1, 65, 192)
    assert len(model.encoder.layers) == 12 and model.encoder.layers.encoder_layer_0.num_heads == 3
    with axonml.no_grad():
        assert tuple(model(axonml.randn(1, 3, 32, 32)).shape) == (1, 10)


def test_legacy_mlp_keys_load() -> None:
    """torchvision's ViT checkpoints saved before its MLPBlock v2 name the MLP layers ``linear_1``/``linear_2``."""
    ref, model = _pair(seed=2)
    legacy = {k.replace("mlp.0.", "mlp.linear_1.").replace("mlp.3.", "mlp.linear_2."): v
              for k, v in R.to_numpy_state(ref).items()}
    assert "encoder.layers.encoder_layer_1.mlp.linear_2.bias" in legacy
    with R.built_for_copy(axonml.float64):
        fresh = M.VisionTransformer(**SMALL)
    fresh.load_state_dict(legacy)
    for key, value in model.state_dict().items():
        assert np.array_equal(fresh.state_dict()[key].numpy(), value.numpy()), key
    saved = model.state_dict()
    assert saved._metadata["encoder.layers.encoder_layer_0.mlp"]["version"] == 2
    with pytest.raises(RuntimeError, match="Unexpected key"):  # other unknown keys are still reported
        fresh.load_state_dict({**R.to_numpy_state(ref), "encoder.layers.encoder_layer_0.mlp.linear_9.bias": 0})
