"""examples/mnist.py (the README's main job): it trains, it is deterministic, it resumes, it never fakes data.

Fast: a few hundred images, a few dozen steps. Data: ../shared/data/mnist when present, else
scikit-learn's bundled digits; the tests skip when neither is there. The full two-epoch runs
with accuracy targets are in test_train_mnist.py (marked slow).
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from example_modules import load_example

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


mdata = load_example("_mnist_data")
mnist = load_example("mnist")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture(scope="module")
def small() -> tuple[Any, Any]:
    """(train, test) splits of a few hundred real images: MNIST if present, else scikit-learn's digits."""
    if mdata.has_mnist(mdata.SHARED_MNIST):
        train, test = mdata.load_mnist(mdata.SHARED_MNIST)
    elif mdata.has_digits():
        train, test = mdata.load_digits_28()
    else:
        pytest.skip("neither ../shared/data/mnist nor scikit-learn is available")
    return mdata.Split(train.images[:640], train.labels[:640]), mdata.Split(test.images[:200], test.labels[:200])


def _trainer(small: tuple[Any, Any], model: str, seed: int = 0, steps: int | None = None,
             epochs: int = 2) -> Any:
    train, test = small
    return mnist.Trainer(model, train, test, epochs=epochs, batch_size=64, lr=3e-3, device="cpu", seed=seed,
                         steps_per_epoch=steps)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / "mnist.py"), *args], capture_output=True, text=True,
                          env=_env(), timeout=600)


def _final_accuracy(out: str) -> float:
    m = re.search(r"final test accuracy (\S+)", out)
    assert m is not None, out
    return float(m.group(1))


def test_idx_reader_round_trip(tmp_path: Path) -> None:
    # an IDX file written by hand (header: 0, 0, type 0x08, ndim; big-endian dims) reads back, gzipped or not
    import gzip

    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 0x08, 3]) + np.array([2, 3, 4], dtype=">u4").tobytes() + a.tobytes()
    (tmp_path / "x-idx3-ubyte").write_bytes(raw)
    (tmp_path / "x-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    for name in ("x-idx3-ubyte", "x-idx3-ubyte.gz"):
        got = mdata.read_idx(tmp_path / name)
        assert got.dtype == np.uint8 and np.array_equal(got, a)
    lab = np.array([7, -3], dtype=">i4")
    (tmp_path / "l").write_bytes(bytes([0, 0, 0x0C, 1]) + np.array([2], dtype=">u4").tobytes() + lab.tobytes())
    assert mdata.read_idx(tmp_path / "l").tolist() == [7, -3]
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        mdata.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match="data bytes"):
        mdata.read_idx(tmp_path / "short")


def test_no_data_is_a_clear_error_not_noise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(mdata, "SHARED_MNIST", tmp_path / "absent")
    monkeypatch.setattr(mdata, "has_digits", lambda: False)
    with pytest.raises(SystemExit) as e:
        mnist.main([])
    msg = str(e.value.code)
    assert "\n" not in msg and "--data" in msg and "pip install -e '.[examples]'" in msg, msg
    assert "epoch" not in capsys.readouterr().out  # nothing was trained
    with pytest.raises(mdata.DataNotFoundError, match="expected the four MNIST IDX files"):
        mdata.find_source(tmp_path)  # a folder without MNIST is an error, not a silent fallback
    with pytest.raises(mdata.DataNotFoundError, match="needs scikit-learn"):
        mdata.find_source("digits")


@pytest.mark.skipif(not mdata.has_digits(), reason="scikit-learn is not installed")
def test_example_trains_on_the_embedded_digits() -> None:
    # the fresh-machine path: no MNIST given, scikit-learn's real digits; MLP, 4 epochs of 24 steps
    r = _run("--data", "digits", "--epochs", "4")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "scikit-learn's bundled digits" in r.stdout and "1497 training / 300 test" in r.stdout, r.stdout
    assert len(re.findall(r"^epoch \d+\s+loss", r.stdout, flags=re.M)) == 4, r.stdout
    assert _final_accuracy(r.stdout) > 0.85, r.stdout  # 0.97 measured; chance is 0.1


@pytest.mark.skipif(not mdata.has_mnist(mdata.SHARED_MNIST), reason="../shared/data/mnist is not present")
def test_example_trains_on_an_mnist_subset() -> None:
    r = _run("--limit", "2000", "--epochs", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "MNIST from" in r.stdout and "2000 training / 10000 test" in r.stdout, r.stdout
    assert re.search(r"images/s", r.stdout), r.stdout
    assert _final_accuracy(r.stdout) > 0.7, r.stdout  # 32 steps on 2,000 images; chance is 0.1


@pytest.mark.parametrize("model", ["mlp", "lenet"])
def test_same_seed_gives_bit_identical_weights(small: tuple[Any, Any], model: str) -> None:
    runs = []
    for seed in (0, 0, 1):
        t = _trainer(small, model, seed=seed, steps=4)
        t.train_epoch()
        t.train_epoch()
        runs.append(t.weights())
    a, b, c = runs
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a), "same seed, different weights"
    assert not all(np.array_equal(a[k], c[k]) for k in a), "a different seed gave the same weights"


@pytest.mark.parametrize("model", ["mlp", "lenet"])
def test_resume_from_checkpoint_continues_bit_for_bit(small: tuple[Any, Any], model: str,
                                                      tmp_path: Path) -> None:
    straight = _trainer(small, model, steps=3, epochs=3)
    for _ in range(3):
        straight.train_epoch()

    first = _trainer(small, model, steps=3, epochs=3)
    first.train_epoch()
    first.save(tmp_path / "ckpt.pkl")
    ckpt = pickle.loads((tmp_path / "ckpt.pkl").read_bytes())
    assert not any(type(v).__module__.startswith("axonml") for v in ckpt["model"].values())  # plain NumPy
    resumed = _trainer(small, model, seed=123, steps=3, epochs=3)  # a different seed: the checkpoint must win
    resumed.load(tmp_path / "ckpt.pkl")
    assert resumed.epoch == 1
    resumed.train_epoch()
    resumed.train_epoch()
    a, b = straight.weights(), resumed.weights()
    assert all(np.array_equal(a[k], b[k]) for k in a), "the resumed run diverged from the uninterrupted one"
    assert straight.optimizer.param_groups[0]["lr"] == resumed.optimizer.param_groups[0]["lr"]


def test_example_resume_through_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not (mdata.has_mnist(mdata.SHARED_MNIST) or mdata.has_digits()):
        pytest.skip("neither ../shared/data/mnist nor scikit-learn is available")
    common = ["--limit", "512", "--steps", "4", "--epochs", "2", "--batch-size", "32"]
    full = mnist.main([*common, "--save", str(tmp_path / "a-{epoch}.pkl")])
    assert (tmp_path / "a-1.pkl").is_file() and (tmp_path / "a-2.pkl").is_file()
    resumed = mnist.main([*common, "--resume", str(tmp_path / "a-1.pkl"), "--save", str(tmp_path / "b-{epoch}.pkl")])
    assert "resumed from" in capsys.readouterr().out
    assert not (tmp_path / "b-1.pkl").exists() and len(resumed["history"]) == 1  # only epoch 2 was run
    a = pickle.loads((tmp_path / "a-2.pkl").read_bytes())
    b = pickle.loads((tmp_path / "b-2.pkl").read_bytes())
    assert all(np.array_equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert full["test_accuracy"] == resumed["test_accuracy"]
