"""``axonml zip create|extract|list``: verified bundles, tampering, and member paths that try to escape."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import axonml as ax
from axonml.cli.main import app
from axonml.io import ModelArchive

NONDIFF_NAMES: list[str] = []


def run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def sub(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "axonml.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


@pytest.fixture
def project(tmp_path: Path) -> dict[str, Path]:
    """A model archive, a data folder (nested, with a link to a file) and a config file."""
    ax.manual_seed(0)
    src = tmp_path / "src"
    (src / "data" / "train" / "cats").mkdir(parents=True)
    ModelArchive.save(src / "model.axonml", ax.nn.Linear(4, 2), config={"in_features": 4, "out_features": 2})
    (src / "data" / "train" / "cats" / "a.txt").write_text("meow\n")
    (src / "data" / "labels.csv").write_text("x,y\n1,0\n")
    (src / "outside.bin").write_bytes(os.urandom(1000))
    (src / "data" / "linked.bin").symlink_to(src / "outside.bin")
    (src / "axonml.toml").write_text("[train]\nepochs = 1\n")
    return {"model": src / "model.axonml", "data": src / "data", "config": src / "axonml.toml",
            "linked": src / "outside.bin"}


def create(tmp_path: Path, project: dict[str, Path]) -> Path:
    bundle = tmp_path / "run.zip"
    code, _, err = run("zip", "create", "-o", bundle, "--model", project["model"], "--data", project["data"],
                       "--config", project["config"])
    assert code == 0, err
    return bundle


def test_create_list_extract_round_trip(tmp_path: Path, project: dict[str, Path]) -> None:
    bundle = create(tmp_path, project)
    code, out, err = run("zip", "list", bundle, "--json")
    assert code == 0, err
    listing = json.loads(out)
    members = {m["name"]: m for m in listing["members"]}
    assert set(members) == {"model/model.axonml", "config/axonml.toml", "data/data/labels.csv",
                            "data/data/linked.bin", "data/data/train/cats/a.txt"}
    assert members["model/model.axonml"]["role"] == "model"
    assert members["model/model.axonml"]["compression"] == "stored"
    assert members["config/axonml.toml"]["compression"] == "deflated"
    assert members["data/data/linked.bin"]["sha256"] == sha(project["linked"])  # the link's target is carried
    assert all(m["verified"] is None for m in members.values())
    out_dir = tmp_path / "out"
    code, out, err = run("zip", "extract", bundle, "-o", out_dir, "--json")
    assert code == 0, err
    assert len(json.loads(out)["files"]) == 5
    assert sha(out_dir / "model" / "model.axonml") == sha(project["model"])
    assert (out_dir / "data" / "data" / "train" / "cats" / "a.txt").read_text() == "meow\n"
    assert not (out_dir / "data" / "data" / "linked.bin").is_symlink()
    assert ModelArchive.verify(out_dir / "model" / "model.axonml")["name"] == "Linear"
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no staging folder left
    # extracting again refuses to overwrite, unless --force
    code, _, err = run("zip", "extract", bundle, "-o", out_dir)
    assert code == 1 and "overwrite" in err
    assert run("zip", "extract", bundle, "-o", out_dir, "--force")[0] == 0


def test_list_detailed_verifies_each_member(tmp_path: Path, project: dict[str, Path]) -> None:
    bundle = create(tmp_path, project)
    code, out, _ = run("zip", "list", bundle, "--detailed")
    assert code == 0 and "model/model.axonml" in out and sha(project["config"]) in out and "ok" in out
    listing = json.loads(run("zip", "list", bundle, "--detailed", "--json")[1])
    assert all(m["verified"] is True for m in listing["members"])


def _rewrite(bundle: Path, out: Path, change: dict[str, bytes | None], add: dict[str, bytes] | None = None) -> None:
    """Copy a bundle member by member (valid zip CRCs), replacing or dropping some, adding others."""
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename in change:
                if change[info.filename] is not None:
                    dst.writestr(info.filename, change[info.filename])  # type: ignore[arg-type]
            else:
                dst.writestr(info, src.read(info))
        for name, data in (add or {}).items():
            dst.writestr(name, data)


def test_tampered_bundles_are_refused_and_nothing_is_written(tmp_path: Path, project: dict[str, Path]) -> None:
    bundle = create(tmp_path, project)
    cases = {
        "edited": ({"config/axonml.toml": b"[train]\nepochs = 999\n"}, None, "SHA-256"),
        "dropped": ({"data/data/labels.csv": None}, None, "missing"),
        "smuggled": ({}, {"model/extra.py": b"import os"}, "not listed"),
    }
    for name, (change, add, message) in cases.items():
        bad = tmp_path / f"{name}.zip"
        _rewrite(bundle, bad, change, add)
        target = tmp_path / f"x-{name}"
        code, _, err = run("zip", "extract", bad, "-o", target)
        assert code == 1 and message in err, (name, err)
        assert files_under(target) == [], name
    # a flipped byte inside a stored member: zip's CRC or our SHA-256 catches it
    data = bytearray(bundle.read_bytes())
    raw = zipfile.ZipFile(bundle).read("model/model.axonml")
    at = bytes(data).index(raw) + 100
    data[at] ^= 0x01
    flipped = tmp_path / "flipped.zip"
    flipped.write_bytes(bytes(data))
    code, _, err = run("zip", "extract", flipped, "-o", tmp_path / "x-flip")
    assert code == 1 and "model/model.axonml" in err
    assert files_under(tmp_path / "x-flip") == []
    code, out, err = run("zip", "list", flipped, "--detailed")
    assert code == 1 and "FAILED" in out


def malicious_zip(path: Path, name: str, data: bytes = b"pwned\n", link: bool = False) -> None:
    """A bundle whose manifest is honest about a member with a hostile path (hashes all correct)."""
    manifest = {"format": "axonml.bundle", "format_version": 1, "files": {
        "model/ok.bin": {"role": "model", "size": 2, "sha256": hashlib.sha256(b"ok").hexdigest()}}}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model/ok.bin", b"ok")
        info = zipfile.ZipInfo(name)
        if link:
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, data)
        manifest["files"][name] = {"role": "data", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        zf.writestr("bundle.json", json.dumps(manifest))


@pytest.mark.parametrize("name", ["../evil.txt", "data/../../evil.txt", "/tmp/evil-axonml-abs.txt",
                                  "..\\evil.txt", "C:/evil.txt", "data/./x.txt", "data//x.txt"])
def test_member_paths_that_escape_are_refused(tmp_path: Path, name: str) -> None:
    bad = tmp_path / "bad.zip"
    malicious_zip(bad, name)
    target = tmp_path / "deep" / "target"
    code, _, err = run("zip", "extract", bad, "-o", target)
    assert code == 1 and "refusing" in err
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "deep" / "evil.txt").exists()
    assert not Path("/tmp/evil-axonml-abs.txt").exists()
    assert files_under(tmp_path / "deep") == []
    assert run("zip", "list", bad)[0] == 1


def test_symlink_members_and_links_in_the_target_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "link.zip"
    malicious_zip(bad, "data/passwd", data=b"/etc/passwd", link=True)
    code, _, err = run("zip", "extract", bad, "-o", tmp_path / "t1")
    assert code == 1 and "symbolic link" in err and files_under(tmp_path / "t1") == []
    # a link already in the target folder must not carry a member outside it
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "t2"
    target.mkdir()
    (target / "data").symlink_to(outside, target_is_directory=True)
    honest = tmp_path / "honest.zip"
    malicious_zip(honest, "data/file.txt")
    code, _, err = run("zip", "extract", honest, "-o", target)
    assert code == 1 and "outside" in err
    assert list(outside.iterdir()) == []


def test_bad_inputs(tmp_path: Path, project: dict[str, Path]) -> None:
    assert run("zip", "create", "-o", tmp_path / "b.zip")[0] == 2  # --model is required
    code, _, err = run("zip", "create", "-o", tmp_path / "b.zip", "--model", tmp_path / "missing.axonml")
    assert code == 1 and "missing.axonml" in err
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "model.axonml").write_bytes(b"x")
    code, _, err = run("zip", "create", "-o", tmp_path / "b.zip", "--model", project["model"], "--model",
                       twin / "model.axonml")
    assert code == 1 and "same name" in err
    code, _, err = run("zip", "create", "-o", tmp_path / "b.zip", "--model", project["model"], "--config",
                       project["data"])
    assert code == 1 and "folder" in err
    assert not (tmp_path / "b.zip").exists()
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("a.txt", "a")
    code, _, err = run("zip", "list", plain)
    assert code == 1 and "not an axonml bundle" in err
    (tmp_path / "junk.zip").write_bytes(b"not a zip at all")
    assert run("zip", "extract", tmp_path / "junk.zip", "-o", tmp_path / "j")[0] == 1
    assert run("zip", "extract", tmp_path / "junk.zip")[0] == 2  # -o is required


def test_in_subprocesses_with_real_mnist_files(tmp_path: Path, shared_data: Path,
                                               project: dict[str, Path]) -> None:
    images = shared_data / "mnist" / "t10k-images-idx3-ubyte.gz"
    labels = shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz"
    bundle = tmp_path / "mnist.zip"
    p = sub("zip", "create", "-o", bundle, "--model", project["model"], "--data", images, "--data", labels,
            "--config", project["config"])
    assert p.returncode == 0, p.stderr
    p = sub("zip", "list", bundle, "--detailed", "--json")
    assert p.returncode == 0, p.stderr
    members = {m["name"]: m for m in json.loads(p.stdout)["members"]}
    assert members["data/t10k-images-idx3-ubyte.gz"]["sha256"] == sha(images)
    assert members["data/t10k-images-idx3-ubyte.gz"]["compression"] == "stored"
    assert all(m["verified"] for m in members.values())
    out = tmp_path / "unpacked"
    p = sub("zip", "extract", bundle, "-o", out)
    assert p.returncode == 0 and "verified" in p.stdout
    assert (out / "data" / "t10k-images-idx3-ubyte.gz").read_bytes() == images.read_bytes()
    assert sub("zip", "extract", bundle, "-o", out).returncode == 1  # files exist now


def test_in_subprocesses_on_generated_files(tmp_path: Path, project: dict[str, Path]) -> None:
    bundle = tmp_path / "gen.zip"
    p = sub("zip", "create", "-o", bundle, "--model", project["model"], "--data", project["data"])
    assert p.returncode == 0 and "4 files" in p.stdout, p.stderr
    p = sub("zip", "list", bundle)
    assert p.returncode == 0 and "data/data/train/cats/a.txt" in p.stdout
    p = sub("zip", "extract", bundle, "-o", tmp_path / "o", "--json")
    assert p.returncode == 0 and len(json.loads(p.stdout)["files"]) == 4
    bad = tmp_path / "escape.zip"
    malicious_zip(bad, "../escape.txt")
    p = sub("zip", "extract", bad, "-o", tmp_path / "o2")
    assert p.returncode == 1 and p.stderr.startswith("error:") and not (tmp_path / "escape.txt").exists()
