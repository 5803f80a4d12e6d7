"""ImageFolder and DatasetFolder on a temporary tree of PNG/BMP/JPEG files written with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from axonml.vision.datasets import IMG_EXTENSIONS, DatasetFileError, DatasetFolder, ImageFolder, pil_loader

Image = pytest.importorskip("PIL.Image")


def _image(seed: int, mode: str = "RGB", size: tuple[int, int] = (6, 5)) -> np.ndarray:
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """root/{cat, dog, zebra}: lossless images in nested folders, plus files that are not images."""
    root = tmp_path / "root"
    pixels: dict[str, np.ndarray] = {}
    files = {"cat/b.png": "RGB", "cat/a.PNG": "RGB", "cat/sub/c.bmp": "RGB", "dog/grey.png": "L",
             "zebra/z.png": "RGB", "zebra/deeper/more/y.tiff": "RGB"}
    for i, (rel, mode) in enumerate(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels[rel] = _image(i, mode)
        fmt = {".png": "PNG", ".bmp": "BMP", ".tiff": "TIFF"}[path.suffix.lower()]
        Image.fromarray(pixels[rel]).save(path, format=fmt)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "README").write_text("a file beside the class folders is no class")
    return root, pixels


def test_imagefolder_classes_samples_and_pixels(tree):
    root, pixels = tree
    ds = ImageFolder(root)
    assert ds.classes == ["cat", "dog", "zebra"] and ds.class_to_idx == {"cat": 0, "dog": 1, "zebra": 2}
    rels = [Path(p).relative_to(root).as_posix() for p, _ in ds.samples]
    # sorted walk: the folder's own files (sorted), then its sub-folders'; the .txt file is skipped
    assert rels == ["cat/a.PNG", "cat/b.png", "cat/sub/c.bmp", "dog/grey.png", "zebra/z.png",
                    "zebra/deeper/more/y.tiff"]
    assert ds.targets == [0, 0, 0, 1, 2, 2] and ds.imgs is ds.samples and len(ds) == 6
    for i, rel in enumerate(rels):
        img, target = ds[i]
        assert img.mode == "RGB" and target == ds.targets[i]
        want = pixels[rel] if pixels[rel].ndim == 3 else np.repeat(pixels[rel][..., None], 3, axis=2)
        assert np.array_equal(np.asarray(img), want), rel  # lossless formats decode exactly
    assert "Number of datapoints: 6" in repr(ds)


def test_transforms_loader_and_is_valid_file(tree):
    root, _ = tree
    ds = ImageFolder(root, transform=lambda im: np.asarray(im).shape, target_transform=lambda t: -t,
                     loader=lambda p: Image.open(p).convert("L"))
    assert ds[3] == ((5, 6), -1)
    only_png = ImageFolder(root, is_valid_file=lambda p: p.endswith(".png"))
    assert [Path(p).name for p, _ in only_png.samples] == ["b.png", "grey.png", "z.png"]
    assert ".png" in IMG_EXTENSIONS and ".webp" in IMG_EXTENSIONS


def test_datasetfolder_with_its_own_loader(tmp_path):
    for cls, values in {"neg": [-1.0, -2.0], "pos": [3.0]}.items():
        (tmp_path / cls).mkdir()
        for i, v in enumerate(values):
            np.save(tmp_path / cls / f"{i}.npy", np.full(4, v))
    ds = DatasetFolder(tmp_path, loader=np.load, extensions=(".npy",))
    assert len(ds) == 3 and ds.classes == ["neg", "pos"]
    x, y = ds[2]
    assert y == 1 and np.array_equal(x, np.full(4, 3.0))
    assert len(DatasetFolder(tmp_path, loader=np.load, extensions=".NPY")) == 3  # case-insensitive


def test_find_classes_can_be_overridden(tree):
    root, _ = tree

    class OnlyCats(ImageFolder):
        def find_classes(self, directory):
            return ["cat"], {"cat": 7}

    ds = OnlyCats(root)
    assert ds.classes == ["cat"] and set(ds.targets) == {7} and len(ds) == 3


def test_errors(tree, tmp_path):
    root, _ = tree
    with pytest.raises(ValueError, match="Both extensions and is_valid_file"):
        DatasetFolder(root, loader=pil_loader, extensions=(".png",), is_valid_file=lambda p: True)
    with pytest.raises(ValueError, match="Both extensions and is_valid_file"):
        DatasetFolder(root, loader=pil_loader)
    (root / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no valid file for the classes empty.*Supported extensions"):
        ImageFolder(root)
    assert ImageFolder(root, allow_empty=True).classes == ["cat", "dog", "empty", "zebra"]
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.png").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="Couldn't find any class folder"):
        ImageFolder(tmp_path / "flat")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        ImageFolder(tmp_path / "absent")


def test_corrupt_or_truncated_image_names_the_file(tree):
    root, _ = tree
    good = (root / "cat" / "b.png").read_bytes()
    (root / "cat" / "b.png").write_bytes(good[: len(good) // 2])
    (root / "dog" / "fake.jpg").write_bytes(b"this is not a JPEG")
    ds = ImageFolder(root)
    for name in ("b.png", "fake.jpg"):
        index = [Path(p).name for p, _ in ds.samples].index(name)
        with pytest.raises(DatasetFileError, match="cannot decode the image") as info:
            ds[index]
        assert name in str(info.value)
