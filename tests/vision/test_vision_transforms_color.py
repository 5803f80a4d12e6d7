"""axonml.vision.transforms colour, blur and erasing: checked against their formulas
(torchvision's blends, ITU-R 601-2 luma, the colorsys HSV model, a direct convolution) and Pillow."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
from PIL import Image

import axonml as ax
import axonml.vision.transforms as T
import axonml.vision.transforms.functional as F

RNG = np.random.default_rng(7)
U8 = RNG.integers(0, 256, (19, 23, 3), dtype=np.uint8)  # (H, W, C)
FLT = RNG.random((19, 23, 3))  # float64 in [0, 1]
LUMA = np.array([0.299, 0.587, 0.114])


def chw(a: np.ndarray) -> ax.Tensor:
    return ax.tensor(np.ascontiguousarray(a.transpose(2, 0, 1)))


def blend(a: np.ndarray, b: np.ndarray | float, r: float, bound: float) -> np.ndarray:
    return np.clip(r * a + (1 - r) * b, 0, bound)


# ----- grayscale and the blends -------------------------------------------------------------
def test_grayscale_is_itu_r_601_luma() -> None:
    want = FLT @ LUMA
    np.testing.assert_allclose(F.rgb_to_grayscale(FLT)[:, :, 0], want, rtol=1e-12)
    three = T.Grayscale(3)(FLT)
    assert three.shape == (19, 23, 3) and np.array_equal(three[:, :, 0], three[:, :, 2])
    ours = F.rgb_to_grayscale(U8)[:, :, 0]
    assert np.array_equal(ours, np.rint(U8 @ LUMA).astype(np.uint8))
    pil = np.asarray(F.rgb_to_grayscale(Image.fromarray(U8)))  # Pillow's 'L' conversion: the same luma
    assert np.abs(pil.astype(int) - ours).max() <= 1
    gray = U8[:, :, :1]
    assert np.array_equal(T.Grayscale()(gray), gray)
    assert T.RandomGrayscale(1.0)(Image.fromarray(U8)).mode == "RGB"
    assert T.RandomGrayscale(0.0)(U8) is U8
    with pytest.raises(ValueError, match="1 or 3"):
        T.Grayscale(2)
    with pytest.raises(ValueError, match="channels"):
        F.rgb_to_grayscale(np.zeros((2, 2, 4)))


@pytest.mark.parametrize("factor", [0.0, 0.4, 1.0, 1.7, 3.0])
def test_brightness_contrast_saturation_formulas(factor: float) -> None:
    gray = (FLT @ LUMA)[:, :, None]
    cases = {
        F.adjust_brightness: blend(FLT, 0.0, factor, 1.0),
        F.adjust_contrast: blend(FLT, gray.mean(), factor, 1.0),
        F.adjust_saturation: blend(FLT, gray, factor, 1.0),
    }
    gray8 = (U8 @ LUMA)[:, :, None]
    cases8 = {
        F.adjust_brightness: blend(U8.astype(float), 0.0, factor, 255.0),
        F.adjust_contrast: blend(U8.astype(float), gray8.mean(), factor, 255.0),
        F.adjust_saturation: blend(U8.astype(float), gray8, factor, 255.0),
    }
    for fn, want in cases.items():
        np.testing.assert_allclose(fn(FLT, factor), want, atol=1e-12, err_msg=fn.__name__)
        np.testing.assert_allclose(fn(chw(FLT.astype(np.float32)), factor).numpy(),
                                   want.transpose(2, 0, 1), atol=1e-6)
        out8 = fn(U8, factor)
        assert out8.dtype == np.uint8
        assert np.abs(out8.astype(float) - cases8[fn]).max() <= 0.5 + 1e-9, fn.__name__  # rounded to nearest
        pil = np.asarray(fn(Image.fromarray(U8), factor)).astype(int)  # Pillow's ImageEnhance: within one level
        assert np.abs(pil - out8).max() <= 1, fn.__name__


def test_hue_matches_the_hsv_round_trip() -> None:
    for shift in (-0.5, -0.2, 0.0, 0.13, 0.5):
        want = np.empty_like(FLT)
        for idx in np.ndindex(FLT.shape[:2]):
            h, s, v = colorsys.rgb_to_hsv(*FLT[idx])
            want[idx] = colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
        np.testing.assert_allclose(F.adjust_hue(FLT, shift), want, atol=1e-12, err_msg=f"{shift}")
    back = F.adjust_hue(F.adjust_hue(U8, 0.25), -0.25).astype(int)
    assert np.abs(back - U8).max() <= 2  # rounding twice to 8 bits
    pil = np.asarray(F.adjust_hue(Image.fromarray(U8), 0.2)).astype(int)  # Pillow's 8-bit HSV
    assert np.abs(pil - F.adjust_hue(U8, 0.2)).mean() < 2.0
    gray = U8[:, :, :1]
    assert np.array_equal(F.adjust_hue(gray, 0.3), gray)
    with pytest.raises(ValueError, match=r"\[-0.5, 0.5\]"):
        F.adjust_hue(U8, 0.7)
    with pytest.raises(ValueError, match="non-negative"):
        F.adjust_brightness(U8, -1.0)


def test_color_jitter() -> None:
    jitter = T.ColorJitter(brightness=0.5, contrast=(0.8, 1.2), saturation=0, hue=0.1)
    assert jitter.brightness == (0.5, 1.5) and jitter.saturation is None and jitter.hue == (-0.1, 0.1)
    ax.manual_seed(3)
    for _ in range(50):
        order, b, c, s, h = T.ColorJitter.get_params(jitter.brightness, jitter.contrast, None, jitter.hue)
        assert sorted(order) == [0, 1, 2, 3] and 0.5 <= b <= 1.5 and 0.8 <= c <= 1.2 and s is None
        assert -0.1 <= h <= 0.1
    ax.manual_seed(9)
    out = T.ColorJitter(brightness=0.5)(U8)
    ax.manual_seed(9)
    _, b, *_ = T.ColorJitter.get_params((0.5, 1.5), None, None, None)
    assert np.array_equal(out, F.adjust_brightness(U8, b))
    assert T.ColorJitter()(U8) is U8
    with pytest.raises(ValueError, match="hue"):
        T.ColorJitter(hue=0.6)
    with pytest.raises(ValueError, match="non-negative"):
        T.ColorJitter(brightness=-0.1)


# ----- Gaussian blur ------------------------------------------------------------------------
def _blur_reference(img: np.ndarray, kx: int, ky: int, sx: float, sy: float) -> np.ndarray:
    """A direct 2-D convolution with the outer product of the two Gaussians, reflect padding."""
    def g(k: int, s: float) -> np.ndarray:
        x = np.arange(k) - (k - 1) / 2
        w = np.exp(-0.5 * (x / s) ** 2)
        return w / w.sum()

    kernel = np.outer(g(ky, sy), g(kx, sx))  # (ky, kx)
    padded = np.pad(img, [(ky // 2, ky // 2), (kx // 2, kx // 2), (0, 0)], mode="reflect")
    out = np.zeros(img.shape)
    for dy in range(ky):
        for dx in range(kx):
            out += kernel[dy, dx] * padded[dy : dy + img.shape[0], dx : dx + img.shape[1]]
    return out


def test_gaussian_blur_matches_direct_convolution() -> None:
    for (kx, ky), sigma in (((3, 3), (1.0, 1.0)), ((5, 3), (1.5, 0.7)), ((7, 9), (2.0, 3.0))):
        want = _blur_reference(FLT, kx, ky, *sigma)
        np.testing.assert_allclose(F.gaussian_blur(FLT, [kx, ky], list(sigma)), want, atol=1e-12)
        tensor = F.gaussian_blur(chw(FLT.astype(np.float32)), [kx, ky], list(sigma)).numpy()
        np.testing.assert_allclose(tensor, want.transpose(2, 0, 1), atol=1e-6)
        want8 = _blur_reference(U8.astype(float), kx, ky, *sigma)
        assert np.abs(F.gaussian_blur(U8, [kx, ky], list(sigma)) - want8).max() <= 0.5 + 1e-6
        pil = np.asarray(F.gaussian_blur(Image.fromarray(U8), [kx, ky], list(sigma)))
        assert np.array_equal(pil, F.gaussian_blur(U8, [kx, ky], list(sigma)))
    default = 0.3 * ((5 - 1) * 0.5 - 1) + 0.8  # torchvision's sigma for a kernel of 5
    np.testing.assert_allclose(F.gaussian_blur(FLT, 5), _blur_reference(FLT, 5, 5, default, default), atol=1e-12)


@pytest.mark.torch
def test_gaussian_blur_matches_torch_conv2d() -> None:
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(RNG.random((2, 3, 16, 20)).astype(np.float32))
    k = torch.from_numpy(np.exp(-0.5 * (np.arange(5) - 2.0) ** 2 / 1.3**2).astype(np.float32))
    k = k / k.sum()
    weight = (k[:, None] * k[None, :]).expand(3, 1, 5, 5)
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect"), weight, groups=3)
    np.testing.assert_allclose(F.gaussian_blur(ax.tensor(x.numpy()), 5, 1.3).numpy(), ref.numpy(), atol=1e-6)


def test_gaussian_blur_transform() -> None:
    blur = T.GaussianBlur((3, 5), sigma=(0.5, 1.5))
    assert blur.kernel_size == (3, 5) and blur.sigma == (0.5, 1.5)
    ax.manual_seed(1)
    sig = [T.GaussianBlur.get_params(0.5, 1.5) for _ in range(100)]
    assert min(sig) >= 0.5 and max(sig) <= 1.5
    assert T.GaussianBlur(3, 0.8).sigma == (0.8, 0.8)
    with pytest.raises(ValueError, match="odd"):
        T.GaussianBlur(4)
    with pytest.raises(ValueError, match="sigma"):
        T.GaussianBlur(3, sigma=(2.0, 1.0))


# ----- erasing ------------------------------------------------------------------------------
def test_random_erasing_area_and_aspect_bounds() -> None:
    img = ax.zeros(3, 40, 50)
    ax.manual_seed(5)
    for _ in range(300):
        i, j, h, w, v = T.RandomErasing.get_params(img, (0.05, 0.3), (0.5, 2.0), value=[1.0, 2.0, 3.0])
        assert 0 <= i <= 40 - h and 0 <= j <= 50 - w and h < 40 and w < 50
        # rounding h and w moves the area by at most about one row and one column
        assert 0.05 * 2000 - (h + w) <= h * w <= 0.3 * 2000 + (h + w)
        assert (h - 0.5) / (w + 0.5) <= 2.0 and (h + 0.5) / (w - 0.5) >= 0.5  # aspect h / w in ratio
        assert v.shape == (3, 1, 1)
    erased = T.RandomErasing(p=1.0, value=(1.0, 2.0, 3.0))(img).numpy()
    region = erased[0] != 0
    rows, cols = np.nonzero(region)
    assert region.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # one rectangle
    assert np.all(erased[1][region] == 2.0) and np.all(erased[2][region] == 3.0)
    assert np.count_nonzero(erased[0] == 0) > 0


def test_random_erasing_values_and_modes() -> None:
    ax.manual_seed(6)
    noise = T.RandomErasing(p=1.0, scale=(0.3, 0.3), value="random")(ax.zeros(3, 60, 60)).numpy()
    vals = noise[noise != 0]
    assert vals.size > 900 and abs(vals.mean()) < 0.15 and 0.85 < vals.std() < 1.15  # standard normal
    ints = T.RandomErasing(p=1.0, value="random")(np.zeros((30, 30, 3), np.uint8))
    assert ints.dtype == np.uint8 and ints.max() > 200
    t = ax.zeros(3, 20, 20)
    v0 = t._version[0]
    same = T.RandomErasing(p=1.0, value=5.0, inplace=True)(t)
    assert same is t and t.numpy().max() == 5.0 and t._version[0] > v0
    arr = np.zeros((20, 20, 3), np.float32)
    assert T.RandomErasing(p=1.0, value=4.0, inplace=True)(arr) is arr and arr.max() == 4.0
    assert T.RandomErasing(p=0.0)(t) is t
    flat = T.RandomErasing(p=1.0, value="random", inplace=True)(ax.zeros(20, 20))  # (H, W) tensor
    assert flat.shape == (20, 20) and flat.numpy().std() > 0
    # no rectangle can be smaller than the image with scale (1, 1): the image is returned untouched
    full = ax.ones(1, 8, 8)
    assert T.RandomErasing(p=1.0, scale=(1.0, 1.0), ratio=(1.0, 1.0))(full) is full
    with pytest.raises(TypeError, match="PIL"):
        T.RandomErasing(p=1.0)(Image.fromarray(U8))
    with pytest.raises(ValueError, match="'random'"):
        T.RandomErasing(value="noise")
    out = F.erase(chw(U8), 1, 2, 3, 4, 0)
    assert out.numpy()[:, 1:4, 2:6].max() == 0 and out.numpy()[:, 0].tolist() == U8[0].T.tolist()
