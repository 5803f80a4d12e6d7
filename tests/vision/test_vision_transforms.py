"""axonml.vision.transforms: conversions, Normalize, containers, kinds, shapes and seeding."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from PIL import Image

import axonml as ax
import axonml.vision.transforms as T
import axonml.vision.transforms.functional as F

RNG = np.random.default_rng(1234)
U8 = RNG.integers(0, 256, (12, 17, 3), dtype=np.uint8)  # (H, W, C)


def kinds(arr: np.ndarray) -> dict[str, object]:
    """The same picture as an HWC array, a PIL image and a CHW tensor."""
    chw = arr[:, :, None] if arr.ndim == 2 else arr
    tensor = ax.tensor(np.ascontiguousarray(chw.transpose(2, 0, 1)))
    return {"ndarray": arr, "pil": Image.fromarray(arr), "tensor": tensor}


def as_hwc(img: object) -> np.ndarray:
    """Pixels (H, W, C) of any kind."""
    if isinstance(img, Image.Image):
        a = np.asarray(img)
        return a[:, :, None] if a.ndim == 2 else a
    if isinstance(img, ax.Tensor):
        return img.numpy().transpose(1, 2, 0)
    return img[:, :, None] if img.ndim == 2 else img


# ----- conversions --------------------------------------------------------------------------
def test_to_tensor_scales_uint8_to_unit_float() -> None:
    for img in (U8, Image.fromarray(U8)):
        t = T.ToTensor()(img)
        assert t.shape == (3, 12, 17) and t.dtype == ax.float32
        np.testing.assert_array_equal(t.numpy(), U8.transpose(2, 0, 1).astype(np.float32) / np.float32(255))
    gray = T.ToTensor()(U8[:, :, 0])
    assert gray.shape == (1, 12, 17)
    f = RNG.random((4, 5, 2))
    np.testing.assert_array_equal(T.ToTensor()(f).numpy(), f.transpose(2, 0, 1))  # floats keep their values


def test_to_tensor_pil_modes() -> None:
    bits = Image.fromarray(U8[:, :, 0] > 128)
    assert bits.mode == "1"
    np.testing.assert_array_equal(T.ToTensor()(bits).numpy()[0], (U8[:, :, 0] > 128).astype(np.float32))
    ints = Image.fromarray(RNG.integers(-1000, 100000, (3, 4)).astype(np.int32))
    t = T.ToTensor()(ints)
    assert t.dtype == ax.int32 and np.array_equal(t.numpy()[0], np.asarray(ints))
    floats = Image.fromarray(RNG.random((3, 4)).astype(np.float32))
    assert T.ToTensor()(floats).dtype == ax.float32


def test_pil_to_tensor_keeps_pixel_type() -> None:
    t = T.PILToTensor()(Image.fromarray(U8))
    assert t.dtype == ax.uint8 and np.array_equal(t.numpy(), U8.transpose(2, 0, 1))
    i16 = Image.fromarray(np.array([[0, 40000], [65535, 7]], dtype=np.uint16))
    t16 = T.PILToTensor()(i16)
    assert t16.dtype == ax.int32 and t16.numpy().tolist() == [[[0, 40000], [65535, 7]]]
    with pytest.raises(TypeError, match="PIL image"):
        T.PILToTensor()(U8)


def test_to_pil_image_round_trips() -> None:
    for arr, mode in ((U8, "RGB"), (U8[:, :, 0], "L"), (U8[:, :, :2], "LA"),
                      (np.concatenate([U8, U8[:, :, :1]], axis=2), "RGBA")):
        img = T.ToPILImage()(arr)
        assert img.mode == mode and np.array_equal(as_hwc(img), as_hwc(arr))
    levels = ax.tensor((np.arange(256, dtype=np.float32) / 255).reshape(1, 16, 16))
    img = T.ToPILImage()(levels)  # float -> x * 255, rounded: every level survives the round trip
    assert img.mode == "L" and np.array_equal(np.asarray(img).ravel(), np.arange(256))
    assert T.ToPILImage()(ax.tensor(np.full((1, 2, 2), 7, np.int32))).mode == "I"
    f = T.ToPILImage(mode="F")(ax.tensor(np.full((1, 2, 2), 0.25, np.float32)))
    assert f.mode == "F" and np.all(np.asarray(f) == 0.25)
    i16 = T.ToPILImage()(np.array([[1, 30000]], np.int16))
    assert i16.mode == "I;16" and np.asarray(i16).tolist() == [[1, 30000]]
    hsv = T.ToPILImage(mode="HSV")(U8)
    assert hsv.mode == "HSV" and np.array_equal(np.asarray(hsv), U8)


def test_to_pil_image_errors() -> None:
    with pytest.raises(TypeError, match="no PIL mode"):
        T.ToPILImage()(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(TypeError, match="does not fit"):
        T.ToPILImage(mode="L")(np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match="needs 3 channels"):
        T.ToPILImage(mode="RGB")(np.zeros((2, 2), np.uint8))
    with pytest.raises(TypeError, match="Tensor or an ndarray"):
        T.ToPILImage()([1, 2])


def test_convert_image_dtype() -> None:
    u = ax.tensor(np.array([[[0, 1, 128, 255]]], np.uint8))
    f = T.ConvertImageDtype(ax.float32)(u)
    np.testing.assert_allclose(f.numpy(), np.array([[[0, 1, 128, 255]]]) / 255, rtol=1e-6)
    back = T.ConvertImageDtype(ax.uint8)(f)
    assert back.dtype == ax.uint8 and back.numpy().tolist() == [[[0, 1, 128, 255]]]
    half = F.convert_image_dtype(ax.tensor(np.array([[[0.5, 1.0]]], np.float32)), ax.uint8)
    assert half.numpy().tolist() == [[[127, 255]]]  # x * (255 + 1 - 1e-3), truncated
    assert F.convert_image_dtype(u, ax.int16).numpy().tolist() == [[[0, 128, 16384, 32640]]]  # << 7
    assert F.convert_image_dtype(F.convert_image_dtype(u, ax.int16), ax.uint8).numpy().tolist() == [[[0, 1, 128, 255]]]
    assert F.convert_image_dtype(f, ax.float64).dtype == ax.float64
    with pytest.raises(TypeError, match="safely"):
        F.convert_image_dtype(f, ax.int32)
    arr = F.convert_image_dtype(U8, ax.float32)  # HWC arrays too
    assert arr.shape == U8.shape and arr.dtype == np.float32 and arr.max() <= 1.0


# ----- Normalize ----------------------------------------------------------------------------
def test_normalize_formula_and_inplace() -> None:
    x = RNG.random((2, 3, 4, 5)).astype(np.float32)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    want = (x - np.array(mean, np.float32).reshape(3, 1, 1)) / np.array(std, np.float32).reshape(3, 1, 1)
    t = ax.tensor(x)
    out = T.Normalize(mean, std)(t)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6)
    assert np.array_equal(t.numpy(), x)
    same = T.Normalize(mean, std, inplace=True)(t)
    assert same is t
    np.testing.assert_allclose(t.numpy(), want, rtol=1e-6)
    hwc = T.Normalize(mean, std)(x[0].transpose(1, 2, 0))
    np.testing.assert_allclose(hwc, want[0].transpose(1, 2, 0), rtol=1e-6)


def test_normalize_is_differentiable() -> None:
    x = ax.tensor(RNG.random((3, 2, 2)).astype(np.float32), requires_grad=True)
    T.Normalize((0.5, 0.5, 0.5), (0.5, 0.25, 2.0))(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy()[:, 0, 0], [2.0, 4.0, 0.5], rtol=1e-6)


def test_normalize_presets_and_errors() -> None:
    assert T.Normalize.mnist().mean == T.MNIST_MEAN and T.Normalize.mnist().std == T.MNIST_STD
    assert T.Normalize.cifar10().mean == T.CIFAR10_MEAN and T.Normalize.cifar100().std == T.CIFAR100_STD
    assert T.Normalize.imagenet().mean == (0.485, 0.456, 0.406) and T.Normalize.fashion_mnist().std == (0.3530,)
    with pytest.raises(ax.errors.DTypeError, match="floating point"):
        T.Normalize((0.5,), (0.5,))(ax.tensor(np.zeros((1, 2, 2), np.uint8)))
    with pytest.raises(ValueError, match="zero"):
        T.Normalize((0.5,), (0.0,))
    with pytest.raises(ValueError, match="3 channels"):
        T.Normalize((0.5, 0.5), (1.0, 1.0))(ax.zeros(3, 2, 2))


def test_mnist_preset_matches_the_real_training_set(shared_data) -> None:
    with gzip.open(shared_data / "mnist" / "train-images-idx3-ubyte.gz", "rb") as fh:
        pixels = np.frombuffer(fh.read(), np.uint8, offset=16)
    assert pixels.size == 60000 * 784
    counts = np.bincount(pixels, minlength=256)  # statistics from the histogram: no 47M-element floats
    levels = np.arange(256) / 255
    mean = (counts * levels).sum() / pixels.size
    std = np.sqrt((counts * (levels - mean) ** 2).sum() / pixels.size)
    assert abs(mean - T.MNIST_MEAN[0]) < 5e-5 and abs(std - T.MNIST_STD[0]) < 5e-5


def test_cifar10_preset_matches_the_real_batches(shared_data) -> None:
    import pickle

    path = shared_data / "cifar-10-batches-py" / "data_batch_1"
    with open(path, "rb") as fh:  # our own copy of the public batch: plain arrays and lists
        data = pickle.load(fh, encoding="bytes")[b"data"]
    planes = data.reshape(-1, 3, 1024).astype(np.float64) / 255  # (N, RGB, pixels)
    np.testing.assert_allclose(planes.mean(axis=(0, 2)), T.CIFAR10_MEAN, atol=0.01)  # a partial batch: close
    np.testing.assert_allclose(planes.std(axis=(0, 2)), T.CIFAR10_STD, atol=0.01)


# ----- containers ---------------------------------------------------------------------------
def test_compose_lambda_and_random_containers() -> None:
    pipe = T.Compose([T.Lambda(lambda x: x + 1), T.Lambda(lambda x: x * 10)])
    assert pipe(1) == 20 and "Lambda" in repr(pipe)
    assert T.RandomApply([T.Lambda(lambda x: x + 1)], p=0.0)(1) == 1
    assert T.RandomApply([T.Lambda(lambda x: x + 1)], p=1.0)(1) == 2
    choice = T.RandomChoice([T.Lambda(lambda x: "a"), T.Lambda(lambda x: "b")], p=[0.0, 1.0])
    assert {choice(0) for _ in range(5)} == {"b"}
    ax.manual_seed(0)
    picks = [T.RandomChoice([T.Lambda(lambda x: "a"), T.Lambda(lambda x: "b")])(0) for _ in range(200)]
    assert 60 < picks.count("a") < 140
    order = T.RandomOrder([T.Lambda(lambda s: s + "x"), T.Lambda(lambda s: s + "y")])
    assert {order("") for _ in range(40)} == {"xy", "yx"}
    with pytest.raises(TypeError, match="callable"):
        T.Compose([1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        T.RandomApply([], p=1.5)


# ----- kinds, shapes, dtypes ----------------------------------------------------------------
CASES = [  # (transform, expected (H, W) for a 12 x 17 input)
    (T.Resize(6), (6, 8)), (T.Resize((5, 9), interpolation="bicubic"), (5, 9)), (T.CenterCrop(8), (8, 8)),
    (T.CenterCrop((14, 20)), (14, 20)), (T.RandomCrop(8, padding=2), (8, 8)), (T.RandomResizedCrop(10), (10, 10)),
    (T.RandomHorizontalFlip(1.0), (12, 17)), (T.RandomVerticalFlip(1.0), (12, 17)), (T.Pad((1, 2, 3, 4)), (18, 21)),
    (T.Pad(2, padding_mode="symmetric"), (16, 21)), (T.RandomRotation(30, interpolation="bilinear"), (12, 17)),
    (T.RandomAffine(15, (0.1, 0.1), (0.9, 1.1), 5), (12, 17)), (T.ColorJitter(0.3, 0.3, 0.3, 0.1), (12, 17)),
    (T.Grayscale(3), (12, 17)), (T.RandomGrayscale(1.0), (12, 17)), (T.GaussianBlur(3), (12, 17)),
]


@pytest.mark.parametrize("kind", ["ndarray", "pil", "tensor"])
@pytest.mark.parametrize("transform, size", CASES, ids=[type(c[0]).__name__ + str(i) for i, c in enumerate(CASES)])
def test_every_kind_keeps_kind_dtype_and_channels(kind: str, transform, size) -> None:
    ax.manual_seed(5)
    out = transform(kinds(U8)[kind])
    assert type(out) is type(kinds(U8)[kind]) or (kind == "pil" and isinstance(out, Image.Image))
    hwc = as_hwc(out)
    assert hwc.shape == (*size, 3) and hwc.dtype == np.uint8


@pytest.mark.parametrize("transform, size", CASES[:12], ids=[type(c[0]).__name__ for c in CASES[:12]])
def test_batched_float_tensors_and_gray_images(transform, size) -> None:
    ax.manual_seed(5)
    batch = ax.tensor(RNG.random((2, 3, 12, 17)).astype(np.float32))
    out = transform(batch)
    assert out.shape == (2, 3, *size) and out.dtype == ax.float32
    gray = transform(U8[:, :, 0])  # (H, W) arrays stay (H, W)
    assert gray.shape == size and gray.dtype == np.uint8
    flat = transform(ax.tensor(U8[:, :, 0]))  # (H, W) tensors stay (H, W)
    assert flat.shape == size


def test_dimensions_and_bad_inputs() -> None:
    for img in kinds(U8).values():
        assert F.get_dimensions(img) == [3, 12, 17]
    assert F.get_dimensions(ax.zeros(4, 2, 5, 6)) == [2, 5, 6]
    with pytest.raises(TypeError, match="expected a PIL image"):
        F.hflip([[1, 2]])
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, C\)"):
        F.hflip(np.zeros((1, 2, 3, 4)))
    with pytest.raises(ValueError, match="unknown interpolation"):
        T.Resize(4, interpolation="cubic-ish")
    assert T.Resize(4, interpolation="NEAREST").interpolation is T.InterpolationMode.NEAREST


# ----- seeding ------------------------------------------------------------------------------
def _pipeline(**kw) -> T.Compose:
    return T.Compose([
        T.RandomResizedCrop(10, **kw), T.RandomHorizontalFlip(**kw), T.RandomRotation(20, **kw),
        T.ColorJitter(0.4, 0.4, 0.4, 0.1, **kw), T.RandomGrayscale(0.3, **kw), T.GaussianBlur(3, **kw),
    ])


@pytest.mark.parametrize("kind", ["ndarray", "pil", "tensor"])
def test_manual_seed_repeats_a_pipeline(kind: str) -> None:
    img = kinds(U8)[kind]
    runs = []
    for seed in (7, 7, 8):
        ax.manual_seed(seed)
        pipe = _pipeline()
        runs.append(np.concatenate([as_hwc(pipe(img)).ravel() for _ in range(4)]))
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])


def test_generator_argument() -> None:
    outs = []
    for _ in range(2):
        pipe = _pipeline(generator=ax.Generator().manual_seed(3))
        outs.append([as_hwc(pipe(U8)) for _ in range(3)])
    assert all(np.array_equal(a, b) for a, b in zip(*outs))
    ax.manual_seed(11)
    before = ax.get_rng_state()
    _pipeline(generator=ax.Generator().manual_seed(3))(U8)
    assert np.array_equal(ax.get_rng_state().numpy(), before.numpy())  # the default generator is untouched
    with pytest.raises(TypeError, match=r"axonml\.Generator"):
        T.RandomHorizontalFlip(generator=np.random.default_rng(0))


# ----- CUDA ---------------------------------------------------------------------------------
GPU_OPS = {
    "resize": lambda t: F.resize(t, (10, 25)), "resize_nn": lambda t: F.resize(t, 7, "nearest"),
    "resize_cubic": lambda t: F.resize(t, (30, 9), "bicubic", antialias=False),
    "rotate": lambda t: F.rotate(t, 33.0, "bilinear", expand=True, fill=(0.5, 0.0, 1.0)),
    "affine": lambda t: F.affine(t, -20.0, (2, 3), 1.1, (4.0, 2.0), "bicubic"),
    "pad": lambda t: F.pad(t, (1, 2, 3, 4), padding_mode="reflect"), "pad_fill": lambda t: F.pad(t, 2, fill=(1, 2, 3)),
    "crop": lambda t: F.crop(t, -2, 3, 9, 30), "center": lambda t: F.center_crop(t, 5), "hflip": F.hflip,
    "bright": lambda t: F.adjust_brightness(t, 1.3), "contrast": lambda t: F.adjust_contrast(t, 0.6),
    "sat": lambda t: F.adjust_saturation(t, 1.7), "hue": lambda t: F.adjust_hue(t, 0.2),
    "gray": lambda t: F.rgb_to_grayscale(t, 3), "blur": lambda t: F.gaussian_blur(t, [5, 3], [1.2, 0.8]),
    "erase": lambda t: F.erase(t, 1, 2, 3, 4, 0.0), "dtype": lambda t: F.convert_image_dtype(t, ax.float32),
}


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_cuda_tensors_stay_on_the_gpu_and_match_the_cpu(dtype: str) -> None:
    host = U8.transpose(2, 0, 1) if dtype == "uint8" else RNG.random((2, 3, 12, 17)).astype(np.float32)
    cpu, gpu = ax.tensor(np.ascontiguousarray(host)), ax.tensor(np.ascontiguousarray(host), device="cuda")
    for name, op in GPU_OPS.items():
        out = op(gpu)
        assert out.device.type == "cuda", name
        want = op(cpu).numpy().astype(np.float64)
        got = out.cpu().numpy().astype(np.float64)
        assert got.shape == want.shape and np.abs(got - want).max() <= (1.0 if dtype == "uint8" else 1e-5), name
    if dtype == "float32":
        np.testing.assert_allclose(T.Normalize.imagenet()(gpu).cpu().numpy(), T.Normalize.imagenet()(cpu).numpy(),
                                   rtol=1e-6)
    results = []
    for img in (cpu, gpu):  # parameters are drawn on the CPU: one seed, the same augmentation on either device
        ax.manual_seed(21)
        pipe = T.Compose([_pipeline(), T.RandomErasing(1.0, value="random"), T.RandomAffine(10, (0.1, 0.1))])
        results.append(pipe(img).cpu().numpy().astype(np.float64))
    assert results[0].shape == results[1].shape and np.abs(results[0] - results[1]).max() <= 1.0
