"""``axonml data info|validate|split`` on generated IDX, CIFAR, image-folder and CSV datasets, and on real data."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from axonml.cli.main import app

NONDIFF_NAMES: list[str] = []


def run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def sub(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "axonml.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def run_json(*args: object) -> dict:
    code, out, err = run(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> None:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    head = bytes([0, 0, codes[arr.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.fixture
def idx_dir(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    root = tmp_path / "digits"
    root.mkdir()
    arrays = {}
    for part, n, gz in (("train", 60, True), ("t10k", 20, False)):
        images = rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)
        labels = rng.integers(0, 3, n).astype(np.uint8)
        images[5] = images[3]  # one exact duplicate pair
        suffix = ".gz" if gz else ""
        write_idx(root / f"{part}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(root / f"{part}-labels-idx1-ubyte{suffix}", labels, gz)
        arrays[part], arrays[part + "_labels"] = images, labels
    return root, arrays


@pytest.fixture
def cifar_dir(tmp_path: Path) -> tuple[Path, np.ndarray, list[int]]:
    rng = np.random.default_rng(2)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    names = [f"class{i}" for i in range(10)]
    (root / "batches.meta").write_bytes(pickle.dumps({"label_names": names}, protocol=2))
    rows = rng.integers(0, 256, (30, 3072), dtype=np.uint8)
    labels = [i % 10 for i in range(30)]
    for i, part in enumerate(("data_batch_1", "data_batch_2", "test_batch")):
        batch = {"data": rows[i * 10:(i + 1) * 10], "labels": labels[i * 10:(i + 1) * 10]}
        (root / part).write_bytes(pickle.dumps(batch, protocol=2))
    return root, rows, labels


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """cats: 6 images (one corrupt), dogs: 2 (one an exact copy of a cat image) -> imbalance 5:2."""
    from PIL import Image

    rng = np.random.default_rng(3)
    root = tmp_path / "pets"
    for cls, n in (("cat", 6), ("dog", 2)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    (root / "cat" / "5.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated junk")
    (root / "dog" / "1.png").write_bytes((root / "cat" / "0.png").read_bytes())
    (root / "dog" / "notes.txt").write_text("not an image")
    Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8), mode="L").save(root / "dog" / "gray.png")
    return root


CSV_TEXT = "sepal,petal,species\n5.1,1.4,setosa\n4.9,1.3,setosa\n6.3,4.9,virginica\n5.8,4.0,versicolor\n" \
           "6.1,4.7,versicolor\n5.0,1.4,setosa\n"


# ----- info ----------------------------------------------------------------------------------------
def test_info_idx(idx_dir: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, arrays = idx_dir
    r = run_json("data", "info", root)
    assert r["format"] == "idx" and r["num_samples"] == 80 and r["classes"] == ["0", "1", "2"]
    parts = {p["name"]: p for p in r["parts"]}
    assert parts["train"]["sample_shape"] == [8, 8] and parts["train"]["dtype"] == "uint8"
    assert list(parts["t10k"]["class_counts"].values()) == np.bincount(arrays["t10k_labels"], minlength=3).tolist()
    x = arrays["train"].astype(np.float64)
    stats = parts["train"]["pixel_stats"]
    assert stats["mean"][0] == pytest.approx(x.mean(), rel=1e-12)
    assert stats["std"][0] == pytest.approx(x.std(), rel=1e-12)
    assert stats["mean_scaled"][0] == pytest.approx(x.mean() / 255, rel=1e-12)
    both = np.concatenate([arrays["train"], arrays["t10k"]]).astype(np.float64)
    assert r["pixel_stats"]["std"][0] == pytest.approx(both.std(), rel=1e-12)
    # one file alone picks up its labels beside it
    one = run_json("data", "info", root / "t10k-images-idx3-ubyte")
    assert one["num_samples"] == 20 and one["class_counts"] is not None
    code, text, _ = run("data", "info", root)
    assert code == 0 and "idx, 80 samples" in text and "t10k" in text


def test_info_cifar_and_image_folder(cifar_dir: tuple[Path, np.ndarray, list[int]], image_dir: Path) -> None:
    root, rows, _ = cifar_dir
    r = run_json("data", "info", root.parent)  # the folder holding cifar-10-batches-py works too
    assert r["format"] == "cifar" and r["num_samples"] == 30 and r["classes"][3] == "class3"
    assert [p["name"] for p in r["parts"]] == ["data_batch_1", "data_batch_2", "test_batch"]
    assert r["parts"][0]["sample_shape"] == [32, 32, 3]
    planes = rows.reshape(30, 3, 1024).astype(np.float64)  # R, G, B planes
    assert r["pixel_stats"]["mean"] == pytest.approx(planes.mean(axis=(0, 2)).tolist(), rel=1e-12)
    assert r["pixel_stats"]["std"] == pytest.approx(planes.std(axis=(0, 2)).tolist(), rel=1e-12)
    assert r["class_counts"] == {f"class{i}": 3 for i in range(10)}
    r = run_json("data", "info", image_dir)
    assert r["format"] == "imagefolder" and r["classes"] == ["cat", "dog"] and r["num_samples"] == 9
    part = r["parts"][0]
    assert part["unreadable"] == 1 and part["image_sizes"] == {"6x5": 7, "4x4": 1}
    assert part["modes"] == {"RGB": 7, "L": 1} and r["class_counts"] == {"cat": 6, "dog": 3}
    assert r["pixel_stats"]["channels"] == 3


def test_info_csv(tmp_path: Path) -> None:
    path = tmp_path / "iris.csv"
    path.write_text(CSV_TEXT)
    r = run_json("data", "info", path)
    assert r["format"] == "csv" and r["columns"] == ["sepal", "petal", "species"] and r["label_column"] == 2
    assert r["classes"] == ["setosa", "versicolor", "virginica"]
    assert r["class_counts"] == {"setosa": 3, "versicolor": 2, "virginica": 1}
    feats = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(0, 1))
    assert r["feature_stats"]["mean"] == pytest.approx(feats.mean(axis=0).tolist(), rel=1e-12)
    assert r["feature_stats"]["max"] == [6.3, 4.9]
    assert run_json("data", "info", path, "--label-column", "species")["class_counts"] == r["class_counts"]
    assert run_json("data", "info", path, "--label-column", "-1")["label_column"] == 2
    code, _, err = run("data", "info", path, "--label-column", "sepal")  # species would be a feature
    assert code == 1 and "'setosa' is not a number" in err
    numeric = tmp_path / "n.tsv"
    numeric.write_text("3\t0.5\t1\n1\t0.25\t0\n3\t0.75\t1\n")
    r = run_json("data", "info", numeric, "--label-column", "0")
    assert r["columns"] is None and r["classes"] == ["1", "3"] and r["class_counts"] == {"1": 1, "3": 2}
    code, _, err = run("data", "info", path, "--label-column", "nope")
    assert code == 1 and "nope" in err


def test_info_errors(tmp_path: Path) -> None:
    assert run("data", "info", tmp_path / "missing")[0] == 1
    (tmp_path / "x.bin").write_bytes(b"hello")
    code, _, err = run("data", "info", tmp_path / "x.bin")
    assert code == 1 and "not a dataset" in err
    assert run("data", "info")[0] == 2
    assert run("data", "info", tmp_path, "--format", "parquet")[0] == 2
    code, _, err = run("data", "info", tmp_path, "--format", "cifar")
    assert code == 1 and "no CIFAR batches" in err


# ----- validate ------------------------------------------------------------------------------------
def test_validate_idx_clean_duplicates_and_truncated(idx_dir: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = idx_dir
    r = run_json("data", "validate", root)
    assert r["errors"] == 0 and r["checked"] == 80
    assert r["duplicates"]["groups"] == 2 and r["duplicates"]["extra_copies"] == 2  # one pair per part
    assert ["train:3", "train:5"] in r["duplicates"]["examples"]
    assert run("data", "validate", root, "--no-duplicates")[0] == 0
    assert run("data", "validate", root, "--strict")[0] == 1  # the duplicates are warnings
    data = (root / "t10k-images-idx3-ubyte").read_bytes()
    (root / "t10k-images-idx3-ubyte").write_bytes(data[:-7])
    code, out, _ = run("data", "validate", root, "--json")
    r = json.loads(out)
    assert code == 1 and r["errors"] == 1
    assert r["problems"][0]["kind"] == "corrupt" and "truncated" in r["problems"][0]["message"]
    code, _, err = run("data", "info", root)
    assert code == 1 and "truncated" in err


def test_validate_image_folder(image_dir: Path) -> None:
    code, out, _ = run("data", "validate", image_dir, "--json")
    r = json.loads(out)
    assert code == 1 and r["errors"] == 1
    kinds = {p["kind"]: p for p in r["problems"]}
    assert "5.png" in kinds["corrupt"]["file"]
    assert kinds["duplicate"]["conflicting_labels"] == 1 and ["cat/0.png", "dog/1.png"] in kinds["duplicate"][
        "examples"]
    assert r["imbalance_ratio"] == 2.0 and "imbalance" not in kinds  # cat 6 : dog 3 is at the threshold
    code, text, _ = run("data", "validate", image_dir, "--max-imbalance", "1.5")
    assert code == 1 and "class imbalance" in text and "unreadable image cat/5.png" in text


def test_validate_csv_and_labels(tmp_path: Path, cifar_dir: tuple[Path, np.ndarray, list[int]]) -> None:
    path = tmp_path / "iris.csv"
    path.write_text(CSV_TEXT + "6.0,oops,setosa\n7.0,2.0\n5.5,nan,setosa\n")
    r = json.loads(run("data", "validate", path, "--json")[1])
    lines = sorted(p["line"] for p in r["problems"] if p["kind"] == "corrupt")
    assert lines == [8, 9] and any(p["kind"] == "missing" for p in r["problems"])
    assert any(p["kind"] == "imbalance" for p in r["problems"])  # setosa 4 vs virginica 1
    code, _, err = run("data", "info", path)
    assert code == 1 and "line 8" in err
    root, rows, labels = cifar_dir
    batch = {"data": rows[:10], "labels": [12, *labels[1:10]]}
    (root / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=2))
    r = json.loads(run("data", "validate", root, "--json")[1])
    assert [p["kind"] for p in r["problems"] if p["severity"] == "error"] == ["label"]
    (root / "data_batch_1").write_bytes(b"\x80\x02garbage")
    code, out, _ = run("data", "validate", root, "--json")
    assert code == 1 and any("data_batch_1" in p["message"] for p in json.loads(out)["problems"])


# ----- split ---------------------------------------------------------------------------------------
def read_split(folder: Path) -> dict[str, list[str]]:
    return {s: (folder / f"{s}.txt").read_text().splitlines() for s in ("train", "val", "test")}


def test_split_is_deterministic_disjoint_and_stratified(tmp_path: Path,
                                                         idx_dir: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, arrays = idx_dir
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    manifest = run_json("data", "split", root, "-o", a, "--train", "0.7", "--val", "0.2", "--seed", "5")
    run_json("data", "split", root, "-o", b, "--train", "0.7", "--val", "0.2", "--seed", "5")
    run_json("data", "split", root, "-o", c, "--train", "0.7", "--val", "0.2", "--seed", "6")
    sa, sb, sc = read_split(a), read_split(b), read_split(c)
    assert sa == sb and sa != sc
    assert (a / "split.json").read_text() == (b / "split.json").read_text()
    ids = [line.split("\t")[0] for s in sa.values() for line in s]
    assert len(ids) == len(set(ids)) == 80
    assert sum(manifest["counts"].values()) == 80 and manifest["stratified"]
    labels = np.concatenate([arrays["t10k_labels"], arrays["train_labels"]])
    for cls in range(3):
        n = int((labels == cls).sum())
        assert abs(manifest["class_counts"]["train"][str(cls)] - 0.7 * n) <= 0.5
    first = sa["train"][0].split("\t")
    part, index = first[0].split(":")
    assert int(first[1]) == int(arrays[f"{part}_labels"][int(index)])  # the label written is the sample's
    code, _, err = run("data", "split", root, "-o", a)
    assert code == 1 and "not empty" in err
    assert run("data", "split", root, "-o", a, "--force")[0] == 0
    assert run("data", "split", root, "-o", tmp_path / "d", "--train", "0.8", "--val", "0.3")[0] == 2
    code, _, err = run("data", "split", root, "-o", tmp_path / "e", "--mode", "copy")
    assert code == 1 and "index files" in err
    unstrat = run_json("data", "split", root, "-o", tmp_path / "f", "--no-stratify")
    assert unstrat["counts"] == {"train": 64, "val": 8, "test": 8} and not unstrat["stratified"]


def test_split_image_folder_links_and_csv_copies(tmp_path: Path, image_dir: Path) -> None:
    (image_dir / "cat" / "5.png").unlink()  # a clean tree of 8 images
    out = tmp_path / "split"
    run_json("data", "split", image_dir, "-o", out, "--mode", "symlink", "--train", "0.5", "--val", "0.25")
    links = sorted(p for p in out.rglob("*.png"))
    assert len(links) == 8 and all(p.is_symlink() and p.resolve().is_file() for p in links)
    assert {p.relative_to(out).parts[0] for p in links} <= {"train", "val", "test"}
    lines = read_split(out)
    assert all(line.split("\t")[0].split("/")[0] in ("cat", "dog") for s in lines.values() for line in s)
    r = run_json("data", "info", out)  # the tree is itself a dataset, one part per split
    assert r["format"] == "imagefolder" and sorted(p["name"] for p in r["parts"]) == sorted(
        s for s, v in lines.items() if v) and r["num_samples"] == 8
    copies = tmp_path / "copies"
    run_json("data", "split", image_dir, "-o", copies, "--mode", "copy")
    assert not any(p.is_symlink() for p in copies.rglob("*.png")) and len(list(copies.rglob("*.png"))) == 8
    csv_path = tmp_path / "iris.csv"
    csv_path.write_text(CSV_TEXT)
    run_json("data", "split", csv_path, "-o", tmp_path / "csv", "--mode", "copy", "--train", "0.5", "--val", "0")
    train_rows = (tmp_path / "csv" / "train.csv").read_text().splitlines()
    test_rows = (tmp_path / "csv" / "test.csv").read_text().splitlines()
    assert train_rows[0] == test_rows[0] == "sepal,petal,species"
    assert sorted(train_rows[1:] + test_rows[1:]) == sorted(CSV_TEXT.splitlines()[1:])
    assert (tmp_path / "csv" / "val.txt").read_text() == ""


# ----- real data -----------------------------------------------------------------------------------
def test_real_mnist_info_and_validate(shared_data: Path) -> None:
    mnist = shared_data / "mnist"
    r = run_json("data", "info", mnist)
    parts = {p["name"]: p for p in r["parts"]}
    assert r["num_samples"] == 70_000 and parts["train"]["num_samples"] == 60_000
    assert parts["train"]["pixel_stats"]["mean_scaled"][0] == pytest.approx(0.1307, abs=1e-4)
    assert parts["train"]["pixel_stats"]["std_scaled"][0] == pytest.approx(0.3081, abs=1e-4)
    assert parts["train"]["class_counts"]["1"] == 6742 and parts["t10k"]["class_counts"]["5"] == 892
    v = run_json("data", "validate", mnist)
    assert v["errors"] == 0 and v["checked"] == 70_000
    assert v["imbalance_ratio"] == pytest.approx(7877 / 6313)
    from axonml.vision.datasets import read_idx

    images = np.concatenate([read_idx(mnist / f"{p}-images-idx3-ubyte.gz") for p in ("t10k", "train")])
    rows = np.ascontiguousarray(images.reshape(len(images), -1)).view(np.dtype((np.void, 784))).ravel()
    _, counts = np.unique(rows, return_counts=True)
    assert v["duplicates"]["groups"] == int((counts > 1).sum())
    assert v["duplicates"]["extra_copies"] == int((counts - 1).sum())


def test_real_cifar_in_subprocesses(tmp_path: Path, shared_data: Path) -> None:
    cifar = shared_data / "cifar-10-batches-py"
    p = sub("data", "info", cifar, "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["num_samples"] == 5506 and r["classes"][0] == "airplane" and len(r["parts"]) == 6
    assert r["pixel_stats"]["mean_scaled"] == pytest.approx([0.4914, 0.4822, 0.4465], abs=0.01)  # the full set's
    p = sub("data", "validate", cifar)
    assert p.returncode == 0 and "0 errors" in p.stdout
    for out in ("s1", "s2"):
        p = sub("data", "split", cifar, "-o", tmp_path / out, "--seed", "3")
        assert p.returncode == 0 and "train 4,405" in p.stdout, p.stderr
    assert read_split(tmp_path / "s1") == read_split(tmp_path / "s2")
    assert sub("data", "split", cifar).returncode == 2  # -o is required


def test_in_subprocesses_on_generated_data(tmp_path: Path, idx_dir: tuple[Path, dict[str, np.ndarray]],
                                           image_dir: Path) -> None:
    root, _ = idx_dir
    p = sub("data", "info", root, "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["num_samples"] == 80, p.stderr
    p = sub("data", "validate", image_dir)
    assert p.returncode == 1 and "unreadable image" in p.stdout
    p = sub("data", "split", root, "-o", tmp_path / "s", "--train", "0.5", "--val", "0.25", "--seed", "1",
            "--no-stratify")
    assert p.returncode == 0 and "train 40, val 20, test 20" in p.stdout, p.stderr
    assert json.loads((tmp_path / "s" / "split.json").read_text())["seed"] == 1
    assert sub("data", "split", root, "-o", tmp_path / "s2", "--mode", "bogus").returncode == 2
