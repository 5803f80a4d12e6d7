"""download=True against a local HTTP server serving real files: MNIST's gzipped IDX, a CIFAR-10 tarball, an EMNIST zip.

The mirror is injected as a user would: ``$AXONML_DATASETS_MIRROR`` (a tree with
one folder per dataset class) or the ``mirrors=`` keyword.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import socket
import struct
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from axonml.io.download import ChecksumError, DownloadError
from axonml.vision.datasets import CIFAR10, EMNIST, ENV_MIRROR, MNIST


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path):
    """(folder served, base URL): an HTTP server on 127.0.0.1 in a thread."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch):
    monkeypatch.delenv(ENV_MIRROR, raising=False)


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/datasets"


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part") or p.name.startswith(".extract-")]


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def test_mnist_download_into_the_cache(shared_data, server, tmp_path, monkeypatch):
    www, base = server
    (www / "MNIST").mkdir()
    for filename, _, _ in MNIST.resources:  # the real files (recompressed: their gz MD5 differs from the original)
        (www / "MNIST" / filename).symlink_to(shared_data / "mnist" / filename)
    monkeypatch.setenv("AXONML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(ENV_MIRROR, base)
    test = MNIST(train=False, download=True)  # root defaults to $AXONML_HOME/datasets
    raw = tmp_path / "home" / "datasets" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(f for f, _, _ in MNIST.resources)
    assert len(test) == 10000 and test.targets.numpy()[:3].tolist() == [7, 2, 1] and not _leftovers(raw)
    assert len(MNIST(train=True)) == 60000  # the train files came too
    # present files are not fetched again: every mirror may be down
    assert len(MNIST(train=False, download=True, mirrors=[_dead_url()])) == 10000


def test_mnist_download_with_the_mirrors_keyword(shared_data, server, tmp_path):
    www, base = server
    (www / "m").mkdir()
    for filename, _, _ in MNIST.resources:
        (www / "m" / filename).symlink_to(shared_data / "mnist" / filename)
    ds = MNIST(tmp_path / "data", train=False, download=True, mirrors=[_dead_url(), f"{base}/m/"])
    assert len(ds) == 10000 and (tmp_path / "data" / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file()


def test_corrupt_download_is_deleted_and_reported(server, tmp_path):
    www, base = server
    (www / "MNIST").mkdir()
    images = np.zeros((60000, 28, 28), np.uint8)  # well-formed, wrong content
    (www / "MNIST" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images), compresslevel=1))
    with pytest.raises(ChecksumError) as info:
        MNIST(tmp_path, download=True, mirrors=f"{base}/MNIST")
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz" in msg and "f68b3c2dcbeaaa9fbdd348bbdeb94873" in msg and "deleted" in msg
    raw = tmp_path / "MNIST" / "raw"
    assert not (raw / "train-images-idx3-ubyte.gz").exists() and not _leftovers(tmp_path)


def test_offline_names_the_file_and_the_mirrors(tmp_path, monkeypatch):
    dead = [_dead_url(), _dead_url()]
    with pytest.raises(DownloadError) as info:
        MNIST(tmp_path, download=True, mirrors=dead)
    msg = str(info.value)
    assert "\n" not in msg and "train-images-idx3-ubyte.gz" in msg and "offline" in msg
    assert all(f"{d}/train-images-idx3-ubyte.gz" in msg for d in dead)
    monkeypatch.setenv(ENV_MIRROR, dead[0])
    with pytest.raises(DownloadError, match=f"{dead[0]}/CIFAR10/cifar-10-python.tar.gz"):
        CIFAR10(tmp_path, download=True)


def test_canonical_mirrors():
    assert MNIST.mirrors == ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
    assert CIFAR10.mirrors == ["https://www.cs.toronto.edu/~kriz/"] and CIFAR10.filename == "cifar-10-python.tar.gz"
    assert EMNIST.mirrors == ["https://biometrics.nist.gov/cs_links/EMNIST/"] and EMNIST.archive[0] == "gzip.zip"


@pytest.fixture
def cifar_tarball(shared_data, server) -> tuple[str, str]:
    """(base URL, MD5) of a cifar-10-python.tar.gz built from the real (partial) batches."""
    www, base = server
    (www / "CIFAR10").mkdir()
    tar_path = www / "CIFAR10" / "cifar-10-python.tar.gz"
    with tarfile.open(tar_path, "w:gz", compresslevel=1) as tf:
        for f in sorted((shared_data / "cifar-10-batches-py").iterdir()):
            tf.add(f, arcname=f"cifar-10-batches-py/{f.name}")
    return base, hashlib.md5(tar_path.read_bytes()).hexdigest()


def test_cifar10_download_and_extract(cifar_tarball, tmp_path, monkeypatch):
    base, md5 = cifar_tarball
    root = tmp_path / "data"
    # the canonical checksum is that of the complete original archive: this partial one is refused
    with pytest.raises(ChecksumError, match="c58f30108f718f92721af3b95e74349a"):
        CIFAR10(root, download=True, mirrors=f"{base}/CIFAR10")
    assert list(root.iterdir()) == []
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5)
    monkeypatch.setenv(ENV_MIRROR, base)
    train = CIFAR10(root, train=True, download=True)
    assert len(train) == 4660 and len(CIFAR10(root, train=False)) == 846
    assert (root / "cifar-10-python.tar.gz").is_file() and not _leftovers(root)
    assert train.classes[0] == "airplane"


def test_emnist_download_extracts_the_zip(server, tmp_path, monkeypatch):
    www, base = server
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), rng.integers(0, 10, 30).astype(np.uint8)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # NIST's layout: gzip/emnist-<split>-<train|test>-...-ubyte.gz
        zf.writestr("gzip/emnist-mnist-test-images-idx3-ubyte.gz", gzip.compress(_idx(images)))
        zf.writestr("gzip/emnist-mnist-test-labels-idx1-ubyte.gz", gzip.compress(_idx(labels)))
    (www / "EMNIST").mkdir()
    (www / "EMNIST" / "gzip.zip").write_bytes(buf.getvalue())
    monkeypatch.setattr(EMNIST, "archive", ("gzip.zip", hashlib.md5(buf.getvalue()).hexdigest()))
    ds = EMNIST(tmp_path, split="mnist", train=False, download=True, mirrors=[f"{base}/EMNIST"], upright=True)
    assert len(ds) == 30 and np.array_equal(ds.data.numpy(), images.transpose(0, 2, 1))
    assert np.array_equal(ds.targets.numpy(), labels)
    raw = tmp_path / "EMNIST" / "raw"
    assert not (raw / "gzip.zip").exists() and (raw / "gzip" / "emnist-mnist-test-labels-idx1-ubyte.gz").is_file()
