"""axonml.vision.datasets: MNIST and its kin on real and hand-made IDX files, CIFAR on the real batches, synthetic sets.

ImageFolder is in test_vision_datasets_folder.py, the restricted unpickler in
test_vision_datasets_pickle.py, download=True in test_vision_datasets_download.py.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

import axonml as ax
from axonml.data import DataLoader
from axonml.io.download import file_digest
from axonml.vision.datasets import (
    CIFAR10,
    CIFAR100,
    EMNIST,
    KMNIST,
    MNIST,
    DatasetFileError,
    FashionMNIST,
    SyntheticCIFAR,
    SyntheticMNIST,
    read_idx,
)

to_array = lambda im: np.asarray(im)  # stands in for transforms.ToTensor, which datasets must not need

_IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
              np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write ``array`` as an IDX file (big-endian values), gzipped when asked."""
    big = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    raw = bytes([0, 0, _IDX_CODES[big.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += big.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, compresslevel=1) if gz else raw)
    return path


def small_mnist(folder: Path, prefix: str = "t10k", n: int = 50, gz: bool = False, seed: int = 0,
                labels_hi: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, labels_hi, n).astype(np.uint8)
    ext = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images, gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels, gz)
    return images, labels


# ---------------------------------------------------------------- MNIST on the real files

def _pixel_stats(pixels: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of uint8 pixels scaled to [0, 1], from their histogram (no float copy)."""
    counts = np.bincount(pixels.reshape(-1), minlength=256).astype(np.float64)
    values = np.arange(256) / 255
    mean = counts @ values / counts.sum()
    return float(mean), float(np.sqrt(counts @ (values - mean) ** 2 / counts.sum()))


@pytest.fixture(scope="module")
def mnist_train():
    folder = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"  # as conftest's shared_data
    if not folder.is_dir():
        pytest.skip("../shared/data is not present")
    return MNIST(folder, train=True)


def test_mnist_real_train(mnist_train):
    ds = mnist_train
    assert len(ds) == 60000 and ds.data.shape == (60000, 28, 28) and ds.data.dtype == ax.uint8
    assert ds.targets.dtype == ax.int64 and ds.targets.shape == (60000,)
    mean, std = _pixel_stats(ds.data.numpy())
    assert abs(mean - 33.3184 / 255) < 1e-3 and abs(std - 78.5675 / 255) < 1e-3
    labels = ds.targets.numpy()
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    img, target = ds[0]
    assert img.mode == "L" and img.size == (28, 28) and target == 5 and isinstance(target, int)
    assert np.array_equal(np.asarray(img), ds.data.numpy()[0])
    assert ds.class_to_idx["5 - five"] == 5 and len(ds.classes) == 10
    assert "Number of datapoints: 60000" in repr(ds) and "Split: Train" in repr(ds)


def test_mnist_real_test_split_and_transforms(shared_data):
    seen = []
    ds = MNIST(shared_data / "mnist", train=False, transform=lambda im: np.asarray(im, np.float32) / 255,
               target_transform=lambda t: seen.append(t) or t * 10)
    assert len(ds) == 10000
    assert ds.targets.numpy()[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(ds.targets.numpy()).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    x, y = ds[-1]
    assert x.dtype == np.float32 and x.shape == (28, 28) and y == 10 * seen[-1] == 60
    assert np.allclose(x * 255, ds.data.numpy()[-1])


def test_mnist_checksums_match_the_real_files(shared_data):
    """The decompressed-content MD5s that MNIST.download accepts are those of the real files."""
    for filename, _, raw_md5 in MNIST.resources:
        assert file_digest(shared_data / "mnist" / filename, "md5", gunzip=True) == raw_md5


def test_mnist_subsetting_data_like_torchvision(tmp_path):
    _, labels = small_mnist(tmp_path / "MNIST" / "raw")
    ds = MNIST(tmp_path, train=False)
    ds.data, ds.targets = ds.data[:5], ds.targets[:5]  # the torchvision idiom for a quick subset
    assert len(ds) == 5 and ds[4][1] == labels[4]


# ---------------------------------------------------------------- IDX files made here

@pytest.mark.parametrize("gz", [False, True])
def test_mnist_family_reads_idx_gzipped_or_not(tmp_path, gz):
    images, labels = small_mnist(tmp_path / "MNIST" / "raw", gz=gz)
    ds = MNIST(tmp_path, train=False, transform=to_array)
    assert len(ds) == 50 and np.array_equal(ds.data.numpy(), images)
    assert np.array_equal(ds.targets.numpy(), labels) and np.array_equal(ds[3][0], images[3])
    # the other MNIST-format sets read the same layout from their own folders (or root itself)
    small_mnist(tmp_path / "FashionMNIST", prefix="train", gz=gz, seed=1)
    fashion = FashionMNIST(tmp_path, train=True)
    assert len(fashion) == 50 and fashion.classes[9] == "Ankle boot"
    kroot = tmp_path / "k"
    small_mnist(kroot, gz=gz, seed=2)
    kmnist = KMNIST(kroot, train=False)
    assert len(kmnist) == 50 and kmnist.classes[0] == "o"


def test_mnist_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte.*download=True"):
        MNIST(tmp_path, train=False)


def test_read_idx_dtypes(tmp_path):
    for dt in ("u1", "i1", ">i2", ">i4", ">f4", ">f8"):
        a = (np.arange(24).reshape(2, 3, 4) - 5).astype(np.dtype(dt).newbyteorder("="))
        if dt == "u1":
            a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
        out = read_idx(write_idx(tmp_path / f"x{dt.strip('>')}", a, gz=dt == ">i4"))
        assert out.dtype.isnative and out.dtype.kind == a.dtype.kind and np.array_equal(out, a)
        assert out.flags.writeable


def test_truncated_or_corrupt_idx_names_the_file(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    good = write_idx(tmp_path / "good", images).read_bytes()
    cases = {
        "cut": (good[:-10], "truncated"),
        "long": (good + b"\0" * 3, "longer"),
        "header": (good[:9], "truncated"),
        "magic": (b"\x50\x4b\x03\x04" + good[4:], "not an IDX"),
        "empty": (b"", "not an IDX"),
        "cut.gz": (gzip.compress(good)[:-200], "truncated or corrupt"),
        "cutdata.gz": (gzip.compress(good[:-10]), "truncated"),
        "bad.gz": (b"\x1f\x8b" + b"\x00" * 40, "truncated or corrupt"),
    }
    for name, (data, what) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DatasetFileError, match=what) as info:
            read_idx(path)
        assert str(path) in str(info.value), name


def test_mnist_rejects_inconsistent_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8))
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(DatasetFileError, match=r"5 images but .* 4 labels"):
        MNIST(tmp_path, train=False)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 3, 12], np.uint8))
    with pytest.raises(DatasetFileError, match="label 12 is out of range"):
        MNIST(tmp_path, train=False)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros((5, 2), np.uint8))
    with pytest.raises(DatasetFileError, match=r"expected uint8 labels \(N,\)"):
        MNIST(tmp_path, train=False)
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((5, 28, 28), ">f4"))
    with pytest.raises(DatasetFileError, match="expected uint8 images"):
        MNIST(tmp_path, train=False)


# ---------------------------------------------------------------- EMNIST

def test_emnist_splits_and_orientation(tmp_path):
    gzdir = tmp_path / "EMNIST" / "raw" / "gzip"
    images, labels = small_mnist(gzdir, prefix="emnist-letters-train", gz=True, labels_hi=27)
    ds = EMNIST(tmp_path, split="letters", train=True)
    assert ds.classes[0] == "N/A" and ds.classes[1:] == list("abcdefghijklmnopqrstuvwxyz")
    assert np.array_equal(ds.data.numpy(), images)  # as stored, like torchvision
    upright = EMNIST(tmp_path, split="letters", upright=True, transform=to_array)
    assert np.array_equal(upright.data.numpy(), images.transpose(0, 2, 1))
    assert np.array_equal(upright[7][0], images[7].T) and upright[7][1] == labels[7]
    assert "letters" in repr(ds)
    sizes = {s: len(c) for s, c in EMNIST.classes_split_dict.items()}
    assert sizes == {"byclass": 62, "bymerge": 47, "balanced": 47, "letters": 27, "digits": 10, "mnist": 10}
    assert EMNIST.classes_split_dict["balanced"][36:] == list("abdefghnqrt")
    with pytest.raises(ValueError, match="unknown split 'bogus'"):
        EMNIST(tmp_path, split="bogus")
    with pytest.raises(FileNotFoundError, match="emnist-digits-test-images"):
        EMNIST(tmp_path, split="digits", train=False)
    small_mnist(tmp_path / "EMNIST" / "raw", prefix="emnist-digits-test", labels_hi=12)
    with pytest.raises(DatasetFileError, match="out of range for 10 classes"):
        EMNIST(tmp_path, split="digits", train=False)


# ---------------------------------------------------------------- CIFAR

def test_cifar10_real_partial_batches(shared_data):
    train = CIFAR10(shared_data, train=True)
    test = CIFAR10(shared_data / "cifar-10-batches-py", train=False, transform=to_array)  # root may be the folder
    assert len(train) == 932 * 5 == 4660 and len(test) == 846
    assert train.data.shape == (4660, 32, 32, 3) and train.data.dtype == np.uint8
    assert train.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert train.class_to_idx["truck"] == 9 and isinstance(train.targets, list)
    assert test.targets[:10] == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    img, target = train[0]
    assert img.mode == "RGB" and img.size == (32, 32) and target == train.targets[0]
    # channel layout: rows are the R, G, B planes (read here with plain pickle: the shared file is trusted)
    with open(shared_data / "cifar-10-batches-py" / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    rows = raw[b"data"]
    for c in range(3):
        assert np.array_equal(test.data[5, :, :, c], rows[5, 1024 * c:1024 * (c + 1)].reshape(32, 32))
    assert np.array_equal(test[5][0], test.data[5])
    mean, std = np.array([_pixel_stats(train.data[..., c]) for c in range(3)]).T
    assert np.allclose(mean, [0.4914, 0.4822, 0.4465], atol=5e-3)  # the published full-set statistics
    assert np.allclose(std, [0.2470, 0.2435, 0.2616], atol=5e-3)
    # batches.meta is the original file
    assert file_digest(shared_data / "cifar-10-batches-py" / "batches.meta", "md5") == CIFAR10.meta["md5"]


def test_cifar_missing_files(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(FileNotFoundError, match=r"test_batch, batches\.meta not found.*download=True"):
        CIFAR10(tmp_path, train=False)


def _write_cifar100(folder: Path, n: int = 40, coarse_hi: int = 20) -> dict[str, np.ndarray]:
    """A small CIFAR-100 tree in the original layout, written as a Python 3 program pickles it."""
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split in ("train", "test"):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine, coarse = rng.integers(0, 100, n), rng.integers(0, coarse_hi, n)
        batch = {b"filenames": [b"x.png"] * n, b"batch_label": split.encode(), b"fine_labels": fine.tolist(),
                 b"coarse_labels": coarse.tolist(), b"data": data}
        (folder / split).write_bytes(pickle.dumps(batch, protocol=2))
        out[split], out[split + "_fine"], out[split + "_coarse"] = data, fine, coarse
    meta = {b"fine_label_names": [f"fine{i}" for i in range(100)],
            b"coarse_label_names": [f"coarse{i}" for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return out


def test_cifar100_fine_and_coarse(tmp_path):
    made = _write_cifar100(tmp_path / "cifar-100-python")
    fine = CIFAR100(tmp_path, train=True)
    assert len(fine) == 40 and fine.targets == made["train_fine"].tolist() and fine.classes[99] == "fine99"
    assert fine.coarse_targets == made["train_coarse"].tolist() and fine.coarse_classes[19] == "coarse19"
    assert np.array_equal(fine.data[2].transpose(2, 0, 1).reshape(-1), made["train"][2])
    coarse = CIFAR100(tmp_path, train=False, label_type="coarse")
    assert coarse.targets == made["test_coarse"].tolist() and len(coarse.classes) == 20
    assert coarse.fine_targets == made["test_fine"].tolist() and len(coarse.fine_classes) == 100
    assert coarse[0][1] == made["test_coarse"][0] and "coarse" in repr(coarse)
    with pytest.raises(ValueError, match="label_type"):
        CIFAR100(tmp_path, label_type="medium")


def test_corrupt_cifar_batches_name_the_file(tmp_path):
    folder = tmp_path / "cifar-100-python"
    _write_cifar100(folder)
    good = (folder / "test").read_bytes()
    (folder / "test").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetFileError, match="test is truncated or corrupt"):
        CIFAR100(tmp_path, train=False)
    bad = {b"data": np.zeros((4, 100), np.uint8), b"fine_labels": [0] * 4, b"coarse_labels": [0] * 4}
    (folder / "test").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DatasetFileError, match=r"test: expected 'data' as uint8 \(N, 3072\)"):
        CIFAR100(tmp_path, train=False)
    bad = {b"data": np.zeros((4, 3072), np.uint8), b"fine_labels": [0] * 3, b"coarse_labels": [0] * 4}
    (folder / "test").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DatasetFileError, match="expected 4 'fine_labels', found 3"):
        CIFAR100(tmp_path, train=False)
    _write_cifar100(folder, coarse_hi=25)
    with pytest.raises(DatasetFileError, match="'coarse_labels' label is out of range"):
        CIFAR100(tmp_path, train=False)


# ---------------------------------------------------------------- synthetic sets

def _ridge_accuracy(x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray) -> float:
    """Test accuracy of a one-vs-all ridge regression on raw pixels: a quick learnability probe."""
    x, xt = np.c_[x, np.ones(len(x))], np.c_[xt, np.ones(len(xt))]
    w = np.linalg.solve(x.T @ x + np.eye(x.shape[1]), x.T @ np.eye(10)[y])
    return float(((xt @ w).argmax(1) == yt).mean())


def test_synthetic_mnist():
    train, test = SyntheticMNIST(size=2000), SyntheticMNIST(train=False, size=500)
    assert train.data.shape == (2000, 28, 28) and train.data.dtype == ax.uint8 and train.targets.dtype == ax.int64
    assert len(SyntheticMNIST(train=False)) == 2000 and len(SyntheticMNIST(train=False, size=0)) == 0
    assert np.array_equal(SyntheticMNIST(size=300).data.numpy(), SyntheticMNIST(size=300).data.numpy())  # seeded
    assert not np.array_equal(SyntheticMNIST(size=300, seed=1).data.numpy(), SyntheticMNIST(size=300).data.numpy())
    assert not np.array_equal(test.data.numpy(), train.data.numpy()[:500])  # splits differ
    img, target = train[0]
    assert img.mode == "L" and img.size == (28, 28) and target in range(10)
    assert set(np.unique(train.targets.numpy())) == set(range(10)) and "SYNTHETIC" in repr(train)
    flat = lambda d: d.data.numpy().reshape(len(d), -1) / 255
    acc = _ridge_accuracy(flat(train), train.targets.numpy(), flat(test), test.targets.numpy())
    assert acc > 0.9, acc  # learnable: a linear model on pixels reads the digits


def test_synthetic_cifar():
    train, test = SyntheticCIFAR(size=1500), SyntheticCIFAR(train=False, size=500)
    assert train.data.shape == (1500, 32, 32, 3) and train.data.dtype == np.uint8 and isinstance(train.targets, list)
    assert train.classes[0] == "warm disk" and train.classes[9] == "cool ring" and len(train.classes) == 10
    assert np.array_equal(SyntheticCIFAR(size=300).data, SyntheticCIFAR(size=300).data)
    assert not np.array_equal(SyntheticCIFAR(size=300, seed=5).data, SyntheticCIFAR(size=300).data)
    img, target = train[3]
    assert img.mode == "RGB" and img.size == (32, 32) and target == train.targets[3]
    pooled = lambda d: (d.data.reshape(len(d), 16, 2, 16, 2, 3).mean((2, 4)) / 255).reshape(len(d), -1)
    acc = _ridge_accuracy(pooled(train), np.array(train.targets), pooled(test), np.array(test.targets))
    assert acc > 0.35, acc  # far above chance (0.1) even for a linear model
    assert len(SyntheticCIFAR(train=False)) == 1000
    with pytest.raises(ValueError, match="size"):
        SyntheticCIFAR(size=-1)


def test_datasets_feed_the_dataloader():
    ds = SyntheticMNIST(size=40, transform=lambda im: np.asarray(im, np.float32)[None] / 255)
    x, y = next(iter(DataLoader(ds, batch_size=16, shuffle=False)))
    assert x.shape == (16, 1, 28, 28) and x.dtype == ax.float32 and y.shape == (16,) and y.dtype == ax.int64
    assert np.array_equal(y.numpy(), ds.targets.numpy()[:16])
    ds2 = pickle.loads(pickle.dumps(SyntheticCIFAR(size=8)))  # worker processes get a pickled copy
    assert hashlib.md5(ds2.data.tobytes()).hexdigest() == hashlib.md5(SyntheticCIFAR(size=8).data.tobytes()).hexdigest()
