"""axonml.vision.transforms against torchvision itself, where torchvision is installed (skipped otherwise).

torchvision is no dependency of axonml: these tests run where it happens to be present
(the GPU machine's image has it) and pin the conventions: coordinates, filters, fills, blends.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

import axonml as ax
import axonml.vision.transforms.functional as F

if importlib.util.find_spec("torchvision") is None:  # checked first: importing torch alone takes seconds
    pytest.skip("torchvision is not installed", allow_module_level=True)
torch = pytest.importorskip("torch")
TF = pytest.importorskip("torchvision.transforms.functional")
tv = pytest.importorskip("torchvision.transforms")
pytestmark = pytest.mark.torch

RNG = np.random.default_rng(2024)
U8 = RNG.integers(0, 256, (3, 21, 30), dtype=np.uint8)  # (C, H, W)
FLT = RNG.random((2, 3, 21, 30)).astype(np.float32)  # (N, C, H, W)
MODE = tv.InterpolationMode


def both(fn_ours, fn_tv, x: np.ndarray, *args, **kw) -> tuple[np.ndarray, np.ndarray]:
    ours = fn_ours(ax.tensor(x), *args, **kw).numpy()
    ref = fn_tv(torch.from_numpy(x.copy()), *args, **kw).numpy()
    return ours, ref


@pytest.mark.parametrize("size", [(10, 15), (40, 61), 12])
def test_resize(size) -> None:
    for mode in ("bilinear", "bicubic", "nearest", "nearest-exact"):
        for aa in (True, False):
            ours = F.resize(ax.tensor(FLT), size, mode, antialias=aa).numpy()
            ref = TF.resize(torch.from_numpy(FLT), size, MODE(mode), antialias=aa).numpy()
            np.testing.assert_allclose(ours, ref, atol=1e-5, err_msg=f"{mode} {aa}")
    o8 = F.resize(ax.tensor(U8), size, "bilinear").numpy().astype(int)
    r8 = TF.resize(torch.from_numpy(U8), size, MODE.BILINEAR).numpy().astype(int)
    assert np.abs(o8 - r8).max() <= 1
    pil = Image.fromarray(U8.transpose(1, 2, 0))
    for mode in ("bilinear", "bicubic", "nearest", "lanczos"):
        assert np.array_equal(np.asarray(F.resize(pil, size, mode)), np.asarray(TF.resize(pil, size, MODE(mode))))


def test_crops_pad_flips() -> None:
    x = FLT[0]
    for box in ((2, 3, 10, 12), (-3, -2, 8, 40)):
        assert np.array_equal(*both(F.crop, TF.crop, x, *box))
    for size in ((10, 12), (25, 35), 7):
        assert np.array_equal(*both(F.center_crop, TF.center_crop, x, size))
    for mode in ("constant", "edge", "reflect", "symmetric"):
        for padding in (3, [2, 5], [1, 2, 3, 4]):
            assert np.array_equal(*both(F.pad, TF.pad, x, padding, padding_mode=mode))
    assert np.array_equal(*both(F.pad, TF.pad, x, [1, 2], fill=0.5))
    assert np.array_equal(*both(F.hflip, TF.hflip, x)) and np.array_equal(*both(F.vflip, TF.vflip, x))


def test_rotate_and_affine_tensors() -> None:
    for angle in (17.3, -45.0, 120.0):
        for mode in ("nearest", "bilinear"):
            ours = F.rotate(ax.tensor(FLT), angle, mode).numpy()
            ref = TF.rotate(torch.from_numpy(FLT), angle, MODE(mode)).numpy()
            np.testing.assert_allclose(ours, ref, atol=1e-5, err_msg=f"{angle} {mode}")
        ours = F.rotate(ax.tensor(U8), angle, "nearest", fill=[10, 20, 30]).numpy()
        ref = TF.rotate(torch.from_numpy(U8), angle, MODE.NEAREST, fill=[10, 20, 30]).numpy()
        assert (ours != ref).mean() < 0.01
    for args in ((10.0, [3, -2], 1.2, [5.0, 0.0]), (-30.0, [0, 0], 0.8, [10.0, -7.0])):
        for mode in ("nearest", "bilinear"):
            ours = F.affine(ax.tensor(FLT), *args, interpolation=mode).numpy()
            ref = TF.affine(torch.from_numpy(FLT), *args, interpolation=MODE(mode)).numpy()
            np.testing.assert_allclose(ours, ref, atol=1e-4, err_msg=f"{args} {mode}")


def test_rotate_and_affine_pil() -> None:
    pil = Image.fromarray(U8.transpose(1, 2, 0))
    for angle in (17.3, 90.0, -120.0):
        for expand in (False, True):
            ours = F.rotate(pil, angle, "bilinear", expand, fill=[1, 2, 3])
            ref = TF.rotate(pil, angle, MODE.BILINEAR, expand, fill=[1, 2, 3])
            assert np.array_equal(np.asarray(ours), np.asarray(ref))
    for args in ((10.0, [3, -2], 1.2, [5.0, 0.0]), (-30.0, [0, 0], 0.8, [10.0, -7.0])):
        ours = np.asarray(F.affine(pil, *args, interpolation="bilinear", fill=[4, 5, 6])).astype(int)
        ref = np.asarray(TF.affine(pil, *args, interpolation=MODE.BILINEAR, fill=[4, 5, 6])).astype(int)
        assert np.abs(ours - ref).max() <= 1


def test_color_ops() -> None:
    for factor in (0.3, 1.0, 1.8):
        for name in ("adjust_brightness", "adjust_saturation", "adjust_contrast"):
            ours, ref = both(getattr(F, name), getattr(TF, name), FLT, factor)
            # torchvision's luma weighs red 0.2989 where ITU-R 601-2 (and Pillow) say 0.299
            np.testing.assert_allclose(ours, ref, atol=2e-3, err_msg=f"{name} {factor}")
    for hue in (-0.4, 0.1, 0.5):
        np.testing.assert_allclose(*both(F.adjust_hue, TF.adjust_hue, FLT, hue), atol=1e-5)
    np.testing.assert_allclose(*both(F.rgb_to_grayscale, TF.rgb_to_grayscale, FLT), atol=1e-3)
    pil = Image.fromarray(U8.transpose(1, 2, 0))
    for name in ("adjust_brightness", "adjust_saturation", "adjust_contrast"):
        assert np.array_equal(np.asarray(getattr(F, name)(pil, 1.4)), np.asarray(getattr(TF, name)(pil, 1.4)))
    hue_ours = np.asarray(F.adjust_hue(pil, 0.2)).astype(int)
    assert np.abs(hue_ours - np.asarray(TF.adjust_hue(pil, 0.2)).astype(int)).max() <= 2


def test_blur_erase_normalize_conversions() -> None:
    for ks, sigma in ((3, None), ([5, 3], [1.5, 0.7]), (7, 2.0)):
        np.testing.assert_allclose(*both(F.gaussian_blur, TF.gaussian_blur, FLT, ks, sigma), atol=1e-6)
    v = np.full((3, 4, 5), 0.25, np.float32)
    ours = F.erase(ax.tensor(FLT[0]), 2, 3, 4, 5, v).numpy()
    ref = TF.erase(torch.from_numpy(FLT[0].copy()), 2, 3, 4, 5, torch.from_numpy(v)).numpy()
    assert np.array_equal(ours, ref)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    np.testing.assert_allclose(*both(F.normalize, TF.normalize, FLT, mean, std), rtol=1e-6)
    for dtype, tdtype in ((ax.float32, torch.float32), (ax.int16, torch.int16)):
        ours = F.convert_image_dtype(ax.tensor(U8), dtype).numpy()
        assert np.allclose(ours, TF.convert_image_dtype(torch.from_numpy(U8), tdtype).numpy())
    assert np.array_equal(F.convert_image_dtype(ax.tensor(FLT), ax.uint8).numpy(),
                          TF.convert_image_dtype(torch.from_numpy(FLT), torch.uint8).numpy())
    pil = Image.fromarray(U8.transpose(1, 2, 0))
    assert np.array_equal(F.to_tensor(pil).numpy(), TF.to_tensor(pil).numpy())
    assert np.array_equal(F.pil_to_tensor(pil).numpy(), TF.pil_to_tensor(pil).numpy())
