"""axonml.vision.transforms geometry: resize, crops, pad, flips, rotation and affine warps,
checked against Pillow (the reference torchvision uses for PIL images), NumPy and PyTorch."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

import axonml as ax
import axonml.vision.transforms as T
import axonml.vision.transforms.functional as F

RNG = np.random.default_rng(99)
U8 = RNG.integers(0, 256, (23, 37, 3), dtype=np.uint8)  # (H, W, C)
F32 = RNG.random((23, 37)).astype(np.float32)  # a Pillow 'F' image: float32 resampling, no rounding
R = Image.Resampling
PIL_FILTERS = {"nearest-exact": R.NEAREST, "bilinear": R.BILINEAR, "bicubic": R.BICUBIC, "box": R.BOX,
               "hamming": R.HAMMING, "lanczos": R.LANCZOS}
SIZES = [(10, 15), (50, 70), (23, 60), (7, 37), (40, 11)]


def chw(a: np.ndarray) -> ax.Tensor:
    return ax.tensor(np.ascontiguousarray(a.transpose(2, 0, 1)))


# ----- resize -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", list(PIL_FILTERS))
def test_resize_float_images_match_pillow(mode: str) -> None:
    for size in SIZES:
        ours = F.resize(F32, size, mode)
        ref = np.asarray(Image.fromarray(F32).resize(size[::-1], PIL_FILTERS[mode]))
        np.testing.assert_allclose(ours, ref, atol=1e-6, err_msg=f"{mode} {size}")


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "lanczos"])
def test_resize_uint8_images_match_pillow(mode: str) -> None:
    for size in SIZES:
        ours = F.resize(U8, size, mode).astype(int)
        ref = np.asarray(Image.fromarray(U8).resize(size[::-1], PIL_FILTERS[mode])).astype(int)
        assert np.abs(ours - ref).max() <= 1 and (ours != ref).mean() < 0.05, (mode, size)  # fixed point vs float
        tensor = F.resize(chw(U8), size, mode).numpy().transpose(1, 2, 0)
        assert np.array_equal(tensor, ours)


def test_strong_downscaling_matches_pillow() -> None:
    big = RNG.random((300, 420)).astype(np.float32)  # 60x: filters wider than the tap-by-tap limit
    for mode in ("bilinear", "bicubic", "box"):
        ref = np.asarray(Image.fromarray(big).resize((7, 5), PIL_FILTERS[mode]))
        np.testing.assert_allclose(F.resize(big, (5, 7), mode), ref, atol=1e-6, err_msg=mode)


def test_resize_pil_uses_pillow_and_size_rules() -> None:
    img = Image.fromarray(U8)
    out = F.resize(img, 10, "bicubic")
    assert out.size == (16, 10)  # shorter edge 23 -> 10, long edge int(10 * 37 / 23) = 16
    assert np.array_equal(np.asarray(out), np.asarray(img.resize((16, 10), R.BICUBIC)))
    assert F.resize(U8, 10).shape == (10, 16, 3)
    assert F.resize(U8, [10]).shape == (10, 16, 3)
    assert F.resize(U8, 10, max_size=12).shape == (7, 12, 3)  # the long edge is capped, aspect kept
    assert F.resize(U8.transpose(1, 0, 2), 10).shape == (16, 10, 3)
    with pytest.raises(ValueError, match="max_size"):
        F.resize(U8, (10, 12), max_size=20)
    with pytest.raises(ValueError, match="greater than"):
        F.resize(U8, 10, max_size=10)
    with pytest.raises(ValueError, match="positive"):
        F.resize(U8, (0, 4))


@pytest.mark.torch
def test_resize_tensors_match_torch_interpolate() -> None:
    torch = pytest.importorskip("torch")
    x = RNG.random((2, 3, 23, 37)).astype(np.float32)
    for size in SIZES:
        for mode in ("bilinear", "bicubic"):
            for aa in (True, False):
                ref = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode=mode, antialias=aa,
                                                      align_corners=False).numpy()
                ours = F.resize(ax.tensor(x), size, mode, antialias=aa).numpy()
                np.testing.assert_allclose(ours, ref, atol=1e-5, err_msg=f"{mode} aa={aa} {size}")
        for mode in ("nearest", "nearest-exact"):
            ref = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode=mode).numpy()
            assert np.array_equal(F.resize(ax.tensor(x), size, mode).numpy(), ref), (mode, size)


# ----- crops, pad, flips --------------------------------------------------------------------
def test_crop_outside_the_image_is_zero_like_pillow() -> None:
    for box in ((2, 3, 5, 6), (-3, -2, 8, 9), (20, 30, 6, 10)):
        ours = F.crop(U8, *box)
        ref = np.asarray(F.crop(Image.fromarray(U8), *box))
        assert np.array_equal(ours, ref), box
        assert np.array_equal(F.crop(chw(U8), *box).numpy().transpose(1, 2, 0), ref)


def test_center_crop() -> None:
    assert np.array_equal(F.center_crop(U8, (10, 20)), U8[6:16, 8:28])  # round(13 / 2) = 6, round(17 / 2) = 8
    big = F.center_crop(U8, (25, 40))  # larger than the image: zero-padded around it
    assert big.shape == (25, 40, 3)
    assert np.array_equal(big[1:24, 1:38], U8) and big[0].max() == 0 and big[:, -2:].max() == 0
    assert np.array_equal(np.asarray(T.CenterCrop((25, 40))(Image.fromarray(U8))), big)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
def test_pad_modes_match_numpy_pad(mode: str) -> None:
    for padding, ltrb in ((3, (3, 3, 3, 3)), ([2, 5], (2, 5, 2, 5)), ((1, 2, 3, 4), (1, 2, 3, 4))):
        left, top, right, bottom = ltrb
        want = np.pad(U8, [(top, bottom), (left, right), (0, 0)], mode=mode)
        assert np.array_equal(F.pad(U8, padding, padding_mode=mode), want), (mode, padding)
        assert np.array_equal(np.asarray(F.pad(Image.fromarray(U8), padding, padding_mode=mode)), want)
        assert np.array_equal(F.pad(chw(U8), padding, padding_mode=mode).numpy().transpose(1, 2, 0), want)


def test_pad_fill_negative_and_errors() -> None:
    out = F.pad(U8, 2, fill=(1, 2, 3))
    assert out[0, 0].tolist() == [1, 2, 3] and np.array_equal(out[2:-2, 2:-2], U8)
    pil = F.pad(Image.fromarray(U8), 2, fill=(1, 2, 3))
    assert np.array_equal(np.asarray(pil), out)
    palette = Image.fromarray(U8[:, :, 0] % 4).convert("P")
    assert F.pad(palette, 1, padding_mode="edge").mode == "P"
    cropped = F.pad(U8, (-2, 1, 0, -3))  # negative padding crops
    assert np.array_equal(cropped[1:], U8[:-3, 2:])
    assert np.array_equal(np.asarray(F.pad(Image.fromarray(U8), (-2, 1, 0, -3))), cropped)
    with pytest.raises(ValueError, match="padding_mode"):
        F.pad(U8, 1, padding_mode="wrap")
    with pytest.raises(ValueError, match="1, 2 or 4"):
        T.Pad((1, 2, 3))
    with pytest.raises(ValueError, match="2 values"):
        F.pad(U8, 1, fill=(1, 2))


def test_flips() -> None:
    assert np.array_equal(F.hflip(U8), U8[:, ::-1]) and np.array_equal(F.vflip(U8), U8[::-1])
    assert np.array_equal(np.asarray(F.hflip(Image.fromarray(U8))), U8[:, ::-1])
    assert np.array_equal(F.vflip(chw(U8)).numpy(), U8[::-1].transpose(2, 0, 1))
    assert T.RandomHorizontalFlip(0.0)(U8) is U8
    ax.manual_seed(0)
    flips = [np.array_equal(T.RandomVerticalFlip()(U8), U8[::-1]) for _ in range(100)]
    assert 30 < sum(flips) < 70


# ----- random crops -------------------------------------------------------------------------
def test_random_crop_windows() -> None:
    ax.manual_seed(1)
    padded = np.pad(U8, [(2, 2), (2, 2), (0, 0)])
    for _ in range(20):
        out = T.RandomCrop((9, 11), padding=2)(U8)
        hits = [(i, j) for i in range(padded.shape[0] - 8) for j in range(padded.shape[1] - 10)
                if np.array_equal(padded[i : i + 9, j : j + 11], out)]
        assert hits, "the crop is a window of the padded image"
    grown = T.RandomCrop((30, 40), pad_if_needed=True, padding_mode="edge")(U8)
    assert grown.shape == (30, 40, 3)
    with pytest.raises(ValueError, match="larger than the image"):
        T.RandomCrop(30)(U8)


def test_random_resized_crop_params() -> None:
    ax.manual_seed(2)
    img = np.zeros((100, 120, 3), np.uint8)
    for _ in range(200):
        top, left, h, w = T.RandomResizedCrop.get_params(img, (0.2, 0.6), (0.5, 2.0))
        assert 0 <= top <= 100 - h and 0 <= left <= 120 - w
        assert 0.2 * 12000 * 0.9 <= h * w <= 0.6 * 12000 * 1.1 and 0.45 <= w / h <= 2.2
    # impossible ratios fall back to the centre crop with the aspect clamped into range
    assert T.RandomResizedCrop.get_params(np.zeros((10, 100)), (0.9, 1.0), (1.0, 1.0)) == (0, 45, 10, 10)
    out = T.RandomResizedCrop((8, 6), scale=(0.5, 1.0), interpolation="nearest")(chw(U8))
    assert out.shape == (3, 8, 6) and out.dtype == ax.uint8
    with pytest.raises(ValueError, match="scale and ratio"):
        T.RandomResizedCrop(8, scale=(0.9, 0.1))


# ----- rotation and affine ------------------------------------------------------------------
ANGLES = [17.3, 45.0, 90.0, -120.0, 180.0, 33.0, 270.0]


def _interior(mode: str, fn, *args) -> np.ndarray:
    """Pixels whose interpolation taps all fall inside the image (Pillow differs at the borders)."""
    return np.abs(fn(np.ones((23, 37), np.float32), *args, interpolation=mode) - 1.0) < 1e-6


@pytest.mark.parametrize("expand", [False, True])
@pytest.mark.parametrize("center", [None, (5.0, 7.5)])
def test_rotate_nearest_matches_pillow(expand: bool, center) -> None:
    for angle in ANGLES:
        ours = F.rotate(U8, angle, "nearest", expand, center, fill=(10, 20, 30))
        ref = np.asarray(Image.fromarray(U8).rotate(angle, R.NEAREST, expand, center, fillcolor=(10, 20, 30)))
        assert ours.shape == ref.shape, angle  # Pillow's expanded canvas
        assert (ours != ref).any(axis=-1).mean() < 0.02, angle  # only ties at pixel edges may differ
        tensor = F.rotate(chw(U8), angle, "nearest", expand, center, fill=(10, 20, 30)).numpy()
        assert np.array_equal(tensor.transpose(1, 2, 0), ours)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_rotate_interpolated_interior_matches_pillow(mode: str) -> None:
    for angle in ANGLES:
        ours = F.rotate(F32, angle, mode)
        ref = np.asarray(Image.fromarray(F32).rotate(angle, PIL_FILTERS[mode]))
        inner = _interior(mode, lambda img, interpolation, a=angle: F.rotate(img, a, interpolation))
        assert inner.mean() > 0.4
        np.testing.assert_allclose(ours[inner], ref[inner], atol=1e-5, err_msg=f"{angle}")


def test_quarter_turns_are_exact() -> None:
    square = U8[:23, :23]
    assert np.array_equal(F.rotate(square, 90), np.rot90(square, 1))
    assert np.array_equal(F.rotate(U8, 90, expand=True), np.rot90(U8, 1))
    assert np.array_equal(F.rotate(U8, -90, "bilinear", expand=True), np.rot90(U8, -1))
    assert np.array_equal(F.rotate(U8, 180, "bicubic"), U8[::-1, ::-1])


@pytest.mark.torch
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_rotate_matches_torch_grid_sample(mode: str) -> None:
    torch = pytest.importorskip("torch")
    x = RNG.random((2, 3, 23, 37)).astype(np.float32)
    h, w = 23, 37
    for angle in (17.3, -63.0, 140.0):
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        # output -> input map in normalized coordinates of a counter-clockwise turn about the centre
        theta = torch.tensor([[[c, -s * h / w, 0.0], [s * w / h, c, 0.0]]], dtype=torch.float32).repeat(2, 1, 1)
        grid = torch.nn.functional.affine_grid(theta, [2, 3, h, w], align_corners=False)
        ref = torch.nn.functional.grid_sample(torch.from_numpy(x), grid, mode=mode, padding_mode="zeros",
                                              align_corners=False).numpy()
        ours = F.rotate(ax.tensor(x), angle, mode).numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-5, err_msg=f"{angle}")


AFFINES = [(10.0, (3, -2), 1.2, (5.0, 0.0)), (-30.0, (0, 0), 0.8, (10.0, -7.0)), (0.0, (5, 5), 1.0, 0.0),
           (75.0, (-4, 2), 1.5, (-12.0, 3.0))]


def test_affine_matches_pillow() -> None:
    for args in AFFINES:
        ours = F.affine(U8, *args, interpolation="nearest", fill=7)
        ref = np.asarray(F.affine(Image.fromarray(U8), *args, interpolation="nearest", fill=7))
        assert (ours != ref).any(axis=-1).mean() < 0.02, args
        for mode in ("bilinear", "bicubic"):
            ours_f = F.affine(F32, *args, interpolation=mode)
            ref_f = np.asarray(F.affine(Image.fromarray(F32), *args, interpolation=mode))
            inner = _interior(mode, lambda img, interpolation, a=args: F.affine(img, *a, interpolation=interpolation))
            np.testing.assert_allclose(ours_f[inner], ref_f[inner], atol=1e-5, err_msg=f"{args} {mode}")


def test_affine_geometry() -> None:
    assert np.array_equal(F.affine(U8, 0.0, (0, 0), 1.0, 0.0), U8)
    moved = F.affine(U8, 0.0, (4, -3), 1.0, 0.0, fill=9)  # content moves right 4 and up 3
    assert np.array_equal(moved[:-3, 4:], U8[3:, :-4]) and np.all(moved[:, :4] == 9) and np.all(moved[-3:] == 9)
    zoom = F.affine(F32, 0.0, (0, 0), 2.0, 0.0, interpolation="bilinear")
    # scale 2 about the centre (18.5, 11.5): output (x, y) samples input ((x - 18.5) / 2 + 18.5, ...)
    np.testing.assert_allclose(zoom[11, 18], F32[11, 18], atol=1e-6)
    rot = F.affine(U8, 90.0, (0, 0), 1.0, 0.0)  # affine turns clockwise
    assert np.array_equal(rot, F.rotate(U8, -90.0))
    with pytest.raises(ValueError, match="scale must be positive"):
        F.affine(U8, 0.0, (0, 0), 0.0, 0.0)
    with pytest.raises(ValueError, match="not supported"):
        F.rotate(U8, 10, "lanczos")


def test_random_rotation_and_affine_params() -> None:
    ax.manual_seed(4)
    angles = [T.RandomRotation.get_params((-10.0, 25.0)) for _ in range(300)]
    assert -10 <= min(angles) < -8 and 23 < max(angles) <= 25
    for _ in range(100):
        angle, (tx, ty), scale, (sx, sy) = T.RandomAffine.get_params((-5, 5), (0.1, 0.2), (0.9, 1.1),
                                                                       (-3, 3, 1, 2), (40, 30))
        assert -5 <= angle <= 5 and abs(tx) <= 4 and abs(ty) <= 6 and 0.9 <= scale <= 1.1
        assert -3 <= sx <= 3 and 1 <= sy <= 2
    assert T.RandomRotation(30).degrees == (-30.0, 30.0) and T.RandomAffine(0, shear=7).shear == (-7.0, 7.0)
    grown = T.RandomRotation((40, 50), expand=True)(U8)
    assert grown.shape[0] > 23 and grown.shape[1] > 37
    with pytest.raises(ValueError, match="non-negative"):
        T.RandomRotation(-5)
    with pytest.raises(ValueError, match="translate"):
        T.RandomAffine(0, translate=(1.5, 0))
