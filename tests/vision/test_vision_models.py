"""axonml.vision.models: the registry, the small models (LeNet5, SimpleCNN, MLP), parameter counts,
initialization, options and errors. Comparisons with PyTorch of the torchvision architectures are in
test_vision_models_{resnet,vgg,vit,mobilenet}.py (references in test_vision_models_ref.py)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import axonml
import axonml.vision.models as M
from axonml import nn
from axonml.errors import ShapeError
from axonml.vision.models import _registry


def _no_random_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """axonml's random initializers as no-ops: counting 100M+ parameters must not cost seconds of sampling."""
    monkeypatch.setattr(axonml.Tensor, "uniform_", lambda self, *a, **k: self)
    monkeypatch.setattr(axonml.Tensor, "normal_", lambda self, *a, **k: self)
    monkeypatch.setattr(nn.init, "trunc_normal_", lambda t, *a, **k: t)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _np(t: axonml.Tensor) -> np.ndarray:
    return t.detach().numpy()


# ---------------------------------------------------------------- registry
ALL = ["lenet5", "mlp", "mobilenet_v2", "resnet101", "resnet152", "resnet18", "resnet34", "resnet50",
       "resnext101_32x8d", "resnext101_64x4d", "resnext50_32x4d", "simple_cnn", "vgg11", "vgg11_bn", "vgg13",
       "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "vit_b_16", "vit_b_32", "vit_base", "vit_h_14",
       "vit_l_16", "vit_l_32", "vit_large", "vit_small", "vit_tiny", "wide_resnet101_2", "wide_resnet50_2"]


def test_list_models_and_filters() -> None:
    assert M.list_models() == sorted(ALL)
    assert M.list_models(include="resnet*") == ["resnet101", "resnet152", "resnet18", "resnet34", "resnet50"]
    assert M.list_models(include=["vgg1?", "lenet*"]) == ["lenet5", "vgg11", "vgg13", "vgg16", "vgg19"]
    assert M.list_models(include="vit*", exclude=["vit_?_*", "vit_l*"]) == ["vit_base", "vit_small", "vit_tiny"]
    assert M.list_models(module=M.resnet) == sorted(n for n in ALL if "res" in n)
    assert M.list_models(module="axonml.vision.models.simple") == ["mlp", "simple_cnn"]
    assert M.list_models(module=M) == sorted(ALL)
    assert M.list_models(module=sys.modules[__name__]) == []


def test_get_model_passes_config_and_is_case_insensitive() -> None:
    model = M.get_model("LeNet5", num_classes=4, activation="tanh")
    assert isinstance(model, M.LeNet5) and model.classifier[-1].out_features == 4
    assert isinstance(model.classifier[1], nn.Tanh)
    assert M.get_model_builder("resnet18") is M.resnet18
    with pytest.raises(TypeError):
        M.get_model("lenet5", no_such_option=1)


def test_unknown_model_names_close_matches() -> None:
    with pytest.raises(ValueError, match=r"Unknown model 'resnet19'.*did you mean.*resnet18"):
        M.get_model("resnet19")
    with pytest.raises(ValueError, match="list_models"):
        M.get_model_builder("zzzzzz")
    with pytest.raises(TypeError, match="string"):
        M.get_model_builder(18)  # type: ignore[arg-type]


def test_register_model_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_BUILDERS", dict(_registry._BUILDERS))  # leave the real registry untouched

    @M.register_model
    def Tiny_Net(**kw: object) -> nn.Module:
        return nn.Linear(2, 3)

    @M.register_model("other_net")
    def _other(**kw: object) -> nn.Module:
        return nn.Linear(3, 4)

    @M.register_model()
    def third(**kw: object) -> nn.Module:
        return nn.ReLU()

    assert Tiny_Net.__name__ == "Tiny_Net"  # the function itself comes back
    assert {"tiny_net", "other_net", "third"} <= set(M.list_models())
    assert M.get_model("tiny_net").out_features == 3
    assert M.get_model("OTHER_NET").in_features == 3
    assert M.list_models(module=__name__) == ["other_net", "third", "tiny_net"]
    with pytest.raises(ValueError, match="already registered"):
        M.register_model("resnet18")(Tiny_Net)
    with pytest.raises(TypeError, match="non-empty string"):
        M.register_model("")


# ---------------------------------------------------------------- parameter counts (torchvision's published)
COUNTS = {
    "lenet5": 61_706, "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808, "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336, "resnext101_64x4d": 83_455_272, "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696, "vgg11": 132_863_336, "vgg11_bn": 132_868_840, "vgg13": 133_047_848,
    "vgg13_bn": 133_053_736, "vgg16": 138_357_544, "vgg16_bn": 138_365_992, "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248, "vit_tiny": 5_717_416, "vit_small": 22_050_664, "vit_base": 86_567_656,
    "vit_b_16": 86_567_656, "vit_b_32": 88_224_232, "vit_large": 304_326_632, "vit_l_16": 304_326_632,
    "vit_l_32": 306_535_400, "vit_h_14": 632_045_800, "mobilenet_v2": 3_504_872,
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_count_equals_published(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_random_init(monkeypatch)
    assert _count(M.get_model(name)) == COUNTS[name]


def test_counts_follow_options() -> None:
    # fc: 512 * 11 + 11 instead of 512 * 1000 + 1000; CIFAR stem: 64*3*3*3 instead of 64*3*7*7
    assert _count(M.resnet18(num_classes=11, cifar_stem=True)) == 11_689_512 - 513_000 + 5_643 - 64 * 3 * 40
    assert _count(M.mobilenet_v2(width_mult=0.5, num_classes=10)) == 700_490  # as the torch reference's
    assert _count(M.vit_tiny(image_size=32, patch_size=4, num_classes=10)) == 5_717_416 - 193_000 + 1_930 - (
        197 - 65) * 192 - 3 * 192 * (256 - 16)


# ---------------------------------------------------------------- LeNet5, SimpleCNN, MLP
def test_lenet5_layout_and_shapes() -> None:
    model = M.LeNet5()
    assert list(model.state_dict()) == [
        "features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
        "classifier.0.weight", "classifier.0.bias", "classifier.2.weight", "classifier.2.bias",
        "classifier.4.weight", "classifier.4.bias"]
    assert tuple(model.classifier[0].weight.shape) == (120, 400)
    assert tuple(model(axonml.randn(2, 1, 28, 28)).shape) == (2, 10)
    paper = M.LeNet5(num_classes=7, in_channels=3, image_size=32, padding=0, activation="tanh", pooling="avg")
    assert isinstance(paper.features[2], nn.AvgPool2d) and isinstance(paper.features[1], nn.Tanh)
    assert tuple(paper(axonml.randn(1, 3, 32, 32)).shape) == (1, 7)
    assert tuple(M.LeNet5(image_size=64)(axonml.randn(1, 1, 64, 64)).shape) == (1, 10)


def test_simple_cnn_and_mlp_layout() -> None:
    cnn = M.SimpleCNN()
    assert [k for k in cnn.state_dict() if k.endswith("weight")] == [
        "features.0.weight", "features.1.weight", "features.4.weight", "features.5.weight",
        "classifier.0.weight", "classifier.3.weight"]
    assert tuple(cnn.classifier[0].weight.shape) == (128, 64 * 8 * 8)
    assert tuple(cnn(axonml.randn(2, 3, 32, 32)).shape) == (2, 10)
    plain = M.SimpleCNN(in_channels=1, image_size=28, channels=(8, 16, 32), batch_norm=False, num_classes=5)
    assert plain.features[0].bias is not None and len(plain.features) == 9
    assert tuple(plain(axonml.randn(3, 1, 28, 28)).shape) == (3, 5)  # 28 -> 14 -> 7 -> 3
    mlp = M.MLP(in_features=12, hidden_sizes=[8, 6], num_classes=3, activation="gelu", dropout=0.1)
    assert [k for k in mlp.state_dict() if k.endswith("weight")] == ["layers.0.weight", "layers.3.weight",
                                                                    "layers.6.weight"]
    assert isinstance(mlp.layers[1], nn.GELU) and mlp.layers[2].p == 0.1
    assert tuple(mlp(axonml.randn(4, 3, 2, 2)).shape) == (4, 3)  # inputs are flattened
    assert tuple(M.MLP(5, [], 2)(axonml.randn(1, 5)).shape) == (1, 2)  # no hidden layer: logistic regression
    assert isinstance(M.MLP(4, [3], 2, activation=nn.ELU).layers[1], nn.ELU)


def test_small_models_match_torch() -> None:
    """The same layers in torch (same keys), weights copied over: equal outputs in float64."""
    torch = pytest.importorskip("torch")
    tnn = torch.nn

    class Ref(tnn.Module):
        def forward(self, x):  # type: ignore[no-untyped-def]
            if hasattr(self, "layers"):
                return self.layers(x.flatten(1))
            return self.classifier(self.features(x).flatten(1))

    lenet, cnn, mlp = Ref(), Ref(), Ref()
    lenet.features = tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2, 2),
                                    tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2, 2))
    lenet.classifier = tnn.Sequential(tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(),
                                      tnn.Linear(84, 10))
    cnn.features = tnn.Sequential(tnn.Conv2d(3, 4, 3, padding=1, bias=False), tnn.BatchNorm2d(4), tnn.ReLU(),
                                  tnn.MaxPool2d(2, 2), tnn.Conv2d(4, 8, 3, padding=1, bias=False),
                                  tnn.BatchNorm2d(8), tnn.ReLU(), tnn.MaxPool2d(2, 2))
    cnn.classifier = tnn.Sequential(tnn.Linear(8 * 64, 16), tnn.ReLU(), tnn.Dropout(0.0), tnn.Linear(16, 10))
    mlp.layers = tnn.Sequential(tnn.Linear(48, 10), tnn.Tanh(), tnn.Dropout(0.0), tnn.Linear(10, 7), tnn.Tanh(),
                                tnn.Dropout(0.0), tnn.Linear(7, 4))
    cases = [(M.LeNet5(), lenet, (2, 1, 28, 28)),
             (M.SimpleCNN(channels=(4, 8), hidden_dim=16), cnn, (2, 3, 32, 32)),
             (M.MLP(48, [10, 7], 4, activation="tanh"), mlp, (3, 3, 4, 4))]
    rng = np.random.default_rng(0)
    for model, ref, shape in cases:
        ref = ref.double().eval()
        with torch.no_grad():  # random biases, BatchNorm affine parameters and running statistics
            for t in ref.state_dict().values():
                if t.is_floating_point() and t.ndim == 1:
                    t.copy_(torch.rand(t.shape, dtype=t.dtype) * 0.5 + 0.25)
        model.double().eval().load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
        assert list(model.state_dict()) == list(ref.state_dict())
        x = rng.standard_normal(shape)
        with torch.no_grad():
            want = ref(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(_np(model(axonml.tensor(x))), want, rtol=1e-10, atol=1e-12)


def test_lenet5_trains() -> None:
    """A few Adam steps on a fixed batch drive the loss down: every layer gets gradients."""
    axonml.manual_seed(0)
    model = M.lenet5()
    x, y = axonml.randn(8, 1, 28, 28), axonml.randint(0, 10, (8,))
    opt = axonml.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.parameters())
    assert losses[-1] < 0.5 * losses[0]


# ---------------------------------------------------------------- initialization (torchvision's)
def test_resnet_initialization_and_zero_init_residual() -> None:
    axonml.manual_seed(1)
    model = M.resnet18(num_classes=10)
    w = _np(model.layer3[0].conv2.weight)  # kaiming normal, fan_out = 256 * 9
    assert abs(w.std() - math.sqrt(2 / (256 * 9))) < 0.02 * math.sqrt(2 / (256 * 9))
    assert (_np(model.layer1[0].bn2.weight) == 1).all() and (_np(model.bn1.bias) == 0).all()
    zero = M.ResNet(M.BasicBlock, [2, 1, 1, 2], zero_init_residual=True)
    assert all((_np(b.bn2.weight) == 0).all() and (_np(b.bn1.weight) == 1).all()
               for layer in (zero.layer1, zero.layer4) for b in layer)
    bottle = M.ResNet(M.Bottleneck, [1, 1, 1, 1], zero_init_residual=True, num_classes=3)
    assert (_np(bottle.layer2[0].bn3.weight) == 0).all() and (_np(bottle.layer2[0].bn2.weight) == 1).all()
    assert bottle.layer2[0].downsample is not None and bottle.layer2[0].stride == 2


def test_vit_and_mobilenet_initialization() -> None:
    axonml.manual_seed(2)
    vit = M.vit_tiny()
    assert (_np(vit.heads.head.weight) == 0).all() and (_np(vit.class_token) == 0).all()
    w = _np(vit.conv_proj.weight)  # truncated normal, std sqrt(1 / fan_in) (fan_in = 3 * 16 * 16)
    assert abs(w.std() - math.sqrt(1 / 768)) < 0.05 * math.sqrt(1 / 768) and abs(w).max() <= 2.0
    assert abs(_np(vit.encoder.pos_embedding).std() - 0.02) < 0.002
    fc1 = vit.encoder.layers.encoder_layer_3.mlp[0]  # Xavier uniform weight, N(0, 1e-6) bias
    bound = math.sqrt(6 / (192 + 768))
    assert abs(_np(fc1.weight)).max() <= bound and abs(_np(fc1.weight)).max() > 0.9 * bound
    assert 0 < abs(_np(fc1.bias)).max() < 1e-5
    mobile = M.mobilenet_v2()
    assert abs(_np(mobile.classifier[1].weight).std() - 0.01) < 0.001
    assert (_np(mobile.classifier[1].bias) == 0).all()
    w = _np(mobile.features[17].conv[0][0].weight)  # kaiming normal, fan_out = 960, gain 1 ("leaky_relu", a=0)
    assert abs(w.std() - math.sqrt(2 / 960)) < 0.05 * math.sqrt(2 / 960)


# ---------------------------------------------------------------- options and errors
def test_resnet_cifar_stem(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_random_init(monkeypatch)
    imagenet_keys = list(M.resnet18().state_dict())
    monkeypatch.undo()
    model = M.resnet18(num_classes=10, cifar_stem=True)
    assert tuple(model.conv1.weight.shape) == (64, 3, 3, 3) and isinstance(model.maxpool, nn.Identity)
    assert list(model.state_dict()) == imagenet_keys  # the same keys as torchvision's
    x = axonml.randn(2, 3, 32, 32)
    stem = model.relu(model.bn1(model.conv1(x)))
    assert tuple(model.layer4(model.layer3(model.layer2(model.layer1(stem)))).shape) == (2, 512, 4, 4)
    assert tuple(model(x).shape) == (2, 10)


def test_bad_configurations_raise_clearly() -> None:
    with pytest.raises(ValueError, match="activation"):
        M.LeNet5(activation="swish")
    with pytest.raises(ValueError, match="pooling"):
        M.LeNet5(pooling="min")
    with pytest.raises(ValueError, match="too small"):
        M.LeNet5(image_size=8, padding=0)
    with pytest.raises(ValueError, match="too small"):
        M.SimpleCNN(image_size=4, channels=(4, 4, 4))
    with pytest.raises(ValueError, match="channels"):
        M.SimpleCNN(channels=())
    with pytest.raises(ValueError, match="hidden sizes"):
        M.MLP(4, [0], 2)
    with pytest.raises(TypeError, match="activation"):
        M.MLP(4, [3], 2, activation=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="groups=1"):
        M.resnet18(groups=2)
    with pytest.raises(ValueError, match="dilation"):
        M.resnet18(replace_stride_with_dilation=[False, False, True])
    with pytest.raises(ValueError, match="3-element"):
        M.resnet50(replace_stride_with_dilation=[True])
    with pytest.raises(ValueError, match="4 stages"):
        M.ResNet(M.BasicBlock, [2, 2, 2])
    with pytest.raises(ValueError, match="'M'"):
        M.make_layers([64, "P"])
    with pytest.raises(ValueError, match="stride"):
        M.InvertedResidual(8, 8, 3, 6)
    with pytest.raises(ValueError, match="inverted_residual_setting"):
        M.MobileNetV2(inverted_residual_setting=[[1, 16, 1]])
    with pytest.raises(ValueError, match="divisible"):
        M.vit_tiny(image_size=30)
    with pytest.raises(ValueError, match="strides multiply"):
        M.VisionTransformer(32, 8, 1, 2, 16, 32, conv_stem_configs=[M.ConvStemConfig(8, 3, 2)])


def test_vit_input_checks() -> None:
    model = M.VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16)
    assert tuple(model(axonml.randn(2, 3, 16, 16)).shape) == (2, 1000)
    with pytest.raises(ShapeError, match="16x16"):
        model(axonml.randn(2, 3, 32, 32))
    with pytest.raises(ShapeError, match="N, C, H, W"):
        model(axonml.randn(3, 16, 16))
    with pytest.raises(ShapeError, match="seq_length"):
        model.encoder.layers.encoder_layer_0(axonml.randn(4, 8))


# ---------------------------------------------------------------- CUDA
def _gpu_cases() -> list[tuple[str, object, tuple[int, ...]]]:
    return [
        ("lenet5", lambda: M.LeNet5(), (4, 1, 28, 28)),
        ("resnet_basic_cifar", lambda: M.ResNet(M.BasicBlock, [1, 1, 1, 1], cifar_stem=True, num_classes=5),
         (4, 3, 16, 16)),
        ("resnext_dilated", lambda: M.ResNet(M.Bottleneck, [1, 1, 1, 1], groups=2, width_per_group=32,
                                             replace_stride_with_dilation=[False, False, True], num_classes=5),
         (2, 3, 48, 48)),
        ("vgg_features", lambda: M.make_layers([8, "M", 16, "M"], batch_norm=True), (2, 3, 16, 16)),
        ("vit", lambda: M.VisionTransformer(32, 8, 2, 4, 48, 96, num_classes=5, representation_size=16),
         (2, 3, 32, 32)),
        ("mobilenet", lambda: M.MobileNetV2(num_classes=5, width_mult=0.35, dropout=0.0), (2, 3, 32, 32)),
    ]


@pytest.mark.gpu
@pytest.mark.skipif(not axonml.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("case", range(6), ids=[c[0] for c in _gpu_cases()])
def test_models_on_cuda_match_cpu(case: int) -> None:
    """The same weights on the GPU: training-mode outputs, every gradient and the BatchNorm running
    statistics agree with the CPU's (float64)."""
    _, make, shape = _gpu_cases()[case]
    axonml.manual_seed(case)
    cpu = make().double()
    gpu = make().double()
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    x = axonml.randn(*shape, dtype=axonml.float64)
    outs = []
    for model, xin in ((cpu, x), (gpu, x.to("cuda"))):
        model.train()
        out = model(xin)
        (out * out).sum().backward()
        outs.append(out.detach().cpu().numpy())
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-9, atol=1e-10)
    gpu_params = dict(gpu.named_parameters())
    for name, p in cpu.named_parameters():
        q = gpu_params[name]
        assert q.device.type == "cuda"
        np.testing.assert_allclose(q.grad.cpu().numpy(), p.grad.numpy(), rtol=1e-7, atol=1e-9, err_msg=name)
    gpu_state = gpu.state_dict()
    for name, t in cpu.state_dict().items():
        np.testing.assert_allclose(gpu_state[name].cpu().numpy(), t.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_zoo_models_rebuild_from_an_archive_in_a_fresh_process(tmp_path) -> None:
    # register_model also registers an io builder, so a plain ModelArchive.load can rebuild the model
    import subprocess
    import sys

    from axonml.io import ModelArchive
    from axonml.vision.models import get_model

    ModelArchive.save(tmp_path / "l.axonml", get_model("lenet5", num_classes=10), name="lenet",
                      builder="lenet5", config={"num_classes": 10})
    path = str(tmp_path / "l.axonml")
    code = f"from axonml.io import ModelArchive; print(type(ModelArchive.load({path!r}).model).__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "LeNet5"
